"""NullLog: acknowledges appends and keeps nothing, so benchmarks measure the protocol layer alone.

Behind a partition the broker's validator still checks every batch (frames, CRC, sizes), so
the null engine measures everything but the storage; its own :meth:`NullLog.append` reads only
each batch's length and lastOffsetDelta, so offsets advance exactly as on a real log. Fetches
return no records at any valid offset.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from kafkacompat.records.batch import (
    FIELD_LAST_OFFSET_DELTA,
    LAST_OFFSET_DELTA_OFFSET,
    LENGTH_OFFSET,
    LOG_OVERHEAD,
    RECORD_BATCH_OVERHEAD,
)
from kafkacompat.records.errors import CorruptRecordError, InvalidRecordError
from kafkacompat.storage.base import (
    NO_TIMESTAMP,
    AppendInfo,
    OffsetOutOfRangeError,
    ReadResult,
    TimestampOffset,
)
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.epoch import LeaderEpochCache
from kafkacompat.storage.log_validator import ValidatedRecords
from kafkacompat.storage.transaction_index import TransactionIndex

_I32: Final = struct.Struct(">i")


class NullLog:
    """A PartitionLog that forgets everything it is given."""

    def __init__(self, config: LogConfig | None = None, *, log_start_offset: int = 0) -> None:
        self.config = config or LogConfig()
        self._log_start_offset = log_start_offset
        self._log_end_offset = log_start_offset
        # Offsets advance as on a real log, so epochs are tracked too: one comparison an append.
        self._epochs = LeaderEpochCache()
        self.on_roll: Callable[[int], None] | None = None  # never called: no segments

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        return self._log_end_offset

    @property
    def size_in_bytes(self) -> int:
        return 0

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def append(
        self, records: bytearray | memoryview, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        view = memoryview(records).cast("B") if not isinstance(records, bytearray) else records
        count = 0
        position = 0
        end = len(view)
        while position < end:
            if end - position < RECORD_BATCH_OVERHEAD:
                raise CorruptRecordError(f"{end - position} trailing bytes are not a batch")
            (batch_length,) = _I32.unpack_from(view, position + LENGTH_OFFSET)
            (last_offset_delta,) = _I32.unpack_from(view, position + LAST_OFFSET_DELTA_OFFSET)
            size = batch_length + LOG_OVERHEAD
            if size < RECORD_BATCH_OVERHEAD or size > end - position:
                raise CorruptRecordError(f"batch length {batch_length} does not fit the buffer")
            if last_offset_delta < 0:
                raise InvalidRecordError(f"negative last offset delta {last_offset_delta}")
            count += last_offset_delta + 1
            position += size
        if count == 0:
            raise InvalidRecordError("no record batches to append")
        return self._advance(count, leader_epoch, now_ms)

    def append_validated(
        self, validated: ValidatedRecords, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        count = sum(fields[FIELD_LAST_OFFSET_DELTA] + 1 for _, fields in validated.batches)
        return self._advance(count, leader_epoch, now_ms)

    def _advance(self, count: int, leader_epoch: int, now_ms: int) -> AppendInfo:
        base_offset = self._log_end_offset
        self._log_end_offset += count
        if leader_epoch > self._epochs.latest_epoch:
            self._epochs.assign(leader_epoch, base_offset)
        log_append_time = now_ms if self.config.log_append_time else NO_TIMESTAMP
        return AppendInfo(
            base_offset=base_offset,
            last_offset=self._log_end_offset - 1,
            max_timestamp=log_append_time,
            log_append_time=log_append_time,
            log_start_offset=self._log_start_offset,
        )

    def txn_index_for(self, offset: int) -> TransactionIndex | None:
        return None  # nothing is kept, so there is nothing for a reader to skip

    def txn_indexes_from(self, offset: int) -> list[TransactionIndex]:
        return []

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        if not self._log_start_offset <= offset <= self._log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start_offset}, {self._log_end_offset}]"
            )
        return ReadResult(b"", self._log_end_offset, self._log_start_offset)

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        return None

    def max_timestamp_offset(self) -> TimestampOffset | None:
        return None

    def delete_records_before(self, offset: int) -> int:
        if offset == -1:  # Kafka's "up to the high watermark"
            offset = self._log_end_offset
        if not 0 <= offset <= self._log_end_offset:
            raise OffsetOutOfRangeError(
                f"cannot delete before {offset}: high watermark is {self._log_end_offset}"
            )
        self._log_start_offset = max(self._log_start_offset, offset)
        self._epochs.truncate_from_start(self._log_start_offset)
        return self._log_start_offset

    @property
    def leader_epoch_entries(self) -> list[tuple[int, int]]:
        return self._epochs.entries

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self._epochs.end_offset_for(leader_epoch, self._log_end_offset)

    def apply_retention(self, now_ms: int) -> int:
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
