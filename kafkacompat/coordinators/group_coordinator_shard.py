"""Kafka's ``GroupCoordinatorShard``: the state of one ``__consumer_offsets`` partition.

A shard is the groups (:class:`GroupMetadataManager`) and committed offsets
(:class:`OffsetMetadataManager`) of the groups that hash to its partition, with the
transactional offsets not yet decided (:class:`PendingTransactionalOffsets`, which both
managers consult), and the one :meth:`replay` both the runtime's writes and the start-up load
go through: each record type goes to the manager it belongs to.  A transaction's marker,
written by the transaction coordinator, is replayed by
:meth:`replay_end_transaction_marker`.
"""

from __future__ import annotations

from kafkacompat.coordinators.coordinator_runtime import (
    UNKNOWN_RECORD_OFFSET,
    CoordinatorResult,
    CoordinatorRuntime,
)
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_metadata_manager import GroupMetadataManager
from kafkacompat.coordinators.group_records import CoordinatorRecord, OffsetCommitRecord
from kafkacompat.coordinators.offset_metadata_manager import OffsetMetadataManager
from kafkacompat.coordinators.pending_offsets import PendingTransactionalOffsets
from kafkacompat.records.batch import NO_PRODUCER_ID


class GroupCoordinatorShard:
    def __init__(
        self,
        runtime: CoordinatorRuntime[GroupCoordinatorShard],
        partition: int,
        config: GroupConfig,
    ) -> None:
        self.partition = partition
        timer = runtime.timer(partition)
        self.pending_offsets = PendingTransactionalOffsets()
        self.group_manager = GroupMetadataManager(config, timer, self.pending_offsets)
        self.offset_manager = OffsetMetadataManager(
            config, timer, self.group_manager, self.pending_offsets
        )

    def replay(
        self,
        record: CoordinatorRecord,
        producer_id: int = NO_PRODUCER_ID,
        record_offset: int = UNKNOWN_RECORD_OFFSET,
    ) -> None:
        if isinstance(record, OffsetCommitRecord):
            self.offset_manager.replay(record, producer_id, record_offset)
        else:
            self.group_manager.replay(record)

    def replay_end_transaction_marker(self, producer_id: int, committed: bool) -> None:
        self.offset_manager.replay_end_transaction_marker(producer_id, committed)

    def on_loaded(self) -> CoordinatorResult[None]:
        self.offset_manager.on_loaded()
        return self.group_manager.on_loaded()

    def on_unloaded(self) -> None:
        self.offset_manager.on_unloaded()
        self.group_manager.on_unloaded()
