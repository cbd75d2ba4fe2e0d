"""The group coordinator as the handlers see it: Kafka's ``GroupCoordinatorService``.

Each API call checks what needs no group (the group id; whether the coordinator is active or
still loading: Kafka's ``validateGroupStatus``), then runs as an operation of the
:class:`~kafkacompat.coordinators.coordinator_runtime.CoordinatorRuntime` on the shard of the
group's ``__consumer_offsets`` partition: writes (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetDelete, DeleteGroups, and the timers) return their records and response;
reads (OffsetFetch, DescribeGroups, ListGroups) return a response.  APIs about several groups
(DeleteGroups, ListGroups) run once per shard and merge the answers, as Kafka's service does.

Where the rules live: classic group membership in
:mod:`~kafkacompat.coordinators.group_metadata_manager` and
:mod:`~kafkacompat.coordinators.classic_group_rebalance`; committed offsets in
:mod:`~kafkacompat.coordinators.offset_metadata_manager`; a shard's replay in
:mod:`~kafkacompat.coordinators.group_coordinator_shard`; the log in
:mod:`~kafkacompat.coordinators.group_store`.  Time is injected (the scheduler); nothing here
blocks or sleeps.  Responses that must wait (JoinGroup, SyncGroup) are callbacks, called
exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping

from kafkacompat.coordinators.classic_group_rebalance import NEW_MEMBER_JOIN_TIMEOUT_MS
from kafkacompat.coordinators.coordinator_runtime import (
    EMPTY_RESULT,
    CoordinatorResult,
    CoordinatorRuntime,
)
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_coordinator_shard import GroupCoordinatorShard
from kafkacompat.coordinators.group_describe import (
    EMPTY_GROUP,
    GroupOverview,
    GroupSummary,
    MemberSummary,
    describe_group,
    list_groups,
)
from kafkacompat.coordinators.group_loader import drain
from kafkacompat.coordinators.group_metadata import (
    GroupMetadata,
    JoinCallback,
    JoinGroupResult,
    OffsetAndMetadata,
    SyncCallback,
    SyncGroupResult,
)
from kafkacompat.coordinators.group_metadata_manager import JoinRequest
from kafkacompat.coordinators.group_store import GroupStore, LoadedGroups
from kafkacompat.coordinators.group_timers import Scheduler
from kafkacompat.coordinators.offset_metadata_manager import commit_failed, txn_commit_failed
from kafkacompat.errors import ErrorCode

E = ErrorCode
TopicPartition = tuple[str, int]


class GroupsView(Mapping[str, GroupMetadata]):
    """Every shard's groups, read-only, as one mapping (tests and diagnostics)."""

    def __init__(self, runtime: CoordinatorRuntime[GroupCoordinatorShard]) -> None:
        self._runtime = runtime

    def _all(self) -> Iterator[dict[str, GroupMetadata]]:
        return (shard.group_manager.groups for shard in self._runtime.shards())

    def __getitem__(self, group_id: str) -> GroupMetadata:
        for groups in self._all():
            if group_id in groups:
                return groups[group_id]
        raise KeyError(group_id)

    def __iter__(self) -> Iterator[str]:
        for groups in self._all():
            yield from groups

    def __len__(self) -> int:
        return sum(len(groups) for groups in self._all())


class GroupCoordinator:
    """Every classic group on this broker, one runtime shard per ``__consumer_offsets``
    partition."""

    def __init__(
        self, config: GroupConfig, scheduler: Scheduler, store: GroupStore | None = None
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.store = store
        self.runtime: CoordinatorRuntime[GroupCoordinatorShard] = CoordinatorRuntime(
            scheduler, store, lambda runtime, p: GroupCoordinatorShard(runtime, p, config)
        )
        self.groups = GroupsView(self.runtime)

    @property
    def active(self) -> bool:
        return self.runtime.active

    @active.setter
    def active(self, value: bool) -> None:
        self.runtime.active = value

    @property
    def loading(self) -> bool:
        return self.runtime.loading

    @loading.setter
    def loading(self, value: bool) -> None:
        self.runtime.loading = value

    # -- lifecycle --------------------------------------------------------------------------------

    def startup(self) -> LoadedGroups:
        return drain(self.startup_steps())

    def startup_steps(self) -> Generator[None, None, LoadedGroups]:
        """Load every group and offset by replaying the log, then start serving: loaded
        members keep their generation as long as they heartbeat within their sessions.
        While it runs, group requests get COORDINATOR_LOAD_IN_PROGRESS."""
        records = yield from self.runtime.load_steps()
        groups = list(self.groups.values())
        return LoadedGroups(
            groups=[g.group_id for g in groups if g.generation_id > 0],
            offsets=[g.group_id for g in groups if g.offsets],
            records=records,
        )

    def shutdown(self) -> None:
        """Stop serving: parked JoinGroup/SyncGroup hear NOT_COORDINATOR, timers stop."""
        self.runtime.shutdown()

    def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` if it is missing (FindCoordinator's first lookup)."""
        if self.store is not None:
            self.store.ensure_topic()

    def partition_for(self, group_id: str) -> int:
        return self.runtime.partition_for(group_id)

    def group_error(self, group_id: str | None, *, allow_empty: bool) -> ErrorCode | None:
        """Kafka's validateGroupStatus: INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE,
        COORDINATOR_LOAD_IN_PROGRESS, or None.  Offset and admin APIs accept the empty
        group id (for backward compatibility, as Kafka does); membership APIs do not."""
        if group_id is None or (not allow_empty and not group_id):
            return E.INVALID_GROUP_ID
        if not self.runtime.active:
            return E.COORDINATOR_NOT_AVAILABLE
        if self.runtime.loading:
            return E.COORDINATOR_LOAD_IN_PROGRESS
        return None

    # -- membership -------------------------------------------------------------------------------

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
        join = JoinRequest(
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
            require_known_member_id,
            support_skip_assignment,
        )
        self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.group_manager.classic_group_join(group_id, join),
        )

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
        self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.group_manager.classic_group_sync(
                group_id,
                generation_id,
                member_id,
                group_instance_id,
                protocol_type,
                protocol_name,
                assignments,
                respond,
            ),
        )

    def heartbeat(
        self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> ErrorCode:
        error = self.group_error(group_id, allow_empty=False)
        if error is E.COORDINATOR_LOAD_IN_PROGRESS:
            return E.NONE  # nothing to check yet: answer blindly, as Kafka does
        if error is not None:
            return error
        return self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.group_manager.classic_group_heartbeat(
                group_id, member_id, group_instance_id, generation_id
            ),
        )

    def leave_group(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """Each (member id, group instance id) leaves; an empty member id with an instance id
        removes whoever holds that instance (administrative removal, KIP-345)."""
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            return error, []
        return self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.group_manager.classic_group_leave(group_id, leaving),
        )

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
        return self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.offset_manager.commit_offsets(
                group_id, member_id, group_instance_id, generation_id, offsets
            ),
            commit_failed,
        )

    def commit_transactional_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> dict[TopicPartition, ErrorCode]:
        """TxnOffsetCommit: the error per partition.  The offsets are written before this
        returns, in one transactional batch of the producer's (its epoch checked by the
        partition's producer state), and stay pending until :meth:`on_transaction_completed`."""
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            return dict.fromkeys(offsets, error)
        return self.runtime.schedule_transactional_write_operation(
            self.partition_for(group_id),
            producer_id,
            producer_epoch,
            lambda shard, _now: shard.offset_manager.commit_transactional_offsets(
                group_id, member_id, group_instance_id, generation_id, offsets
            ),
            txn_commit_failed,
        )

    def on_transaction_completed(
        self, producer_id: int, partitions: Iterable[int], committed: bool
    ) -> None:
        """Kafka's ``onTransactionCompleted``: a COMMIT (or ABORT) marker of ``producer_id``
        is now in these ``__consumer_offsets`` partitions, so the offsets its transaction
        committed there become visible (or go).  Nothing is written: the marker is."""
        if not self.runtime.active:
            return  # the next start's load reads the marker from the log
        for partition in set(partitions):
            self.runtime.schedule_write_operation(
                partition,
                lambda shard, _now: _replay_marker(shard, producer_id, committed),
            )

    def pending_offsets(self, group_id: str) -> set[TopicPartition]:
        """The group's partitions with a transactional offset not yet decided (OffsetFetch
        with require_stable: UNSTABLE_OFFSET_COMMIT)."""
        if self.group_error(group_id, allow_empty=True) is not None:
            return set()
        return self.runtime.schedule_read_operation(
            self.partition_for(group_id),
            lambda shard: shard.offset_manager.pending_partitions(group_id),
        )

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> tuple[ErrorCode, list[tuple[TopicPartition, OffsetAndMetadata | None]]]:
        error = self.group_error(group_id, allow_empty=True)
        if error is not None:
            return error, []
        return E.NONE, self.runtime.schedule_read_operation(
            self.partition_for(group_id),
            lambda shard: shard.offset_manager.fetch_offsets(group_id, partitions),
        )

    def delete_offsets(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            return error, {}
        return self.runtime.schedule_write_operation(
            self.partition_for(group_id),
            lambda shard, _now: shard.offset_manager.delete_offsets(group_id, partitions),
        )

    def expire_offsets(self) -> int:
        """Run every shard's offsets retention check now; how many offsets went."""
        return self._each_shard(lambda shard: shard.offset_manager.expire_offsets())

    def on_partitions_deleted(self, partitions: Iterable[TopicPartition]) -> int:
        """Drop every group's offsets of deleted partitions (DeleteTopics); how many went."""
        deleted = list(partitions)
        return self._each_shard(lambda shard: shard.offset_manager.on_partitions_deleted(deleted))

    def _each_shard(self, op: Callable[[GroupCoordinatorShard], CoordinatorResult[int]]) -> int:
        """Run ``op`` on every shard; the sum of what they removed (0 where the tombstones
        could not be written)."""
        return sum(
            self.runtime.schedule_write_operation(
                shard.partition, lambda s, _now: op(s), lambda _error, _removed: 0
            )
            for shard in self.runtime.shards()
        )

    # -- admin ------------------------------------------------------------------------------------

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupSummary]:
        """DescribeGroups: members' metadata and assignments only for a Stable group; an
        unknown group is described as Dead."""
        error = self.group_error(group_id, allow_empty=True)
        if error is not None:
            return error, EMPTY_GROUP
        return E.NONE, self.runtime.schedule_read_operation(
            self.partition_for(group_id),
            lambda shard: describe_group(shard.group_manager.groups.get(group_id)),
        )

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> tuple[ErrorCode, list[GroupOverview]]:
        """ListGroups over every shard, filtered by state and type."""
        if not self.runtime.active:
            return E.COORDINATOR_NOT_AVAILABLE, []
        error = E.COORDINATOR_LOAD_IN_PROGRESS if self.runtime.loading else E.NONE
        states, types = list(states), list(types)
        overviews: list[GroupOverview] = []
        for shard in self.runtime.shards():
            overviews += self.runtime.schedule_read_operation(
                shard.partition,
                lambda s: list_groups(s.group_manager.groups.values(), states, types),
            )
        return error, overviews

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: only Empty groups go (NON_EMPTY_GROUP otherwise), with their
        offsets; one write per shard."""
        errors: dict[str, ErrorCode] = {}
        by_partition: dict[int, list[str]] = {}
        for group_id in group_ids:
            if group_id in errors:
                continue
            error = self.group_error(group_id, allow_empty=True)
            if error is not None:
                errors[group_id] = error
                continue
            errors[group_id] = E.NONE  # a placeholder, for the order of the answer
            by_partition.setdefault(self.partition_for(group_id), []).append(group_id)
        for partition, ids in by_partition.items():
            deleted = self.runtime.schedule_write_operation(partition, _delete_groups(ids))
            errors.update(deleted)
        return errors


def _replay_marker(
    shard: GroupCoordinatorShard, producer_id: int, committed: bool
) -> CoordinatorResult[None]:
    shard.replay_end_transaction_marker(producer_id, committed)
    return EMPTY_RESULT


def _delete_groups(
    group_ids: list[str],
) -> Callable[[GroupCoordinatorShard, int], CoordinatorResult[dict[str, ErrorCode]]]:
    return lambda shard, _now: shard.group_manager.delete_groups(group_ids)


__all__ = [
    "NEW_MEMBER_JOIN_TIMEOUT_MS",
    "GroupConfig",
    "GroupCoordinator",
    "GroupOverview",
    "GroupSummary",
    "MemberSummary",
]
