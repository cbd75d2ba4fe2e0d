"""UnifiedLog: one partition's log as the broker uses it (Kafka's ``UnifiedLog``): the engine's
local log (disk segments, memory or null), the partition's producer state, and the one append
path a leader takes.

Theory of operation.

*Append as leader* (:meth:`UnifiedLog.append_as_leader`, Kafka's ``appendAsLeader``):

1. :func:`~kafkacompat.storage.log_validator.validate_records` walks the blob once: frames,
   one CRC pass per batch, sizes, timestamps, keys on compacted topics, recompression; the
   header fields it read travel on;
2. the producer state analyses those headers (``analyze``: epochs, sequences, and a retry of
   one of a producer's last five batches, answered with its original offsets and written
   nothing); a blob without producer ids skips it;
3. the engine appends the validated batches (``append_validated``: offsets and leader epoch
   stamped in place, one write);
4. the producer state records the batches at the offsets the engine gave them.

Steps 2-4 run without an ``await`` in between, so no other append can interleave.

*Producer state follows the log.*  It is loaded on the first append after start-up (loading
reads the newest snapshot and the log after it, so start-up reads nothing), snapshotted at
every segment roll (so a crash replays at most one segment, as in Kafka) and at clean
shutdown, told when retention or DeleteRecords moves the log start offset, and asked by the
cleaner which batches are each producer's last (they must keep their headers).

*Transactions.*  Only the broker's own writers (``from_client=False``: Kafka's
``AppendOrigin.COORDINATOR``) may append control batches; each must hold a COMMIT or ABORT
marker, which the producer state checks (epochs) and applies. A marker that aborts a
transaction with data here adds an entry to the aborted-transaction index of the segment it
lands in (:mod:`kafkacompat.storage.transaction_index`), with the last stable offset the
producer state computes. Loading the producer state replays the log after its snapshot: the
indexes are cut back to where the replay starts and refilled from the markers it meets, so an
index entry lost or left past the log end by a crash is rebuilt (Kafka's ``LogLoader``
rebuilds the txn index of the segments it recovers). :attr:`UnifiedLog.first_unstable_offset`
loads the state if needed, so after a restart the open transactions are known before the
first read reports a last stable offset.

*Time* is passed in; nothing here reads the clock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kafkacompat.records.batch import (
    CONTROL_FLAG_MASK,
    FIELD_ATTRIBUTES,
    FIELD_BATCH_LENGTH,
    FIELD_PRODUCER_ID,
    LOG_OVERHEAD,
    NO_PRODUCER_ID,
    RecordBatch,
)
from kafkacompat.records.control import EndTransactionMarker
from kafkacompat.storage.base import (
    NO_TIMESTAMP,
    AppendInfo,
    FileRegion,
    KafkaStorageError,
    PartitionLog,
    ReadResult,
    TimestampOffset,
)
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.disk_io import describe, is_transient
from kafkacompat.storage.log_validator import ValidatedRecords, validate_records
from kafkacompat.storage.producer_entry import CompletedTxn
from kafkacompat.storage.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ProducerStateManager,
    marker_of,
)
from kafkacompat.storage.transaction_index import AbortedTxn, collect_aborted_txns

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class UnifiedLog:
    """A partition's local log, producer state and append path."""

    def __init__(
        self,
        topic_partition: TopicPartition,
        local: PartitionLog,
        config: LogConfig,
        *,
        directory: Path | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.topic_partition = topic_partition
        self.local = local
        """The engine's log: segments on disk, batches in memory, or nothing."""
        self.config = config
        self.directory = directory
        self._where = f"{topic_partition[0]}-{topic_partition[1]}"
        self._producer_id_expiration_ms = producer_id_expiration_ms
        self._producer_state: ProducerStateManager | None = None
        local.on_roll = self._on_roll  # only the disk engine rolls segments

    # -- offsets ---------------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self.local.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.local.log_end_offset

    @property
    def size_in_bytes(self) -> int:
        return self.local.size_in_bytes

    # -- producer state --------------------------------------------------------------------------

    def producer_state(self, now_ms: int | None) -> ProducerStateManager:
        """The partition's producer state, loaded on first use (see the module doc); with
        ``now_ms`` None expiry waits for the next retention pass."""
        state = self._producer_state
        if state is None:
            state = ProducerStateManager(
                self.topic_partition,
                self.directory,
                producer_id_expiration_ms=self._producer_id_expiration_ms,
            )
            try:
                loaded = state.load(self.local, now_ms)
            except OSError as exc:  # the log tail it replays could not be read
                raise self._read_failed(exc) from exc
            for index in self.local.txn_indexes_from(loaded.replay_start):
                index.truncate_to(loaded.replay_start)
            self._record_completed_txns(loaded.completed)
            self._producer_state = state
        return state

    @property
    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction (Kafka's ``firstUnstableOffset``),
        None with none open."""
        state = self._producer_state
        if state is None:
            state = self.producer_state(None)
        first = state._first_unstable  # the property's value, read on every fetch
        if first is not None and first < self.local.log_start_offset:
            # Retention or DeleteRecords removed the start of an open transaction: the
            # unstable part begins at the log start (Kafka's maybeIncrementFirstUnstableOffset).
            return self.local.log_start_offset
        return first

    def _record_completed_txns(self, completed: list[tuple[CompletedTxn, int]]) -> None:
        for txn, last_stable_offset in completed:
            if not txn.is_aborted:
                continue
            index = self.local.txn_index_for(txn.last_offset)
            if index is not None:
                index.append(
                    AbortedTxn(
                        txn.producer_id, txn.first_offset, txn.last_offset, last_stable_offset
                    )
                )

    def has_aborted_txns_from(self, fetch_offset: int) -> bool:
        """Whether any segment from the one holding ``fetch_offset`` on has an aborted
        transaction: a read_committed fetch of a log without any skips working out the
        upper bound of what it read (a walk over every batch header in the response)."""
        self.first_unstable_offset  # noqa: B018  # the state's load rebuilds the indexes
        return any(
            index.last_offset is not None for index in self.local.txn_indexes_from(fetch_offset)
        )

    def collect_aborted_txns(self, fetch_offset: int, upper_bound_offset: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping [fetch_offset, upper_bound_offset) (Kafka's
        ``collectAbortedTransactions``), from the segment holding ``fetch_offset`` on."""
        self.first_unstable_offset  # noqa: B018  # the state's load rebuilds the indexes
        return collect_aborted_txns(
            self.local.txn_indexes_from(fetch_offset), fetch_offset, upper_bound_offset
        )

    def producer_last_offsets(self) -> dict[int, int] | None:
        """Each active producer's last batch offset, which compaction must keep as at least a
        header; None when the state was never loaded since start-up (the cleaner then keeps
        every emptied idempotent batch's header: never wrong, a little larger)."""
        state = self._producer_state
        if state is None:
            return None
        return {
            producer_id: entry.batches[-1].last_offset
            for producer_id, entry in state.active_producers.items()
            if entry.batches
        }

    def producer_epochs_without_data(self) -> dict[int, int] | None:
        """Each active producer with no data batch in its state (an epoch bump, such as the
        coordinator's abort of a timed-out transaction, clears them) and its epoch: the
        cleaner keeps the header of its markers of that epoch, which fence older epochs
        (Kafka's ``lastRecordsOfActiveProducers`` with no last data offset). None when the
        state was never loaded since start-up."""
        state = self._producer_state
        if state is None:
            return None
        return {
            producer_id: entry.producer_epoch
            for producer_id, entry in state.active_producers.items()
            if not entry.batches
        }

    def _on_roll(self, new_base_offset: int) -> None:
        state = self._producer_state
        if state is not None and state.map_end_offset <= new_base_offset:
            state.snapshot(new_base_offset)

    def remove_expired_producers(self, now_ms: int) -> int:
        state = self._producer_state
        return 0 if state is None else state.remove_expired_producers(now_ms)

    def snapshot_producer_state(self) -> bool:
        """At clean shutdown: snapshot at the log end offset (nothing if never loaded: a state
        nobody loaded changed nothing, so its snapshot still holds)."""
        state = self._producer_state
        if getattr(self.local, "offline_reason", None) is not None:
            return False  # its log end may not survive the recovery the next start runs
        return state is not None and state.snapshot(self.local.log_end_offset) is not None

    # -- append ----------------------------------------------------------------------------------

    def append_as_leader(
        self,
        records: bytearray | memoryview,
        *,
        leader_epoch: int,
        now_ms: int,
        from_client: bool = True,
    ) -> AppendInfo:
        """The leader's append (see the module doc).  Raises the validator's and the producer
        state's KafkaProtocolErrors; on any of them nothing is appended."""
        validated = validate_records(
            records,
            self.config,
            now_ms,
            from_client=from_client,
            allow_control=not from_client,
            where=self._where,
        )
        markers = None if from_client else _markers_of(validated)
        # Loaded for every append, idempotent or not, so the state's view of the log never
        # falls behind it (a snapshot must not be trusted past writes it missed).
        state = self.producer_state(now_ms)
        if all(fields[FIELD_PRODUCER_ID] == NO_PRODUCER_ID for _, fields in validated.batches):
            info = self.local.append_validated(validated, leader_epoch=leader_epoch, now_ms=now_ms)
            return info
        plan = state.analyze(
            (fields for _, fields in validated.batches), markers, from_client=from_client
        )
        duplicate = plan.duplicate
        if duplicate is not None:
            self.check_online()  # the engine, which would refuse, is not asked
            # A retry of a batch already written: its original offsets, nothing appended.
            return AppendInfo(
                duplicate.first_offset,
                duplicate.last_offset,
                duplicate.max_timestamp,
                duplicate.max_timestamp if self.config.log_append_time else NO_TIMESTAMP,
                self.local.log_start_offset,
            )
        info = self.local.append_validated(validated, leader_epoch=leader_epoch, now_ms=now_ms)
        completed = state.complete_append(plan, info.base_offset, info.log_append_time)
        if completed:
            self._record_completed_txns(completed)
        return info

    def check_online(self) -> None:
        """KAFKA_STORAGE_ERROR if the engine's log went offline after a failed fsync (only
        the disk engine can); for answers that do not touch the log (a caught-up fetch)."""
        reason = getattr(self.local, "offline_reason", None)
        if reason is not None:
            raise KafkaStorageError(f"the log of {self._where} is offline: {reason}")

    # -- reads -----------------------------------------------------------------------------------

    @property
    def offline(self) -> bool:
        """The engine's log went offline after a disk failure (until restart)."""
        return getattr(self.local, "offline_reason", None) is not None

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        return self.local.read(offset, max_bytes)

    def read_records(self, offset: int, max_bytes: int) -> bytes | memoryview:
        """The bytes of :meth:`read`, read from the segment now: a disk error surfaces here,
        as this partition's KAFKA_STORAGE_ERROR, never later while the response is written
        (where it would close the connection and lose the other partitions' answers)."""
        try:
            found = self.local.read(offset, max_bytes).records
            return found.read() if isinstance(found, FileRegion) else found
        except OSError as exc:
            raise self._read_failed(exc) from exc

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        try:
            return self.local.offset_for_timestamp(timestamp)
        except OSError as exc:
            raise self._read_failed(exc) from exc

    def max_timestamp_offset(self) -> TimestampOffset | None:
        try:
            return self.local.max_timestamp_offset()
        except OSError as exc:
            raise self._read_failed(exc) from exc

    def _read_failed(self, exc: OSError) -> KafkaStorageError:
        """Kafka's readFromLocalLog on an IOException: the log goes offline (the disk under
        it is failing). A shortage of descriptors or memory only refuses this read."""
        go_offline = getattr(self.local, "go_offline", None)
        if is_transient(exc) or go_offline is None:
            log.warning("cannot read %s now: %s", self._where, describe(exc))
            return KafkaStorageError(f"cannot read {self._where}: {describe(exc)}")
        go_offline(exc)
        return KafkaStorageError(f"the log of {self._where} is offline: {describe(exc)}")

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self.local.end_offset_for_epoch(leader_epoch)

    def latest_epoch(self) -> int:
        """The epoch of the newest batch, -1 for an empty log that never had one."""
        entries = self.local.leader_epoch_entries
        return entries[-1][0] if entries else -1

    def epoch_for_offset(self, offset: int) -> int:
        """The leader epoch that wrote ``offset`` (Kafka's ``LeaderEpochFileCache.epochForOffset``),
        -1 when unknown."""
        epoch = -1
        for entry_epoch, start in self.local.leader_epoch_entries:
            if start > offset:
                break
            epoch = entry_epoch
        return epoch

    # -- deletion --------------------------------------------------------------------------------

    def _log_start_moved(self, before: int) -> None:
        after = self.local.log_start_offset
        if after != before and self._producer_state is not None:
            self._producer_state.on_log_start_offset_incremented(after)

    def delete_records_before(self, offset: int) -> int:
        before = self.local.log_start_offset
        new_start = self.local.delete_records_before(offset)
        self._log_start_moved(before)
        return new_start

    def apply_retention(self, now_ms: int) -> int:
        before = self.local.log_start_offset
        deleted = self.local.apply_retention(now_ms)
        self._log_start_moved(before)
        return deleted

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self) -> None:
        self.local.flush()

    def close(self) -> None:
        self.local.close()

    def __repr__(self) -> str:
        return f"UnifiedLog({self._where}, {self.local!r})"


def _markers_of(validated: ValidatedRecords) -> dict[int, EndTransactionMarker] | None:
    """The marker of each control batch, by batch index; InvalidRecordError for a control
    batch that holds none (only COMMIT and ABORT markers are appended through here)."""
    markers: dict[int, EndTransactionMarker] | None = None
    for index, (position, fields) in enumerate(validated.batches):
        if fields[FIELD_ATTRIBUTES] & CONTROL_FLAG_MASK:
            end = position + fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
            if markers is None:
                markers = {}
            markers[index] = marker_of(RecordBatch(validated.records[position:end]))
    return markers
