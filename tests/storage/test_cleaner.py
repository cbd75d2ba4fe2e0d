"""Log compaction (kafkacompat.storage.log_cleaner and its neighbours): rounds driven by hand on real disk logs.

Each round is what the broker's cleaner task does, minus the thread: plan with
:func:`cleanable_range`, :func:`clean` on the plan's descriptors, then
:meth:`Log.replace_segments` per cleaned segment. Time is always passed in.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from kafkacompat.records import CompressionType, RecordBatch, RecordBatchBuilder, iter_batches
from kafkacompat.records.batch import (
    ATTRIBUTES_OFFSET,
    DELETE_HORIZON_FLAG_MASK,
    LENGTH_OFFSET,
    LOG_OVERHEAD,
    RECORDS_OFFSET,
    TimestampType,
)
from kafkacompat.storage.base import AppendInfo
from kafkacompat.storage.checkpoint_file import CLEANER_OFFSET_CHECKPOINT, write_checkpoint
from kafkacompat.storage.cleaned_segment import CleanedSegment, SegmentSnapshot
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log import Log
from kafkacompat.storage.log_cleaner import (
    CleaningAborted,
    CleanResult,
    clean,
    group_segments_by_size,
)
from kafkacompat.storage.log_cleaner_manager import LogCleanerManager, cleanable_range
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.offset_map import MAP_ENTRY_OVERHEAD
from kafkacompat.storage.segment import MAX_RELATIVE_OFFSET, LogSegment

from .log_helpers import region_bytes

T0 = 1_000_000
"""Record timestamps and append times start here; fill() stamps offset i with T0 + i."""
LATER = T0 + 1_000_000
"""A time when every record written by these tests is old: the default cleaning time."""
BIG_MAP = 1 << 20
SEGMENT_BYTES = 1000

Row = tuple[int, bytes | None, bytes | None, int]
"""(offset, key, value, timestamp) of one record as a consumer reads it."""
MakeLog = Callable[..., Log]


def compact_config(props: Mapping[str, str] | None = None) -> LogConfig:
    return LogConfig.from_props(
        {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), **(props or {})}
    )


@pytest.fixture
def make_log(tmp_path: Path) -> Iterator[MakeLog]:
    opened: list[Log] = []

    def make(config: LogConfig, name: str = "topic-0", **kwargs: Any) -> Log:
        log = Log(str(tmp_path / name), config, now_ms=T0, **kwargs)
        opened.append(log)
        return log

    yield make
    # Only descriptors: a log whose files a test renamed by hand must not be flushed again.
    for log in opened:
        for segment in log.segments:
            segment.close_handles()


def append(
    log: Log,
    records: Sequence[tuple[bytes | None, bytes | None]],
    *,
    timestamp: int,
    leader_epoch: int = 0,
    compression: CompressionType = CompressionType.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> AppendInfo:
    """One batch of (key, value) records stamped timestamp, timestamp + 1, ...; appended at
    ``timestamp`` too, so segment ages agree with record times."""
    builder = RecordBatchBuilder(
        compression_type=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )
    for i, (key, value) in enumerate(records):
        builder.append(value, timestamp=timestamp + i, key=key)
    return log.append(bytearray(builder.build()), leader_epoch=leader_epoch, now_ms=timestamp)


def fill(log: Log, count: int, keys: int) -> None:
    """Single-record batches of equal size cycling through ``keys`` keys."""
    for _ in range(count):
        offset = log.log_end_offset
        append(log, [(b"k%02d" % (offset % keys), b"v%05d" % offset)], timestamp=T0 + offset)


def read_batches(log: Log) -> list[RecordBatch]:
    """Every batch from the log start, through Log.read as a fetch would (CRCs checked)."""
    batches: list[RecordBatch] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = region_bytes(log, offset, 1 << 20)
        assert data, f"empty read at {offset} below the log end {log.log_end_offset}"
        for batch in iter_batches(data):
            batches.append(batch)
            offset = batch.next_offset
    return batches


def rows(log: Log) -> list[Row]:
    return [
        (record.offset, record.key, record.value, record.timestamp)
        for batch in read_batches(log)
        for record in batch.iter_records()
    ]


def latest_values(records: list[Row]) -> dict[bytes | None, bytes | None]:
    return {key: value for _, key, value, _ in records}


def expected_after_round(before: list[Row], first_dirty: int, end: int) -> list[Row]:
    """Kafka's rule for a round whose offset map covers [first_dirty, end): below ``end`` a
    record goes if it has no key or the map holds a later offset for its key."""
    last_in_map = {
        key: offset for offset, key, _, _ in before if first_dirty <= offset < end and key
    }
    return [
        row
        for row in before
        if row[0] >= end or (row[1] is not None and last_in_map.get(row[1], -1) <= row[0])
    ]


def clean_only(
    log: Log,
    now_ms: int = LATER,
    *,
    first_dirty: int | None = None,
    budget: int = BIG_MAP,
    producer_last_offsets: Mapping[int, int] | None = None,
) -> CleanResult:
    plan = cleanable_range(log, first_dirty, now_ms)
    assert plan is not None
    plan.open_files()  # clean() closes them
    return clean(
        plan, now_ms=now_ms, map_budget_bytes=budget, producer_last_offsets=producer_last_offsets
    )


def run_round(
    log: Log,
    now_ms: int = LATER,
    *,
    first_dirty: int | None = None,
    budget: int = BIG_MAP,
    producer_last_offsets: Mapping[int, int] | None = None,
) -> CleanResult:
    result = clean_only(
        log,
        now_ms,
        first_dirty=first_dirty,
        budget=budget,
        producer_last_offsets=producer_last_offsets,
    )
    for cleaned in result.cleaned:
        assert log.replace_segments(cleaned, now_ms)
    return result


def leftovers(directory: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith((".cleaned", ".swap")))


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- one round: what survives ---------------------------------------------------------------------


def test_round_keeps_the_latest_value_of_every_key(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    fill(log, 200, keys=10)
    assert len(log.segments) > 10
    before = rows(log)
    bounds = (log.log_start_offset, log.log_end_offset, log.high_watermark)
    size = log.size_in_bytes
    active = log.active_segment
    active_bytes = file_bytes(active.log_path)

    result = run_round(log)

    after = rows(log)
    assert result.end_offset == active.base_offset  # everything inactive was cleaned
    assert after == expected_after_round(before, 0, result.end_offset)
    assert latest_values(after) == latest_values(before)
    assert set(after) <= set(before)  # same offsets, keys, values and timestamps
    offsets = [row[0] for row in after]
    assert offsets == sorted(set(offsets))
    cleaned_keys = [row[1] for row in after if row[0] < result.end_offset]
    assert len(cleaned_keys) == len(set(cleaned_keys))  # one record per key is left
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == bounds
    assert log.active_segment is active
    assert file_bytes(active.log_path) == active_bytes
    assert result.stats.map_keys == 10
    assert result.stats.records_retained == len(cleaned_keys)
    assert log.size_in_bytes < size // 4


def test_keys_absent_from_the_map_are_kept_even_when_repeated(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    for i in range(3):
        append(log, [(b"cold", b"c%d" % i)], timestamp=T0 + i)
    fill(log, 60, keys=5)
    first_dirty = log.segments[2].base_offset
    assert first_dirty > 3
    before = rows(log)

    # A checkpoint above every "cold" record: the map never holds that key, so the round
    # cannot know the older copies are superseded and must keep all of them.
    result = run_round(log, first_dirty=first_dirty)

    after = rows(log)
    assert [row[2] for row in after if row[1] == b"cold"] == [b"c0", b"c1", b"c2"]
    assert after == expected_after_round(before, first_dirty, result.end_offset)
    # Hot keys below the checkpoint are in the map, so their old copies did go.
    assert [row for row in after if row[0] < first_dirty and row[1] != b"cold"] == []
    # Records past the map's end (the active segment) are untouched.
    assert [r for r in after if r[0] >= result.end_offset] == [
        r for r in before if r[0] >= result.end_offset
    ]


def foreign_gzip(batch: bytes) -> bytearray:
    """The batch with its records gzipped by another encoder (stdlib, level 1), as a client's
    may be: re-encoding it here would give other bytes, copying it keeps these."""
    out = bytearray(batch[:RECORDS_OFFSET])
    out += gzip.compress(batch[RECORDS_OFFSET:], compresslevel=1, mtime=0)
    struct.pack_into(">i", out, LENGTH_OFFSET, len(out) - LOG_OVERHEAD)
    struct.pack_into(">h", out, ATTRIBUTES_OFFSET, CompressionType.GZIP)
    stamped = RecordBatch(out)
    stamped.set_max_timestamp(TimestampType.CREATE_TIME, stamped.max_timestamp)  # new CRC
    return out


def test_a_batch_that_keeps_every_record_is_copied_byte_for_byte(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    builder = RecordBatchBuilder()
    for i, key in enumerate((b"u1", b"u2", b"u3")):
        builder.append(b"value", timestamp=T0 + i, key=key)
    log.append(foreign_gzip(builder.build()), leader_epoch=4, now_ms=T0)
    fill(log, 40, keys=3)  # same segment as the batch above, mostly superseded
    original = bytes(read_batches(log)[0].buffer)
    first_segment_size = log.segments[0].size

    run_round(log)

    assert log.segments[0].size < first_segment_size  # the segment was rewritten...
    assert bytes(read_batches(log)[0].buffer) == original  # ...but not this batch
    assert file_bytes(log.segments[0].log_path).startswith(original)


@pytest.mark.parametrize(
    "codec", [CompressionType.NONE, CompressionType.GZIP, CompressionType.LZ4], ids=str
)
@pytest.mark.parametrize("timestamp_type", ["CreateTime", "LogAppendTime"])
def test_a_partly_filtered_batch_keeps_its_header(
    make_log: MakeLog, codec: CompressionType, timestamp_type: str
) -> None:
    log = make_log(compact_config({"message.timestamp.type": timestamp_type}))
    append(
        log,
        [(b"a", b"a1"), (b"b", b"b1"), (b"c", b"c1"), (b"d", b"d1")],
        timestamp=T0,
        leader_epoch=5,
        compression=codec,
        producer_id=42,
        producer_epoch=3,
        base_sequence=100,
    )
    # The last record goes too: the last offset must survive it (producer sequence checks).
    append(log, [(b"b", b"b2"), (b"d", b"d2")], timestamp=T0 + 10, leader_epoch=6)
    log.roll()
    append(log, [(b"z", b"z")], timestamp=T0 + 20, leader_epoch=6)
    original = read_batches(log)[0]
    original_rows = [(r.offset, r.key, r.value, r.timestamp) for r in original.iter_records()]

    run_round(log)

    batch = read_batches(log)[0]
    assert batch.is_valid()
    assert (batch.base_offset, batch.last_offset_delta, batch.records_count) == (0, 3, 2)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (42, 3, 100)
    assert batch.partition_leader_epoch == 5
    assert batch.compression_type == codec
    assert batch.timestamp_type == original.timestamp_type
    assert not batch.has_delete_horizon
    kept = [(r.offset, r.key, r.value, r.timestamp) for r in batch.iter_records()]
    assert kept == [original_rows[0], original_rows[2]]
    if timestamp_type == "LogAppendTime":
        assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
        assert batch.max_timestamp == original.max_timestamp == T0
    else:
        assert batch.max_timestamp == T0 + 2  # of the records kept, as Kafka's builder sets it


# -- tombstones ------------------------------------------------------------------------------------


def test_tombstones_get_a_delete_horizon_then_go_once_it_passes(make_log: MakeLog) -> None:
    log = make_log(compact_config({"delete.retention.ms": "1000"}))
    append(log, [(b"t1", b"old"), (b"t2", b"old")], timestamp=T0)
    append(log, [(b"t1", None), (b"x", b"x1"), (b"t2", None)], timestamp=T0 + 10)
    log.roll()
    append(log, [(b"z", b"z")], timestamp=T0 + 20)
    now = T0 + 5000

    first = run_round(log, now)

    tombstones = read_batches(log)[0]
    assert tombstones.base_offset == 2
    assert tombstones.attributes & DELETE_HORIZON_FLAG_MASK
    assert tombstones.base_timestamp == tombstones.delete_horizon_ms == now + 1000
    assert tombstones.is_valid()
    # Record timestamps are deltas from the base timestamp: moving it must not move them.
    assert [(r.offset, r.key, r.value, r.timestamp) for r in tombstones.iter_records()] == [
        (2, b"t1", None, T0 + 10),
        (3, b"x", b"x1", T0 + 11),
        (4, b"t2", None, T0 + 12),
    ]
    assert tombstones.max_timestamp == T0 + 12
    assert first.stats.tombstones_removed == 0
    stamped = bytes(tombstones.buffer)

    # Nothing is dirty now, so the cleaner would not pick this log: clean the plan directly.
    plan = cleanable_range(log, first.end_offset, now + 999)
    assert plan is not None and not plan.should_clean()
    second = run_round(log, now + 999, first_dirty=first.end_offset)
    assert second.stats.tombstones_removed == 0
    assert bytes(read_batches(log)[0].buffer) == stamped  # the horizon is set only once

    third = run_round(log, now + 1000, first_dirty=second.end_offset)
    assert third.stats.tombstones_removed == 2
    batch = read_batches(log)[0]
    assert batch.is_valid()
    assert (batch.base_offset, batch.last_offset, batch.records_count) == (2, 4, 1)
    assert rows(log) == [(3, b"x", b"x1", T0 + 11), (5, b"z", b"z", T0 + 20)]


def test_keyless_records_in_a_compacted_log_are_removed(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    append(log, [(None, b"n1"), (b"a", b"a1"), (None, b"n2")], timestamp=T0)
    append(log, [(None, b"n3")], timestamp=T0 + 10)
    log.roll()
    append(log, [(None, b"active")], timestamp=T0 + 20)

    run_round(log)

    # The active segment is never cleaned, keyless or not.
    assert rows(log) == [(1, b"a", b"a1", T0 + 1), (4, None, b"active", T0 + 20)]


# -- idempotent producers --------------------------------------------------------------------------


def idempotent_log(make_log: MakeLog) -> Log:
    log = make_log(compact_config())
    # Producer 7's first batch is superseded by its own second; producer 8's only batch is
    # superseded by a batch without a producer id.
    append(log, [(b"a", b"1")], timestamp=T0, producer_id=7, producer_epoch=4, base_sequence=0)
    append(log, [(b"a", b"2")], timestamp=T0 + 1, producer_id=7, producer_epoch=4, base_sequence=1)
    append(log, [(b"b", b"1")], timestamp=T0 + 2, producer_id=8, producer_epoch=4, base_sequence=0)
    append(log, [(b"b", b"2")], timestamp=T0 + 3)
    append(log, [(b"c", b"1")], timestamp=T0 + 4)
    append(log, [(b"c", b"2")], timestamp=T0 + 5)
    log.roll()
    append(log, [(b"z", b"z")], timestamp=T0 + 6)
    return log


@pytest.mark.parametrize(
    ("producer_last_offsets", "headers_at"),
    [({7: 1, 8: 2}, [2]), (None, [0, 2])],
    ids=["last-offsets-known", "last-offsets-unknown"],
)
def test_emptied_idempotent_batches_keep_a_header_only_when_last(
    make_log: MakeLog, producer_last_offsets: dict[int, int] | None, headers_at: list[int]
) -> None:
    log = idempotent_log(make_log)

    run_round(log, producer_last_offsets=producer_last_offsets)

    batches = read_batches(log)
    empty = [batch for batch in batches if batch.records_count == 0]
    assert [batch.base_offset for batch in empty] == headers_at
    for batch in empty:
        assert batch.is_valid()
        assert batch.last_offset == batch.base_offset
        assert batch.producer_epoch == 4 and batch.base_sequence == 0
        assert batch.producer_id == {0: 7, 2: 8}[batch.base_offset]
        assert list(batch.iter_records()) == []
    # Batch 4 had no producer id: emptied, it simply goes.
    assert [b.base_offset for b in batches if b.records_count] == [1, 3, 5, 6]


def test_a_stale_header_only_batch_goes_in_a_later_round(make_log: MakeLog) -> None:
    log = idempotent_log(make_log)
    first = run_round(log, producer_last_offsets=None)
    assert [b.base_offset for b in read_batches(log) if b.records_count == 0] == [0, 2]

    # Producer 7's last batch is at offset 1 now: the header at 0 protects nothing.
    run_round(log, first_dirty=first.end_offset, producer_last_offsets={7: 1, 8: 2})

    assert [b.base_offset for b in read_batches(log) if b.records_count == 0] == [2]


# -- planning: which log, which range ----------------------------------------------------------


def test_dirty_ratio_counts_clean_and_cleanable_bytes(make_log: MakeLog) -> None:
    config = compact_config()
    log = make_log(config)
    fill(log, 100, keys=10)
    segments = log.segments
    sizes = [segment.size for segment in segments[:-1]]
    first_dirty = segments[3].base_offset

    plan = cleanable_range(log, first_dirty, LATER)

    assert plan is not None
    assert plan.first_dirty_offset == first_dirty
    assert plan.first_uncleanable_offset == segments[-1].base_offset
    assert [s.base_offset for s in plan.segments] == [s.base_offset for s in segments[:-1]]
    assert (plan.clean_bytes, plan.cleanable_bytes) == (sum(sizes[:3]), sum(sizes[3:]))
    assert plan.dirty_ratio == sum(sizes[3:]) / sum(sizes)
    # Changed the way AlterConfigs changes it (the manager assigns log.settings).
    log.settings = replace(config, min_cleanable_dirty_ratio=plan.dirty_ratio)
    assert not plan.should_clean()  # equal to the minimum is not above it
    log.settings = replace(config, min_cleanable_dirty_ratio=plan.dirty_ratio - 0.01)
    assert plan.should_clean()

    # A checkpoint outside the log (a recreated topic's stale entry) counts from the start.
    for stale in (log.log_end_offset + 1, -5):
        plan = cleanable_range(log, stale, LATER)
        assert plan is not None
        assert (plan.first_dirty_offset, plan.clean_bytes) == (0, 0)


def test_max_compaction_lag_forces_a_log_below_the_dirty_ratio(make_log: MakeLog) -> None:
    config = {"min.cleanable.dirty.ratio": "0.9", "max.compaction.lag.ms": "5000"}
    log = make_log(compact_config(config))
    fill(log, 100, keys=10)
    first_dirty = log.segments[4].base_offset
    # fill() appends offset i at T0 + i: the oldest dirty segment began then.
    oldest_dirty = T0 + first_dirty

    on_time = cleanable_range(log, first_dirty, oldest_dirty + 5000)
    late = cleanable_range(log, first_dirty, oldest_dirty + 5001)

    assert on_time is not None and late is not None
    assert on_time.dirty_ratio == late.dirty_ratio < 0.9
    assert not on_time.forced and not on_time.should_clean()
    assert late.forced and late.should_clean()


def test_min_compaction_lag_keeps_young_segments_out(make_log: MakeLog) -> None:
    log = make_log(compact_config({"min.compaction.lag.ms": "50"}))
    fill(log, 100, keys=10)
    segments = log.segments
    now = segments[2].max_timestamp + 50  # segment 2 just old enough, segment 3 not

    plan = cleanable_range(log, None, now)
    younger = cleanable_range(log, None, now - 1)
    nothing = cleanable_range(log, None, T0)

    assert plan is not None and younger is not None and nothing is not None
    assert plan.first_uncleanable_offset == segments[3].base_offset
    assert [s.base_offset for s in plan.segments] == [s.base_offset for s in segments[:3]]
    assert younger.first_uncleanable_offset == segments[2].base_offset
    assert nothing.first_uncleanable_offset == 0 and not nothing.should_clean()
    result = run_round(log, now)
    assert result.end_offset == segments[3].base_offset


def test_logs_that_cannot_be_compacted_give_no_plan(make_log: MakeLog) -> None:
    plain = make_log(LogConfig.from_props({"segment.bytes": str(SEGMENT_BYTES)}), "plain-0")
    fill(plain, 100, keys=10)
    single = make_log(compact_config(), "single-0")
    fill(single, 5, keys=10)

    assert len(plain.segments) > 2 and cleanable_range(plain, None, LATER) is None
    assert len(single.segments) == 1 and cleanable_range(single, None, LATER) is None


def test_only_segments_below_the_recovery_point_are_planned(make_log: MakeLog) -> None:
    config = compact_config()
    log = make_log(config, deferred_roll_flush=True)
    fill(log, 100, keys=10)
    bases = [segment.base_offset for segment in log.segments]
    assert log.recovery_point == 0  # rolled, but no fsync reported yet

    plan = cleanable_range(log, None, LATER)
    assert plan is not None
    assert (plan.first_uncleanable_offset, plan.segments) == (0, [])
    assert not plan.should_clean()

    flushes = log.take_roll_flushes()
    for flush in flushes[:2]:
        if flush.fd is not None:
            os.fsync(flush.fd)
        log.complete_roll_flush(flush)
    for flush in flushes:
        if flush.fd is not None:
            os.close(flush.fd)
    assert log.recovery_point == bases[2]
    plan = cleanable_range(log, None, LATER)
    assert plan is not None
    assert plan.first_uncleanable_offset == bases[2]
    assert [s.base_offset for s in plan.segments] == bases[:2]

    log.flush()
    plan = cleanable_range(log, None, LATER)
    assert plan is not None and plan.first_uncleanable_offset == bases[-1]

    # A recovery point inside a segment rounds down to that segment's base: whole segments only.
    log.close()
    reopened = make_log(config, recovery_point=bases[4] + 1)
    plan = cleanable_range(reopened, None, LATER)
    assert plan is not None and plan.first_uncleanable_offset == bases[4]


# -- the offset map's budget ---------------------------------------------------------------------


def test_a_full_offset_map_ends_the_round_and_the_next_one_goes_on(make_log: MakeLog) -> None:
    reference = make_log(compact_config(), "reference-0")
    log = make_log(compact_config(), "limited-0")
    for target in (reference, log):
        fill(target, 200, keys=20)
    run_round(reference)
    before = rows(log)
    first_uncleanable = log.active_segment.base_offset
    budget = 8 * (MAP_ENTRY_OVERHEAD + 3)  # eight three-byte keys

    first = run_round(log, budget=budget)

    assert first.stats.map_keys <= 9
    assert 0 < first.end_offset < first_uncleanable
    after = rows(log)
    assert after == expected_after_round(before, 0, first.end_offset)
    assert [r for r in after if r[0] >= first.end_offset] == [
        r for r in before if r[0] >= first.end_offset
    ]

    rounds, first_dirty = 1, first.end_offset
    while first_dirty < first_uncleanable:
        result = run_round(log, first_dirty=first_dirty, budget=budget)
        assert result.end_offset > first_dirty
        rounds, first_dirty = rounds + 1, result.end_offset
    assert rounds > 2
    assert rows(log) == rows(reference)


# -- grouping segments ---------------------------------------------------------------------------


def snapshots(*spans: tuple[int, int]) -> list[SegmentSnapshot]:
    """(base offset, size) per segment: all that grouping looks at."""
    bases = [base for base, _ in spans]
    nexts = [*bases[1:], bases[-1] + 1]
    return [
        SegmentSnapshot(cast(LogSegment, None), base, next_offset, size, None)
        for (base, size), next_offset in zip(spans, nexts, strict=True)
    ]


def test_groups_fill_up_to_segment_bytes_and_never_past() -> None:
    segments = snapshots((0, 300), (10, 300), (20, 400), (30, 500), (40, 600), (50, 0), (60, 1000))

    groups = group_segments_by_size(segments, 1000, 70)

    assert [[s.size for s in group] for group in groups] == [
        [300, 300, 400],
        [500],
        [600, 0],
        [1000],
    ]
    assert [s for group in groups for s in group] == segments


def test_groups_keep_relative_offsets_within_an_int32() -> None:
    top = MAX_RELATIVE_OFFSET

    def sizes(*spans: tuple[int, int], upper_bound: int) -> list[list[int]]:
        groups = group_segments_by_size(snapshots(*spans), 1000, upper_bound)
        return [[s.size for s in group] for group in groups]

    assert sizes((0, 10), (5, 20), upper_bound=top + 1) == [[10, 20]]  # last offset == top
    assert sizes((0, 10), (5, 20), upper_bound=top + 2) == [[10], [20]]
    # An empty segment holds no offsets to index: Kafka merges it regardless.
    assert sizes((0, 10), (5, 0), upper_bound=top + 2) == [[10, 0]]


def test_a_second_round_merges_the_emptied_segments(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    fill(log, 200, keys=10)
    first = run_round(log)
    count = len(log.segments)
    assert sum(1 for segment in log.segments if segment.is_empty) > 5
    after_first = rows(log)

    second = run_round(log, first_dirty=first.end_offset)

    assert len(log.segments) < count
    assert len(second.cleaned) < len(first.cleaned)
    for cleaned in second.cleaned:
        assert sum(s.size for s in cleaned.replaces) <= SEGMENT_BYTES
    assert all(segment.size <= SEGMENT_BYTES for segment in log.segments)
    assert rows(log) == after_first


# -- restart and crashes ---------------------------------------------------------------------------


def mixed_log(make_log: MakeLog, config: LogConfig) -> Log:
    """Every kind of rewritten batch: emptied segments, a partly kept gzip batch, a tombstone
    with a horizon, an idempotent header; the first segment ends up empty."""
    log = make_log(config)
    fill(log, 30, keys=10)
    now = T0 + log.log_end_offset
    append(log, [(b"dead", b"alive")], timestamp=now)
    append(
        log,
        [(b"g1", b"1"), (b"k01", b"x"), (b"g2", b"2")],
        timestamp=now + 1,
        compression=CompressionType.GZIP,
    )
    append(log, [(b"dead", None)], timestamp=now + 2)
    append(
        log, [(b"k02", b"p")], timestamp=now + 3, producer_id=3, producer_epoch=0, base_sequence=0
    )
    fill(log, 40, keys=10)
    return log


@pytest.mark.parametrize("shutdown", ["clean", "unclean-from-zero", "unclean-from-recovery-point"])
def test_a_cleaned_log_reopens_with_the_same_records(make_log: MakeLog, shutdown: str) -> None:
    config = compact_config()
    log = mixed_log(make_log, config)
    before = rows(log)
    result = run_round(log)
    cleaned = rows(log)
    assert cleaned == expected_after_round(before, 0, result.end_offset)
    assert log.segments[0].is_empty and cleaned[0][0] > 0
    bounds = (log.log_start_offset, log.log_end_offset)
    assert bounds[0] == 0
    log.close()

    if shutdown == "clean":
        reopened = make_log(config, recovery_point=log.recovery_point)
    else:
        recovery_point = 0 if shutdown == "unclean-from-zero" else log.recovery_point
        reopened = make_log(config, recovery_point=recovery_point, clean_shutdown=False)

    assert rows(reopened) == cleaned
    assert (reopened.log_start_offset, reopened.log_end_offset) == bounds
    assert reopened.recovered_bytes_truncated == 0  # every rewritten batch passes its CRC
    assert reopened.segments[0].is_empty
    assert append(reopened, [(b"new", b"1")], timestamp=LATER).base_offset == bounds[1]


def rename_cleaned(cleaned: CleanedSegment, state: str) -> None:
    """What replace_segments does first, by hand: .cleaned -> ``state``, the log file last."""
    for suffix in (".index", ".timeindex", ".log"):
        os.replace(cleaned.path(suffix, ".cleaned"), cleaned.path(suffix, state))


def log_file_bytes(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, n))
        for n in os.listdir(directory)
        if n.endswith(".log")
    )


@pytest.mark.parametrize("crash", ["before-swap", "swap-named", "old-segments-deleted"])
def test_a_crash_during_the_swap_is_undone_or_completed(make_log: MakeLog, crash: str) -> None:
    config = compact_config()
    log = make_log(config)
    fill(log, 100, keys=10)
    before = rows(log)
    active_size = log.active_segment.size
    result = clean_only(log)
    log.close()
    if crash != "before-swap":
        for cleaned in result.cleaned:
            rename_cleaned(cleaned, ".swap")
    if crash == "old-segments-deleted":
        for cleaned in result.cleaned:
            for snapshot in cleaned.replaces:
                segment = snapshot.segment
                for path in (segment.log_path, segment.offset_index.path, segment.time_index.path):
                    if os.path.exists(path):
                        os.replace(path, path + ".deleted")

    # A crash is an unclean shutdown.
    reopened = make_log(config, recovery_point=log.recovery_point, clean_shutdown=False)

    directory = reopened.directory
    assert leftovers(directory) == []
    assert not [n for n in os.listdir(directory) if n.endswith(".deleted")]
    assert reopened.log_end_offset == before[-1][0] + 1
    if crash == "before-swap":
        assert rows(reopened) == before
        assert log_file_bytes(directory) == sum(s.size for s in log.segments)
    else:
        assert rows(reopened) == expected_after_round(before, 0, result.end_offset)
        # Only the cleaned segments and the active one are left on disk.
        assert log_file_bytes(directory) == sum(c.size for c in result.cleaned) + active_size


@pytest.mark.xfail(
    strict=True,
    reason="known limit, shared with Kafka's LogLoader: a .swap file's range ends after its "
    "last batch (swap_file_next_offset), so after a crash mid-swap a replaced segment whose "
    "records were all dropped and that sits past that batch survives; its superseded records "
    "come back (in offset order, nothing lost) until the next round cleans them again",
)
def test_a_completed_swap_removes_every_segment_it_replaced(make_log: MakeLog) -> None:
    config = compact_config({"segment.bytes": "300"})
    log = make_log(config)
    for value in (b"1", b"2"):
        append(log, [(b"a", value)], timestamp=T0)
        log.roll()
    append(log, [(b"a", b"3" * 200)], timestamp=T0)  # too big to share a group with the above
    log.roll()
    append(log, [(b"z", b"z")], timestamp=T0)
    before = rows(log)
    result = clean_only(log)
    assert [[s.base_offset for s in c.replaces] for c in result.cleaned] == [[0, 1], [2]]
    log.close()
    # The crash comes while the first group is swapped in: the second is still .cleaned.
    rename_cleaned(result.cleaned[0], ".swap")

    reopened = make_log(config, recovery_point=log.recovery_point, clean_shutdown=False)

    assert rows(reopened) == expected_after_round(before, 0, result.end_offset)


# -- the swap finds its segments gone ------------------------------------------------------------


def test_swap_is_refused_after_delete_records_removed_a_segment(make_log: MakeLog) -> None:
    log = make_log(compact_config())
    fill(log, 100, keys=10)
    before = rows(log)
    result = clean_only(log)
    log.delete_records_before(result.cleaned[1].base_offset)

    swapped = [log.replace_segments(cleaned, LATER) for cleaned in result.cleaned]

    assert swapped[0] is False and all(swapped[1:])
    assert leftovers(log.directory) == []
    start = log.log_start_offset
    expected = expected_after_round(before, 0, result.end_offset)
    assert rows(log) == [row for row in expected if row[0] >= start]


def test_swap_is_refused_after_retention_removed_a_segment(make_log: MakeLog) -> None:
    log = make_log(compact_config({"cleanup.policy": "compact,delete", "retention.ms": "10000"}))
    fill(log, 100, keys=10)
    result = clean_only(log)
    assert [s.base_offset for s in result.cleaned[0].replaces] == [0]
    now = log.segments[0].max_timestamp + 10_001  # only the first segment has expired

    assert log.apply_retention(now) == 1
    swapped = [log.replace_segments(cleaned, now) for cleaned in result.cleaned]

    assert swapped[0] is False and all(swapped[1:])
    assert leftovers(log.directory) == []
    assert log.log_start_offset == result.cleaned[1].base_offset


def test_retention_still_applies_once_compaction_emptied_the_first_segment(
    make_log: MakeLog,
) -> None:
    log = make_log(compact_config({"cleanup.policy": "compact,delete", "retention.ms": "10000"}))
    fill(log, 100, keys=10)
    run_round(log)
    assert log.segments[0].is_empty

    deleted = log.apply_retention(LATER)  # every record is past retention.ms by then

    assert deleted > 0
    assert log.log_start_offset == log.log_end_offset


# -- the manager and its checkpoint ---------------------------------------------------------------


def test_the_filthiest_compacted_log_is_cleaned_first(make_log: MakeLog, tmp_path: Path) -> None:
    dirty = make_log(compact_config(), "dirty-0")
    half = make_log(compact_config(), "half-0")
    plain = make_log(LogConfig.from_props({"segment.bytes": str(SEGMENT_BYTES)}), "plain-0")
    for partition_log in (dirty, half, plain):
        fill(partition_log, 100, keys=10)
    memory = MemoryLog(compact_config())
    half_checkpoint = half.segments[2].base_offset
    write_checkpoint(tmp_path / CLEANER_OFFSET_CHECKPOINT, {("half", 0): half_checkpoint})
    manager = LogCleanerManager(tmp_path, dedupe_buffer_size=BIG_MAP)
    logs: list[tuple[tuple[str, int], object]] = [
        (("plain", 0), plain),
        (("memory", 0), memory),
        (("half", 0), half),
        (("dirty", 0), dirty),
    ]
    live = {tp for tp, _ in logs}

    picked: list[tuple[tuple[str, int], int, float]] = []
    while (grabbed := manager.grab_filthiest(logs, LATER)) is not None:
        tp, plan = grabbed
        picked.append((tp, plan.first_dirty_offset, plan.dirty_ratio))
        plan.open_files()
        result = clean(plan, now_ms=LATER, map_budget_bytes=manager.map_budget_bytes)
        assert manager.swap_in(tp, result, LATER, live)
        assert len(picked) <= 2  # a log picked again after its round would loop forever

    # Never the plain log, though it holds as many duplicates as "dirty", nor the memory log.
    assert [(tp, first_dirty) for tp, first_dirty, _ in picked] == [
        (("dirty", 0), 0),
        (("half", 0), half_checkpoint),
    ]
    assert picked[0][2] == 1.0 > picked[1][2] > 0.5
    assert manager.rounds == 2


def test_swap_in_writes_the_checkpoint_a_new_manager_resumes_from(
    make_log: MakeLog, tmp_path: Path
) -> None:
    log = make_log(compact_config())
    fill(log, 100, keys=10)
    tp = ("compacted", 0)
    manager = LogCleanerManager(tmp_path, dedupe_buffer_size=BIG_MAP)
    grabbed = manager.grab_filthiest([(tp, log)], LATER)
    assert grabbed is not None
    plan = grabbed[1]
    plan.open_files()
    result = clean(plan, now_ms=LATER, map_budget_bytes=manager.map_budget_bytes)

    assert manager.swap_in(tp, result, LATER, {tp})

    checkpoint = tmp_path / "cleaner-offset-checkpoint"
    assert checkpoint.read_text() == f"0\n1\ncompacted 0 {result.end_offset}\n"
    fill(log, 100, keys=10)  # dirty enough again
    resumed = LogCleanerManager(tmp_path, dedupe_buffer_size=BIG_MAP)
    grabbed = resumed.grab_filthiest([(tp, log)], LATER)
    assert grabbed is not None
    assert grabbed[1].first_dirty_offset == result.end_offset
    assert grabbed[1].clean_bytes > 0


def test_a_checkpoint_of_a_deleted_topic_is_not_used_for_its_successor(
    make_log: MakeLog, tmp_path: Path
) -> None:
    tp = ("topic", 0)
    config = compact_config()
    old = make_log(config)
    fill(old, 100, keys=10)
    manager = LogCleanerManager(tmp_path, dedupe_buffer_size=BIG_MAP)
    grabbed = manager.grab_filthiest([(tp, old)], LATER)
    assert grabbed is not None
    grabbed[1].open_files()
    result = clean(grabbed[1], now_ms=LATER, map_budget_bytes=BIG_MAP)
    assert manager.swap_in(tp, result, LATER, {tp})
    old.close()
    shutil.rmtree(old.directory)
    recreated = make_log(config)
    fill(recreated, 100, keys=10)  # long enough for the old checkpoint to look plausible
    assert 0 < result.end_offset < recreated.log_end_offset

    grabbed = manager.grab_filthiest([(tp, recreated)], LATER)

    assert grabbed is not None
    assert (grabbed[1].first_dirty_offset, grabbed[1].clean_bytes) == (0, 0)
    assert manager.checkpoint.first_dirty_offset(tp, old) == result.end_offset


# -- cancellation ----------------------------------------------------------------------------------


class CancelAfter(threading.Event):
    """Reads as set from the n-th check on, noting the cleaned files that existed then."""

    def __init__(self, checks: int, directory: str) -> None:
        super().__init__()
        self.checks = checks
        self.directory = directory
        self.cleaned_files_at_cancel: list[str] | None = None

    def is_set(self) -> bool:
        self.checks -= 1
        if self.checks > 0:
            return False
        if self.cleaned_files_at_cancel is None:
            self.cleaned_files_at_cancel = leftovers(self.directory)
        return True


@pytest.mark.parametrize("when", ["before-the-round", "while-writing"])
def test_a_cancelled_round_leaves_nothing_behind(make_log: MakeLog, when: str) -> None:
    log = make_log(compact_config())
    fill(log, 100, keys=10)
    before = rows(log)
    plan = cleanable_range(log, None, LATER)
    assert plan is not None
    cancelled: threading.Event
    if when == "before-the-round":
        cancelled = threading.Event()
        cancelled.set()
    else:
        # One check per (single-record) batch: the map's pass over the range, the first
        # segment's batches, then a few of the second's, so one group is already written.
        checks = plan.first_uncleanable_offset + plan.segments[1].base_offset + 5
        cancelled = CancelAfter(checks, log.directory)
    plan.open_files()

    with pytest.raises(CleaningAborted):
        clean(plan, now_ms=LATER, map_budget_bytes=BIG_MAP, cancelled=cancelled)

    if isinstance(cancelled, CancelAfter):
        # The abort came with a finished group and one being written on disk.
        assert cancelled.cleaned_files_at_cancel is not None
        assert len({name[:20] for name in cancelled.cleaned_files_at_cancel}) == 2
    assert leftovers(log.directory) == []
    assert all(snapshot.fd is None for snapshot in plan.segments)
    assert rows(log) == before
