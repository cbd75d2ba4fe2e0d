"""Kafka's ``GroupMetadataManager`` for classic groups: one shard's groups and their requests.

Theory of operation (Kafka's classic group protocol, as the new group-coordinator module runs
it).  Members send JoinGroup; the first JoinGroup of a dynamic member (v4+) is answered at
once with MEMBER_ID_REQUIRED and a member id ``<client.id>-<uuid>`` to join with (KIP-394).
A join moves the group to PreparingRebalance and parks the member's response until the
rebalance completes (:mod:`kafkacompat.coordinators.classic_group_rebalance`).  The leader
computes the assignment itself and sends it with its SyncGroup; followers' SyncGroups park
until it arrives.  The group is written to ``__consumer_offsets``; once that append is done
the group moves to Stable and each member gets its assignment.  Static members (KIP-345,
``group.instance.id``) that restart rejoin with a new member id under the same instance id
without a rebalance when their protocols did not change; the old member id is fenced
(FENCED_INSTANCE_ID).

Each request is a write operation of the
:class:`~kafkacompat.coordinators.coordinator_runtime.CoordinatorRuntime`: it changes the
group in place and returns a ``CoordinatorResult`` with the group records to write
(``replay_records=False``) and an ``append_future`` callback that finishes the transition
(Stable and the assignments) or undoes it when the append failed.  Responses that must wait
(JoinGroup, SyncGroup) are callbacks, called exactly once.  :meth:`replay` builds groups from
their records at load.  Validation that needs no group (group id, loading) is the service's,
:class:`~kafkacompat.coordinators.group_coordinator.GroupCoordinator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafkacompat.coordinators.classic_group_rebalance import (
    NEW_MEMBER_JOIN_TIMEOUT_MS,
    ClassicGroupRebalance,
    convert_store_error_for_group,
    group_record_result,
)
from kafkacompat.coordinators.coordinator_runtime import (
    EMPTY_RESULT,
    CoordinatorResult,
    CoordinatorTimer,
    no_records,
)
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_metadata import (
    UNKNOWN_MEMBER_ID,
    GroupMetadata,
    GroupState,
    JoinCallback,
    JoinGroupResult,
    MemberMetadata,
    SyncCallback,
    SyncGroupResult,
    generate_member_id,
)
from kafkacompat.coordinators.group_records import (
    CoordinatorRecord,
    GroupMetadataRecord,
    OffsetCommitRecord,
)
from kafkacompat.coordinators.pending_offsets import PendingTransactionalOffsets
from kafkacompat.errors import ErrorCode

log = logging.getLogger(__name__)

E = ErrorCode
S = GroupState
TopicPartition = tuple[str, int]


def validate_current_member(
    group: GroupMetadata, member_id: str, group_instance_id: str | None
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


@dataclass(frozen=True, slots=True)
class JoinRequest:
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
    require_known_member_id: bool
    support_skip_assignment: bool


class GroupMetadataManager(ClassicGroupRebalance):
    """The classic groups of one ``__consumer_offsets`` partition."""

    def __init__(
        self,
        config: GroupConfig,
        timer: CoordinatorTimer,
        pending_offsets: PendingTransactionalOffsets | None = None,
    ) -> None:
        super().__init__(config, timer)
        self.groups: dict[str, GroupMetadata] = {}
        # The shard's undecided TxnOffsetCommits: a group with an open transaction is not
        # removed for being empty, and deleting a group drops its pending offsets.
        self.pending_offsets = (
            pending_offsets if pending_offsets is not None else PendingTransactionalOffsets()
        )

    def add_group(self, group_id: str) -> GroupMetadata:
        group = GroupMetadata(group_id, S.EMPTY, self.now())
        self.groups[group_id] = group
        return group

    # -- replay and lifecycle ---------------------------------------------------------------------

    def replay(self, record: GroupMetadataRecord) -> None:
        """A group record: the group as that generation left it, Stable if it had members,
        else Empty; its offsets stay.  A tombstone leaves only the offsets, as an Empty group
        with no protocol (one used only to store offsets), or nothing."""
        old = self.groups.get(record.group_id)
        offsets = {} if old is None else old.offsets
        if record.value is None:
            if old is None:
                return
            if not offsets:
                del self.groups[record.group_id]
                return
            group = GroupMetadata(record.group_id, S.EMPTY, self.now())
        else:
            group = GroupMetadata.from_record(record.group_id, record.value)
        group.offsets.update(offsets)
        self.groups[record.group_id] = group

    def on_loaded(self) -> CoordinatorResult[None]:
        """Loaded members keep their generation as long as they heartbeat within their
        sessions; a group loaded over group.max.size rebalances."""
        result = EMPTY_RESULT
        for group in list(self.groups.values()):
            if group.size > self.config.max_size:
                result = result.then(self.prepare_rebalance(group, "loaded group is over capacity"))
            for member in list(group.members.values()):
                self.schedule_session_expiration(group, member, member.session_timeout_ms)
        return result

    def on_unloaded(self) -> None:
        """Answer every parked JoinGroup/SyncGroup with NOT_COORDINATOR (as Kafka does when it
        unloads a group) and cancel every timer."""
        for group in list(self.groups.values()):
            previous = group.state
            group.transition_to(S.DEAD, self.now())
            if previous is S.PREPARING_REBALANCE:
                for member in list(group.members.values()):
                    group.maybe_invoke_join_callback(
                        member, JoinGroupResult(member.member_id, E.NOT_COORDINATOR)
                    )
            elif previous in (S.STABLE, S.COMPLETING_REBALANCE):
                for member in group.members.values():
                    group.maybe_invoke_sync_callback(member, SyncGroupResult(E.NOT_COORDINATOR))
            group.cancel_timers()
        self.groups.clear()

    # -- JoinGroup --------------------------------------------------------------------------------

    def classic_group_join(self, group_id: str, join: JoinRequest) -> CoordinatorResult[None]:
        if not (
            self.config.min_session_timeout_ms
            <= join.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            join.respond(JoinGroupResult(join.member_id, E.INVALID_SESSION_TIMEOUT))
            return EMPTY_RESULT
        member_id = join.member_id
        is_unknown = member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(group_id)
        if group is None:
            # Only a member without an id may create a group.
            if not is_unknown:
                join.respond(JoinGroupResult(member_id, E.UNKNOWN_MEMBER_ID))
                return EMPTY_RESULT
            group = self.add_group(group_id)
        if not self._accept_joining_member(group, member_id):
            group.remove(member_id)
            join.respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.GROUP_MAX_SIZE_REACHED))
            result = EMPTY_RESULT
        elif is_unknown:
            result = self._new_member_join(group, join)
        else:
            result = self._current_member_join(group, join)
        if group.is_in(S.PREPARING_REBALANCE):
            result = result.then(self.try_complete_join(group))
        return result

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

    def _new_member_join(self, group: GroupMetadata, join: JoinRequest) -> CoordinatorResult[None]:
        if group.is_in(S.DEAD):
            join.respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.COORDINATOR_NOT_AVAILABLE))
            return EMPTY_RESULT
        if not group.supports_protocols(join.protocol_type, (p for p, _ in join.protocols)):
            join.respond(JoinGroupResult(UNKNOWN_MEMBER_ID, E.INCONSISTENT_GROUP_PROTOCOL))
            return EMPTY_RESULT
        new_member_id = generate_member_id(join.client_id, join.group_instance_id)
        instance = join.group_instance_id
        if instance is not None:
            old_member_id = group.current_static_member_id(instance)
            if old_member_id is not None:
                return self._update_static_member_and_rebalance(
                    group, old_member_id, new_member_id, instance, join
                )
            return self._add_member_and_rebalance(group, new_member_id, join)
        if join.require_known_member_id:
            # KIP-394: the member gets its id now and joins for real with it.
            group.pending_members.add(new_member_id)
            self.schedule_pending_member_expiration(group, new_member_id, join.session_timeout_ms)
            join.respond(JoinGroupResult(new_member_id, E.MEMBER_ID_REQUIRED))
            return EMPTY_RESULT
        return self._add_member_and_rebalance(group, new_member_id, join)

    def _current_member_join(
        self, group: GroupMetadata, join: JoinRequest
    ) -> CoordinatorResult[None]:
        member_id = join.member_id
        if group.is_in(S.DEAD):
            join.respond(JoinGroupResult(member_id, E.COORDINATOR_NOT_AVAILABLE))
            return EMPTY_RESULT
        if not group.supports_protocols(join.protocol_type, (p for p, _ in join.protocols)):
            join.respond(JoinGroupResult(member_id, E.INCONSISTENT_GROUP_PROTOCOL))
            return EMPTY_RESULT
        if member_id in group.pending_members:
            # The second JoinGroup of a KIP-394 member: it joins now.
            return self._add_member_and_rebalance(group, member_id, join)
        error = validate_current_member(group, member_id, join.group_instance_id)
        if error is not None:
            join.respond(JoinGroupResult(member_id, error))
            return EMPTY_RESULT
        member = group.get(member_id)
        state = group.state
        if state is S.PREPARING_REBALANCE:
            return self._update_member_and_rebalance(group, member, join)
        if state is S.COMPLETING_REBALANCE:
            if member.matches(join.protocols):
                # A retry of a JoinGroup whose response was lost: the same answer again.
                join.respond(self.join_result(group, member, with_members=True))
                return EMPTY_RESULT
            return self._update_member_and_rebalance(group, member, join)
        if state is S.STABLE:
            if group.is_leader(member_id) or not member.matches(join.protocols):
                # The leader rejoins to have metadata changes (say, new partitions) reassigned.
                return self._update_member_and_rebalance(group, member, join)
            join.respond(self.join_result(group, member, with_members=False))
            return EMPTY_RESULT
        join.respond(JoinGroupResult(member_id, E.UNKNOWN_MEMBER_ID))
        return EMPTY_RESULT

    def _add_member_and_rebalance(
        self, group: GroupMetadata, member_id: str, join: JoinRequest
    ) -> CoordinatorResult[None]:
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
        self.schedule_session_expiration(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        return self.maybe_prepare_rebalance(
            group, f"adding new member {member_id}; client reason: {join.reason}"
        )

    def _update_member_and_rebalance(
        self, group: GroupMetadata, member: MemberMetadata, join: JoinRequest
    ) -> CoordinatorResult[None]:
        group.update_member(
            member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, join.respond
        )
        return self.maybe_prepare_rebalance(
            group, f"member {member.member_id} rejoined; client reason: {join.reason}"
        )

    def _update_static_member_and_rebalance(
        self,
        group: GroupMetadata,
        old_member_id: str,
        new_member_id: str,
        group_instance_id: str,
        join: JoinRequest,
    ) -> CoordinatorResult[None]:
        current_leader = group.leader_id or ""
        member = group.replace_static_member(group_instance_id, old_member_id, new_member_id)
        self.schedule_session_expiration(group, member, member.session_timeout_ms)
        old_protocols = member.supported_protocols
        old_rebalance_timeout, old_session_timeout = (
            member.rebalance_timeout_ms,
            member.session_timeout_ms,
        )
        group.update_member(
            member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms, join.respond
        )
        state = group.state
        if state is S.COMPLETING_REBALANCE:
            # The leader may already be assigning to the old member id: start over.
            return self.prepare_rebalance(group, f"static member {group_instance_id} rejoined")
        if state is not S.STABLE:
            return EMPTY_RESULT
        if group.protocol_name != group.select_protocol():
            return self.maybe_prepare_rebalance(
                group, f"static member {group_instance_id} rejoined with other protocols"
            )

        # KIP-345: same protocols, so no rebalance; persist the new member id, then answer.
        def on_append(error: ErrorCode | None) -> None:
            if error is not None:
                group.update_member(
                    member, old_protocols, old_rebalance_timeout, old_session_timeout, None
                )
                old = group.replace_static_member(group_instance_id, new_member_id, old_member_id)
                self.schedule_session_expiration(group, old, old.session_timeout_ms)
                join.respond(
                    JoinGroupResult(
                        UNKNOWN_MEMBER_ID,
                        convert_store_error_for_group(error),
                        generation_id=group.generation_id,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol_name,
                        leader_id=current_leader,
                    )
                )
                return
            is_leader = group.is_leader(new_member_id)
            if join.support_skip_assignment:
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
                # Older clients are told the old leader id, so that a restarted leader does
                # not believe it leads and run a pointless assignment.
                result = JoinGroupResult(
                    new_member_id,
                    E.NONE,
                    generation_id=group.generation_id,
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    leader_id=current_leader,
                )
            group.maybe_invoke_join_callback(member, result)

        assignment = {m.member_id: m.assignment for m in group.members.values()}
        return group_record_result(group, assignment, on_append)

    # -- SyncGroup, Heartbeat, LeaveGroup ---------------------------------------------------------

    def classic_group_sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        respond: SyncCallback,
    ) -> CoordinatorResult[None]:
        group = self.groups.get(group_id)
        if group is None:
            respond(SyncGroupResult(E.UNKNOWN_MEMBER_ID))
            return EMPTY_RESULT
        if group.is_in(S.DEAD):
            respond(SyncGroupResult(E.COORDINATOR_NOT_AVAILABLE))
            return EMPTY_RESULT
        error = validate_current_member(group, member_id, group_instance_id)
        if error is None and generation_id != group.generation_id:
            error = E.ILLEGAL_GENERATION
        if error is None and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = E.INCONSISTENT_GROUP_PROTOCOL
        if error is not None:
            respond(SyncGroupResult(error))
            return EMPTY_RESULT
        state = group.state
        if state is S.EMPTY:
            respond(SyncGroupResult(E.UNKNOWN_MEMBER_ID))
        elif state is S.PREPARING_REBALANCE:
            respond(SyncGroupResult(E.REBALANCE_IN_PROGRESS))
        elif state is S.COMPLETING_REBALANCE:
            member = group.get(member_id)
            member.awaiting_sync = respond
            group.pending_sync_members.discard(member_id)
            self.maybe_complete_sync_expiration(group)
            if group.is_leader(member_id):
                return self._complete_sync(group, assignments)
        else:  # Stable: a retry, or a follower late to the party
            group.pending_sync_members.discard(member_id)
            self.maybe_complete_sync_expiration(group)
            member = group.get(member_id)
            respond(
                SyncGroupResult(E.NONE, group.protocol_type, group.protocol_name, member.assignment)
            )
            self.schedule_session_expiration(group, member, member.session_timeout_ms)
        return EMPTY_RESULT

    def _complete_sync(
        self, group: GroupMetadata, assignments: dict[str, bytes]
    ) -> CoordinatorResult[None]:
        # Members the leader left out get an empty assignment, as in Kafka.
        assignment = {m: assignments.get(m, b"") for m in group.members}
        generation = group.generation_id

        def on_append(error: ErrorCode | None) -> CoordinatorResult[None]:
            if not (group.is_in(S.COMPLETING_REBALANCE) and group.generation_id == generation):
                return EMPTY_RESULT  # the group moved on meanwhile
            if error is not None:
                failure = convert_store_error_for_group(error)
                self.reset_and_propagate_assignment_error(group, failure)
                return self.maybe_prepare_rebalance(
                    group, f"error {failure.name} storing the assignment"
                )
            for member in group.members.values():
                member.assignment = assignment[member.member_id]
            self.propagate_assignment(group, E.NONE)
            group.transition_to(S.STABLE, self.now())
            return EMPTY_RESULT

        return group_record_result(group, assignment, on_append)

    def classic_group_heartbeat(
        self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> CoordinatorResult[ErrorCode]:
        group = self.groups.get(group_id)
        if group is None:
            return no_records(E.UNKNOWN_MEMBER_ID)
        if group.is_in(S.DEAD):
            return no_records(E.COORDINATOR_NOT_AVAILABLE)
        error = validate_current_member(group, member_id, group_instance_id)
        if error is not None:
            return no_records(error)
        if generation_id != group.generation_id:
            return no_records(E.ILLEGAL_GENERATION)
        if group.is_in(S.EMPTY):
            return no_records(E.UNKNOWN_MEMBER_ID)
        member = group.get(member_id)
        self.schedule_session_expiration(group, member, member.session_timeout_ms)
        if group.is_in(S.PREPARING_REBALANCE):
            return no_records(E.REBALANCE_IN_PROGRESS)
        return no_records(E.NONE)

    def classic_group_leave(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> CoordinatorResult[tuple[ErrorCode, list[ErrorCode]]]:
        """Each (member id, group instance id) leaves; an empty member id with an instance id
        removes whoever holds that instance (administrative removal, KIP-345)."""
        group = self.groups.get(group_id)
        if group is None:
            return no_records((E.NONE, [E.UNKNOWN_MEMBER_ID for _ in leaving]))
        if group.is_in(S.DEAD):
            return no_records((E.COORDINATOR_NOT_AVAILABLE, []))
        errors: list[ErrorCode] = []
        result = EMPTY_RESULT
        for member_id, instance in leaving:
            if member_id == UNKNOWN_MEMBER_ID:
                current = None if instance is None else group.current_static_member_id(instance)
                if current is None:
                    errors.append(E.UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                result = result.then(self.remove_pending_member(group, member_id))
                errors.append(E.NONE)
                continue
            else:
                member_error = validate_current_member(group, member_id, instance)
                if member_error is not None:
                    errors.append(member_error)
                    continue
            log.info("member %s has left group %s through LeaveGroup", member_id, group_id)
            result = result.then(
                self.remove_member_and_update_group(
                    group, group.get(member_id), f"member {member_id} left (LeaveGroup)"
                )
            )
            errors.append(E.NONE)
        return result.then(no_records((E.NONE, errors)))

    # -- DeleteGroups and the removal of offsets --------------------------------------------------

    def delete_groups(self, group_ids: Iterable[str]) -> CoordinatorResult[dict[str, ErrorCode]]:
        """DeleteGroups: only Empty groups go (NON_EMPTY_GROUP otherwise), with their
        offsets; tombstones are written for both."""
        errors: dict[str, ErrorCode] = {}
        eligible: list[GroupMetadata] = []
        for group_id in group_ids:
            group = self.groups.get(group_id)
            if group is None or group.is_in(S.DEAD):
                errors[group_id] = E.GROUP_ID_NOT_FOUND
            elif group.is_in(S.EMPTY):
                group.transition_to(S.DEAD, self.now())
                eligible.append(group)
                errors[group_id] = E.NONE
            else:
                errors[group_id] = E.NON_EMPTY_GROUP
        if not eligible:
            return no_records(errors)
        result = self.cleanup_group_metadata(eligible, self._remove_all_offsets)
        log.info(
            "deleting groups %s and %d offsets",
            ", ".join(g.group_id for g in eligible),
            result.response,
        )
        return CoordinatorResult(result.records, errors, result.append_future, replay_records=False)

    def cleanup_group_metadata(
        self,
        groups: list[GroupMetadata],
        selector: Callable[[GroupMetadata], list[TopicPartition]],
    ) -> CoordinatorResult[int]:
        """Remove offsets (``selector`` picks and drops them), then groups that are Dead, or
        Empty with no offsets left, and return the tombstones for both; the response is how
        many offsets went.  The groups change at once: a lost tombstone only delays a
        deletion to the next check, as in Kafka."""
        removed_count = 0
        records: list[CoordinatorRecord] = []
        for group in groups:
            removed = selector(group)
            if (
                group.is_in(S.EMPTY)
                and not group.offsets
                and not self.pending_offsets.has_open_transactions(group.group_id)
            ):
                log.info(
                    "group %s transitioned to Dead in generation %d",
                    group.group_id,
                    group.generation_id,
                )
                group.transition_to(S.DEAD, self.now())
            records.extend(
                OffsetCommitRecord(group.group_id, topic, partition, None)
                for topic, partition in removed
            )
            removed_count += len(removed)
            if group.is_in(S.DEAD) and self.groups.get(group.group_id) is group:
                del self.groups[group.group_id]
                group.cancel_timers()
                # A group used only to store offsets never had a metadata record to delete.
                if group.generation_id > 0:
                    records.append(GroupMetadataRecord(group.group_id, None))

        def on_append(error: ErrorCode | None) -> None:
            if error is not None:
                names = ", ".join(g.group_id for g in groups)
                log.warning("could not write tombstones for groups %s: %s", names, error.name)

        return CoordinatorResult(records, removed_count, (on_append,), replay_records=False)

    def _remove_all_offsets(self, group: GroupMetadata) -> list[TopicPartition]:
        """A deleted group's offsets, and its pending transactional ones (Kafka's
        ``deleteAllOffsets``: one tombstone per partition)."""
        removed = list(group.offsets)
        pending_only = self.pending_offsets.remove_group(group.group_id) - group.offsets.keys()
        group.offsets.clear()
        return removed + sorted(pending_only)
