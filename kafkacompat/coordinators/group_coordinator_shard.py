"""Kafka's ``GroupCoordinatorShard``: the state of one ``__consumer_offsets`` partition.

A shard is the groups (:class:`GroupMetadataManager`) and committed offsets
(:class:`OffsetMetadataManager`) of the groups that hash to its partition, and the one
:meth:`replay` both the runtime's writes and the start-up load go through: each record type
goes to the manager it belongs to.
"""

from __future__ import annotations

from kafkacompat.coordinators.coordinator_runtime import CoordinatorResult, CoordinatorRuntime
from kafkacompat.coordinators.group_config import GroupConfig
from kafkacompat.coordinators.group_metadata_manager import GroupMetadataManager
from kafkacompat.coordinators.group_records import CoordinatorRecord, OffsetCommitRecord
from kafkacompat.coordinators.offset_metadata_manager import OffsetMetadataManager


class GroupCoordinatorShard:
    def __init__(
        self,
        runtime: CoordinatorRuntime[GroupCoordinatorShard],
        partition: int,
        config: GroupConfig,
    ) -> None:
        self.partition = partition
        timer = runtime.timer(partition)
        self.group_manager = GroupMetadataManager(config, timer)
        self.offset_manager = OffsetMetadataManager(config, timer, self.group_manager)

    def replay(self, record: CoordinatorRecord) -> None:
        if isinstance(record, OffsetCommitRecord):
            self.offset_manager.replay(record)
        else:
            self.group_manager.replay(record)

    def on_loaded(self) -> CoordinatorResult[None]:
        self.offset_manager.on_loaded()
        return self.group_manager.on_loaded()

    def on_unloaded(self) -> None:
        self.offset_manager.on_unloaded()
        self.group_manager.on_unloaded()
