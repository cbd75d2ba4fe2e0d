"""Cleaned segments: written under ``.cleaned`` names, then swapped in for the segments they
replace (Kafka's ``LocalLog`` suffixes and ``replaceSegments``, and ``LogLoader`` completing a
swap after a crash).

*Write* (:class:`CleanedSegmentWriter`, in the cleaner's worker thread): one cleaned segment
and its indexes, with the same index bookkeeping as an append, fsync'd before the round ends;
its ``.txnindex`` holds the aborted transactions whose markers the cleaner kept.

*Swap* (:meth:`kafkacompat.storage.log.Log.replace_segments`, on the event loop): the cleaned
files are renamed ``.cleaned`` -> ``.swap``, the old segments are renamed for deferred deletion,
and the ``.swap`` files take the final names. A crash before the first rename leaves the old
segments; after it, loading the log completes the swap (see ``Log._load``, which uses
:func:`swap_file_next_offset`). A fetch that already read its bytes is unaffected: reads copy
the bytes out before the loop runs anything else, so the path that now names the cleaned file
is never read for an older region.

The log imports this module, never the cleaner: the cleaner sits above the log.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Final, Protocol

from kafkacompat.records.batch import FIELD_BASE_OFFSET, FIELD_LAST_OFFSET_DELTA
from kafkacompat.storage import disk_io
from kafkacompat.storage.file_records import iter_file_batches
from kafkacompat.storage.index import OffsetIndex, TimeIndex
from kafkacompat.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    NO_TIMESTAMP,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_file_name,
)
from kafkacompat.storage.transaction_index import TXN_INDEX_SUFFIX, AbortedTxn, write_txn_index

CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"
WRITE_BUFFER_BYTES: Final = 1 << 20


class SegmentIndexSettings(Protocol):
    """The topic configs a cleaned segment's indexes follow (a ``LogConfig`` fits)."""

    @property
    def segment_index_bytes(self) -> int: ...
    @property
    def index_interval_bytes(self) -> int: ...


@dataclass(slots=True)
class SegmentSnapshot:
    """An inactive segment as it was when the round was planned; the segment object itself is
    checked again before the swap, since retention may delete it meanwhile."""

    segment: LogSegment
    base_offset: int
    next_offset: int
    size: int
    first_timestamp: int | None
    fd: int | None = None


@dataclass(slots=True)
class CleanedSegment:
    """A group of old segments rewritten as one, waiting under ``.cleaned`` names."""

    replaces: list[SegmentSnapshot]
    base_offset: int
    size: int
    directory: str
    aborted_txns: list[AbortedTxn] = field(default_factory=list)
    """Its ``.txnindex``: the aborted transactions whose markers it kept, in offset order."""

    def path(self, suffix: str, state: str) -> str:
        return os.path.join(self.directory, segment_file_name(self.base_offset, suffix) + state)

    def discard(self) -> None:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
            for state in (CLEANED_SUFFIX, SWAP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(suffix, state))


class CleanedSegmentWriter:
    """Writes one cleaned segment and its indexes with the same bookkeeping as an append."""

    def __init__(self, cleaned: CleanedSegment, settings: SegmentIndexSettings) -> None:
        self.cleaned = cleaned
        self.file = open(cleaned.path(LOG_SUFFIX, CLEANED_SUFFIX), "wb", buffering=0)  # noqa: SIM115
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = 0
        self.offset_index = OffsetIndex(
            cleaned.path(INDEX_SUFFIX, CLEANED_SUFFIX),
            cleaned.base_offset,
            settings.segment_index_bytes,
        )
        self.time_index = TimeIndex(
            cleaned.path(TIME_INDEX_SUFFIX, CLEANED_SUFFIX),
            cleaned.base_offset,
            settings.segment_index_bytes,
        )
        self.offset_index.reset()
        self.time_index.reset()
        self.interval = settings.index_interval_bytes
        self.position = 0
        self.since_index = 0
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = cleaned.base_offset

    def write(self, batch: bytes | memoryview, last_offset: int, max_timestamp: int) -> None:
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self.since_index > self.interval and not (
            self.offset_index.is_full or self.time_index.is_full
        ):
            self.offset_index.append(last_offset, self.position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self.since_index = 0
        size = len(batch)
        self.since_index += size
        self.position += size
        self.pending.append(batch)  # each read is a fresh buffer: views stay valid
        self.pending_bytes += size
        if self.pending_bytes >= WRITE_BUFFER_BYTES:
            self._drain()

    def _drain(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            view = memoryview(data)
            while view:
                view = view[disk_io.os_write(self.file.fileno(), view) :]
            self.pending.clear()
            self.pending_bytes = 0

    def finish(self) -> None:
        """Flush and fsync everything: the swap must never expose bytes not yet on disk."""
        self._drain()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.position and not self.time_index.is_full:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.flush()
        self.time_index.flush()
        if self.cleaned.aborted_txns:  # like an appended segment's, created by its first entry
            write_txn_index(
                self.cleaned.path(TXN_INDEX_SUFFIX, CLEANED_SUFFIX), self.cleaned.aborted_txns
            )
        self.cleaned.size = self.position

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.cleaned.discard()


def swap_file_next_offset(path: str) -> int | None:
    """One past the last offset in a ``.log.swap`` file, None when it holds no batch (used
    to complete a swap interrupted by a crash)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        next_offset: int | None = None
        for _, fields in iter_file_batches(fd, os.fstat(fd).st_size):
            next_offset = fields[FIELD_BASE_OFFSET] + fields[FIELD_LAST_OFFSET_DELTA] + 1
        return next_offset
    finally:
        os.close(fd)
