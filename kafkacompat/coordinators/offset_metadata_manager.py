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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafkacompat.coordinators.coordinator_runtime import (
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
from kafkacompat.errors import ErrorCode

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


class OffsetMetadataManager:
    """The committed offsets of one ``__consumer_offsets`` partition's groups."""

    def __init__(
        self, config: GroupConfig, timer: CoordinatorTimer, groups: GroupMetadataManager
    ) -> None:
        self.config = config
        self.timer = timer
        self.group_manager = groups
        self._expiration_timer: TimerHandle | None = None

    # -- replay and lifecycle ---------------------------------------------------------------------

    def replay(self, record: OffsetCommitRecord) -> None:
        """A committed offset, or its tombstone.  Offsets of a group without a group record
        make an Empty group with no protocol (one used only to store offsets)."""
        groups = self.group_manager.groups
        group = groups.get(record.group_id)
        tp = (record.topic, record.partition)
        if record.value is None:
            if group is not None:
                group.offsets.pop(tp, None)
            return
        if group is None:
            group = self.group_manager.add_group(record.group_id)
        if not group.is_in(S.DEAD):
            group.offsets[tp] = record.value

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
    ) -> ErrorCode | None:
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
        elif not group.is_in(S.EMPTY):
            return E.UNKNOWN_MEMBER_ID  # only members may commit while a group has members
        if group.is_in(S.COMPLETING_REBALANCE):
            # The member has its new generation but not its assignment yet.
            return E.REBALANCE_IN_PROGRESS
        return None

    # -- OffsetFetch and OffsetDelete -------------------------------------------------------------

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> list[tuple[TopicPartition, OffsetAndMetadata | None]]:
        """OffsetFetch (a read): the committed offset per partition (None: nothing
        committed); every committed partition when ``partitions`` is None.  No transactions
        here, so nothing is ever pending and require_stable changes nothing."""
        group = self.group_manager.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return [(tp, None) for tp in partitions or ()]
        wanted = list(group.offsets) if partitions is None else partitions
        return [(tp, group.offsets.get(tp)) for tp in wanted]

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
        cleanup = self.group_manager.cleanup_group_metadata(
            [group], lambda g: [tp for tp in eligible if g.offsets.pop(tp, None) is not None]
        )
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
        """Drop every group's offsets of deleted partitions (DeleteTopics), as Kafka's
        onPartitionsDeleted does."""
        gone = set(partitions)

        def of_deleted(group: GroupMetadata) -> list[TopicPartition]:
            removed = [tp for tp in group.offsets if tp in gone]
            for tp in removed:
                del group.offsets[tp]
            return removed

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
