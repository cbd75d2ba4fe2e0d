"""MemoryLog: a PartitionLog held in a Python list, with the disk log's semantics and no files.

Batches are kept as the bytes a segment file would hold (offsets and leader epoch stamped),
each with its base offset in a parallel list so reads bisect. Retention treats every batch as
a segment of its own: Kafka deletes whole segments only, and a batch is the smallest unit
that still keeps reads batch-aligned.

Append validation is the one :mod:`kafkacompat.storage.log_validator`, as for the disk log.
Everything is checked before anything is stamped, so a refused append leaves the log and the
caller's buffer unchanged.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from kafkacompat.records.batch import (
    FIELD_BATCH_LENGTH,
    LOG_OVERHEAD,
    RecordBatch,
    TimestampType,
)
from kafkacompat.storage.base import (
    NO_TIMESTAMP,
    AppendInfo,
    OffsetOutOfRangeError,
    ReadResult,
    TimestampOffset,
)
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.epoch import LeaderEpochCache
from kafkacompat.storage.log_validator import ValidatedRecords, validate_records
from kafkacompat.storage.transaction_index import TransactionIndex


def stamp_batches(
    validated: ValidatedRecords,
    *,
    log_end_offset: int,
    leader_epoch: int,
    log_append_time: int,
) -> tuple[list[RecordBatch], int, int]:
    """Assign offsets from the LEO and stamp the leader epoch (and LogAppendTime); returns
    (the batches, next offset, max timestamp)."""
    next_offset = log_end_offset
    max_timestamp = NO_TIMESTAMP
    batches: list[RecordBatch] = []
    view = validated.records
    for position, fields in validated.batches:
        batch = RecordBatch(view[position : position + fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD])
        batch.set_base_offset(next_offset)
        batch.set_partition_leader_epoch(leader_epoch)
        if log_append_time != NO_TIMESTAMP:
            batch.set_max_timestamp(TimestampType.LOG_APPEND_TIME, log_append_time)
        max_timestamp = max(max_timestamp, batch.max_timestamp)
        next_offset = batch.next_offset
        batches.append(batch)
    return batches, next_offset, max_timestamp


class MemoryLog:
    """A PartitionLog in memory; nothing survives the process."""

    def __init__(self, config: LogConfig | None = None, *, log_start_offset: int = 0) -> None:
        self.config = config or LogConfig()
        self._batches: list[bytes] = []
        self._base_offsets: list[int] = []
        self._last_offsets: list[int] = []
        self._size = 0
        self._log_start_offset = log_start_offset
        self._log_end_offset = log_start_offset
        self._epochs = LeaderEpochCache()
        self.on_roll: Callable[[int], None] | None = None  # never called: no segments
        # One index for the whole log: there are no segments, and nothing survives a restart.
        self._txn_index = TransactionIndex(None, log_start_offset)

    # -- offsets ---------------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        # A single replica is its own ISR: everything appended is committed.
        return self._log_end_offset

    @property
    def recovery_point(self) -> int:
        # Nothing to recover: memory is "flushed" the moment it is written.
        return self._log_end_offset

    @property
    def size_in_bytes(self) -> int:
        return self._size

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def txn_index_for(self, offset: int) -> TransactionIndex | None:
        return self._txn_index

    def txn_indexes_from(self, offset: int) -> list[TransactionIndex]:
        return [self._txn_index]

    # -- append ----------------------------------------------------------------------------------

    def append(
        self, records: bytearray | memoryview, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        return self.append_validated(
            validate_records(records, self.config, now_ms, from_client=False),
            leader_epoch=leader_epoch,
            now_ms=now_ms,
        )

    def append_validated(
        self, validated: ValidatedRecords, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        base_offset = self._log_end_offset
        log_append_time = now_ms if self.config.log_append_time else NO_TIMESTAMP
        batches, next_offset, max_timestamp = stamp_batches(
            validated,
            log_end_offset=base_offset,
            leader_epoch=leader_epoch,
            log_append_time=log_append_time,
        )
        if leader_epoch > self._epochs.latest_epoch:
            self._epochs.assign(leader_epoch, base_offset)
        for batch in batches:
            self._batches.append(batch.buffer.tobytes())
            self._base_offsets.append(batch.base_offset)
            self._last_offsets.append(batch.last_offset)
            self._size += batch.size_in_bytes
        self._log_end_offset = next_offset
        return AppendInfo(
            base_offset=base_offset,
            last_offset=next_offset - 1,
            max_timestamp=max_timestamp,
            log_append_time=log_append_time,
            log_start_offset=self._log_start_offset,
        )

    # -- read ------------------------------------------------------------------------------------

    def _check_range(self, offset: int) -> None:
        if not self._log_start_offset <= offset <= self._log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start_offset}, {self._log_end_offset}]"
            )

    def _index_of(self, offset: int) -> int:
        """Index of the first batch whose last offset is >= ``offset``."""
        return bisect.bisect_left(self._last_offsets, offset)

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        self._check_range(offset)
        out = bytearray()
        for index in range(self._index_of(offset), len(self._batches)):
            batch = self._batches[index]
            # KIP-74: the first batch goes out whole even if larger than max_bytes, so a
            # consumer can always make progress.
            if out and len(out) + len(batch) > max_bytes:
                break
            out += batch
            if len(out) >= max_bytes:
                break
        return ReadResult(bytes(out), self.high_watermark, self._log_start_offset)

    def _iter_readable(self) -> Iterator[RecordBatch]:
        for index in range(self._index_of(self._log_start_offset), len(self._batches)):
            yield RecordBatch(self._batches[index])

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """Kafka's ``findOffsetByTimestamp``: the first *record* at or after ``timestamp``,
        found by skipping batches on their max timestamp and decoding only the one that hits."""
        for batch in self._iter_readable():
            if batch.max_timestamp < timestamp:
                continue
            for record in batch.iter_records():
                if record.timestamp >= timestamp and record.offset >= self._log_start_offset:
                    return TimestampOffset(record.timestamp, record.offset)
        return None

    def max_timestamp_offset(self) -> TimestampOffset | None:
        """KIP-734: the earliest record carrying the largest timestamp."""
        best: RecordBatch | None = None
        for batch in self._iter_readable():
            if best is None or batch.max_timestamp > best.max_timestamp:
                best = batch
        if best is None:
            return None
        for record in best.iter_records():
            if record.timestamp == best.max_timestamp and record.offset >= self._log_start_offset:
                return TimestampOffset(record.timestamp, record.offset)
        return TimestampOffset(best.max_timestamp, max(best.base_offset, self._log_start_offset))

    # -- leader epochs ---------------------------------------------------------------------------

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self._epochs.end_offset_for(leader_epoch, self._log_end_offset)

    @property
    def leader_epoch_entries(self) -> list[tuple[int, int]]:
        return self._epochs.entries

    # -- deletion --------------------------------------------------------------------------------

    def _drop_front(self, count: int) -> None:
        self._size -= sum(len(batch) for batch in self._batches[:count])
        del self._batches[:count]
        del self._base_offsets[:count]
        del self._last_offsets[:count]
        new_start = self._base_offsets[0] if self._batches else self._log_end_offset
        self._log_start_offset = max(self._log_start_offset, new_start)
        self._epochs.truncate_from_start(self._log_start_offset)

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords. -1 means the high watermark; beyond it is OFFSET_OUT_OF_RANGE, as in
        Kafka's ``UnifiedLog.deleteRecordsOnLeader``. Whole batches below the new start go."""
        if offset == -1:
            offset = self.high_watermark
        if offset < 0 or offset > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records before {offset}: high watermark is {self.high_watermark}"
            )
        if offset > self._log_start_offset:
            self._log_start_offset = offset
            self._drop_front(self._index_of(offset))
        return self._log_start_offset

    def apply_retention(self, now_ms: int) -> int:
        """Kafka's ``deleteOldSegments`` with one batch per segment: time first, then size.

        Time retention deletes from the front while a batch's max timestamp is older than
        retention.ms and stops at the first younger one; size retention deletes from the front
        while the log would still be at least retention.bytes without the batch.
        """
        if not self.config.delete:
            return 0
        deleted = 0
        retention_ms = self.config.retention_ms
        if retention_ms >= 0:
            count = 0
            while (
                count < len(self._batches)
                and now_ms - RecordBatch(self._batches[count]).max_timestamp > retention_ms
            ):
                count += 1
            self._drop_front(count)
            deleted += count
        retention_bytes = self.config.retention_bytes
        if retention_bytes >= 0 and self._size >= retention_bytes:
            diff = self._size - retention_bytes
            count = 0
            while count < len(self._batches) and diff - len(self._batches[count]) >= 0:
                diff -= len(self._batches[count])
                count += 1
            self._drop_front(count)
            deleted += count
        return deleted

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._batches.clear()
        self._base_offsets.clear()
        self._last_offsets.clear()
        self._size = 0
