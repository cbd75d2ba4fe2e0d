"""Kafka's ``OffsetMetadataManager``: one shard's committed offsets.

Members commit with their generation and member id; a commit with generation -1 and no member
id is accepted while the group is Empty or unknown (standalone consumers and admin tools).  A
commit is a write operation whose records are the ``OffsetCommit`` records; the offsets become
visible only when the runtime replays them after the append (:meth:`replay`, the code that
loads them at start-up), so a failed append leaves the committed offsets as they were and the
partitions hear the append's error (Kafka's ``maybeConvertOffsetCommitError``).

Offsets of Empty groups expire ``offsets.retention.minutes`` after the group emptied (see
:meth:`GroupMetadata.expired_offsets` for which): every ``offsets.retention.check.interval.ms``
a timer of the shard removes them, and a group left Empty without offsets goes with them.  The
offsets live on their groups (:attr:`GroupMetadata.offsets`), whose state decides expiry and
OffsetDelete; the group manager owns the groups.

TxnOffsetCommit is a write of the same records in a transactional producer's batch; they
replay as pending offsets (:mod:`kafkacompat.coordinators.pending_offsets`) until the
transaction's marker commits them into the groups (if no later commit holds the partition)
or drops them.  Tombstones (OffsetDelete, DeleteGroups, deleted topics) cover pending
offsets too, and retention leaves alone partitions and groups a transaction may still
commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafkacompat.coordinators.coordinator_runtime import (
    UNKNOWN_RECORD_OFFSET,
    CoordinatorResult,
    CoordinatorTimer,
    no_records,
)
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_metadata import (
    UNKNOWN_MEMBER_ID,
    GroupMetadata,
    GroupState,
    OffsetAndMetadata,
)
from kafkacompat.coordinators.group_metadata_manager import (
    GroupMetadataManager,
    validate_current_member,
)
from kafkacompat.coordinators.group_records import CoordinatorRecord, OffsetCommitRecord
from kafkacompat.coordinators.group_timers import TimerHandle
from kafkacompat.coordinators.pending_offsets import PendingTransactionalOffsets
from kafkacompat.errors import ErrorCode
from kafkacompat.records.batch import NO_PRODUCER_ID

log = logging.getLogger(__name__)

E = ErrorCode
S = GroupState
TopicPartition = tuple[str, int]


def convert_store_error_for_offsets(error: ErrorCode) -> ErrorCode:
    """Kafka's maybeConvertOffsetCommitError."""
    if error in (
        E.UNKNOWN_TOPIC_OR_PARTITION,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        E.REQUEST_TIMED_OUT,
    ):
        return E.COORDINATOR_NOT_AVAILABLE
    if error in (E.NOT_LEADER_OR_FOLLOWER, E.KAFKA_STORAGE_ERROR):
        return E.NOT_COORDINATOR
    if error in (E.MESSAGE_TOO_LARGE, E.RECORD_LIST_TOO_LARGE, E.INVALID_FETCH_SIZE):
        return E.INVALID_COMMIT_OFFSET_SIZE
    return error


def commit_failed(
    error: ErrorCode, response: dict[TopicPartition, ErrorCode]
) -> dict[TopicPartition, ErrorCode]:
    """The OffsetCommit answer when the append failed: the partitions that were to be
    written get the converted error; the ones refused before (metadata too large) keep
    theirs."""
    failure = convert_store_error_for_offsets(error)
    return {tp: failure if code is E.NONE else code for tp, code in response.items()}


def convert_store_error_for_txn_offsets(error: ErrorCode) -> ErrorCode:
    """Kafka's ``handleOperationException`` for TxnOffsetCommit: the storage's errors as the
    producer should hear them; the producer state's (INVALID_PRODUCER_EPOCH, ...) as they
    are."""
    if error in (E.UNKNOWN_TOPIC_OR_PARTITION, E.NOT_ENOUGH_REPLICAS, E.REQUEST_TIMED_OUT):
        return E.COORDINATOR_NOT_AVAILABLE
    if error in (E.NOT_LEADER_OR_FOLLOWER, E.KAFKA_STORAGE_ERROR):
        return E.NOT_COORDINATOR
    if error in (E.MESSAGE_TOO_LARGE, E.RECORD_LIST_TOO_LARGE, E.INVALID_FETCH_SIZE):
        return E.UNKNOWN_SERVER_ERROR
    if error is E.NETWORK_EXCEPTION:
        return E.COORDINATOR_LOAD_IN_PROGRESS
    return error


def txn_commit_failed(
    error: ErrorCode, response: dict[TopicPartition, ErrorCode]
) -> dict[TopicPartition, ErrorCode]:
    """The TxnOffsetCommit answer when the append failed: every partition hears it (Kafka
    answers the whole request with the one error)."""
    return dict.fromkeys(response, convert_store_error_for_txn_offsets(error))


class OffsetMetadataManager:
    """The committed offsets of one ``__consumer_offsets`` partition's groups."""

    def __init__(
        self,
        config: GroupConfig,
        timer: CoordinatorTimer,
        groups: GroupMetadataManager,
        pending: PendingTransactionalOffsets | None = None,
    ) -> None:
        self.config = config
        self.timer = timer
        self.group_manager = groups
        self.pending = pending if pending is not None else groups.pending_offsets
        self._expiration_timer: TimerHandle | None = None

    # -- replay and lifecycle ---------------------------------------------------------------------

    def replay(
        self,
        record: OffsetCommitRecord,
        producer_id: int = NO_PRODUCER_ID,
        record_offset: int = UNKNOWN_RECORD_OFFSET,
    ) -> None:
        """A committed offset, or its tombstone (which removes the partition's pending
        transactional offsets too, as Kafka's replay does); a transactional one
        (``producer_id``) stays pending until its marker.  Offsets of a group without a group
        record make an Empty group with no protocol (one used only to store offsets)."""
        groups = self.group_manager.groups
        group = groups.get(record.group_id)
        tp = (record.topic, record.partition)
        if record.value is None:
            if group is not None:
                group.offsets.pop(tp, None)
            if self.pending.open_by_group:
                self.pending.on_tombstone(record.group_id, tp)
            return
        if group is None:
            group = self.group_manager.add_group(record.group_id)
        if group.is_in(S.DEAD):
            return
        if producer_id != NO_PRODUCER_ID:
            self.pending.add(producer_id, record.group_id, tp, record.value, record_offset)
            return
        group.offsets[tp] = record.value
        if self.pending.open_by_group:
            self.pending.on_committed(record.group_id, tp, record_offset)

    def replay_end_transaction_marker(self, producer_id: int, committed: bool) -> None:
        """Kafka's ``replayEndTransactionMarker``: the producer's pending offsets in this
        shard become committed (COMMIT) or go (ABORT).  A pending offset replaces the
        committed one only if its record is the later of the two in the log."""
        decided = self.pending.complete(producer_id)
        if not decided:
            return
        groups = self.group_manager.groups
        if committed:
            for group_id, tp, value, record_offset in decided:
                group = groups.get(group_id)
                if group is None:
                    # Its group record was deleted meanwhile: offsets alone make a simple group.
                    group = self.group_manager.add_group(group_id)
                if group.is_in(S.DEAD):
                    continue
                existing = group.offsets.get(tp)
                if existing is not None and record_offset < self.pending.committed_record_offset(
                    group_id, tp
                ):
                    log.info(
                        "skipping the transactional offset of producer %d for %s %s-%d: "
                        "a later commit holds the partition",
                        producer_id,
                        group_id,
                        *tp,
                    )
                    continue
                group.offsets[tp] = value
                self.pending.on_committed(group_id, tp, record_offset)
        for group_id in {d.group_id for d in decided}:
            self.pending.forget_record_offsets(group_id)

    def on_loaded(self) -> None:
        self._schedule_offset_expiration()

    def on_unloaded(self) -> None:
        if self._expiration_timer is not None:
            self._expiration_timer.cancel()
            self._expiration_timer = None

    # -- OffsetCommit -----------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> CoordinatorResult[dict[TopicPartition, ErrorCode]]:
        """OffsetCommit: the records of the commits (one batch) and the error per partition;
        metadata over offset.metadata.max.bytes fails only its own partition."""
        group = self.group_manager.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                # Not a group this coordinator knows, or one of an old generation: reject.
                return no_records(dict.fromkeys(offsets, E.ILLEGAL_GENERATION))
            group = self.group_manager.add_group(group_id)  # a standalone consumer's offsets
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error is not None:
            return no_records(dict.fromkeys(offsets, error))
        if group.state in (S.STABLE, S.PREPARING_REBALANCE):
            # A commit is as good as a heartbeat; in PreparingRebalance the next heartbeat
            # tells the member to rejoin.
            member = group.get(member_id)
            self.group_manager.schedule_session_expiration(group, member, member.session_timeout_ms)
        return self._commit_records(group_id, offsets)

    def _commit_records(
        self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> CoordinatorResult[dict[TopicPartition, ErrorCode]]:
        """One commit record per partition, and OFFSET_METADATA_TOO_LARGE where the metadata
        is over ``offset.metadata.max.bytes`` (those partitions are not written)."""
        limit = self.config.offset_metadata_max_bytes
        errors: dict[TopicPartition, ErrorCode] = {}
        records: list[CoordinatorRecord] = []
        for tp, committed in offsets.items():
            if len(committed.metadata) > limit:
                errors[tp] = E.OFFSET_METADATA_TOO_LARGE
            else:
                records.append(OffsetCommitRecord(group_id, tp[0], tp[1], committed))
                errors[tp] = E.NONE
        return CoordinatorResult(records, errors)

    def _validate_offset_commit(
        self,
        group: GroupMetadata,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        *,
        transactional: bool = False,
    ) -> ErrorCode | None:
        """Kafka's ``ClassicGroup.validateOffsetCommit``.  Transactional commits skip the
        group-state checks: TxnOffsetCommit v0-2 carry no member id or generation, and a
        transaction's commit does not wait for a rebalance to complete."""
        if group.is_in(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and group.is_in(S.EMPTY):
            return None  # admin tools and consumers without group management
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return E.ILLEGAL_GENERATION
        elif not transactional and not group.is_in(S.EMPTY):
            return E.UNKNOWN_MEMBER_ID  # only members may commit while a group has members
        if not transactional and group.is_in(S.COMPLETING_REBALANCE):
            # The member has its new generation but not its assignment yet.
            return E.REBALANCE_IN_PROGRESS
        return None

    # -- TxnOffsetCommit --------------------------------------------------------------------------

    def commit_transactional_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> CoordinatorResult[dict[TopicPartition, ErrorCode]]:
        """TxnOffsetCommit (Kafka's ``commitTransactionalOffset``): the records, which the
        runtime writes in the producer's transactional batch, and the error per partition.
        An unknown group is accepted only with generation -1 (a simple group is made for
        it); the offsets stay pending until the transaction's marker."""
        group = self.group_manager.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                return no_records(dict.fromkeys(offsets, E.ILLEGAL_GENERATION))
            group = self.group_manager.add_group(group_id)
        error = self._validate_offset_commit(
            group, generation_id, member_id, group_instance_id, transactional=True
        )
        if error is not None:
            return no_records(dict.fromkeys(offsets, error))
        return self._commit_records(group_id, offsets)

    # -- OffsetFetch and OffsetDelete -------------------------------------------------------------

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> list[tuple[TopicPartition, OffsetAndMetadata | None]]:
        """OffsetFetch (a read): the committed offset per partition (None: nothing
        committed); every committed partition when ``partitions`` is None.  Pending
        transactional offsets are not visible here (see :meth:`pending_partitions`)."""
        group = self.group_manager.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return [(tp, None) for tp in partitions or ()]
        wanted = list(group.offsets) if partitions is None else partitions
        return [(tp, group.offsets.get(tp)) for tp in wanted]

    def pending_partitions(self, group_id: str) -> set[TopicPartition]:
        """The group's partitions with a transactional offset not yet decided: OffsetFetch
        with require_stable answers UNSTABLE_OFFSET_COMMIT for them."""
        return self.pending.pending_partitions(group_id)

    def delete_offsets(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> CoordinatorResult[tuple[ErrorCode, dict[TopicPartition, ErrorCode]]]:
        """OffsetDelete: allowed for an Empty group, or for topics no member of a consumer
        group subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise)."""
        group = self.group_manager.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return no_records((E.GROUP_ID_NOT_FOUND, {}))
        errors: dict[TopicPartition, ErrorCode] = {}
        if group.is_in(S.EMPTY):
            eligible = list(partitions)
        elif group.is_consumer_group:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to_topic(tp[0]):
                    errors[tp] = E.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    eligible.append(tp)
        else:
            return no_records((E.NON_EMPTY_GROUP, {}))
        if not eligible:
            return no_records((E.NONE, errors))

        def deleted(g: GroupMetadata) -> list[TopicPartition]:
            # A tombstone also for a partition with only a pending offset, as Kafka writes.
            removed = []
            for tp in eligible:
                had_pending = self.pending.on_tombstone(g.group_id, tp)
                if g.offsets.pop(tp, None) is not None or had_pending:
                    removed.append(tp)
            return removed

        cleanup = self.group_manager.cleanup_group_metadata([group], deleted)
        errors.update(dict.fromkeys(eligible, E.NONE))
        return cleanup.then(no_records((E.NONE, errors)))

    # -- expiry -----------------------------------------------------------------------------------

    def expire_offsets(self) -> CoordinatorResult[int]:
        """The offsets retention check: expire offsets past retention; groups left Empty
        without offsets are removed."""
        now = self.timer.now_ms()
        retention = self.config.offsets_retention_ms

        def expired(group: GroupMetadata) -> list[TopicPartition]:
            gone = group.expired_offsets(now, retention)
            if self.pending.has_open_transactions(group.group_id):
                # Not while a transaction may still commit a new offset for the partition.
                gone = [tp for tp in gone if not self.pending.has_pending(group.group_id, tp)]
            for tp in gone:
                del group.offsets[tp]
            return gone

        result = self.group_manager.cleanup_group_metadata(
            list(self.group_manager.groups.values()), expired
        )
        if result.response:
            log.info("removing %d expired offsets", result.response)
        return result

    def on_partitions_deleted(self, partitions: Iterable[TopicPartition]) -> CoordinatorResult[int]:
        """Drop every group's offsets of deleted partitions (DeleteTopics), the pending
        transactional ones too, as Kafka's onPartitionsDeleted does."""
        gone = set(partitions)
        pending_gone = self.pending.remove_partitions(gone)

        def of_deleted(group: GroupMetadata) -> list[TopicPartition]:
            removed = [tp for tp in group.offsets if tp in gone]
            for tp in removed:
                del group.offsets[tp]
            pending_only = pending_gone.get(group.group_id, set()).difference(removed)
            return removed + sorted(pending_only)

        return self.group_manager.cleanup_group_metadata(
            list(self.group_manager.groups.values()), of_deleted
        )

    def _schedule_offset_expiration(self) -> None:
        def run() -> CoordinatorResult[None]:
            self._expiration_timer = None
            try:
                result = self.expire_offsets()
            finally:
                self._schedule_offset_expiration()
            return CoordinatorResult(
                result.records, None, result.append_future, replay_records=False
            )

        self._expiration_timer = self.timer.schedule(
            self.config.offsets_retention_check_interval_ms, run
        )
