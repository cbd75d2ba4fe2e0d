"""Log compaction for ``cleanup.policy=compact`` (Kafka's ``LogCleaner``, ``Cleaner`` and
``LogCleanerManager``), one log at a time.

Theory of operation, in Kafka's vocabulary.

*Which log, which range.* Each compacted log has a *first dirty offset*: where the previous
round stopped (``cleaner-offset-checkpoint`` in the data directory), or the log start offset.
Everything from the log start up to it is the *clean* part; from it up to the *first uncleanable
offset* (the active segment's base, the first segment younger than ``min.compaction.lag.ms``,
and, here, the recovery point: only fsync'd segments are rewritten) is the *cleanable* part,
rounded down to whole segments. The log whose dirty ratio, cleanable / (clean + cleanable), is
highest and above ``min.cleanable.dirty.ratio`` is cleaned next; ``max.compaction.lag.ms``
forces a log whose oldest dirty segment is too old.

*One round* (:func:`clean`, run in a worker thread on descriptors opened beforehand):

1. Build the *offset map*, key -> offset of its latest record, over the cleanable part. Its
   memory is bounded by ``log.cleaner.dedupe.buffer.size``; when it fills, the round ends
   there, and the next one goes on from that offset.
2. Group the segments from the log start up to where the map ends so that each group fits one
   segment (``segment.bytes``, and relative offsets that fit an int32).
3. Copy each group into one ``<base>.log.cleaned`` segment with its indexes, keeping a record
   only if no later record has its key, it has a key at all, and, for a tombstone (null
   value), its batch's *delete horizon* has not passed. Offsets never change: a batch keeps
   its base offset and last offset (the producer's sequence bookkeeping relies on the latter),
   its producer fields, leader epoch, codec and timestamp type. A batch that keeps every record
   is copied byte for byte. The first round that keeps a tombstone stamps its batch with a
   delete horizon, now + ``delete.retention.ms`` (KIP-534: attribute bit 6, the horizon in the
   base timestamp); a later round after that time drops it. A batch left with no records
   disappears, unless it is the last one of an idempotent producer: then its header stays
   (zero records), so the producer's next sequence number is still accepted after a restart.

*Swap* (:meth:`kafkacompat.storage.log.Log.replace_segments`, on the event loop): the cleaned
files are renamed ``.cleaned`` -> ``.swap``, the old segments are renamed for deferred deletion,
and the ``.swap`` files take the final names. A crash before the first rename leaves the old
segments; after it, loading the log completes the swap (see ``Log._load``). A fetch that
already read its bytes is unaffected: reads copy the bytes out before the loop runs anything
else, so the path that now names the cleaned file is never read for an older region.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, cast

import crc32c

from kafkacompat.records.batch import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_CODEC_MASK,
    CONTROL_FLAG_MASK,
    CRC_OFFSET,
    DEFAULT_MAX_UNCOMPRESSED_SIZE,
    DELETE_HORIZON_FLAG_MASK,
    FIELD_ATTRIBUTES,
    FIELD_BASE_OFFSET,
    FIELD_BASE_TIMESTAMP,
    FIELD_BATCH_LENGTH,
    FIELD_LAST_OFFSET_DELTA,
    FIELD_MAGIC,
    FIELD_MAX_TIMESTAMP,
    FIELD_PRODUCER_ID,
    FIELD_RECORDS_COUNT,
    LOG_OVERHEAD,
    RECORD_BATCH_HEADER,
    TIMESTAMP_TYPE_MASK,
)
from kafkacompat.records.compression import CompressionType, compress, decompress
from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.records.varint import read_varint, read_varlong, write_varint, write_varlong
from kafkacompat.storage.atomic_file import CorruptFileError
from kafkacompat.storage.checkpoint_file import (
    CLEANER_OFFSET_CHECKPOINT,
    read_checkpoint,
    write_checkpoint,
)
from kafkacompat.storage.index import OffsetIndex, TimeIndex
from kafkacompat.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    MAX_RELATIVE_OFFSET,
    NO_TIMESTAMP,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_file_name,
)

if TYPE_CHECKING:
    from kafkacompat.storage.log import Log

log = logging.getLogger(__name__)

CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"
LONG_MAX: Final = (1 << 63) - 1
# What one offset-map entry costs in a Python dict (slot, bytes object, int), beside the key's
# own bytes; the dedupe buffer's size is a memory budget, so the map counts in these units.
MAP_ENTRY_OVERHEAD: Final = 120
READ_CHUNK_BYTES: Final = 1 << 20
WRITE_BUFFER_BYTES: Final = 1 << 20


class CleanerSettings(Protocol):
    """The topic configs compaction obeys; ``kafkacompat.storage.config.LogConfig`` fits."""

    @property
    def compact(self) -> bool: ...
    @property
    def min_cleanable_dirty_ratio(self) -> float: ...
    @property
    def min_compaction_lag_ms(self) -> int: ...
    @property
    def max_compaction_lag_ms(self) -> int: ...
    @property
    def delete_retention_ms(self) -> int: ...
    @property
    def segment_bytes(self) -> int: ...
    @property
    def segment_index_bytes(self) -> int: ...
    @property
    def index_interval_bytes(self) -> int: ...


class CleaningAborted(Exception):
    """The round was cancelled (broker shutdown); nothing was swapped in."""


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
class LogToClean:
    """One log's cleanable range (Kafka's ``LogToClean``)."""

    log: Log
    first_dirty_offset: int
    first_uncleanable_offset: int
    segments: list[SegmentSnapshot]
    """Every segment below the first uncleanable offset, oldest first."""
    clean_bytes: int
    cleanable_bytes: int
    forced: bool = False
    """max.compaction.lag.ms has passed for the oldest dirty segment."""

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0

    def should_clean(self) -> bool:
        if self.cleanable_bytes <= 0:
            return False
        ratio = _settings(self.log).min_cleanable_dirty_ratio
        return self.forced or self.dirty_ratio > ratio

    def open_files(self) -> None:
        """Open every segment for the worker thread, on the loop: a descriptor survives the
        rename of a segment deleted while the round runs."""
        try:
            for snapshot in self.segments:
                snapshot.fd = os.open(snapshot.segment.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.close_files()
            raise

    def close_files(self) -> None:
        for snapshot in self.segments:
            if snapshot.fd is not None:
                os.close(snapshot.fd)
                snapshot.fd = None


def _settings(log: Log) -> CleanerSettings:
    """A compacted log's settings (a LogConfig) seen as the configs compaction reads."""
    return cast(CleanerSettings, log.settings)


def cleanable_range(log: Log, first_dirty_offset: int | None, now_ms: int) -> LogToClean | None:
    """The log's cleanable range, or None when it is not compacted or has one segment
    (Kafka's ``LogCleanerManager.cleanableOffsets`` and ``calculateCleanableBytes``)."""
    if not getattr(log.settings, "compact", False):
        return None
    settings = _settings(log)
    segments = log.segments
    if len(segments) < 2:
        return None
    start = log.log_start_offset
    if first_dirty_offset is None or not start <= first_dirty_offset <= log.log_end_offset:
        first_dirty_offset = start
    active_base = segments[-1].base_offset
    first_uncleanable = min(active_base, log.recovery_point, log.high_watermark)
    lag = settings.min_compaction_lag_ms
    inactive = segments[:-1]
    if lag > 0:
        for segment in inactive:
            if segment.next_offset > first_dirty_offset and segment.max_timestamp > now_ms - lag:
                first_uncleanable = min(first_uncleanable, segment.base_offset)
                break
    # Only whole segments: round down to the base of the segment holding the bound.
    bases = [segment.base_offset for segment in segments]
    holder = bisect.bisect_right(bases, first_uncleanable) - 1
    first_uncleanable = bases[holder] if holder >= 0 else start
    snapshots: list[SegmentSnapshot] = []
    clean_bytes = cleanable_bytes = 0
    forced = False
    max_lag = settings.max_compaction_lag_ms
    for segment in inactive:
        if segment.base_offset >= first_uncleanable:
            break
        first_timestamp = segment.rolling_base_ms
        snapshots.append(
            SegmentSnapshot(
                segment, segment.base_offset, segment.next_offset, segment.size, first_timestamp
            )
        )
        if segment.next_offset <= first_dirty_offset:
            clean_bytes += segment.size
        else:
            cleanable_bytes += segment.size
            if (
                max_lag < LONG_MAX
                and first_timestamp is not None
                and first_timestamp >= 0
                and first_timestamp < now_ms - max_lag
            ):
                forced = True
    if first_dirty_offset > first_uncleanable:
        first_dirty_offset = first_uncleanable
    return LogToClean(
        log, first_dirty_offset, first_uncleanable, snapshots, clean_bytes, cleanable_bytes, forced
    )


# -- reading batches and records ----------------------------------------------------------------

_HEADER = RECORD_BATCH_HEADER
_HEADER_SIZE: Final = RECORD_BATCH_HEADER.size
_BatchFields = tuple[int, ...]


def iter_file_batches(fd: int, size: int) -> Iterator[tuple[memoryview, _BatchFields]]:
    """Every whole batch of a segment file, as a view of a ~1 MiB read buffer (valid until the
    next iteration) and its unpacked header. The segment was validated when it was written or
    recovered; a torn tail ends the walk."""
    position = 0
    while position + _HEADER_SIZE <= size:
        chunk = os.pread(fd, min(max(READ_CHUNK_BYTES, _HEADER_SIZE), size - position), position)
        view = memoryview(chunk)
        offset = 0
        advanced = False
        while offset + _HEADER_SIZE <= len(view):
            fields = _HEADER.unpack_from(view, offset)
            batch_size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
            if fields[FIELD_MAGIC] != 2 or batch_size < _HEADER_SIZE:
                return
            if offset + batch_size > len(view):
                if offset == 0:  # one batch larger than the chunk: read it whole
                    if position + batch_size > size:
                        return
                    whole = memoryview(os.pread(fd, batch_size, position))
                    if len(whole) < batch_size:
                        return
                    yield whole, fields
                    position += batch_size
                    advanced = True
                break
            yield view[offset : offset + batch_size], fields
            offset += batch_size
            advanced = True
        position += offset
        if not advanced:
            return


def _payload(batch: memoryview, fields: _BatchFields) -> bytes | memoryview:
    codec = fields[FIELD_ATTRIBUTES] & COMPRESSION_CODEC_MASK
    section = batch[_HEADER_SIZE:]
    if codec == 0:
        return section
    return bytes(decompress(CompressionType(codec), section, DEFAULT_MAX_UNCOMPRESSED_SIZE))


class _RawRecord(NamedTuple):
    """A record located in its batch's records section, with just the fields compaction needs."""

    start: int
    end: int
    body: int
    """Where the offset delta starts (after length, attributes and timestamp delta)."""
    attributes: int
    timestamp_delta: int
    offset_delta: int
    key: bytes | None
    tombstone: bool


def scan_records(payload: bytes | memoryview, count: int) -> list[_RawRecord]:
    """Locate ``count`` records; InvalidRecordError if the section does not hold them.

    The cleaner's hot loop (every record, twice per round): one-byte varints, which most
    deltas and lengths are, are decoded inline; longer ones go through the varint module."""
    records: list[_RawRecord] = []
    append = records.append
    make = tuple.__new__
    data = payload if isinstance(payload, bytes) else bytes(payload)
    end = len(data)
    position = 0
    try:
        for _ in range(count):
            byte = data[position]
            if byte < 0x80:
                length, p = (byte >> 1) ^ -(byte & 1), position + 1
            else:
                length, p = read_varint(data, position, end)
            record_end = p + length
            if length <= 0 or record_end > end:
                raise InvalidRecordError(f"record length {length} is out of bounds")
            attributes = data[p]
            byte = data[p + 1]
            if byte < 0x80:
                timestamp_delta, p = (byte >> 1) ^ -(byte & 1), p + 2
            else:
                timestamp_delta, p = read_varlong(data, p + 1, record_end)
            body = p
            byte = data[p]
            if byte < 0x80:
                offset_delta, p = (byte >> 1) ^ -(byte & 1), p + 1
            else:
                offset_delta, p = read_varint(data, p, record_end)
            byte = data[p]
            if byte < 0x80:
                key_length, p = (byte >> 1) ^ -(byte & 1), p + 1
            else:
                key_length, p = read_varint(data, p, record_end)
            key: bytes | None = None
            if key_length >= 0:
                if p + key_length > record_end:
                    raise InvalidRecordError(f"key length {key_length} is out of bounds")
                key = data[p : p + key_length]
                p += key_length
            # A null value is the one-byte varint -1 (0x01); anything else is a value.
            tombstone = data[p] == 0x01
            append(
                make(
                    _RawRecord,
                    (
                        position,
                        record_end,
                        body,
                        attributes,
                        timestamp_delta,
                        offset_delta,
                        key,
                        tombstone,
                    ),
                )
            )
            position = record_end
    except IndexError:
        raise InvalidRecordError("a record runs past the end of its batch") from None
    return records


# -- the offset map ------------------------------------------------------------------------------


@dataclass(slots=True)
class OffsetMap:
    """Key -> offset of its latest record in the mapped range (Kafka's ``SkimpyOffsetMap``,
    with whole keys instead of MD5 digests, so a collision can never drop a record)."""

    budget_bytes: int
    latest: dict[bytes, int] = field(default_factory=dict)
    used_bytes: int = 0
    latest_offset: int = -1

    @property
    def full(self) -> bool:
        return self.used_bytes >= self.budget_bytes

    def put(self, key: bytes, offset: int) -> None:
        if key not in self.latest:
            self.used_bytes += len(key) + MAP_ENTRY_OVERHEAD
        self.latest[key] = offset


def build_offset_map(
    plan: LogToClean, budget_bytes: int, cancelled: threading.Event | None = None
) -> OffsetMap:
    """Map every keyed record of the cleanable range, batch by batch, until the map is full.
    ``latest_offset`` is the last offset covered: the round cleans up to it."""
    offset_map = OffsetMap(budget_bytes)
    start, end = plan.first_dirty_offset, plan.first_uncleanable_offset
    covered = start - 1
    for snapshot in plan.segments:
        if snapshot.next_offset <= start:
            continue
        if snapshot.base_offset >= end:
            break
        assert snapshot.fd is not None
        for batch, fields in iter_file_batches(snapshot.fd, snapshot.size):
            if cancelled is not None and cancelled.is_set():
                raise CleaningAborted
            base_offset = fields[FIELD_BASE_OFFSET]
            last_offset = base_offset + fields[FIELD_LAST_OFFSET_DELTA]
            if last_offset < start:
                continue
            if offset_map.full and covered >= start:
                offset_map.latest_offset = covered
                return offset_map
            if not fields[FIELD_ATTRIBUTES] & CONTROL_FLAG_MASK:
                try:
                    records = scan_records(_payload(batch, fields), fields[FIELD_RECORDS_COUNT])
                except (InvalidRecordError, ValueError) as exc:
                    log.warning("compaction skips a malformed batch at %d: %s", base_offset, exc)
                    records = []
                for record in records:
                    offset = base_offset + record.offset_delta
                    if record.key is not None and offset >= start:
                        offset_map.put(record.key, offset)
            covered = last_offset
    # Every segment below the first uncleanable offset is covered, gaps included.
    offset_map.latest_offset = end - 1
    return offset_map


# -- rewriting -------------------------------------------------------------------------------------


@dataclass(slots=True)
class CleanerStats:
    """What one round did, for its log line and for the benchmark."""

    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_retained: int = 0
    tombstones_removed: int = 0
    map_keys: int = 0


@dataclass(slots=True)
class CleanedSegment:
    """A group of old segments rewritten as one, waiting under ``.cleaned`` names."""

    replaces: list[SegmentSnapshot]
    base_offset: int
    size: int
    directory: str

    def path(self, suffix: str, state: str) -> str:
        return os.path.join(self.directory, segment_file_name(self.base_offset, suffix) + state)

    def discard(self) -> None:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            for state in (CLEANED_SUFFIX, SWAP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(suffix, state))


@dataclass(slots=True)
class CleanResult:
    log: Log
    end_offset: int
    """The next round's first dirty offset."""
    cleaned: list[CleanedSegment]
    stats: CleanerStats


def group_segments_by_size(
    segments: list[SegmentSnapshot], max_bytes: int, upper_bound: int
) -> list[list[SegmentSnapshot]]:
    """Consecutive segments whose bytes fit one segment and whose offsets fit its indexes
    (Kafka's ``groupSegmentsBySize``; the index sizes follow from the log's size here)."""
    groups: list[list[SegmentSnapshot]] = []
    i = 0
    while i < len(segments):
        group = [segments[i]]
        size = segments[i].size
        i += 1
        while i < len(segments):
            candidate = segments[i]
            last = (segments[i + 1].base_offset if i + 1 < len(segments) else upper_bound) - 1
            if size + candidate.size > max_bytes or (
                candidate.size and last - group[0].base_offset > MAX_RELATIVE_OFFSET
            ):
                break
            group.append(candidate)
            size += candidate.size
            i += 1
        groups.append(group)
    return groups


class _SegmentWriter:
    """Writes one cleaned segment and its indexes with the same bookkeeping as an append."""

    def __init__(self, cleaned: CleanedSegment, settings: CleanerSettings) -> None:
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
                view = view[self.file.write(view) :]
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
        self.cleaned.size = self.position

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.cleaned.discard()


def _empty_batch(batch: memoryview, fields: _BatchFields) -> bytes:
    """The header alone (Kafka's ``writeEmptyHeader``): zero records, no codec, the same
    offsets and producer fields, so the producer's last sequence survives the cleaning."""
    out = bytearray(batch[:_HEADER_SIZE])
    attributes = fields[FIELD_ATTRIBUTES] & ~COMPRESSION_CODEC_MASK & ~DELETE_HORIZON_FLAG_MASK
    header = list(fields)
    header[FIELD_BATCH_LENGTH] = _HEADER_SIZE - LOG_OVERHEAD
    header[FIELD_ATTRIBUTES] = attributes
    header[FIELD_BASE_TIMESTAMP] = NO_TIMESTAMP
    header[FIELD_RECORDS_COUNT] = 0
    _HEADER.pack_into(out, 0, *header)
    out[CRC_OFFSET : CRC_OFFSET + 4] = crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]).to_bytes(
        4, "big"
    )
    return bytes(out)


def _rebuilt_batch(
    fields: _BatchFields,
    payload: bytes | memoryview,
    retained: list[_RawRecord],
    delete_horizon_ms: int | None,
) -> tuple[bytes, int]:
    """A batch holding only ``retained`` (Kafka's ``buildRetainedRecordsInto``): the same base
    and last offset, producer fields, epoch, codec and timestamp type. Records keep their bytes
    unless a new delete horizon moves the base timestamp their deltas are relative to.
    Returns the batch and its max timestamp."""
    data = payload if isinstance(payload, bytes) else bytes(payload)
    attributes = fields[FIELD_ATTRIBUTES]
    base_timestamp = fields[FIELD_BASE_TIMESTAMP]
    records = bytearray()
    new_base = base_timestamp
    if delete_horizon_ms is not None:
        new_base = delete_horizon_ms
        attributes |= DELETE_HORIZON_FLAG_MASK
    if attributes & TIMESTAMP_TYPE_MASK:  # LogAppendTime: the batch's max timestamp rules
        max_timestamp = fields[FIELD_MAX_TIMESTAMP]
    else:
        max_timestamp = max(base_timestamp + r.timestamp_delta for r in retained)
    if new_base == base_timestamp:
        for record in retained:
            records += data[record.start : record.end]
    else:
        shift = base_timestamp - new_base
        for record in retained:
            body = bytearray()
            body.append(record.attributes)
            write_varlong(body, record.timestamp_delta + shift)
            body += data[record.body : record.end]
            write_varint(records, len(body))
            records += body
    codec = attributes & COMPRESSION_CODEC_MASK
    section = bytes(records) if codec == 0 else compress(CompressionType(codec), records)
    out = bytearray(_HEADER_SIZE + len(section))
    header = list(fields)
    header[FIELD_BATCH_LENGTH] = len(out) - LOG_OVERHEAD
    header[FIELD_ATTRIBUTES] = attributes
    header[FIELD_BASE_TIMESTAMP] = new_base
    header[FIELD_MAX_TIMESTAMP] = max_timestamp
    header[FIELD_RECORDS_COUNT] = len(retained)
    _HEADER.pack_into(out, 0, *header)
    out[_HEADER_SIZE:] = section
    out[CRC_OFFSET : CRC_OFFSET + 4] = crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]).to_bytes(
        4, "big"
    )
    return bytes(out), max_timestamp


def _clean_group(
    group: list[SegmentSnapshot],
    writer: _SegmentWriter,
    offset_map: OffsetMap,
    *,
    now_ms: int,
    delete_retention_ms: int,
    producer_last_offsets: Mapping[int, int] | None,
    stats: CleanerStats,
    cancelled: threading.Event | None,
) -> None:
    latest = offset_map.latest
    map_end = offset_map.latest_offset
    for snapshot in group:
        assert snapshot.fd is not None
        stats.bytes_read += snapshot.size
        for batch, fields in iter_file_batches(snapshot.fd, snapshot.size):
            if cancelled is not None and cancelled.is_set():
                raise CleaningAborted
            base_offset = fields[FIELD_BASE_OFFSET]
            last_offset = base_offset + fields[FIELD_LAST_OFFSET_DELTA]
            attributes = fields[FIELD_ATTRIBUTES]
            if attributes & CONTROL_FLAG_MASK or base_offset > map_end:
                # Markers stay (no transactions to clean up after); so does anything past the
                # map, which this round knows nothing about.
                writer.write(batch, last_offset, fields[FIELD_MAX_TIMESTAMP])
                continue
            count = fields[FIELD_RECORDS_COUNT]
            stats.records_read += count
            payload = _payload(batch, fields)
            try:
                records = scan_records(payload, count)
            except (InvalidRecordError, ValueError) as exc:
                log.warning("compaction keeps a malformed batch at %d: %s", base_offset, exc)
                writer.write(batch, last_offset, fields[FIELD_MAX_TIMESTAMP])
                continue
            horizon = (
                fields[FIELD_BASE_TIMESTAMP] if attributes & DELETE_HORIZON_FLAG_MASK else None
            )
            retained: list[_RawRecord] = []
            keeps_tombstone = False
            for record in records:
                offset = base_offset + record.offset_delta
                if offset > map_end:
                    retained.append(record)
                    keeps_tombstone |= record.tombstone
                    continue
                if record.key is None or latest.get(record.key, -1) > offset:
                    continue
                if record.tombstone:
                    if horizon is not None and now_ms >= horizon:
                        stats.tombstones_removed += 1
                        continue
                    keeps_tombstone = True
                retained.append(record)
            new_horizon = (
                now_ms + delete_retention_ms if keeps_tombstone and horizon is None else None
            )
            stats.records_retained += len(retained)
            if retained and len(retained) == count and new_horizon is None:
                writer.write(batch, last_offset, fields[FIELD_MAX_TIMESTAMP])
            elif retained:
                rebuilt, max_timestamp = _rebuilt_batch(fields, payload, retained, new_horizon)
                writer.write(rebuilt, last_offset, max_timestamp)
            elif fields[FIELD_PRODUCER_ID] >= 0 and (
                producer_last_offsets is None
                or producer_last_offsets.get(fields[FIELD_PRODUCER_ID]) == last_offset
            ):
                writer.write(_empty_batch(batch, fields), last_offset, fields[FIELD_MAX_TIMESTAMP])


def clean(
    plan: LogToClean,
    *,
    now_ms: int,
    map_budget_bytes: int,
    producer_last_offsets: Mapping[int, int] | None = None,
    cancelled: threading.Event | None = None,
) -> CleanResult:
    """One round over a planned log; runs in a worker thread on the plan's descriptors, closes
    them itself when done (the caller may stop waiting at shutdown while it still reads), and
    touches nothing the event loop uses. ``producer_last_offsets`` maps each active producer id
    to the last offset of its last batch (None: keep every emptied idempotent batch's header)."""
    try:
        return _clean(plan, now_ms, map_budget_bytes, producer_last_offsets, cancelled)
    finally:
        plan.close_files()


def _clean(
    plan: LogToClean,
    now_ms: int,
    map_budget_bytes: int,
    producer_last_offsets: Mapping[int, int] | None,
    cancelled: threading.Event | None,
) -> CleanResult:
    settings = _settings(plan.log)
    stats = CleanerStats()
    offset_map = build_offset_map(plan, map_budget_bytes, cancelled)
    stats.map_keys = len(offset_map.latest)
    end_offset = offset_map.latest_offset + 1
    to_clean = [s for s in plan.segments if s.base_offset < end_offset]
    cleaned: list[CleanedSegment] = []
    directory = plan.log.directory
    try:
        for group in group_segments_by_size(to_clean, settings.segment_bytes, end_offset):
            target = CleanedSegment(group, group[0].base_offset, 0, directory)
            writer = _SegmentWriter(target, settings)
            cleaned.append(target)
            try:
                _clean_group(
                    group,
                    writer,
                    offset_map,
                    now_ms=now_ms,
                    delete_retention_ms=settings.delete_retention_ms,
                    producer_last_offsets=producer_last_offsets,
                    stats=stats,
                    cancelled=cancelled,
                )
                writer.finish()
            except BaseException:
                writer.abandon()
                raise
            stats.bytes_written += target.size
    except BaseException:
        for target in cleaned:
            target.discard()
        raise
    return CleanResult(plan.log, end_offset, cleaned, stats)


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


# -- the manager ----------------------------------------------------------------------------------


class CleanerCheckpoint:
    """``cleaner-offset-checkpoint``: each compacted partition's first dirty offset, keyed by
    the log object as well, so a topic deleted and created again starts from its log start."""

    def __init__(self, data_dir: Path | None) -> None:
        self.path = None if data_dir is None else data_dir / CLEANER_OFFSET_CHECKPOINT
        self._on_disk: dict[tuple[str, int], int] = {}
        if self.path is not None:
            try:
                self._on_disk = read_checkpoint(self.path)
            except (CorruptFileError, ValueError) as exc:
                log.warning("ignoring %s: %s", self.path, exc)
        self._offsets: dict[tuple[str, int], tuple[Log, int]] = {}

    def first_dirty_offset(self, tp: tuple[str, int], partition_log: Log) -> int | None:
        known = self._offsets.get(tp)
        if known is not None:
            return known[1] if known[0] is partition_log else None
        on_disk = self._on_disk.pop(tp, None)
        if on_disk is not None:
            self._offsets[tp] = (partition_log, on_disk)
        return on_disk

    def update(
        self, tp: tuple[str, int], partition_log: Log, offset: int, live: set[tuple[str, int]]
    ) -> None:
        self._offsets[tp] = (partition_log, offset)
        for stale in [key for key in self._offsets if key not in live]:
            del self._offsets[stale]
        if self.path is not None:
            entries = {key: value for key, (_, value) in self._offsets.items()}
            entries.update({k: v for k, v in self._on_disk.items() if k in live})
            write_checkpoint(self.path, entries)


class LogCleanerManager:
    """Which log to clean next, and what follows a round (Kafka's ``LogCleanerManager``): the
    broker runs :func:`clean` in a worker thread between :meth:`grab_filthiest` and
    :meth:`swap_in`, both on its event loop."""

    def __init__(
        self, data_dir: Path | None, *, dedupe_buffer_size: int, load_factor: float = 0.9
    ) -> None:
        self.checkpoint = CleanerCheckpoint(data_dir)
        self.map_budget_bytes = max(int(dedupe_buffer_size * load_factor), 1)
        self.cancelled = threading.Event()
        """Set at shutdown: a running round stops at its next batch."""
        self.rounds = 0
        self.last_stats: CleanerStats | None = None

    def grab_filthiest(
        self, logs: Iterable[tuple[tuple[str, int], object]], now_ms: int
    ) -> tuple[tuple[str, int], LogToClean] | None:
        """The compacted log most in need of cleaning, if any: forced ones first (max
        compaction lag), then the highest dirty ratio above min.cleanable.dirty.ratio."""
        from kafkacompat.storage.log import Log

        best: tuple[tuple[str, int], LogToClean] | None = None
        for tp, partition_log in logs:
            if not isinstance(partition_log, Log) or not getattr(
                partition_log.settings, "compact", False
            ):
                continue
            plan = cleanable_range(
                partition_log, self.checkpoint.first_dirty_offset(tp, partition_log), now_ms
            )
            if plan is None or not plan.should_clean():
                continue
            if best is None or (plan.forced, plan.dirty_ratio) > (
                best[1].forced,
                best[1].dirty_ratio,
            ):
                best = (tp, plan)
        return best

    def swap_in(
        self, tp: tuple[str, int], result: CleanResult, now_ms: int, live: set[tuple[str, int]]
    ) -> bool:
        """Swap every cleaned segment in and move the first dirty offset; False (and the rest
        discarded, the checkpoint unchanged) as soon as one cannot be."""
        for i, cleaned in enumerate(result.cleaned):
            if not result.log.replace_segments(cleaned, now_ms):
                for rest in result.cleaned[i + 1 :]:
                    rest.discard()
                return False
        self.checkpoint.update(tp, result.log, result.end_offset, live)
        self.rounds += 1
        self.last_stats = result.stats
        return True


__all__ = [
    "CLEANED_SUFFIX",
    "SWAP_SUFFIX",
    "CleanResult",
    "CleanedSegment",
    "CleanerCheckpoint",
    "CleanerStats",
    "CleaningAborted",
    "LogCleanerManager",
    "LogToClean",
    "OffsetMap",
    "build_offset_map",
    "clean",
    "cleanable_range",
    "group_segments_by_size",
    "iter_file_batches",
    "scan_records",
    "swap_file_next_offset",
]
