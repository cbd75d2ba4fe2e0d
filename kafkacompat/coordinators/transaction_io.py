"""The transaction coordinator's I/O, through the replica manager: the partitions of
``__transaction_state`` it appends to and loads from, and the markers it writes.

Kafka's ``TransactionStateManager`` appends with ``AppendOrigin.COORDINATOR`` and acks=all;
its ``TransactionMarkerChannelManager`` sends WriteTxnMarkers to each partition's leader.  On
one broker both are local appends: the record batch (or the control batch) goes down the
leader's one append path, so the partition's high watermark moves, fetches parked on it
wake, and the producer state of the partition sees the marker end the transaction.  An
append returns once the bytes are in the segment file, which survives the process being
killed; acks=all asks no more of a single replica.

Markers written to ``__consumer_offsets`` also tell the group coordinator, which holds a
transaction's offset commits pending until then (Kafka's ``ReplicaManager`` calls
``GroupCoordinator.onTransactionCompleted`` the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from kafkacompat.cluster.replica_manager import ReplicaManager, TxnMarker
from kafkacompat.cluster.replica_manager import TransactionResult as MarkerResult
from kafkacompat.coordinators.group_records import OFFSETS_TOPIC
from kafkacompat.coordinators.group_store import read_whole_batches
from kafkacompat.coordinators.transaction_coordinator import TransactionResult
from kafkacompat.coordinators.transaction_log import (
    TRANSACTION_STATE_TOPIC,
    Record,
    transaction_topic_configs,
)
from kafkacompat.coordinators.transaction_metadata import TopicPartition
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.manager import LogManager, Topic

log = logging.getLogger(__name__)

_NOT_HERE: Final = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class TransactionStateLog:
    """``__transaction_state`` on this broker: created at first need (as Kafka's FindCoordinator
    does), appended to by the coordinator, read by its start-up load."""

    def __init__(
        self,
        logs: LogManager,
        replica_manager: ReplicaManager,
        *,
        num_partitions: int,
        segment_bytes: int,
        now_ms: Callable[[], int],
        create_topic: Callable[[str, int, dict[str, str]], Topic],
    ) -> None:
        self._logs = logs
        self._replicas = replica_manager
        self.configured_partitions = num_partitions
        self._segment_bytes = segment_bytes
        self._now_ms = now_ms
        self._create_topic = create_topic

    def topic(self) -> Topic | None:
        return self._logs.topics().get(TRANSACTION_STATE_TOPIC)

    @property
    def num_partitions(self) -> int:
        # An existing topic's count wins over the config: its records are where they are.
        topic = self.topic()
        return topic.partitions if topic is not None else self.configured_partitions

    def create(self) -> Topic:
        """Create the topic, with the configs Kafka enforces on it (one replica: one broker)."""
        topic = self._create_topic(
            TRANSACTION_STATE_TOPIC,
            self.configured_partitions,
            transaction_topic_configs(1, self._segment_bytes),
        )
        log.info(
            "created %s with %d partitions", TRANSACTION_STATE_TOPIC, self.configured_partitions
        )
        return topic

    def coordinator_epoch(self, partition: int) -> int:
        """Kafka's coordinator epoch is the partition's leader epoch."""
        found = self._replicas.get_partition(TRANSACTION_STATE_TOPIC, partition)
        return 0 if found is None else found.leader_epoch

    # -- TransactionLogAppender ----------------------------------------------------------------

    async def append(
        self, partition: int, coordinator_epoch: int, records: list[Record]
    ) -> ErrorCode:
        found = self._replicas.get_partition(TRANSACTION_STATE_TOPIC, partition)
        if found is None:
            return _NOT_HERE
        if found.leader_epoch != coordinator_epoch:
            # The partition moved on since this coordinator loaded it.
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        now = self._now_ms()
        builder = RecordBatchBuilder()
        for key, value in records:
            builder.append(value, timestamp=now, key=key)
        try:
            self._replicas.append_records(
                found, bytearray(builder.build()), now_ms=now, from_client=False
            )
        except KafkaProtocolError as exc:
            return exc.error_code
        except OSError as exc:
            log.error("cannot append to %s-%d: %s", TRANSACTION_STATE_TOPIC, partition, exc)
            return ErrorCode.KAFKA_STORAGE_ERROR
        return ErrorCode.NONE

    # -- BatchSource (the start-up load) -------------------------------------------------------

    def log_start_offset(self, partition: int) -> int:
        topic = self.topic()
        return 0 if topic is None else topic.logs[partition].log_start_offset

    def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]:
        return read_whole_batches(self.topic(), partition, offset, max_bytes)


class LocalTxnMarkerWriter:
    """The coordinator's :class:`~kafkacompat.coordinators.transaction_coordinator.
    TxnMarkerWriter`: one broker leads every partition, so the markers are local appends."""

    def __init__(
        self,
        replica_manager: ReplicaManager,
        now_ms: Callable[[], int],
        on_offsets_completed: Callable[[int, list[int], bool], None],
        topic_exists: Callable[[str], bool],
    ) -> None:
        self._replicas = replica_manager
        self._now_ms = now_ms
        # The group coordinator's onTransactionCompleted: (producer id, __consumer_offsets
        # partitions, committed).
        self._on_offsets_completed = on_offsets_completed
        self._topic_exists = topic_exists

    async def write_txn_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        result: TransactionResult,
        partitions: frozenset[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        return self.write(
            [
                TxnMarker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    MarkerResult(int(result)),
                    tuple(sorted(partitions)),
                )
            ]
        ).get(producer_id, {})

    def write(self, markers: list[TxnMarker]) -> dict[int, dict[TopicPartition, ErrorCode]]:
        """Write markers (the coordinator's, or a WriteTxnMarkers request's); a partition of a
        deleted topic counts as written, and offsets committed in the transaction are
        materialised or dropped once their partition has its marker."""
        results = self._replicas.append_txn_markers(markers, now_ms=self._now_ms())
        for marker in markers:
            errors = results.get(marker.producer_id, {})
            offsets_partitions = []
            for tp in marker.partitions:
                error = errors.get(tp)
                if error == _NOT_HERE and not self._topic_exists(tp[0]):
                    errors[tp] = ErrorCode.NONE
                elif error == ErrorCode.NONE and tp[0] == OFFSETS_TOPIC:
                    offsets_partitions.append(tp[1])
            if offsets_partitions:
                self._on_offsets_completed(
                    marker.producer_id,
                    offsets_partitions,
                    marker.result == MarkerResult.COMMIT,
                )
        return results
