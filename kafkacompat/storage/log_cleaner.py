"""Log compaction for ``cleanup.policy=compact``, one round over one log (Kafka's ``Cleaner``
in ``LogCleaner.scala``; which log is cleaned next is :mod:`kafkacompat.storage.log_cleaner_manager`).

The modules, as Kafka splits them: :mod:`~kafkacompat.storage.log_cleaner_manager` (which log,
which range, ``cleaner-offset-checkpoint``), this module (one round),
:mod:`~kafkacompat.storage.offset_map` (``OffsetMap``), :mod:`~kafkacompat.storage.batch_filter`
(rebuilding a batch with the records kept), :mod:`~kafkacompat.storage.file_records` (reading
segment files), :mod:`~kafkacompat.storage.cleaned_segment` (writing the cleaned segments and
swapping them in).

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
   its producer fields (transactional flag included), leader epoch, codec and timestamp type.
   A batch that keeps every record is copied byte for byte. The first round that keeps a
   tombstone stamps its batch with a delete horizon, now + ``delete.retention.ms`` (KIP-534:
   attribute bit 6, the horizon in the base timestamp); a later round after that time drops
   it. A batch left with no records disappears, unless it is the last one of an idempotent
   producer: then its header stays (zero records), so the producer's next sequence number is
   still accepted after a restart.

*Transactions* (Kafka's ``CleanedTransactionMetadata``, here
:mod:`~kafkacompat.storage.cleaned_transaction_metadata`). The cleanable range ends at the last
stable offset, so every transaction in it is complete. The aborted ones are read from the
``.txnindex`` files when the round is planned; both passes walk them along with the batches.
Data of an aborted transaction is never mapped (an aborted write must not shadow an older
committed value) and is always removed. A marker goes only once no batch of its transaction
is left, and only after ``delete.retention.ms`` more: the round that first finds it removable
stamps its batch with a delete horizon, as for tombstones, and a round after the horizon drops
it (so a consumer that read the data before the cleaning still meets the marker). Each cleaned
segment's ``.txnindex`` holds the aborted transactions whose markers it kept.

The swap that follows, on the event loop, is described in :mod:`kafkacompat.storage.cleaned_segment`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from kafkacompat.records.batch import (
    CONTROL_FLAG_MASK,
    DELETE_HORIZON_FLAG_MASK,
    FIELD_ATTRIBUTES,
    FIELD_BASE_OFFSET,
    FIELD_BASE_TIMESTAMP,
    FIELD_LAST_OFFSET_DELTA,
    FIELD_MAX_TIMESTAMP,
    FIELD_PRODUCER_EPOCH,
    FIELD_PRODUCER_ID,
    FIELD_RECORDS_COUNT,
    TRANSACTIONAL_FLAG_MASK,
)
from kafkacompat.records.control import ControlRecordType, decode_control_record_key
from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.storage.batch_filter import empty_batch, rebuilt_batch
from kafkacompat.storage.cleaned_segment import (
    CleanedSegment,
    CleanedSegmentWriter,
    SegmentSnapshot,
)
from kafkacompat.storage.cleaned_transaction_metadata import CleanedTransactionMetadata
from kafkacompat.storage.file_records import (
    BatchFields,
    RawRecord,
    batch_payload,
    iter_file_batches,
    scan_records,
)
from kafkacompat.storage.offset_map import OffsetMap
from kafkacompat.storage.segment import MAX_RELATIVE_OFFSET
from kafkacompat.storage.transaction_index import AbortedTxn, collect_aborted_txns

if TYPE_CHECKING:
    from kafkacompat.storage.log import Log

log = logging.getLogger(__name__)


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
    aborted_txns: list[AbortedTxn] | None = None
    """The aborted transactions overlapping the planned segments, read by :meth:`open_files`."""

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0

    def should_clean(self) -> bool:
        if self.cleanable_bytes <= 0:
            return False
        ratio = cleaner_settings(self.log).min_cleanable_dirty_ratio
        return self.forced or self.dirty_ratio > ratio

    def open_files(self) -> None:
        """Open every segment for the worker thread, and read the aborted transactions, on the
        loop: a descriptor survives the rename of a segment deleted while the round runs, and
        the transaction indexes are the loop's (a producer state load may rewrite them)."""
        if self.segments:
            # Every segment's index from the first planned one on: an aborted transaction's
            # entry is in the segment of its marker, which may lie past the cleanable range.
            self.aborted_txns = collect_aborted_txns(
                self.log.txn_indexes_from(self.segments[0].base_offset),
                self.segments[0].base_offset,
                self.first_uncleanable_offset,
            )
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


def cleaner_settings(log: Log) -> CleanerSettings:
    """A compacted log's settings (a LogConfig) seen as the configs compaction reads."""
    return cast(CleanerSettings, log.settings)


def build_offset_map(
    plan: LogToClean, budget_bytes: int, cancelled: threading.Event | None = None
) -> OffsetMap:
    """Map every keyed record of the cleanable range, batch by batch, until the map is full.
    ``latest_offset`` is the last offset covered: the round cleans up to it."""
    offset_map = OffsetMap(budget_bytes)
    start, end = plan.first_dirty_offset, plan.first_uncleanable_offset
    covered = start - 1
    # Only the transactions this walk can meet the markers of: one whose marker is below
    # the first dirty offset would otherwise stay ongoing and swallow its producer's later
    # committed batches (Kafka collects them over the dirty range alone).
    txns = CleanedTransactionMetadata(
        [txn for txn in plan.aborted_txns or () if txn.last_offset >= start]
    )
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
            attributes = fields[FIELD_ATTRIBUTES]
            if attributes & CONTROL_FLAG_MASK:
                txns.on_control_batch_read(
                    fields[FIELD_PRODUCER_ID], last_offset, _control_type(batch, fields)
                )
            elif attributes & TRANSACTIONAL_FLAG_MASK and txns.on_batch_read(
                fields[FIELD_PRODUCER_ID], last_offset, True
            ):
                pass  # aborted: never mapped, its records are removed
            else:
                try:
                    records = scan_records(
                        batch_payload(batch, fields), fields[FIELD_RECORDS_COUNT]
                    )
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


@dataclass(slots=True)
class CleanerStats:
    """What one round did, for its log line and for the benchmark."""

    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_retained: int = 0
    tombstones_removed: int = 0
    aborted_records_removed: int = 0
    markers_removed: int = 0
    map_keys: int = 0


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


def _control_type(batch: memoryview, fields: BatchFields) -> ControlRecordType | None:
    """The marker type of a control batch; None when an earlier round emptied it. A batch
    that cannot be read is UNKNOWN, which the cleaner always keeps."""
    if not fields[FIELD_RECORDS_COUNT]:
        return None
    try:
        records = scan_records(batch_payload(batch, fields), 1)
        return decode_control_record_key(records[0].key)
    except (InvalidRecordError, ValueError):
        return ControlRecordType.UNKNOWN


def _is_last_of_producer(
    fields: BatchFields, last_offset: int, producer_last_offsets: Mapping[int, int] | None
) -> bool:
    """Whether the batch holds its producer's last sequence, so its header must stay (Kafka's
    ``isBatchLastRecordOfProducer``); with the last offsets unknown, any producer's batch."""
    producer_id = fields[FIELD_PRODUCER_ID]
    return producer_id >= 0 and (
        producer_last_offsets is None or producer_last_offsets.get(producer_id) == last_offset
    )


def _is_last_marker_of_producer(
    fields: BatchFields,
    producer_last_offsets: Mapping[int, int] | None,
    producer_epochs: Mapping[int, int] | None,
) -> bool:
    """Whether a marker must keep its header: its producer has no data batch left in its
    state (an epoch bump clears them) and the marker is of its current epoch, which fences
    older ones after a restart (the third case of Kafka's ``isBatchLastRecordOfProducer``)."""
    producer_id = fields[FIELD_PRODUCER_ID]
    if producer_last_offsets is None:
        return producer_id >= 0
    epoch = None if producer_epochs is None else producer_epochs.get(producer_id)
    return epoch is not None and epoch == fields[FIELD_PRODUCER_EPOCH]


def _clean_group(
    group: list[SegmentSnapshot],
    writer: CleanedSegmentWriter,
    offset_map: OffsetMap,
    txns: CleanedTransactionMetadata,
    *,
    now_ms: int,
    delete_retention_ms: int,
    producer_last_offsets: Mapping[int, int] | None,
    producer_epochs: Mapping[int, int] | None,
    stats: CleanerStats,
    cancelled: threading.Event | None,
) -> None:
    latest = offset_map.latest
    map_end = offset_map.latest_offset
    txns.cleaned_index = writer.cleaned.aborted_txns
    for snapshot in group:
        assert snapshot.fd is not None
        stats.bytes_read += snapshot.size
        for batch, fields in iter_file_batches(snapshot.fd, snapshot.size):
            if cancelled is not None and cancelled.is_set():
                raise CleaningAborted
            base_offset = fields[FIELD_BASE_OFFSET]
            last_offset = base_offset + fields[FIELD_LAST_OFFSET_DELTA]
            attributes = fields[FIELD_ATTRIBUTES]
            if attributes & (CONTROL_FLAG_MASK | TRANSACTIONAL_FLAG_MASK):
                # Past the map too: the whole range is below the last stable offset, so
                # what the transaction metadata decides holds there as well (as in Kafka).
                if attributes & CONTROL_FLAG_MASK:
                    _clean_control_batch(
                        batch,
                        fields,
                        last_offset,
                        writer,
                        txns,
                        now_ms=now_ms,
                        delete_retention_ms=delete_retention_ms,
                        producer_last_offsets=producer_last_offsets,
                        producer_epochs=producer_epochs,
                        stats=stats,
                    )
                    continue
                if txns.on_batch_read(fields[FIELD_PRODUCER_ID], last_offset, True):
                    stats.records_read += fields[FIELD_RECORDS_COUNT]
                    stats.aborted_records_removed += fields[FIELD_RECORDS_COUNT]
                    if _is_last_of_producer(fields, last_offset, producer_last_offsets):
                        writer.write(
                            empty_batch(batch, fields), last_offset, fields[FIELD_MAX_TIMESTAMP]
                        )
                    continue
            if base_offset > map_end:
                # Anything past the map stays: this round knows nothing about its keys.
                writer.write(batch, last_offset, fields[FIELD_MAX_TIMESTAMP])
                continue
            count = fields[FIELD_RECORDS_COUNT]
            stats.records_read += count
            payload = batch_payload(batch, fields)
            try:
                records = scan_records(payload, count)
            except (InvalidRecordError, ValueError) as exc:
                log.warning("compaction keeps a malformed batch at %d: %s", base_offset, exc)
                writer.write(batch, last_offset, fields[FIELD_MAX_TIMESTAMP])
                continue
            horizon = (
                fields[FIELD_BASE_TIMESTAMP] if attributes & DELETE_HORIZON_FLAG_MASK else None
            )
            retained: list[RawRecord] = []
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
                rebuilt, max_timestamp = rebuilt_batch(fields, payload, retained, new_horizon)
                writer.write(rebuilt, last_offset, max_timestamp)
            elif _is_last_of_producer(fields, last_offset, producer_last_offsets):
                writer.write(empty_batch(batch, fields), last_offset, fields[FIELD_MAX_TIMESTAMP])


def _clean_control_batch(
    batch: memoryview,
    fields: BatchFields,
    last_offset: int,
    writer: CleanedSegmentWriter,
    txns: CleanedTransactionMetadata,
    *,
    now_ms: int,
    delete_retention_ms: int,
    producer_last_offsets: Mapping[int, int] | None,
    producer_epochs: Mapping[int, int] | None,
    stats: CleanerStats,
) -> None:
    """A marker (Kafka's ``checkBatchRetention`` for a control batch): kept while its
    transaction has data left; once it has none, stamped with a delete horizon, and dropped by
    a round after it (its header kept if it is its producer's last batch)."""
    control_type = _control_type(batch, fields)
    removable = txns.on_control_batch_read(fields[FIELD_PRODUCER_ID], last_offset, control_type)
    max_timestamp = fields[FIELD_MAX_TIMESTAMP]
    if not removable:
        writer.write(batch, last_offset, max_timestamp)
        return
    if not fields[FIELD_ATTRIBUTES] & DELETE_HORIZON_FLAG_MASK:
        if control_type is None:  # emptied already, and kept as its producer's last
            if _is_last_marker_of_producer(fields, producer_last_offsets, producer_epochs):
                writer.write(batch, last_offset, max_timestamp)
            return
        try:
            payload = batch_payload(batch, fields)
            records = scan_records(payload, fields[FIELD_RECORDS_COUNT])
        except (InvalidRecordError, ValueError) as exc:
            log.warning("compaction keeps a malformed marker at %d: %s", last_offset, exc)
            writer.write(batch, last_offset, max_timestamp)
            return
        rebuilt, max_timestamp = rebuilt_batch(
            fields, payload, records, now_ms + delete_retention_ms
        )
        writer.write(rebuilt, last_offset, max_timestamp)
        return
    if now_ms < fields[FIELD_BASE_TIMESTAMP]:  # the delete horizon has not passed
        writer.write(batch, last_offset, max_timestamp)
        return
    stats.markers_removed += 1
    if _is_last_marker_of_producer(fields, producer_last_offsets, producer_epochs):
        writer.write(empty_batch(batch, fields), last_offset, max_timestamp)


def clean(
    plan: LogToClean,
    *,
    now_ms: int,
    map_budget_bytes: int,
    producer_last_offsets: Mapping[int, int] | None = None,
    producer_epochs: Mapping[int, int] | None = None,
    cancelled: threading.Event | None = None,
) -> CleanResult:
    """One round over a planned log; runs in a worker thread on the plan's descriptors, closes
    them itself when done (the caller may stop waiting at shutdown while it still reads), and
    touches nothing the event loop uses. ``producer_last_offsets`` maps each active producer id
    to the last offset of its last batch (None: keep every emptied idempotent batch's header);
    ``producer_epochs`` each active producer with no data batch left to its epoch (its markers
    of that epoch keep their headers)."""
    try:
        return _clean(
            plan, now_ms, map_budget_bytes, producer_last_offsets, producer_epochs, cancelled
        )
    finally:
        plan.close_files()


def _clean(
    plan: LogToClean,
    now_ms: int,
    map_budget_bytes: int,
    producer_last_offsets: Mapping[int, int] | None,
    producer_epochs: Mapping[int, int] | None,
    cancelled: threading.Event | None,
) -> CleanResult:
    settings = cleaner_settings(plan.log)
    stats = CleanerStats()
    offset_map = build_offset_map(plan, map_budget_bytes, cancelled)
    stats.map_keys = len(offset_map.latest)
    end_offset = offset_map.latest_offset + 1
    to_clean = [s for s in plan.segments if s.base_offset < end_offset]
    cleaned: list[CleanedSegment] = []
    # One walk over every group, as in Kafka: a transaction may span groups.
    txns = CleanedTransactionMetadata(plan.aborted_txns)
    directory = plan.log.directory
    try:
        for group in group_segments_by_size(to_clean, settings.segment_bytes, end_offset):
            target = CleanedSegment(group, group[0].base_offset, 0, directory)
            writer = CleanedSegmentWriter(target, settings)
            cleaned.append(target)
            try:
                _clean_group(
                    group,
                    writer,
                    offset_map,
                    txns,
                    now_ms=now_ms,
                    delete_retention_ms=settings.delete_retention_ms,
                    producer_last_offsets=producer_last_offsets,
                    producer_epochs=producer_epochs,
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
