"""The storage interface: one partition's log, whatever keeps it (disk, memory, nothing).

Vocabulary is Kafka's: the *log start offset* is the first offset still readable, the
*log end offset* (LEO) the offset the next appended record gets, the *high watermark*
the end of what consumers may read (equal to the LEO on a single-replica broker), the
*recovery point* the offset below which everything is known to be fsync'd.

Engines: ``disk`` (kafkacompat.storage.log.Log, Kafka's segment files), ``memory``
(kafkacompat.storage.memory.MemoryLog) and ``null`` (acknowledges, keeps nothing; the
protocol layer's speed ceiling).  Storage tests are written once and run on every engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.storage import disk_io

if TYPE_CHECKING:
    from kafkacompat.storage.log_validator import ValidatedRecords
    from kafkacompat.storage.transaction_index import TransactionIndex

NO_TIMESTAMP = -1
DELETED_SUFFIX: Final = ".deleted"
"""Kafka's suffix for segment files waiting out ``file.delete.delay.ms`` before the unlink."""


class OffsetOutOfRangeError(KafkaProtocolError):
    error_code = ErrorCode.OFFSET_OUT_OF_RANGE


class KafkaStorageError(KafkaProtocolError):
    """The disk refused (full, quota, I/O error) or the partition's log is offline after a
    failed fsync: Kafka's ``KafkaStorageException``, retriable for the client."""

    error_code = ErrorCode.KAFKA_STORAGE_ERROR


@dataclass(frozen=True, slots=True)
class AppendInfo:
    """What a Produce response reports for one appended records blob."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    log_append_time: int
    """The broker time stamped into LogAppendTime batches, else -1."""
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class FileRegion:
    """Bytes of a segment file, for ``os.sendfile`` (zero-copy) or ``os.pread``."""

    path: str
    position: int
    length: int

    def open(self) -> int:
        """A new read-only descriptor of the file (the caller closes it). A segment deleted
        since the region was made keeps its bytes under ``path + DELETED_SUFFIX`` for
        ``file.delete.delay.ms``, so a reader that was handed the region still finds them."""
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return os.open(self.path + DELETED_SUFFIX, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> bytes:
        fd = self.open()
        try:
            # One pread unless the region exceeds Linux's ~2 GiB cap on a single read.
            parts: list[bytes] = []
            done = 0
            while done < self.length:
                data = disk_io.os_pread(fd, self.length - done, self.position + done)
                if not data:
                    break
                parts.append(data)
                done += len(data)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches from ``offset`` on; ``records`` is empty at the log end."""

    records: FileRegion | bytes
    high_watermark: int
    log_start_offset: int

    def __len__(self) -> int:
        r = self.records
        return r.length if isinstance(r, FileRegion) else len(r)


@dataclass(frozen=True, slots=True)
class TimestampOffset:
    timestamp: int
    offset: int


class PartitionLog(Protocol):
    """One partition's log."""

    on_roll: Callable[[int], None] | None
    """Called with a new segment's base offset before it is started (engines with segments)."""

    @property
    def log_start_offset(self) -> int: ...
    @property
    def log_end_offset(self) -> int: ...
    @property
    def high_watermark(self) -> int: ...
    @property
    def size_in_bytes(self) -> int: ...

    def append(
        self, records: bytearray | memoryview, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        """Validates (:func:`kafkacompat.storage.log_validator.validate_records`) and appends
        a records blob (one or more RecordBatch v2), assigning offsets from the LEO and
        stamping the leader epoch in place."""
        ...

    def append_validated(
        self, validated: ValidatedRecords, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        """Appends records the validator passed (the leader's path, :class:`UnifiedLog`):
        no check is repeated."""
        ...

    def txn_index_for(self, offset: int) -> TransactionIndex | None:
        """The aborted-transaction index an ABORT marker at ``offset`` is recorded in."""
        ...

    def txn_indexes_from(self, offset: int) -> list[TransactionIndex]:
        """The indexes covering ``offset`` and after, oldest first."""
        ...

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        """Whole batches starting at the one holding ``offset``, up to ``max_bytes`` but
        always at least one batch (KIP-74).  OffsetOutOfRangeError below the log start
        or above the LEO; empty at the LEO."""
        ...

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """The first offset whose batch max timestamp is >= ``timestamp`` (ListOffsets)."""
        ...

    def max_timestamp_offset(self) -> TimestampOffset | None:
        """The offset carrying the largest timestamp (ListOffsets -3, KIP-734)."""
        ...

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: advance the log start offset; returns the new one."""
        ...

    def apply_retention(self, now_ms: int) -> int:
        """Delete whole old segments past retention.ms / retention.bytes; returns how many."""
        ...

    @property
    def leader_epoch_entries(self) -> list[tuple[int, int]]:
        """(epoch, start offset) pairs, oldest first, as in leader-epoch-checkpoint."""
        ...

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (the largest known epoch <= ``leader_epoch``, the start offset
        of the next epoch or the LEO if it is the latest), or (-1, -1) when undefined."""
        ...

    def flush(self) -> None: ...
    def close(self) -> None: ...
