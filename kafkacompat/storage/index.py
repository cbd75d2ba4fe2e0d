"""Kafka's sparse segment indexes: ``.index`` (offset -> file position) and ``.timeindex``
(timestamp -> offset).

Theory of operation. An index is a hint, never the truth: the ``.log`` file is. Entries are
never checksummed; a crash can leave an index short, long or garbled, so the log loader
rebuilds it from the log whenever it fails a sanity check (Kafka's ``AbstractIndex.sanityCheck``
plus the checks Kafka's mmap layout makes implicit). That freedom is used here to keep the
append path cheap: entries are kept in memory (``array``, binary searched with ``bisect``) and
written to the file in one go on :meth:`flush`, which the segment calls before it fsyncs and
before the recovery point moves past it. An unflushed index is therefore simply missing entries
and is rebuilt by recovery, exactly like Kafka's after an unclean shutdown.

Kafka preallocates and mmaps index files; here a file holds only its entries, so "full" is a
count (``segment.index.bytes`` / entry size) and forces the segment to roll, as Kafka's does.

Entries of a non-active segment are read from disk on first use, so opening a log with many
segments costs a ``stat`` per index, not a read (Kafka's lazy indexes, KAFKA-7283).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from array import array
from bisect import bisect_right
from itertools import pairwise
from typing import Final

from kafkacompat.storage import disk_io

OFFSET_ENTRY: Final = struct.Struct(">ii")  # relative offset, file position
TIME_ENTRY: Final = struct.Struct(">qi")  # timestamp, relative offset
_BIG_ENDIAN_HOST: Final = sys.byteorder == "big"


class CorruptIndexError(Exception):
    """An index file fails a sanity check; the caller rebuilds it from the log."""


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _int32_pairs(data: bytes) -> tuple[array[int], array[int]]:
    """Split big-endian (int32, int32) entries into two native arrays without a Python loop."""
    flat = array("i")
    flat.frombytes(data)
    if not _BIG_ENDIAN_HOST:
        flat.byteswap()
    return flat[0::2], flat[1::2]


class _IndexFile:
    """What both indexes share: the file, lazy loading, and writing pending entries on flush."""

    entry_size: int

    def __init__(self, path: str, base_offset: int, max_index_size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_size // self.entry_size)
        self._loaded = False
        self._persisted = 0  # entries already in the file; the rest are written on flush()
        self._synced = False  # the file holds exactly the persisted entries, fsync'd

    # -- subclass hooks ------------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def _decode(self, data: bytes) -> None:
        raise NotImplementedError

    def _encode(self, start: int) -> bytes:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------

    def quick_check(self) -> None:
        """The O(1) check run for every segment on open: a whole number of entries that fits."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            raise CorruptIndexError(f"{self.path} is missing") from None
        if size % self.entry_size:
            raise CorruptIndexError(
                f"{self.path} is {size} bytes, not a multiple of {self.entry_size}"
            )
        if size // self.entry_size > self.max_entries:
            raise CorruptIndexError(f"{self.path} holds more than {self.max_entries} entries")

    def load(self) -> None:
        """Read the entries from disk (if not yet read); CorruptIndexError if they make no sense."""
        if self._loaded:
            return
        data = _read_file(self.path)
        if len(data) % self.entry_size:
            raise CorruptIndexError(
                f"{self.path} is {len(data)} bytes, not a multiple of {self.entry_size}"
            )
        self._decode(data)
        self._loaded = True
        self._persisted = len(self)
        self._synced = bool(data)  # an empty or missing file is (re)created by the next flush

    def reset(self) -> None:
        """Forget every entry and empty the file; used before a rebuild from the log."""
        self._clear()
        self._loaded = True
        self._persisted = 0
        self._synced = False
        with open(self.path, "wb"):
            pass

    @property
    def is_full(self) -> bool:
        raise NotImplementedError

    def flush(self) -> None:
        """Write entries appended since the last flush, then fsync the file. Nothing at all
        when nothing changed: a periodic flush of every partition must not fsync idle ones."""
        if not self._loaded or (self._synced and self._persisted == len(self)):
            return
        pending = self._encode(self._persisted)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            view = memoryview(pending)
            try:
                while view:
                    view = view[disk_io.os_write(fd, view) :]
            except OSError:
                # A full disk: cut the torn entries off so the next flush appends them whole.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
            os.fsync(fd)
        finally:
            os.close(fd)
        self._persisted = len(self)
        self._synced = True

    def unload(self) -> None:
        """Drop the in-memory entries of a flushed, inactive segment; reread on next use."""
        if self._loaded and self._persisted == len(self):
            self._clear()
            self._loaded = False

    def rename_to(self, path: str) -> None:
        if os.path.exists(self.path):
            os.replace(self.path, path)
        self.path = path

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._clear()


class OffsetIndex(_IndexFile):
    """``.index``: (relative offset int32, position int32) big-endian, strictly increasing.

    An entry is added once every ``index.interval.bytes`` of log; it names a batch by its last
    offset and its file position, as Kafka's ``LogSegment.append`` does, so a lookup for offset
    ``o`` lands on a batch at or before the one holding ``o``.
    """

    entry_size = OFFSET_ENTRY.size

    def __init__(self, path: str, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._relative_offsets: array[int] = array("i")
        self._positions: array[int] = array("i")

    def __len__(self) -> int:
        return len(self._relative_offsets)

    @property
    def is_full(self) -> bool:
        # Asked before appends that add an entry; no Python-level __len__ on the way.
        if not self._loaded:
            self.load()
        return len(self._relative_offsets) >= self.max_entries

    def _decode(self, data: bytes) -> None:
        offsets, positions = _int32_pairs(data)
        for column in (offsets, positions):
            if any(a >= b for a, b in pairwise(column)):
                raise CorruptIndexError(f"{self.path} entries are not strictly increasing")
        if len(offsets) and (offsets[0] < 0 or positions[0] < 0):
            raise CorruptIndexError(f"{self.path} has a negative entry")
        self._relative_offsets, self._positions = offsets, positions

    def _encode(self, start: int) -> bytes:
        return b"".join(
            OFFSET_ENTRY.pack(self._relative_offsets[i], self._positions[i])
            for i in range(start, len(self._relative_offsets))
        )

    def _clear(self) -> None:
        self._relative_offsets = array("i")
        self._positions = array("i")

    def check_against_log(self, log_size: int) -> None:
        """Entries pointing at or past the log's end mean the index outlived a truncation."""
        self.load()
        if len(self._positions) and self._positions[-1] >= log_size:
            raise CorruptIndexError(
                f"{self.path} points at position {self._positions[-1]}, log is {log_size} bytes"
            )

    def append(self, offset: int, position: int) -> None:
        if not self._loaded:  # checked inline: this runs on the append path
            self.load()
        relative = offset - self.base_offset
        offsets, positions = self._relative_offsets, self._positions
        if offsets and (relative <= offsets[-1] or position <= positions[-1]):
            return  # never out of order; a duplicate hint adds nothing
        offsets.append(relative)
        positions.append(position)

    def lookup(self, target_offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry with offset <= target, else (base offset, 0)."""
        self.load()
        i = bisect_right(self._relative_offsets, target_offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._relative_offsets[i], self._positions[i]

    def floor_position(self, position: int) -> int:
        """The largest indexed position <= ``position`` (0 if none): where a scan may resume."""
        self.load()
        i = bisect_right(self._positions, position) - 1
        return self._positions[i] if i >= 0 else 0

    def last_entry(self) -> tuple[int, int]:
        self.load()
        if not len(self._relative_offsets):
            return self.base_offset, 0
        return self.base_offset + self._relative_offsets[-1], self._positions[-1]


class TimeIndex(_IndexFile):
    """``.timeindex``: (timestamp int64, relative offset int32); appended only when the
    segment's max timestamp grows, so both columns are non-decreasing and timestamps strictly
    increase."""

    entry_size = TIME_ENTRY.size

    def __init__(self, path: str, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._timestamps: array[int] = array("q")
        self._relative_offsets: array[int] = array("i")

    def __len__(self) -> int:
        return len(self._timestamps)

    @property
    def is_full(self) -> bool:
        if not self._loaded:
            self.load()
        return len(self._timestamps) >= self.max_entries

    def _decode(self, data: bytes) -> None:
        timestamps: array[int] = array("q")
        offsets: array[int] = array("i")
        for timestamp, relative in TIME_ENTRY.iter_unpack(data):
            if relative < 0 or (
                len(timestamps) and (timestamp <= timestamps[-1] or relative < offsets[-1])
            ):
                raise CorruptIndexError(f"{self.path} entries are not increasing")
            timestamps.append(timestamp)
            offsets.append(relative)
        self._timestamps, self._relative_offsets = timestamps, offsets

    def _encode(self, start: int) -> bytes:
        return b"".join(
            TIME_ENTRY.pack(self._timestamps[i], self._relative_offsets[i])
            for i in range(start, len(self._timestamps))
        )

    def _clear(self) -> None:
        self._timestamps = array("q")
        self._relative_offsets = array("i")

    def check_against_log(self, next_offset: int) -> None:
        """An entry naming an offset the log does not hold outlived a truncation."""
        self.load()
        if len(self._relative_offsets) and (
            self.base_offset + self._relative_offsets[-1] >= next_offset
        ):
            raise CorruptIndexError(f"{self.path} names an offset past the log end")

    def maybe_append(self, timestamp: int, offset: int) -> None:
        if not self._loaded:  # checked inline: this runs on the append path
            self.load()
        timestamps = self._timestamps
        if timestamps and timestamp <= timestamps[-1]:
            return
        timestamps.append(timestamp)
        self._relative_offsets.append(max(offset - self.base_offset, 0))

    def lookup(self, target_timestamp: int) -> int:
        """Offset of the last entry with timestamp <= target, else the base offset: every
        batch before it has a smaller max timestamp, so a scan for the target starts there."""
        self.load()
        i = bisect_right(self._timestamps, target_timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + self._relative_offsets[i]

    def last_entry(self) -> tuple[int, int] | None:
        """(timestamp, offset) of the newest entry: the segment's max timestamp on a clean open."""
        self.load()
        if not len(self._timestamps):
            return None
        return self._timestamps[-1], self.base_offset + self._relative_offsets[-1]
