"""One log segment: ``<base offset>.log`` plus its ``.index`` and ``.timeindex`` (Kafka's
``LogSegment``).

Theory of operation. The ``.log`` file is RecordBatches end to end, exactly as appended; it is
the only source of truth. The segment keeps a little state beside it (size, next offset, max
timestamp so far, bytes since the last index entry) and two sparse indexes that find a batch by
offset or by timestamp quickly. Reads never load batches: they look up the index, then walk
batch *headers* with ``os.pread`` (61 bytes each) until they reach the wanted one, and return a
(position, length) pair the network layer can hand to ``sendfile``.

State that is cheap to derive but costs I/O (next offset, max timestamp) is derived lazily on a
clean open, from the last index entries plus a walk over at most ``index.interval.bytes`` of
headers, so opening a log costs nothing per segment beyond a ``stat``.

Recovery reads the file in ~1 MiB chunks into one reused buffer and checks the batches inside
each chunk from memory (CRC over ``memoryview`` slices); a batch cut by a chunk's end is read
again at the start of the next chunk, so each byte is read about once whatever the batch size.

The ``.log`` descriptor is opened on first use and can be closed any time with
:meth:`LogSegment.close_handles`; the opener is injectable so a descriptor pool can count it.

Deletion is either immediate (:meth:`LogSegment.delete`, used while loading) or deferred, as
Kafka's ``file.delete.delay.ms``: :meth:`LogSegment.rename_for_deletion` gives every file the
``.deleted`` suffix and the log unlinks them later, so a reader that already holds a region of
the segment can still finish reading it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import crc32c

from kafkacompat.records.batch import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_CODEC_MASK,
    CURRENT_MAGIC,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    RECORD_BATCH_HEADER,
    RecordBatch,
)
from kafkacompat.records.compression import CODECS
from kafkacompat.storage import disk_io
from kafkacompat.storage.base import DELETED_SUFFIX
from kafkacompat.storage.disk_io import LogDirFailure
from kafkacompat.storage.epoch import LeaderEpochCache
from kafkacompat.storage.index import CorruptIndexError, OffsetIndex, TimeIndex
from kafkacompat.storage.transaction_index import TXN_INDEX_SUFFIX, TransactionIndex

LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"
TIME_INDEX_SUFFIX: Final = ".timeindex"
NO_TIMESTAMP: Final = -1
# Relative offsets are int32 in both indexes, so a segment may span at most this many offsets.
MAX_RELATIVE_OFFSET: Final = (1 << 31) - 1

Opener = Callable[[str, int, int], int]
"""``os.open``'s shape: (path, flags, mode) -> fd.  Injected so a descriptor pool can count."""

# O_APPEND: every write lands at the end even if the size tracked here were stale.
LOG_FILE_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_APPEND
# Recovery's read size: large enough that a system call per chunk costs nothing next to the
# CRC of its bytes, small enough to stay in the CPU caches between the read and the CRC.
RECOVERY_CHUNK_BYTES: Final = 1 << 20

BatchSpan = tuple[int, int, int]
"""(size in bytes, last offset, max timestamp) of one stamped batch, as an append indexes it."""


class FdSource(Protocol):
    """A descriptor pool (``kafkacompat.storage.fdpool.FdPool`` fits): ``get`` lends an fd that
    stays valid until the next ``get``, so the segment asks again for every system call and
    never keeps or closes it itself."""

    def get(self, path: str, flags: int = ...) -> int: ...
    def release(self, path: str, flags: int | None = ...) -> None: ...


def segment_file_name(base_offset: int, suffix: str) -> str:
    """Kafka's naming: the base offset zero-padded to 20 digits, so ``ls`` sorts segments."""
    return f"{base_offset:020d}{suffix}"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The header fields a segment needs, read without touching the records."""

    position: int
    base_offset: int
    last_offset: int
    size: int
    max_timestamp: int


class LogSegment:
    def __init__(
        self,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        opener: Opener = os.open,
        fd_pool: FdSource | None = None,
    ) -> None:
        self.base_offset = base_offset
        self.directory = directory
        self.log_path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        self.offset_index = OffsetIndex(
            os.path.join(directory, segment_file_name(base_offset, INDEX_SUFFIX)),
            base_offset,
            max_index_size,
        )
        self.time_index = TimeIndex(
            os.path.join(directory, segment_file_name(base_offset, TIME_INDEX_SUFFIX)),
            base_offset,
            max_index_size,
        )
        self.txn_index = TransactionIndex(
            os.path.join(directory, segment_file_name(base_offset, TXN_INDEX_SUFFIX)), base_offset
        )
        self.index_interval_bytes = index_interval_bytes
        self._opener = opener
        self._fd_pool = fd_pool
        self._fd: int | None = None
        self.size = self._stat_size()
        # Derived lazily (see _load_tail): None until known.
        self._next_offset: int | None = None if self.size else base_offset
        self._max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = base_offset
        self._bytes_since_last_index_entry = 0
        # segment.ms counts from the first append here; after a reopen, from the first batch's
        # max timestamp, as Kafka's rollingBasedTimestamp does.
        self.rolling_base_ms: int | None = None
        self.dirty = False  # appended since the last fsync
        self._indexes_full: bool | None = None  # cached is_full of both indexes; None: unknown

    # -- files -----------------------------------------------------------------------------------

    def _stat_size(self) -> int:
        try:
            return os.stat(self.log_path).st_size
        except FileNotFoundError:
            return 0

    @property
    def fd(self) -> int:
        """The ``.log`` descriptor: borrowed from the pool per call, or opened once and kept
        until :meth:`close_handles`. Use it at once; never hold it across calls."""
        if self._fd_pool is not None:
            return self._fd_pool.get(self.log_path, LOG_FILE_FLAGS)
        if self._fd is None:
            self._fd = self._opener(self.log_path, LOG_FILE_FLAGS, 0o644)
        return self._fd

    def close_handles(self) -> None:
        """Close the ``.log`` descriptor; it is reopened on next use."""
        if self._fd_pool is not None:
            self._fd_pool.release(self.log_path)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _header_at(self, position: int) -> BatchHeader | None:
        """The batch header at ``position``, or None where no complete, sane batch starts."""
        data = disk_io.os_pread(self.fd, RECORD_BATCH_HEADER.size, position)
        if len(data) < RECORD_BATCH_HEADER.size:
            return None
        fields = RECORD_BATCH_HEADER.unpack(data)
        base_offset, batch_length, magic = fields[0], fields[1], fields[3]
        last_offset_delta, max_timestamp = fields[6], fields[8]
        size = batch_length + LOG_OVERHEAD
        if (
            magic != CURRENT_MAGIC
            or batch_length < MIN_BATCH_LENGTH
            or last_offset_delta < 0
            or position + size > self.size
        ):
            return None
        return BatchHeader(
            position, base_offset, base_offset + last_offset_delta, size, max_timestamp
        )

    def read_batch(self, position: int, size: int) -> RecordBatch:
        return RecordBatch(bytearray(disk_io.os_pread(self.fd, size, position)))

    # -- lazily derived state --------------------------------------------------------------------

    def _load_tail(self) -> None:
        """Next offset and max timestamp from the indexes' last entries plus a short header walk.

        Everything before the last offset index entry is summarised by the last time index
        entry (both are appended together); the walk covers what came after. Indexes that fail
        a check on the way are rebuilt from the log (they are hints, never checksummed).
        """
        if self._next_offset is not None:
            return
        try:
            self.offset_index.check_against_log(self.size)
            last_entry = self.time_index.last_entry()
        except CorruptIndexError:
            self._rescan(validate=False)
            return
        if last_entry is not None:
            self._max_timestamp, self._offset_of_max_timestamp = last_entry
        _, position = self.offset_index.last_entry()
        next_offset = self.base_offset
        self._bytes_since_last_index_entry = 0
        while position < self.size:
            header = self._header_at(position)
            if header is None:
                # A caller claimed a clean shutdown over a torn tail: never serve it, and
                # rebuild the indexes in case the last entry named the bytes just cut.
                self.truncate_bytes(position)
                self._rescan(validate=False)
                return
            self._track(header)
            next_offset = header.last_offset + 1
            position += header.size
        self._next_offset = max(next_offset, self.base_offset)
        try:
            self.time_index.check_against_log(self._next_offset)
        except CorruptIndexError:
            self._rescan(validate=False)
            return
        if self.rolling_base_ms is None and self.size:
            first = self._header_at(0)
            self.rolling_base_ms = first.max_timestamp if first else None

    def _track(self, header: BatchHeader) -> None:
        if header.max_timestamp > self._max_timestamp:
            self._max_timestamp = header.max_timestamp
            self._offset_of_max_timestamp = header.last_offset
        self._bytes_since_last_index_entry += header.size

    @property
    def next_offset(self) -> int:
        """One past the last offset in this segment (the LEO if it is the active one)."""
        self._load_tail()
        assert self._next_offset is not None
        return self._next_offset

    @property
    def max_timestamp(self) -> int:
        self._load_tail()
        return self._max_timestamp

    @property
    def offset_of_max_timestamp(self) -> int:
        """Last offset of the first batch carrying the max timestamp (Kafka's shallow offset)."""
        self._load_tail()
        return self._offset_of_max_timestamp

    @property
    def is_empty(self) -> bool:
        return self.size == 0

    # -- append ----------------------------------------------------------------------------------

    def append(self, blob: memoryview, batches: Sequence[BatchSpan], now_ms: int) -> None:
        """Write already-stamped batches with one ``write``, then index them (Kafka's order:
        the index must never point at bytes that are not there). ``batches`` describe ``blob``
        from its start, in order."""
        if self._next_offset is None:
            self._load_tail()
        position = self.size
        view = blob
        try:
            while view:  # regular files write fully unless the disk is full; loop to be sure
                written = disk_io.os_write(self.fd, view)
                view = view[written:]
        except OSError:
            # Nothing below has moved yet: cutting the file back leaves the segment as it was.
            if len(view) != len(blob):
                self._cut_back(position)
            raise
        # Kafka's LogSegment.append bookkeeping per batch, on locals: this runs for every append.
        max_timestamp = self._max_timestamp
        since_index = self._bytes_since_last_index_entry
        interval = self.index_interval_bytes
        last_offset = -1
        for size, last_offset, batch_max_timestamp in batches:
            if batch_max_timestamp > max_timestamp:
                max_timestamp = batch_max_timestamp
                self._offset_of_max_timestamp = last_offset
            if since_index > interval:
                self.offset_index.append(last_offset, position)
                self.time_index.maybe_append(max_timestamp, self._offset_of_max_timestamp)
                self._indexes_full = None
                since_index = 0
            since_index += size
            position += size
        self._max_timestamp = max_timestamp
        self._bytes_since_last_index_entry = since_index
        self.size = position
        self._next_offset = last_offset + 1
        if self.rolling_base_ms is None:
            self.rolling_base_ms = now_ms
        self.dirty = True

    def would_overflow_offsets(self, last_offset: int) -> bool:
        return last_offset - self.base_offset > MAX_RELATIVE_OFFSET

    @property
    def indexes_full(self) -> bool:
        # Asked before every append; the answer changes only when an entry is added.
        if self._indexes_full is None:
            self._indexes_full = self.offset_index.is_full or self.time_index.is_full
        return self._indexes_full

    def on_become_inactive(self) -> None:
        """Record the final max timestamp so a reopen reads it from the time index alone."""
        if self.size:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._indexes_full = None

    # -- read ------------------------------------------------------------------------------------

    def find_batch(self, offset: int) -> BatchHeader | None:
        """The first batch whose last offset is >= ``offset``: index lookup, then a header walk."""
        if offset >= self.next_offset:
            return None
        _, position = self.offset_index.lookup(offset)
        while position < self.size:
            header = self._header_at(position)
            if header is None:
                return None
            if header.last_offset >= offset:
                return header
            position += header.size
        return None

    def read(self, offset: int, max_bytes: int) -> tuple[int, int] | None:
        """(position, length) of whole batches from the one holding ``offset``: at most
        ``max_bytes`` unless the first batch alone is larger (KIP-74), None past the end."""
        first = self.find_batch(offset)
        if first is None:
            return None
        limit = first.position + max(max_bytes, first.size)
        if limit >= self.size:
            return first.position, self.size - first.position
        # Resume the walk at the last indexed batch before the limit, not at the first batch.
        end = max(self.offset_index.floor_position(limit), first.position + first.size)
        while True:
            header = self._header_at(end)
            if header is None or end + header.size > limit:
                return first.position, end - first.position
            end += header.size

    def find_batch_by_timestamp(self, timestamp: int, start_offset: int) -> BatchHeader | None:
        """The first batch with max timestamp >= ``timestamp`` holding offsets >= start_offset."""
        if self.max_timestamp < timestamp:
            return None
        offset = max(self.time_index.lookup(timestamp), start_offset)
        _, position = self.offset_index.lookup(offset)
        while position < self.size:
            header = self._header_at(position)
            if header is None:
                return None
            if header.max_timestamp >= timestamp and header.last_offset >= start_offset:
                return header
            position += header.size
        return None

    # -- recovery --------------------------------------------------------------------------------

    def check_indexes(self) -> None:
        """Sanity checks (Kafka's sanityCheck): raises CorruptIndexError."""
        self.offset_index.quick_check()
        self.time_index.quick_check()

    def deep_check_indexes(self) -> None:
        """Load both indexes and check them against the log; raises CorruptIndexError."""
        self.offset_index.check_against_log(self.size)
        self.time_index.check_against_log(self.next_offset)

    def rebuild_indexes(self) -> None:
        """Rebuild both indexes from a log trusted to be whole (a flushed segment)."""
        self._rescan(validate=False)

    def recover(self, epochs: LeaderEpochCache | None = None) -> int:
        """Revalidate every batch (frame, CRC, codec, increasing offsets), truncate at the
        first bad byte and rebuild both indexes. Returns how many bytes were cut.

        With ``epochs``, a batch whose leader epoch is newer than the cache's latest adds an
        entry, as Kafka's ``LogSegment.recover`` does."""
        return self._rescan(validate=True, epochs=epochs)

    def scan_leader_epochs(self, epochs: LeaderEpochCache) -> None:
        """Add this segment's epoch changes to ``epochs`` from the batch headers (a rebuild of
        a missing leader-epoch-checkpoint)."""
        latest = epochs.latest_epoch
        for _, _, base_offset, _, _, epoch in self._walk(validate=False):
            if base_offset < self.base_offset:
                break  # not this segment's batch: the rest cannot be trusted either
            if epoch > latest:
                epochs.assign(epoch, base_offset)
                latest = epoch

    def _walk(self, *, validate: bool) -> Iterator[tuple[int, int, int, int, int, int]]:
        """(position, size, base offset, last offset, max timestamp, leader epoch) of each
        batch from the start, ending before the first that is not whole and sane (and, with
        ``validate``, CRC-valid with a known codec). Offsets are the caller's to check.

        Validation reads ~1 MiB chunks and checks each batch in memory; without it only each
        header is read (61 bytes), so a walk over large batches costs one small read each.
        """
        header_size = RECORD_BATCH_HEADER.size
        unpack = RECORD_BATCH_HEADER.unpack_from
        chunk_bytes = RECOVERY_CHUNK_BYTES if validate else header_size
        end = self.size
        view = memoryview(bytearray(chunk_bytes))
        chunk_start = 0  # file position of buffer[0]
        filled = 0  # valid bytes in buffer
        position = 0
        while position + header_size <= end:
            offset = position - chunk_start
            if offset + header_size > filled:
                view, filled = self._fill(view, position, header_size, chunk_bytes)
                chunk_start, offset = position, 0
                if filled < header_size:
                    return
            (
                base_offset,
                batch_length,
                epoch,
                magic,
                crc,
                attributes,
                last_offset_delta,
                _,
                max_timestamp,
                _,
                _,
                _,
                _,
            ) = unpack(view, offset)
            size = batch_length + LOG_OVERHEAD
            if (
                magic != CURRENT_MAGIC
                or batch_length < MIN_BATCH_LENGTH
                or last_offset_delta < 0
                or position + size > end
            ):
                return
            if validate:
                if offset + size > filled:
                    view, filled = self._fill(view, position, size, chunk_bytes)
                    chunk_start, offset = position, 0
                    if filled < size:
                        return
                if (
                    crc32c.crc32c(view[offset + ATTRIBUTES_OFFSET : offset + size]) != crc
                    or attributes & COMPRESSION_CODEC_MASK not in CODECS
                ):
                    return
            yield (
                position,
                size,
                base_offset,
                base_offset + last_offset_delta,
                max_timestamp,
                epoch,
            )
            position += size

    def _fill(
        self, view: memoryview, position: int, need: int, chunk_bytes: int
    ) -> tuple[memoryview, int]:
        """Read from ``position`` into ``view`` (a new, larger buffer if ``need`` exceeds it):
        at least ``need`` bytes unless the file ends first. Returns (buffer, bytes read)."""
        if need > len(view):
            view = memoryview(bytearray(need))
        want = min(max(need, chunk_bytes), len(view), self.size - position)
        filled = 0
        while filled < want:
            read = disk_io.os_preadv(self.fd, [view[filled:want]], position + filled)
            if read == 0:
                break
            filled += read
        return view, filled

    def _rescan(self, *, validate: bool, epochs: LeaderEpochCache | None = None) -> int:
        self.offset_index.reset()
        self.time_index.reset()
        self._indexes_full = None
        offset_index, time_index = self.offset_index, self.time_index
        interval = self.index_interval_bytes
        max_timestamp = NO_TIMESTAMP
        offset_of_max_timestamp = self.base_offset
        since_index = 0
        expected = self.base_offset
        end = 0
        first_max_timestamp: int | None = None
        latest_epoch = epochs.latest_epoch if epochs is not None else 0
        for position, size, base_offset, last_offset, batch_max_timestamp, epoch in self._walk(
            validate=validate
        ):
            if base_offset < expected:
                break
            if first_max_timestamp is None:
                first_max_timestamp = batch_max_timestamp
            # The same bookkeeping as append, so a rebuilt index equals the original.
            if batch_max_timestamp > max_timestamp:
                max_timestamp = batch_max_timestamp
                offset_of_max_timestamp = last_offset
            if since_index > interval:
                offset_index.append(last_offset, position)
                time_index.maybe_append(max_timestamp, offset_of_max_timestamp)
                since_index = 0
            since_index += size
            if epochs is not None and epoch > latest_epoch:
                epochs.assign(epoch, base_offset)
                latest_epoch = epoch
            expected = last_offset + 1
            end = position + size
        self._max_timestamp = max_timestamp
        self._offset_of_max_timestamp = offset_of_max_timestamp
        self._bytes_since_last_index_entry = since_index
        truncated = self.size - end
        if truncated:
            self.truncate_bytes(end)
        self._next_offset = expected
        self.rolling_base_ms = first_max_timestamp
        return truncated

    def _cut_back(self, size: int) -> None:
        """Undo a partial append; if even that fails the file holds bytes this segment does not
        know of, and a later O_APPEND write would land after them: the log must go offline."""
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise LogDirFailure(
                exc.errno, f"cannot cut {self.log_path} back to {size} bytes: {exc.strerror}"
            ) from exc

    def truncate_bytes(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        self.size = size
        self.dirty = True

    # -- durability and lifecycle ----------------------------------------------------------------

    def flush_data(self) -> None:
        """fsync the ``.log`` file alone (a failure is a :class:`LogDirFailure`)."""
        if self.dirty:
            disk_io.fsync(self.fd)
            self.dirty = False

    def flush(self) -> None:
        """fsync the log, then persist and fsync the index entries (Kafka's LogSegment.flush)."""
        if self.dirty:
            disk_io.fsync(self.fd)
            self.dirty = False
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self) -> None:
        self.flush()
        self.close_handles()

    def delete(self) -> None:
        """Unlink the files now (while loading, when no reader can hold a region)."""
        self.close_handles()
        for path in (self.log_path,):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.offset_index.delete()
        self.time_index.delete()
        self.txn_index.delete()

    def rename_for_deletion(self) -> list[str]:
        """Kafka's first step of a deferred delete: every file gets the ``.deleted`` suffix
        (a reader holding the old path finds it there, see FileRegion), the segment forgets
        them, and the caller unlinks the returned paths after ``file.delete.delay.ms``."""
        # Release the pooled descriptor first: it is keyed by the path a new segment may reuse.
        self.close_handles()
        renamed = []
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, path + DELETED_SUFFIX)
                renamed.append(path + DELETED_SUFFIX)
        txn_index = self.txn_index.renamed(DELETED_SUFFIX)
        if txn_index is not None:
            renamed.append(txn_index)
        return renamed

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self.size})"


__all__ = [
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "BatchHeader",
    "CorruptIndexError",
    "FdSource",
    "LogSegment",
    "Opener",
    "segment_file_name",
]
