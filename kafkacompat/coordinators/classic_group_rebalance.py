"""The rebalance machinery of a classic group, as operations that return their records.

Theory of operation (Kafka's classic ``GroupCoordinator``; in the new group-coordinator module
these are ``GroupMetadataManager``'s ``prepareRebalance``, ``completeClassicGroupJoin``,
``scheduleClassicGroupMemberHeartbeat`` and friends).

A rebalance completes when every known member has rejoined, or when the rebalance timeout
(the largest member's) passes, removing the dynamic members that did not rejoin; an Empty
group first waits ``group.initial.rebalance.delay.ms``, and again (up to its rebalance
timeout) while new members keep arriving.  Completion bumps the generation, picks the
protocol every member supports that most prefer, moves to CompletingRebalance and answers
every parked JoinGroup: the leader's answer carries all members' metadata.  Members that
never send SyncGroup within the rebalance timeout are removed.

Liveness.  Each member must heartbeat within its session timeout, or be removed (a new
rebalance follows).  Members waiting on a JoinGroup or SyncGroup response are excused, except
members that have not completed a join yet, which get five minutes.

Every transition here returns a :class:`~kafkacompat.coordinators.coordinator_runtime.
CoordinatorResult`: the group records to write (a group that became Empty is stored), with
``replay_records=False`` since the group was changed in place.  Timers are the shard's
:class:`~kafkacompat.coordinators.coordinator_runtime.CoordinatorTimer`: what they do is a
write operation like any request's.
"""

from __future__ import annotations

import logging
from typing import Final

from kafkacompat.coordinators.coordinator_runtime import (
    EMPTY_RESULT,
    AppendCallback,
    CoordinatorResult,
    CoordinatorTimer,
)
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_metadata import (
    UNKNOWN_MEMBER_ID,
    GroupMetadata,
    GroupState,
    JoinGroupResult,
    JoinTimer,
    MemberMetadata,
    SessionTimer,
    SyncGroupResult,
)
from kafkacompat.coordinators.group_records import GroupMetadataRecord, member_record
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.internal_topics.group_metadata_value import GroupMetadataValue

log = logging.getLogger(__name__)

E = ErrorCode
S = GroupState

NEW_MEMBER_JOIN_TIMEOUT_MS: Final = 5 * 60 * 1000


def convert_store_error_for_group(error: ErrorCode) -> ErrorCode:
    """Kafka's ``appendGroupMetadataErrorToResponseError``: what a member hears when its
    group could not be written."""
    if error in (
        E.UNKNOWN_TOPIC_OR_PARTITION,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ):
        return E.COORDINATOR_NOT_AVAILABLE
    if error in (E.NOT_LEADER_OR_FOLLOWER, E.KAFKA_STORAGE_ERROR):
        return E.NOT_COORDINATOR
    if error is E.REQUEST_TIMED_OUT:
        return E.REBALANCE_IN_PROGRESS
    return E.UNKNOWN_SERVER_ERROR


def group_record_result(
    group: GroupMetadata, assignment: dict[str, bytes], on_append: AppendCallback
) -> CoordinatorResult[None]:
    """The group's generation as a record (its members with ``assignment``), to be written;
    ``on_append`` finishes the transition once the runtime knows how the append went."""
    protocol = group.protocol_name
    members = [
        member_record(
            m.member_id,
            m.group_instance_id,
            m.client_id,
            m.client_host,
            m.rebalance_timeout_ms,
            m.session_timeout_ms,
            m.metadata(protocol) if protocol is not None else b"",
            assignment[m.member_id],
        )
        for m in group.members.values()
    ]
    value = GroupMetadataValue(
        protocol_type=group.protocol_type or "",
        generation=group.generation_id,
        protocol=protocol,
        leader=group.leader_id,
        current_state_timestamp=-1 if group.state_timestamp is None else group.state_timestamp,
        members=members,
    )
    return CoordinatorResult(
        [GroupMetadataRecord(group.group_id, value)],
        None,
        (on_append,),
        replay_records=False,
    )


class ClassicGroupRebalance:
    """Rebalances and sessions of the classic groups of one shard (the base of
    :class:`~kafkacompat.coordinators.group_metadata_manager.GroupMetadataManager`, which
    adds the requests that drive them)."""

    def __init__(self, config: GroupConfig, timer: CoordinatorTimer) -> None:
        self.config = config
        self.timer = timer

    def now(self) -> int:
        return self.timer.now_ms()

    # -- rebalance --------------------------------------------------------------------------------

    def maybe_prepare_rebalance(self, group: GroupMetadata, reason: str) -> CoordinatorResult[None]:
        if group.can_rebalance:
            return self.prepare_rebalance(group, reason)
        return EMPTY_RESULT

    def prepare_rebalance(self, group: GroupMetadata, reason: str) -> CoordinatorResult[None]:
        if group.is_in(S.COMPLETING_REBALANCE):
            self.reset_and_propagate_assignment_error(group, E.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        was_empty = group.is_in(S.EMPTY)
        rebalance_timeout = group.rebalance_timeout_ms
        group.transition_to(S.PREPARING_REBALANCE, self.now())
        log.info(
            "preparing to rebalance group %s with old generation %d (reason: %s)",
            group.group_id,
            group.generation_id,
            reason,
        )
        if was_empty:
            delay = self.config.initial_rebalance_delay_ms
            self._schedule_initial_join(group, delay, max(rebalance_timeout - delay, 0))
            return EMPTY_RESULT
        return self._schedule_join(group, rebalance_timeout)

    def _schedule_join(self, group: GroupMetadata, timeout_ms: int) -> CoordinatorResult[None]:
        """Kafka's DelayedJoin: completes as soon as every member has rejoined, or at the
        rebalance timeout with whoever did."""
        timer = JoinTimer(initial=False, delay_ms=timeout_ms, remaining_ms=0)
        timer.handle = self.timer.schedule(timeout_ms, lambda: self._on_join_timer(group, timer))
        group.join_timer = timer
        return self.try_complete_join(group)

    def _schedule_initial_join(
        self, group: GroupMetadata, delay_ms: int, remaining_ms: int
    ) -> None:
        """Kafka's InitialDelayedJoin: only time completes it."""
        timer = JoinTimer(initial=True, delay_ms=delay_ms, remaining_ms=remaining_ms)
        timer.handle = self.timer.schedule(delay_ms, lambda: self._on_join_timer(group, timer))
        group.join_timer = timer

    def try_complete_join(self, group: GroupMetadata) -> CoordinatorResult[None]:
        timer = group.join_timer
        if timer is not None and not timer.initial and group.has_all_members_joined:
            timer.handle.cancel()
            group.join_timer = None
            return self._complete_join(group)
        return EMPTY_RESULT

    def _on_join_timer(self, group: GroupMetadata, timer: JoinTimer) -> CoordinatorResult[None]:
        if group.join_timer is not timer:
            return EMPTY_RESULT
        group.join_timer = None
        if timer.initial and group.new_member_added and timer.remaining_ms != 0:
            # Members are still arriving: wait once more, within the rebalance timeout.
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, timer.remaining_ms)
            self._schedule_initial_join(group, delay, max(timer.remaining_ms - timer.delay_ms, 0))
            return EMPTY_RESULT
        return self._complete_join(group)

    def _complete_join(self, group: GroupMetadata) -> CoordinatorResult[None]:
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
            return EMPTY_RESULT
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members remain and none rejoined: wait for them (or for their
            # sessions to expire).
            log.warning(
                "group %s could not complete a rebalance: no member rejoined", group.group_id
            )
            return self._schedule_join(group, group.rebalance_timeout_ms)
        group.init_next_generation(self.now())
        if group.is_in(S.EMPTY):
            log.info(
                "group %s with generation %d is now empty", group.group_id, group.generation_id
            )

            def on_append(error: ErrorCode | None) -> None:
                if error is not None:
                    log.warning(
                        "could not write the empty group %s: %s", group.group_id, error.name
                    )

            return group_record_result(group, {}, on_append)
        log.info(
            "stabilized group %s generation %d with %d members",
            group.group_id,
            group.generation_id,
            group.size,
        )
        for member in list(group.members.values()):
            group.maybe_invoke_join_callback(
                member, self.join_result(group, member, with_members=True)
            )
            self.schedule_session_expiration(group, member, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        group.sync_timer = self.timer.schedule(
            group.rebalance_timeout_ms, lambda: self._on_sync_expired(group, generation)
        )
        return EMPTY_RESULT

    def join_result(
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

    # -- sync -------------------------------------------------------------------------------------

    def _on_sync_expired(self, group: GroupMetadata, generation: int) -> CoordinatorResult[None]:
        """Members that got their JoinGroup response but never sent SyncGroup in time are
        removed, and the group rebalances without them."""
        if generation != group.generation_id:
            return EMPTY_RESULT
        group.sync_timer = None
        if group.state in (S.COMPLETING_REBALANCE, S.STABLE) and group.pending_sync_members:
            missing = sorted(group.pending_sync_members)
            for member_id in missing:
                group.remove(member_id)
            return self.prepare_rebalance(group, f"removing {missing} on pending sync expiration")
        return EMPTY_RESULT

    def _remove_sync_expiration(self, group: GroupMetadata) -> None:
        group.pending_sync_members.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def maybe_complete_sync_expiration(self, group: GroupMetadata) -> None:
        if not group.pending_sync_members and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def reset_and_propagate_assignment_error(self, group: GroupMetadata, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self.propagate_assignment(group, error)

    def propagate_assignment(self, group: GroupMetadata, error: ErrorCode) -> None:
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
                self.schedule_session_expiration(group, member, member.session_timeout_ms)

    # -- members ----------------------------------------------------------------------------------

    def remove_member_and_update_group(
        self, group: GroupMetadata, member: MemberMetadata, reason: str
    ) -> CoordinatorResult[None]:
        # A member removed while its JoinGroup is parked hears UNKNOWN_MEMBER_ID and rejoins.
        group.maybe_invoke_join_callback(
            member, JoinGroupResult(UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID)
        )
        group.maybe_invoke_sync_callback(member, SyncGroupResult(E.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        state = group.state
        if state in (S.STABLE, S.COMPLETING_REBALANCE):
            return self.maybe_prepare_rebalance(group, reason)
        if state is S.PREPARING_REBALANCE:
            return self.try_complete_join(group)
        return EMPTY_RESULT

    def remove_pending_member(
        self, group: GroupMetadata, member_id: str
    ) -> CoordinatorResult[None]:
        group.remove(member_id)
        if group.is_in(S.PREPARING_REBALANCE):
            return self.try_complete_join(group)
        return EMPTY_RESULT

    def schedule_pending_member_expiration(
        self, group: GroupMetadata, member_id: str, timeout_ms: int
    ) -> None:
        self.timer.schedule(timeout_ms, lambda: self._on_pending_member_expired(group, member_id))

    def _on_pending_member_expired(
        self, group: GroupMetadata, member_id: str
    ) -> CoordinatorResult[None]:
        if member_id in group.pending_members and not group.is_in(S.DEAD):
            # Logged as Kafka logs it: a rebalance waits for pending members, so a client that
            # dropped its MEMBER_ID_REQUIRED answer (librdkafka does when it resubscribes
            # meanwhile) stalls the group for a session timeout, and this line explains why.
            log.info(
                "pending member %s in group %s has been removed after session timeout "
                "expiration (no JoinGroup with its member id)",
                member_id,
                group.group_id,
            )
            return self.remove_pending_member(group, member_id)
        return EMPTY_RESULT

    # -- sessions ---------------------------------------------------------------------------------

    def schedule_session_expiration(
        self, group: GroupMetadata, member: MemberMetadata, timeout_ms: int
    ) -> None:
        """Expect the member's next heartbeat within ``timeout_ms``.  Heartbeats only move
        the deadline; the timer already armed re-arms itself when it fires early."""
        deadline = self.now() + timeout_ms
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
        timer.handle = self.timer.schedule(
            deadline - self.now(), lambda: self._on_session_timer(group, member, timer)
        )
        member.session_timer = timer

    def _on_session_timer(
        self, group: GroupMetadata, member: MemberMetadata, timer: SessionTimer
    ) -> CoordinatorResult[None]:
        if member.session_timer is not timer:
            return EMPTY_RESULT
        member.session_timer = None
        if group.is_in(S.DEAD) or group.members.get(member.member_id) is not member:
            return EMPTY_RESULT
        deadline = member.session_deadline
        if deadline is None:
            return EMPTY_RESULT
        if self.now() < deadline:
            self._arm_session_timer(group, member, deadline)
            return EMPTY_RESULT
        member.session_deadline = None
        if member.is_new or not (member.is_awaiting_join or member.is_awaiting_sync):
            log.info(
                "member %s in group %s has failed (session timeout), removing it",
                member.member_id,
                group.group_id,
            )
            return self.remove_member_and_update_group(
                group, member, f"removing member {member.member_id} on heartbeat expiration"
            )
        return EMPTY_RESULT
