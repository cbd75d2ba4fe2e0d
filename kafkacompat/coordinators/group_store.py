"""The storage seam of the group coordinator: every read and write of ``__consumer_offsets``.

SWAP POINT.  Nothing else in :mod:`kafkacompat.coordinators` touches the log: the runtime
appends a write operation's records with :meth:`GroupStore.append` (one CreateTime batch per
operation, to one partition, before the operation's response goes out; a transactional
producer's batch for TxnOffsetCommit) and the start-up load
reads through :meth:`GroupStore.log_start_offset` and :meth:`GroupStore.read`.  Today these
reach the broker's :class:`~kafkacompat.storage.manager.LogManager` directly; a replica
manager's append can replace them without the coordinator noticing, as long as the interface
stays: ensure the topic, append records to partition p returning the base offset (or raise
:class:`StoreError` with Kafka's error code), read whole batches of partition p from an
offset.

The record formats are :mod:`kafkacompat.coordinators.group_records`; the scan of a
partition at start-up is :mod:`kafkacompat.coordinators.group_loader`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kafkacompat.coordinators.group_records import OFFSETS_TOPIC, Record, partition_for
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.manager import LogManager, Topic

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedGroups:
    """What the start-up load found, for the broker's log line."""

    groups: list[str] = field(default_factory=list)
    """Groups loaded from a group metadata record."""
    offsets: list[str] = field(default_factory=list)
    """Groups loaded with committed offsets."""
    records: int = 0
    """Records read."""


class StoreError(Exception):
    """An append to ``__consumer_offsets`` failed; ``error_code`` is the storage's answer."""

    def __init__(self, message: str, error_code: ErrorCode) -> None:
        super().__init__(message)
        self.error_code = error_code


class GroupStore:
    """Appends to and reads ``__consumer_offsets`` through the broker's LogManager."""

    def __init__(
        self,
        logs: LogManager,
        *,
        num_partitions: int,
        segment_bytes: int,
        now_ms: Callable[[], int],
        leader_epoch: int = 0,
        create_topic: Callable[[str, int, dict[str, str]], Topic],
        append_records: Callable[[int, bytearray, int], int] | None = None,
    ) -> None:
        self.logs = logs
        # In a broker the append goes through the replica manager (Kafka's coordinator
        # appends with AppendOrigin.COORDINATOR): the partition's high watermark moves and
        # fetches parked on it wake.  Alone (tests), straight to the partition's log.
        self.append_records = append_records or self._append_to_log
        # Through the controller (the topic is then in the metadata image too).
        self.create_topic = create_topic
        self.configured_partitions = num_partitions
        self.segment_bytes = segment_bytes
        self.now_ms = now_ms
        self.leader_epoch = leader_epoch

    def topic(self) -> Topic | None:
        return self.logs.topics().get(OFFSETS_TOPIC)

    @property
    def num_partitions(self) -> int:
        # An existing topic's count wins over the config: its records are where they are.
        topic = self.topic()
        return topic.partitions if topic is not None else self.configured_partitions

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def ensure_topic(self) -> Topic:
        """Create the topic at first need, as Kafka's FindCoordinator does: compacted, one
        replica whatever offsets.topic.replication.factor says (there is one broker)."""
        topic = self.topic()
        if topic is None:
            topic = self.create_topic(
                OFFSETS_TOPIC,
                self.configured_partitions,
                {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(self.segment_bytes),
                    "compression.type": "producer",
                },
            )
            log.info("created %s with %d partitions", OFFSETS_TOPIC, self.configured_partitions)
        return topic

    def append(
        self,
        partition: int,
        records: Iterable[Record],
        *,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
    ) -> int:
        """Append one batch to ``partition``; returns its base offset once the log has it
        (written to the segment file, so it survives the process being killed), -1 when
        there was nothing to append.  StoreError if not.

        With a ``producer_id`` the batch is transactional, that producer's (TxnOffsetCommit):
        the partition's producer state opens a transaction for it, which the coordinator's
        marker closes; its epoch is checked there (INVALID_PRODUCER_EPOCH).  The sequence is
        0, as Kafka's coordinator writes it: a broker's own appends carry no sequences."""
        try:
            topic = self.ensure_topic()
        except KafkaProtocolError as exc:
            raise StoreError(str(exc), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) from exc
        if not 0 <= partition < topic.partitions:
            raise StoreError(f"no partition {partition}", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        now = self.now_ms()
        builder = (
            RecordBatchBuilder()
            if producer_id == NO_PRODUCER_ID
            else RecordBatchBuilder(
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=0,
                is_transactional=True,
            )
        )
        for key, value in records:
            builder.append(value, timestamp=now, key=key)
        if not len(builder):
            return -1
        try:
            return self.append_records(partition, bytearray(builder.build()), now)
        except KafkaProtocolError as exc:
            raise StoreError(str(exc), exc.error_code) from exc
        except OSError as exc:
            log.error("cannot append to %s: %s", OFFSETS_TOPIC, exc)
            raise StoreError(str(exc), ErrorCode.KAFKA_STORAGE_ERROR) from exc

    def _append_to_log(self, partition: int, records: bytearray, now_ms: int) -> int:
        topic = self.ensure_topic()
        info = topic.logs[partition].append(records, leader_epoch=self.leader_epoch, now_ms=now_ms)
        return info.base_offset

    def log_start_offset(self, partition: int) -> int:
        topic = self.topic()
        return 0 if topic is None else topic.logs[partition].log_start_offset

    def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]:
        return read_whole_batches(self.topic(), partition, offset, max_bytes)


def read_whole_batches(
    topic: Topic | None, partition: int, offset: int, max_bytes: int
) -> tuple[bytes, int]:
    """Whole batches of ``partition`` from ``offset`` (at least one, if there is any), and
    the partition's log end offset: what a coordinator's start-up load reads."""
    if topic is None or partition >= topic.partitions:
        return b"", 0
    partition_log = topic.logs[partition]
    end_offset = partition_log.log_end_offset
    if offset >= end_offset:
        return b"", end_offset
    records = partition_log.read(offset, max_bytes).records
    data = records.read() if isinstance(records, FileRegion) else bytes(records)
    return data, end_offset
