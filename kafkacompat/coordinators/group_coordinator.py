"""Kafka's classic group coordinator: membership, rebalances, and who may commit offsets.

Theory of operation (Kafka's ``GroupCoordinator`` for the classic protocol, one broker that
coordinates every group).

A rebalance.  Members send JoinGroup; the first JoinGroup of a dynamic member (v4+) is answered
at once with MEMBER_ID_REQUIRED and a member id ``<client.id>-<uuid>`` to join with (KIP-394).
A join moves the group to PreparingRebalance and parks the member's response.  The rebalance
completes when every known member has rejoined, or when the rebalance timeout (the largest
member's) passes, removing the dynamic members that did not rejoin; an Empty group first
waits ``group.initial.rebalance.delay.ms``, and again (up to its rebalance timeout) while new
members keep arriving.  Completion bumps the generation, picks the protocol every member
supports that most prefer, moves to CompletingRebalance and answers every parked JoinGroup:
the leader's answer carries all members' metadata.  The leader computes the assignment
itself and sends it with its SyncGroup; followers' SyncGroups park until it arrives.  The
coordinator stores the group (``__consumer_offsets``), moves to Stable and hands each member
its assignment.  Members that never send SyncGroup within the rebalance timeout are removed.

Liveness.  Each member must heartbeat within its session timeout, or be removed (a new rebalance
follows).  Members waiting on a JoinGroup or SyncGroup response are excused, except members
that have not completed a join yet, which get five minutes.  Static members (KIP-345,
``group.instance.id``) that restart rejoin with a new member id under the same instance id
without a rebalance when their protocols did not change; the old member id is fenced
(FENCED_INSTANCE_ID).

Offsets.  Members commit with their generation and member id; a commit with generation -1 and
no member id is accepted while the group is Empty or unknown (standalone consumers and admin
tools).  Commits are written to ``__consumer_offsets`` before they are answered.  Offsets
of Empty groups expire ``offsets.retention.minutes`` after the group emptied; a group with
no members and no offsets left is removed.

Time is injected (:mod:`kafkacompat.coordinators.group_timers`); nothing here blocks or sleeps.
Responses that must wait (JoinGroup, SyncGroup) are given as callbacks, called exactly once.
The groups themselves, their offsets and their records are the GroupMetadataManager's
(:mod:`kafkacompat.coordinators.group_manager`).  This module is long because the protocol's
transitions read best in one place, as in Kafka's own GroupCoordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Final

from kafkacompat.coordinators.group_manager import (
    GroupConfig,
    GroupMetadataManager,
    GroupOverview,
    GroupSummary,
    MemberSummary,
)
from kafkacompat.coordinators.group_metadata import (
    UNKNOWN_MEMBER_ID,
    GroupMetadata,
    GroupState,
    JoinCallback,
    JoinGroupResult,
    JoinTimer,
    MemberMetadata,
    OffsetAndMetadata,
    SessionTimer,
    SyncCallback,
    SyncGroupResult,
    generate_member_id,
)
from kafkacompat.coordinators.group_store import GroupStore, LoadedGroups, drain
from kafkacompat.coordinators.group_timers import Scheduler
from kafkacompat.errors import ErrorCode

log = logging.getLogger(__name__)

E = ErrorCode
S = GroupState
TopicPartition = tuple[str, int]

NEW_MEMBER_JOIN_TIMEOUT_MS: Final = 5 * 60 * 1000


class GroupCoordinator:
    """Every classic group on this broker, driven by requests and by the scheduler's timers.

    The admin and offset reads (OffsetFetch, DescribeGroups, ListGroups, DeleteGroups,
    OffsetDelete) are the :class:`GroupMetadataManager`'s, reached as ``coordinator.manager``
    or through the same names here."""

    def __init__(
        self, config: GroupConfig, scheduler: Scheduler, store: GroupStore | None = None
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.manager = GroupMetadataManager(config, scheduler, store)
        manager = self.manager
        self.groups = manager.groups
        self.group_error = manager.group_error
        self.ensure_offsets_topic = manager.ensure_offsets_topic
        self.partition_for = manager.partition_for
        self.fetch_offsets = manager.fetch_offsets
        self.delete_offsets = manager.delete_offsets
        self.describe_group = manager.describe_group
        self.list_groups = manager.list_groups
        self.delete_groups = manager.delete_groups
        self.expire_offsets = manager.expire_offsets
        self.on_partitions_deleted = manager.on_partitions_deleted

    @property
    def active(self) -> bool:
        return self.manager.active

    @active.setter
    def active(self, value: bool) -> None:
        self.manager.active = value

    @property
    def loading(self) -> bool:
        return self.manager.loading

    @loading.setter
    def loading(self, value: bool) -> None:
        self.manager.loading = value

    # -- lifecycle --------------------------------------------------------------------------------

    def startup(self) -> LoadedGroups:
        return drain(self.startup_steps())

    def startup_steps(self) -> Generator[None, None, LoadedGroups]:
        """Load every group and offset from the log, then start serving: loaded members
        keep their generation as long as they heartbeat within their sessions."""
        loaded = yield from self.manager.load_steps()
        for group in list(self.groups.values()):
            self._on_group_loaded(group)
        return loaded

    def shutdown(self) -> None:
        """Stop serving: answer every parked JoinGroup/SyncGroup with NOT_COORDINATOR (as Kafka
        does when it unloads a group) and cancel every timer."""
        self.manager.shutdown()
        for group in list(self.groups.values()):
            self._unload(group)
        self.groups.clear()

    def _on_group_loaded(self, group: GroupMetadata) -> None:
        if group.size > self.config.max_size:
            self._prepare_rebalance(group, "loaded group is over capacity")
        for member in list(group.members.values()):
            self._schedule_session_expiration(group, member, member.session_timeout_ms)

    def _unload(self, group: GroupMetadata) -> None:
        previous = group.state
        group.transition_to(S.DEAD, self._now())
        if previous is S.PREPARING_REBALANCE:
            for member in list(group.members.values()):
                group.maybe_invoke_join_callback(
                    member, JoinGroupResult(member.member_id, E.NOT_COORDINATOR)
                )
        elif previous in (S.STABLE, S.COMPLETING_REBALANCE):
            for member in group.members.values():
                group.maybe_invoke_sync_callback(member, SyncGroupResult(E.NOT_COORDINATOR))
        group.cancel_timers()

    # -- small helpers ----------------------------------------------------------------------------

    def _now(self) -> int:
        return self.scheduler.now_ms()

    def _validate_current_member(
        self, group: GroupMetadata, member_id: str, group_instance_id: str | None
    ) -> ErrorCode | None:
        """A static member's instance id must map to its member id (else it is fenced, or
        unknown); the member id must be in the group."""
        if group_instance_id is not None:
            current = group.current_static_member_id(group_instance_id)
            if current is None:
                return E.UNKNOWN_MEMBER_ID
            if current != member_id:
                return E.FENCED_INSTANCE_ID
        if not group.has(member_id):
            return E.UNKNOWN_MEMBER_ID
        return None

    # -- JoinGroup --------------------------------------------------------------------------------

    def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        *,
        require_known_member_id: bool,
        support_skip_assignment: bool,
        client_id: str | None,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        respond: JoinCallback,
        reason: str | None = None,
    ) -> None:
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            respond(JoinGroupResult(member_id, error))
            return
        if not (
            self.config.min_session_timeout_ms
            <= session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            respond(JoinGroupResult(member_id, E.INVALID_SESSION_TIMEOUT))
            return
        is_unknown = member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(group_id)
        if group is None:
            # Only a member without an id may create a group.
            if not is_unknown:
                respond(JoinGroupResult(member_id, E.UNKNOWN_MEMBER_ID))
                return
            group = self.manager.add_group(group_id)
        join = _Join(
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
            respond,
            reason or "not provided",
        )
        if not self._accept_joining_member(group, member_id):
            group.remove(member_id)
            respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.GROUP_MAX_SIZE_REACHED))
        elif is_unknown:
            self._new_member_join(group, join, require_known_member_id, support_skip_assignment)
        else:
            self._current_member_join(group, join)
        if group.is_in(S.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _accept_joining_member(self, group: GroupMetadata, member_id: str) -> bool:
        """group.max.size: in a rebalance, count the members that already rejoined (so the
        last to rejoin are the ones turned away); otherwise the members."""
        state = group.state
        if state in (S.EMPTY, S.DEAD):
            return True
        if state is S.PREPARING_REBALANCE:
            return (
                group.has(member_id) and group.get(member_id).is_awaiting_join
            ) or group.num_members_awaiting_join < self.config.max_size
        return group.has(member_id) or group.size < self.config.max_size

    def _new_member_join(
        self,
        group: GroupMetadata,
        join: _Join,
        require_known_member_id: bool,
        support_skip_assignment: bool,
    ) -> None:
        if group.is_in(S.DEAD):
            join.respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(join.protocol_type, (p for p, _ in join.protocols)):
            join.respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.INCONSISTENT_GROUP_PROTOCOL))
            return
        new_member_id = generate_member_id(join.client_id, join.group_instance_id)
        instance = join.group_instance_id
        if instance is not None:
            old_member_id = group.current_static_member_id(instance)
            if old_member_id is not None:
                self._update_static_member_and_rebalance(
                    group, old_member_id, new_member_id, instance, join, support_skip_assignment
                )
            else:
                self._add_member_and_rebalance(group, new_member_id, join)
        elif require_known_member_id:
            # KIP-394: the member gets its id now and joins for real with it.
            group.pending_members.add(new_member_id)
            self.scheduler.call_later(
                join.session_timeout_ms,
                lambda: self._on_pending_member_expired(group, new_member_id),
            )
            join.respond(JoinGroupResult(new_member_id, E.MEMBER_ID_REQUIRED))
        else:
            self._add_member_and_rebalance(group, new_member_id, join)

    def _current_member_join(self, group: GroupMetadata, join: _Join) -> None:
        member_id = join.member_id
        if group.is_in(S.DEAD):
            join.respond(JoinGroupResult(member_id, E.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(join.protocol_type, (p for p, _ in join.protocols)):
            join.respond(JoinGroupResult(member_id, E.INCONSISTENT_GROUP_PROTOCOL))
            return
        if member_id in group.pending_members:
            # The second JoinGroup of a KIP-394 member: it joins now.
            self._add_member_and_rebalance(group, member_id, join)
            return
        error = self._validate_current_member(group, member_id, join.group_instance_id)
        if error is not None:
            join.respond(JoinGroupResult(member_id, error))
            return
        member = group.get(member_id)
        state = group.state
        if state is S.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, join)
        elif state is S.COMPLETING_REBALANCE:
            if member.matches(join.protocols):
                # A retry of a JoinGroup whose response was lost: the same answer again.
                join.respond(self._join_result(group, member, with_members=True))
            else:
                self._update_member_and_rebalance(group, member, join)
        elif state is S.STABLE:
            if group.is_leader(member_id) or not member.matches(join.protocols):
                # The leader rejoins to have metadata changes (say, new partitions) reassigned.
                self._update_member_and_rebalance(group, member, join)
            else:
                join.respond(self._join_result(group, member, with_members=False))
        else:
            join.respond(JoinGroupResult(member_id, E.UNKNOWN_MEMBER_ID))

    def _join_result(
        self, group: GroupMetadata, member: MemberMetadata, *, with_members: bool
    ) -> JoinGroupResult:
        is_leader = group.is_leader(member.member_id)
        return JoinGroupResult(
            member.member_id,
            E.NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader_id=group.leader_id or "",
            members=group.current_member_metadata() if with_members and is_leader else (),
        )

    def _add_member_and_rebalance(self, group: GroupMetadata, member_id: str, join: _Join) -> None:
        member = MemberMetadata(
            member_id,
            join.group_instance_id,
            "null" if join.client_id is None else join.client_id,
            join.client_host,
            join.rebalance_timeout_ms,
            join.session_timeout_ms,
            join.protocol_type,
            join.protocols,
        )
        member.is_new = True
        if group.is_in(S.PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, join.respond)
        # A new member cannot heartbeat before its first join completes, and its parked
        # JoinGroup hides a disconnect: it gets a fixed five minutes instead.
        self._schedule_session_expiration(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(
            group, f"adding new member {member_id}; client reason: {join.reason}"
        )

    def _update_member_and_rebalance(
        self, group: GroupMetadata, member: MemberMetadata, join: _Join
    ) -> None:
        group.update_member(
            member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, join.respond
        )
        self._maybe_prepare_rebalance(
            group, f"member {member.member_id} rejoined; client reason: {join.reason}"
        )

    def _update_static_member_and_rebalance(
        self,
        group: GroupMetadata,
        old_member_id: str,
        new_member_id: str,
        group_instance_id: str,
        join: _Join,
        support_skip_assignment: bool,
    ) -> None:
        current_leader = group.leader_id or ""
        member = group.replace_static_member(group_instance_id, old_member_id, new_member_id)
        self._schedule_session_expiration(group, member, member.session_timeout_ms)
        old_protocols = member.supported_protocols
        old_rebalance_timeout, old_session_timeout = (
            member.rebalance_timeout_ms,
            member.session_timeout_ms,
        )
        group.update_member(
            member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, join.respond
        )
        state = group.state
        if state is S.STABLE:
            if group.protocol_name == group.select_protocol():
                # KIP-345: same protocols, so no rebalance; persist the new member id.
                assignment = {m.member_id: m.assignment for m in group.members.values()}
                error = self.manager.store_group(group, assignment)
                if error is not None:
                    group.update_member(
                        member, old_protocols, old_rebalance_timeout, old_session_timeout, None
                    )
                    old = group.replace_static_member(
                        group_instance_id, new_member_id, old_member_id
                    )
                    self._schedule_session_expiration(group, old, old.session_timeout_ms)
                    join.respond(
                        JoinGroupResult(
                            UNKNOWN_MEMBER_ID,
                            error,
                            generation_id=group.generation_id,
                            protocol_type=group.protocol_type,
                            protocol_name=group.protocol_name,
                            leader_id=current_leader,
                        )
                    )
                    return
                is_leader = group.is_leader(new_member_id)
                if support_skip_assignment:
                    # KIP-814: the restarted leader learns it leads, but must not reassign.
                    result = JoinGroupResult(
                        new_member_id,
                        E.NONE,
                        generation_id=group.generation_id,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol_name,
                        leader_id=group.leader_id or "",
                        skip_assignment=is_leader,
                        members=group.current_member_metadata() if is_leader else (),
                    )
                else:
                    # Older clients are told the old leader id, so that a restarted leader
                    # does not believe it leads and run a pointless assignment.
                    result = JoinGroupResult(
                        new_member_id,
                        E.NONE,
                        generation_id=group.generation_id,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol_name,
                        leader_id=current_leader,
                    )
                group.maybe_invoke_join_callback(member, result)
            else:
                self._maybe_prepare_rebalance(
                    group, f"static member {group_instance_id} rejoined with other protocols"
                )
        elif state is S.COMPLETING_REBALANCE:
            # The leader may already be assigning to the old member id: start over.
            self._prepare_rebalance(group, f"static member {group_instance_id} rejoined")

    # -- rebalance machinery ----------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: GroupMetadata, reason: str) -> None:
        if group.can_rebalance:
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: GroupMetadata, reason: str) -> None:
        if group.is_in(S.COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, E.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        was_empty = group.is_in(S.EMPTY)
        rebalance_timeout = group.rebalance_timeout_ms
        group.transition_to(S.PREPARING_REBALANCE, self._now())
        log.info(
            "preparing to rebalance group %s with old generation %d (reason: %s)",
            group.group_id,
            group.generation_id,
            reason,
        )
        if was_empty:
            delay = self.config.initial_rebalance_delay_ms
            self._schedule_initial_join(group, delay, max(rebalance_timeout - delay, 0))
        else:
            self._schedule_join(group, rebalance_timeout)

    def _schedule_join(self, group: GroupMetadata, timeout_ms: int) -> None:
        """Kafka's DelayedJoin: completes as soon as every member has rejoined, or at the
        rebalance timeout with whoever did."""
        timer = JoinTimer(initial=False, delay_ms=timeout_ms, remaining_ms=0)
        timer.handle = self.scheduler.call_later(
            timeout_ms, lambda: self._on_join_timer(group, timer)
        )
        group.join_timer = timer
        self._try_complete_join(group)

    def _schedule_initial_join(
        self, group: GroupMetadata, delay_ms: int, remaining_ms: int
    ) -> None:
        """Kafka's InitialDelayedJoin: only time completes it."""
        timer = JoinTimer(initial=True, delay_ms=delay_ms, remaining_ms=remaining_ms)
        timer.handle = self.scheduler.call_later(
            delay_ms, lambda: self._on_join_timer(group, timer)
        )
        group.join_timer = timer

    def _try_complete_join(self, group: GroupMetadata) -> None:
        timer = group.join_timer
        if timer is not None and not timer.initial and group.has_all_members_joined:
            timer.handle.cancel()
            group.join_timer = None
            self._complete_join(group)

    def _on_join_timer(self, group: GroupMetadata, timer: JoinTimer) -> None:
        if group.join_timer is not timer:
            return
        group.join_timer = None
        if timer.initial and group.new_member_added and timer.remaining_ms != 0:
            # Members are still arriving: wait once more, within the rebalance timeout.
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, timer.remaining_ms)
            self._schedule_initial_join(group, delay, max(timer.remaining_ms - timer.delay_ms, 0))
            return
        self._complete_join(group)

    def _complete_join(self, group: GroupMetadata) -> None:
        """Kafka's onCompleteJoin."""
        for member in group.not_yet_rejoined_members():
            if not member.is_static:
                log.info(
                    "group %s removed dynamic member %s, which did not rejoin in time",
                    group.group_id,
                    member.member_id,
                )
                group.remove(member.member_id)
        if group.is_in(S.DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members remain and none rejoined: wait for them (or for their
            # sessions to expire).
            log.warning(
                "group %s could not complete a rebalance: no member rejoined", group.group_id
            )
            self._schedule_join(group, group.rebalance_timeout_ms)
            return
        group.init_next_generation(self._now())
        if group.is_in(S.EMPTY):
            log.info(
                "group %s with generation %d is now empty", group.group_id, group.generation_id
            )
            error = self.manager.store_group(group, {})
            if error is not None:
                log.warning("could not write the empty group %s: %s", group.group_id, error.name)
            return
        log.info(
            "stabilized group %s generation %d with %d members",
            group.group_id,
            group.generation_id,
            group.size,
        )
        for member in list(group.members.values()):
            group.maybe_invoke_join_callback(
                member, self._join_result(group, member, with_members=True)
            )
            self._schedule_session_expiration(group, member, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        group.sync_timer = self.scheduler.call_later(
            group.rebalance_timeout_ms, lambda: self._on_sync_expired(group, generation)
        )

    def _on_sync_expired(self, group: GroupMetadata, generation: int) -> None:
        """Members that got their JoinGroup response but never sent SyncGroup in time are
        removed, and the group rebalances without them."""
        if generation != group.generation_id:
            return
        group.sync_timer = None
        if group.state in (S.COMPLETING_REBALANCE, S.STABLE) and group.pending_sync_members:
            missing = sorted(group.pending_sync_members)
            for member_id in missing:
                group.remove(member_id)
            self._prepare_rebalance(group, f"removing {missing} on pending sync expiration")

    def _remove_sync_expiration(self, group: GroupMetadata) -> None:
        group.pending_sync_members.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _reset_and_propagate_assignment_error(self, group: GroupMetadata, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: GroupMetadata, error: ErrorCode) -> None:
        ok = error is E.NONE
        for member in list(group.members.values()):
            result = SyncGroupResult(
                error,
                group.protocol_type if ok else None,
                group.protocol_name if ok else None,
                member.assignment,
            )
            if group.maybe_invoke_sync_callback(member, result):
                # A session may have lapsed unwatched while the member waited: restart it.
                self._schedule_session_expiration(group, member, member.session_timeout_ms)

    def _remove_member_and_update_group(
        self, group: GroupMetadata, member: MemberMetadata, reason: str
    ) -> None:
        # A member removed while its JoinGroup is parked hears UNKNOWN_MEMBER_ID and rejoins.
        group.maybe_invoke_join_callback(
            member, JoinGroupResult(UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID)
        )
        group.maybe_invoke_sync_callback(member, SyncGroupResult(E.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        state = group.state
        if state in (S.STABLE, S.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif state is S.PREPARING_REBALANCE:
            self._try_complete_join(group)

    # -- sessions ---------------------------------------------------------------------------------

    def _schedule_session_expiration(
        self, group: GroupMetadata, member: MemberMetadata, timeout_ms: int
    ) -> None:
        """Expect the member's next heartbeat within ``timeout_ms``.  Heartbeats only move
        the deadline; the timer already armed re-arms itself when it fires early."""
        deadline = self._now() + timeout_ms
        member.session_deadline = deadline
        armed = member.session_timer
        if armed is not None:
            if armed.deadline <= deadline:
                return
            armed.handle.cancel()
        self._arm_session_timer(group, member, deadline)

    def _arm_session_timer(
        self, group: GroupMetadata, member: MemberMetadata, deadline: int
    ) -> None:
        timer = SessionTimer(deadline)
        timer.handle = self.scheduler.call_later(
            deadline - self._now(), lambda: self._on_session_timer(group, member, timer)
        )
        member.session_timer = timer

    def _on_session_timer(
        self, group: GroupMetadata, member: MemberMetadata, timer: SessionTimer
    ) -> None:
        if member.session_timer is not timer:
            return
        member.session_timer = None
        if group.is_in(S.DEAD) or group.members.get(member.member_id) is not member:
            return
        deadline = member.session_deadline
        if deadline is None:
            return
        if self._now() < deadline:
            self._arm_session_timer(group, member, deadline)
            return
        member.session_deadline = None
        if member.is_new or not (member.is_awaiting_join or member.is_awaiting_sync):
            log.info(
                "member %s in group %s has failed (session timeout), removing it",
                member.member_id,
                group.group_id,
            )
            self._remove_member_and_update_group(
                group, member, f"removing member {member.member_id} on heartbeat expiration"
            )

    def _on_pending_member_expired(self, group: GroupMetadata, member_id: str) -> None:
        if member_id in group.pending_members and not group.is_in(S.DEAD):
            group.remove(member_id)
            if group.is_in(S.PREPARING_REBALANCE):
                self._try_complete_join(group)

    # -- SyncGroup --------------------------------------------------------------------------------

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        respond: SyncCallback,
    ) -> None:
        error = self.group_error(group_id, allow_empty=False)
        if error is E.COORDINATOR_LOAD_IN_PROGRESS:
            # The rebalance's state is lost with the load: the member starts over at JoinGroup.
            respond(SyncGroupResult(E.REBALANCE_IN_PROGRESS))
            return
        if error is not None:
            respond(SyncGroupResult(error))
            return
        group = self.groups.get(group_id)
        if group is None:
            respond(SyncGroupResult(E.UNKNOWN_MEMBER_ID))
            return
        if group.is_in(S.DEAD):
            respond(SyncGroupResult(E.COORDINATOR_NOT_AVAILABLE))
            return
        error = self._validate_current_member(group, member_id, group_instance_id)
        if error is None and generation_id != group.generation_id:
            error = E.ILLEGAL_GENERATION
        if error is None and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = E.INCONSISTENT_GROUP_PROTOCOL
        if error is not None:
            respond(SyncGroupResult(error))
            return
        state = group.state
        if state is S.EMPTY:
            respond(SyncGroupResult(E.UNKNOWN_MEMBER_ID))
        elif state is S.PREPARING_REBALANCE:
            respond(SyncGroupResult(E.REBALANCE_IN_PROGRESS))
        elif state is S.COMPLETING_REBALANCE:
            member = group.get(member_id)
            member.awaiting_sync = respond
            group.pending_sync_members.discard(member_id)
            self._maybe_complete_sync_expiration(group)
            if group.is_leader(member_id):
                self._complete_sync(group, assignments)
        else:  # Stable: a retry, or a follower late to the party
            group.pending_sync_members.discard(member_id)
            self._maybe_complete_sync_expiration(group)
            member = group.get(member_id)
            respond(
                SyncGroupResult(E.NONE, group.protocol_type, group.protocol_name, member.assignment)
            )
            self._schedule_session_expiration(group, member, member.session_timeout_ms)

    def _complete_sync(self, group: GroupMetadata, assignments: dict[str, bytes]) -> None:
        # Members the leader left out get an empty assignment, as in Kafka.
        assignment = {m: assignments.get(m, b"") for m in group.members}
        error = self.manager.store_group(group, assignment)
        if error is not None:
            self._reset_and_propagate_assignment_error(group, error)
            self._maybe_prepare_rebalance(group, f"error {error.name} storing the assignment")
            return
        for member in group.members.values():
            member.assignment = assignment[member.member_id]
        self._propagate_assignment(group, E.NONE)
        group.transition_to(S.STABLE, self._now())

    def _maybe_complete_sync_expiration(self, group: GroupMetadata) -> None:
        if not group.pending_sync_members and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    # -- Heartbeat and LeaveGroup -----------------------------------------------------------------

    def heartbeat(
        self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> ErrorCode:
        error = self.group_error(group_id, allow_empty=False)
        if error is E.COORDINATOR_LOAD_IN_PROGRESS:
            return E.NONE  # nothing to check yet: answer blindly, as Kafka does
        if error is not None:
            return error
        group = self.groups.get(group_id)
        if group is None:
            return E.UNKNOWN_MEMBER_ID
        if group.is_in(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        error = self._validate_current_member(group, member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return E.ILLEGAL_GENERATION
        if group.is_in(S.EMPTY):
            return E.UNKNOWN_MEMBER_ID
        member = group.get(member_id)
        self._schedule_session_expiration(group, member, member.session_timeout_ms)
        if group.is_in(S.PREPARING_REBALANCE):
            return E.REBALANCE_IN_PROGRESS
        return E.NONE

    def leave_group(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """Each (member id, group instance id) leaves; an empty member id with an instance id
        removes whoever holds that instance (administrative removal, KIP-345)."""
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None:
            return E.NONE, [E.UNKNOWN_MEMBER_ID for _ in leaving]
        if group.is_in(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE, []
        errors = []
        for member_id, instance in leaving:
            if member_id == UNKNOWN_MEMBER_ID:
                current = None if instance is None else group.current_static_member_id(instance)
                if current is None:
                    errors.append(E.UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                group.remove(member_id)
                if group.is_in(S.PREPARING_REBALANCE):
                    self._try_complete_join(group)
                errors.append(E.NONE)
                continue
            else:
                member_error = self._validate_current_member(group, member_id, instance)
                if member_error is not None:
                    errors.append(member_error)
                    continue
            log.info("member %s has left group %s through LeaveGroup", member_id, group_id)
            self._remove_member_and_update_group(
                group, group.get(member_id), f"member {member_id} left (LeaveGroup)"
            )
            errors.append(E.NONE)
        return E.NONE, errors

    # -- offsets ----------------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetCommit: the error per partition.  Written before this returns."""
        error = self.group_error(group_id, allow_empty=True)
        if error is not None:
            return dict.fromkeys(offsets, error)
        group = self.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                # Not a group this coordinator knows, or one of an old generation: reject.
                return dict.fromkeys(offsets, E.ILLEGAL_GENERATION)
            group = self.manager.add_group(group_id)  # a standalone consumer storing offsets
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error is not None:
            return dict.fromkeys(offsets, error)
        if group.state in (S.STABLE, S.PREPARING_REBALANCE):
            # A commit is as good as a heartbeat; in PreparingRebalance the next heartbeat
            # tells the member to rejoin.
            member = group.get(member_id)
            self._schedule_session_expiration(group, member, member.session_timeout_ms)
        return self.manager.store_offsets(group, offsets)

    def _validate_offset_commit(
        self,
        group: GroupMetadata,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
    ) -> ErrorCode | None:
        if group.is_in(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and group.is_in(S.EMPTY):
            return None  # admin tools and consumers without group management
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = self._validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return E.ILLEGAL_GENERATION
        elif not group.is_in(S.EMPTY):
            return E.UNKNOWN_MEMBER_ID  # only members may commit while a group has members
        if group.is_in(S.COMPLETING_REBALANCE):
            # The member has its new generation but not its assignment yet.
            return E.REBALANCE_IN_PROGRESS
        return None


@dataclass(frozen=True, slots=True)
class _Join:
    """One JoinGroup request's arguments, as the join paths pass them along."""

    member_id: str
    group_instance_id: str | None
    client_id: str | None
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    respond: JoinCallback
    reason: str


__all__ = [
    "GroupConfig",
    "GroupCoordinator",
    "GroupOverview",
    "GroupSummary",
    "MemberSummary",
]
