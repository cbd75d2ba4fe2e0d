"""ReplicaManager: the broker's partitions, and every read and write of their logs (Kafka's
``kafka.server.ReplicaManager``).

Theory of operation.  Handlers never touch a log: they resolve names and ids against the
metadata image and then ask here (``append_records``, ``fetch_messages``,
``fetch_offset_for_timestamp``, ``last_offset_for_leader_epoch``, ``delete_records``).  The
replica manager subscribes to the metadata publisher: a created topic gets its logs (through
the :class:`~kafkacompat.storage.manager.LogManager`) and a :class:`Partition` per index; a
deleted one loses both; altered configs reach the logs.

*Fetch* (:meth:`fetch_messages`, Kafka's ``fetchMessages`` + ``readFromLocalLog``): every
partition is read in request order within the response's ``max_bytes``; each read is
bounded by ``min(partition_max_bytes, bytes left)``, and until the first partition with data
the first batch is sent whole even when larger (KIP-74), so a consumer always progresses;
after it, a partition whose first batch does not fit the bytes left sends nothing this time.
With fewer than ``min_bytes`` found and no error, the fetch parks in the fetch purgatory until
an append to one of its partitions or ``max_wait_ms``.

*Transaction markers* (:meth:`append_txn_markers`, Kafka's ``handleWriteTxnMarkersRequest``
append path): the transaction coordinator's COMMIT/ABORT markers, one control batch per
partition, appended as the broker's own records (``AppendOrigin.COORDINATOR``), which are
the only ones allowed to hold control batches.

*Time* is passed in through ``now_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from kafkacompat.cluster.delayed_fetch import DelayedFetchPurgatory
from kafkacompat.cluster.partition import FetchIsolation, LogReadResult, Partition
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.metadata.image import MetadataDelta, MetadataImage, TopicImage
from kafkacompat.records.control import ControlRecordType, build_end_transaction_marker_batch
from kafkacompat.storage.base import AppendInfo
from kafkacompat.storage.manager import LogManager
from kafkacompat.storage.topic_records import TopicRecord
from kafkacompat.storage.unified_log import UnifiedLog

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FetchRead:
    """One partition of a fetch, resolved by the handler: the partition, or why not."""

    partition: Partition | None
    error: ErrorCode
    fetch_offset: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class FetchPartitionResult:
    error: ErrorCode
    read: LogReadResult | None
    """None with an error the partition's offsets cannot be reported for."""


class TransactionResult(IntEnum):
    """Kafka's ``TransactionResult``; WriteTxnMarkers carries it as a boolean (true: COMMIT)."""

    ABORT = 0
    COMMIT = 1


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """One marker of a WriteTxnMarkers request: a producer's transaction ends in
    ``partitions`` (Kafka's ``WritableTxnMarker``)."""

    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    result: TransactionResult
    partitions: tuple[TopicPartition, ...]


class ReplicaManager:
    def __init__(
        self,
        log_manager: LogManager,
        *,
        local_broker_id: int,
        now_ms: Callable[[], int],
        producer_id_expiration_ms: int,
    ) -> None:
        self.log_manager = log_manager
        self.local_broker_id = local_broker_id
        self.now_ms = now_ms
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.delayed_fetch = DelayedFetchPurgatory()
        self._partitions: dict[TopicPartition, Partition] = {}
        self.stopping = False

    # -- partitions ------------------------------------------------------------------------------

    def start(self, high_watermarks: dict[TopicPartition, int]) -> None:
        """Make a partition of every log the log manager opened at start-up."""
        for topic in self.log_manager.topics().values():
            for index in range(topic.partitions):
                self._make_partition(topic.name, index, high_watermarks.get((topic.name, index)))

    def _make_partition(self, topic: str, index: int, high_watermark: int | None) -> Partition:
        held = self.log_manager.topic(topic)
        log = UnifiedLog(
            (topic, index),
            held.logs[index],
            held.config,
            directory=self.log_manager.partition_dir(topic, index),
            producer_id_expiration_ms=self.producer_id_expiration_ms,
        )
        partition = Partition(
            topic,
            index,
            held.topic_id,
            log,
            local_broker_id=self.local_broker_id,
            high_watermark=high_watermark,
        )
        self._partitions[(topic, index)] = partition
        return partition

    def get_partition(self, topic: str, index: int) -> Partition | None:
        return self._partitions.get((topic, index))

    def get_partition_or_error(self, topic: str, index: int) -> Partition:
        found = self._partitions.get((topic, index))
        if found is None:
            raise KafkaProtocolError(
                f"This server does not host this topic-partition: {topic}-{index}",
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            )
        return found

    def partitions(self) -> Iterator[Partition]:
        return iter(list(self._partitions.values()))

    def on_metadata_update(self, delta: MetadataDelta, image: MetadataImage) -> None:
        """Apply topic changes to the logs and partitions (Kafka's ``applyDelta``)."""
        for topic in delta.deleted:
            self._delete_topic(topic)
        for topic in delta.created:
            self.log_manager.create_logs(_record(topic))
            for index in range(topic.partitions):
                self._make_partition(topic.name, index, None)
        for added in delta.partitions_added:
            self.log_manager.add_logs(added.topic.name, added.topic.partitions)
            for index in range(added.previous_partitions, added.topic.partitions):
                self._make_partition(added.topic.name, index, None)
        for topic in delta.configs_altered:
            config = self.log_manager.update_config(topic.name, topic.configs)
            for index in range(topic.partitions):
                partition = self._partitions.get((topic.name, index))
                if partition is not None:
                    partition.log.config = config

    def _delete_topic(self, topic: TopicImage) -> None:
        for index in range(topic.partitions):
            self._partitions.pop((topic.name, index), None)
            # A fetch parked on a deleted partition answers now (its next read fails).
            self.delayed_fetch.check_and_complete((topic.name, index))
        self.log_manager.delete_logs(topic.name)

    # -- produce ---------------------------------------------------------------------------------

    def append_records(
        self,
        partition: Partition,
        records: bytearray | memoryview,
        *,
        now_ms: int,
        from_client: bool = True,
    ) -> AppendInfo:
        """Append to a partition this broker leads, then wake fetches parked on it."""
        info = partition.append_records_to_leader(records, now_ms=now_ms, from_client=from_client)
        self.delayed_fetch.check_and_complete((partition.topic, partition.index))
        return info

    def append_txn_markers(
        self, markers: list[TxnMarker], *, now_ms: int
    ) -> dict[int, dict[TopicPartition, ErrorCode]]:
        """Write each marker into each of its partitions; the error per partition, by
        producer id (WriteTxnMarkers' response shape).  UNKNOWN_TOPIC_OR_PARTITION for a
        partition not here; INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED,
        KAFKA_STORAGE_ERROR and the like as the append raises them.  A failure in one
        partition does not stop the others, as in Kafka."""
        results: dict[int, dict[TopicPartition, ErrorCode]] = {}
        for marker in markers:
            errors = results.setdefault(marker.producer_id, {})
            control_type = (
                ControlRecordType.COMMIT
                if marker.result == TransactionResult.COMMIT
                else ControlRecordType.ABORT
            )
            for tp in marker.partitions:
                partition = self._partitions.get(tp)
                if partition is None:
                    errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    continue
                batch = build_end_transaction_marker_batch(
                    control_type=control_type,
                    producer_id=marker.producer_id,
                    producer_epoch=marker.producer_epoch,
                    coordinator_epoch=marker.coordinator_epoch,
                    timestamp=now_ms,
                )
                try:
                    self.append_records(
                        partition, bytearray(batch), now_ms=now_ms, from_client=False
                    )
                except KafkaProtocolError as exc:
                    errors[tp] = exc.error_code
                else:
                    errors[tp] = ErrorCode.NONE
        return results

    # -- fetch -----------------------------------------------------------------------------------

    def read_from_local_log(
        self, reads: list[FetchRead], max_bytes: int, isolation: FetchIsolation
    ) -> tuple[list[FetchPartitionResult], int, bool]:
        """One pass over every partition: results, bytes found, whether any failed."""
        remaining = max_bytes
        total = 0
        failed = False
        results: list[FetchPartitionResult] = []
        for read in reads:
            partition = read.partition
            if partition is None:
                failed = True
                results.append(FetchPartitionResult(read.error, None))
                continue
            try:
                if remaining <= 0 and total > 0:
                    result = partition.offset_snapshot()
                    if (
                        not result.log_start_offset
                        <= read.fetch_offset
                        <= (partition.log_end_offset)
                    ):
                        raise KafkaProtocolError(
                            "offset out of range", ErrorCode.OFFSET_OUT_OF_RANGE
                        )
                else:
                    limit = min(read.max_bytes, remaining)
                    result = partition.read_records(read.fetch_offset, max(limit, 1), isolation)
                    if total and len(result.records) > limit:
                        # Only the first partition with data may exceed the limit (KIP-74).
                        result = partition.offset_snapshot()
            except KafkaProtocolError as exc:
                failed = True
                results.append(FetchPartitionResult(exc.error_code, partition.offset_snapshot()))
                continue
            size = len(result.records)
            total += size
            remaining -= size
            results.append(FetchPartitionResult(ErrorCode.NONE, result))
        return results, total, failed

    async def fetch_messages(
        self,
        reads: list[FetchRead],
        *,
        max_bytes: int,
        min_bytes: int,
        max_wait_ms: int,
        isolation: FetchIsolation,
    ) -> list[FetchPartitionResult]:
        """Read now; with fewer than ``min_bytes`` and no error, wait in the purgatory for an
        append to one of the partitions, or ``max_wait_ms``, and read again."""
        results, total, failed = self.read_from_local_log(reads, max_bytes, isolation)
        if total >= min_bytes or max_wait_ms <= 0 or failed or self.stopping:
            return results
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000
        watched = [(r.partition.topic, r.partition.index) for r in reads if r.partition is not None]
        while True:
            timeout = deadline - loop.time()
            if timeout <= 0 or self.stopping:
                return results
            event = self.delayed_fetch.watch(watched)
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self.delayed_fetch.unwatch(watched, event)
            results, total, failed = self.read_from_local_log(reads, max_bytes, isolation)
            if total >= min_bytes or failed:
                return results

    # -- housekeeping ----------------------------------------------------------------------------

    def run_retention(self, now_ms: int) -> int:
        """One pass of retention over every partition, and producer-id expiry with it."""
        deleted = 0
        failed: OSError | None = None
        for partition in self.partitions():
            partition.log.remove_expired_producers(now_ms)
            try:
                deleted += partition.log.apply_retention(now_ms)
            except OSError as exc:  # one partition's disk error must not stop the others'
                failed = failed or exc
        if failed is not None:
            raise failed  # for the scheduler to report and retry with back-off
        return deleted

    def high_watermarks(self) -> dict[TopicPartition, int]:
        return {(p.topic, p.index): p.high_watermark for p in self._partitions.values()}

    def checkpoint(self) -> None:
        """Kafka's replication-offset-checkpoint (high watermarks) with the log manager's."""
        self.log_manager.checkpoint(self.high_watermarks())

    def begin_shutdown(self) -> None:
        self.stopping = True
        self.delayed_fetch.wake_all()

    def shutdown(self) -> None:
        """Producer snapshots first (they record the log end offsets the logs close at), then
        the log manager's flush, checkpoints and close."""
        self.begin_shutdown()
        for partition in self.partitions():
            # A full disk: the next start replays more of the log instead.
            with contextlib.suppress(OSError):
                partition.log.snapshot_producer_state()
        self.log_manager.shutdown(self.high_watermarks())


def _record(topic: TopicImage) -> TopicRecord:
    return TopicRecord(topic.name, topic.topic_id, topic.partitions, dict(topic.configs))
