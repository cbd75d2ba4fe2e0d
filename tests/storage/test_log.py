"""The disk log: append/read round trips across rolls, index lookups, ranges, time, retention."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest
from kafka.record import MemoryRecords

from kafkacompat.records import (
    CorruptRecordError,
    InvalidRecordError,
    RecordBatchBuilder,
    RecordTooLargeError,
    TimestampType,
    iter_batches,
)
from kafkacompat.records.batch import check_client_batches
from kafkacompat.storage.base import FileRegion, OffsetOutOfRangeError, TimestampOffset
from kafkacompat.storage.log import Log
from kafkacompat.storage.segment import BatchHeader, LogSegment

from .log_helpers import make_batch, random_blob, read_all_values, region_bytes, settings

NOW = 1_700_000_000_000


def _fill(log: Log, rng: random.Random, blobs: int) -> list[tuple[int, bytes]]:
    expected: list[tuple[int, bytes]] = []
    for tag in range(blobs):
        blob, values = random_blob(rng, tag)
        info = log.append(blob, leader_epoch=3, now_ms=NOW)
        assert info.base_offset == len(expected)
        assert info.last_offset == len(expected) + len(values) - 1
        expected += list(enumerate(values, start=len(expected)))
    return expected


def _linear_find(segment: LogSegment, offset: int) -> BatchHeader | None:
    position = 0
    with open(segment.log_path, "rb") as f:
        data = f.read()
    for batch in iter_batches(data):
        if batch.last_offset >= offset:
            return BatchHeader(
                position,
                batch.base_offset,
                batch.last_offset,
                batch.size_in_bytes,
                batch.max_timestamp,
            )
        position += batch.size_in_bytes
    return None


def test_round_trip_across_many_rolls(tmp_path: Path) -> None:
    rng = random.Random(7)
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    expected = _fill(log, rng, 150)
    assert len(log.segments) > 10
    assert log.log_end_offset == log.high_watermark == len(expected)
    assert read_all_values(log) == expected
    assert read_all_values(log, max_bytes=1) == expected  # one batch per read
    # Segment files are named by their 20-digit base offset; beside them, the epoch checkpoint.
    names = sorted(os.listdir(tmp_path / "t-0"))
    assert names[0] == "00000000000000000000.index"
    assert names[-1] == "leader-epoch-checkpoint"
    assert all(len(n.split(".")[0]) == 20 for n in names[:-1])
    log.close()
    reopened = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    assert reopened.log_end_offset == len(expected)
    assert read_all_values(reopened, max_bytes=700) == expected
    next_batch = bytearray(make_batch([b"next"]))
    assert reopened.append(next_batch, leader_epoch=3, now_ms=NOW).base_offset == len(expected)


def test_reads_are_whole_batches_within_max_bytes(tmp_path: Path) -> None:
    rng = random.Random(11)
    log = Log(str(tmp_path / "t-0"), settings(segment_bytes=20_000), now_ms=NOW)
    expected = _fill(log, rng, 120)
    for _ in range(400):
        offset = rng.randrange(log.log_end_offset)
        max_bytes = rng.choice([0, 1, 100, 500, 2000, 10_000, 1 << 20])
        data = region_bytes(log, offset, max_bytes)
        batches = list(iter_batches(data))  # whole batches or this raises
        assert batches[0].base_offset <= offset <= batches[0].last_offset
        assert len(batches) == 1 or len(data) <= max_bytes
        assert all(b.partition_leader_epoch == 3 for b in batches)
        for a, b in itertools.pairwise(batches):
            assert b.base_offset == a.next_offset
        # Within one segment, a read stops only where the next batch would not fit.
        segment_end = next(
            s.next_offset for s in log.segments if s.base_offset <= offset < s.next_offset
        )
        if batches[-1].next_offset < segment_end:
            following = region_bytes(log, batches[-1].next_offset, 1)
            assert len(data) + len(following) > max(max_bytes, len(data))
    assert len(expected) == log.log_end_offset


def test_index_lookup_agrees_with_linear_scan(tmp_path: Path) -> None:
    log = Log(
        str(tmp_path / "t-0"), settings(segment_bytes=30_000, index_interval_bytes=100), now_ms=NOW
    )
    _fill(log, random.Random(3), 80)
    for segment in log.segments:
        assert len(segment.offset_index) > 3
        for offset in range(segment.base_offset, segment.next_offset):
            assert segment.find_batch(offset) == _linear_find(segment, offset)


def test_segment_files_parse_with_kafka_python(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    expected = _fill(log, random.Random(5), 60)
    log.close()
    seen: list[tuple[int, bytes]] = []
    for segment in log.segments:
        with open(segment.log_path, "rb") as f:
            records = MemoryRecords(f.read())
        while records.has_next():
            batch = records.next_batch()
            assert batch.validate_crc()
            seen += [(r.offset, r.value) for r in batch]
    assert seen == expected


def test_offset_out_of_range(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    empty = log.read(0, 100)
    assert empty.records == b"" and empty.high_watermark == 0
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    log.append(bytearray(make_batch([b"a", b"b"])), leader_epoch=0, now_ms=NOW)
    assert log.read(2, 100).records == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    assert isinstance(log.read(1, 100).records, FileRegion)


def test_rejected_blobs_append_nothing(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(max_message_bytes=2000), now_ms=NOW)
    good = make_batch([b"ok"])
    bad_crc = bytearray(make_batch([b"x"]))
    bad_crc[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        log.append(bytearray(good) + bad_crc, leader_epoch=0, now_ms=NOW)
    with pytest.raises(RecordTooLargeError):
        log.append(bytearray(make_batch([b"y" * 3000])), leader_epoch=0, now_ms=NOW)
    control = RecordBatchBuilder(is_control=True, producer_id=1, producer_epoch=0)
    control.append(b"v", timestamp=1, key=b"\x00\x00\x00\x00")
    with pytest.raises(InvalidRecordError):
        log.append(bytearray(control.build()), leader_epoch=0, now_ms=NOW)
    with pytest.raises(InvalidRecordError):  # Kafka: INVALID_RECORD, no batch in the records
        log.append(bytearray(), leader_epoch=0, now_ms=NOW)
    assert log.log_end_offset == 0 and log.active_segment.size == 0
    # A read-only buffer is copied, not refused.
    assert log.append(memoryview(good), leader_epoch=0, now_ms=NOW).base_offset == 0


def test_log_append_time_stamps_and_keeps_crc_valid(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(message_timestamp_type="LogAppendTime"), now_ms=NOW)
    info = log.append(
        bytearray(make_batch([b"a", b"b"], timestamp=5)), leader_epoch=1, now_ms=NOW + 9
    )
    assert info.log_append_time == NOW + 9 and info.max_timestamp == NOW + 9
    (batch,) = iter_batches(region_bytes(log, 0, 1000))  # verifies the CRC
    assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in batch.iter_records()] == [NOW + 9, NOW + 9]
    create = Log(str(tmp_path / "t-1"), settings(), now_ms=NOW)
    assert (
        create.append(bytearray(make_batch([b"a"], 5)), leader_epoch=1, now_ms=NOW).log_append_time
        == -1
    )


def test_time_lookups(tmp_path: Path) -> None:
    log = Log(
        str(tmp_path / "t-0"), settings(segment_bytes=2000, index_interval_bytes=64), now_ms=NOW
    )
    # Batch i holds 3 records stamped 100*i, 100*i+10, 100*i+20; batch 7 goes back in time.
    for i in range(40):
        base = 100 * i if i != 7 else 5
        log.append(bytearray(make_batch([b"v" * 50] * 3, base, 10)), leader_epoch=0, now_ms=NOW)
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == TimestampOffset(0, 0)
    assert log.offset_for_timestamp(1005) == TimestampOffset(1010, 31)
    assert log.offset_for_timestamp(1000) == TimestampOffset(1000, 30)
    assert log.offset_for_timestamp(3920) == TimestampOffset(3920, 119)
    assert log.offset_for_timestamp(3921) is None
    assert log.max_timestamp_offset() == TimestampOffset(3920, 119)
    everything = b"".join(Path(s.log_path).read_bytes() for s in log.segments)
    records = [r for b in iter_batches(everything) for r in b.iter_records()]
    for ts in range(0, 4000, 37):  # agrees with a linear scan of all records
        want = next(
            (TimestampOffset(r.timestamp, r.offset) for r in records if r.timestamp >= ts), None
        )
        assert log.offset_for_timestamp(ts) == want, ts
    log.delete_records_before(31)
    assert log.offset_for_timestamp(0) == TimestampOffset(1010, 31)
    log.close()
    reopened = Log(
        str(tmp_path / "t-0"),
        settings(segment_bytes=2000, index_interval_bytes=64),
        now_ms=NOW,
        log_start_offset=31,
    )
    assert reopened.offset_for_timestamp(1005) == TimestampOffset(1010, 31)
    assert reopened.max_timestamp_offset() == TimestampOffset(3920, 119)


def test_roll_by_segment_ms_and_full_index(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(segment_ms=1000), now_ms=NOW)
    log.append(bytearray(make_batch([b"a"])), leader_epoch=0, now_ms=NOW)
    log.append(bytearray(make_batch([b"b"])), leader_epoch=0, now_ms=NOW + 999)
    assert len(log.segments) == 1
    log.append(bytearray(make_batch([b"c"])), leader_epoch=0, now_ms=NOW + 1000)
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert log.recovery_point == 2

    small_index = Log(
        str(tmp_path / "t-1"),
        settings(segment_bytes=1 << 20, index_interval_bytes=1, segment_index_bytes=8 * 4),
        now_ms=NOW,
    )
    for _ in range(20):
        small_index.append(bytearray(make_batch([b"x" * 10])), leader_epoch=0, now_ms=NOW)
    assert len(small_index.segments) >= 4
    assert all(len(s.offset_index) <= 4 for s in small_index.segments)
    assert [v for _, v in read_all_values(small_index)] == [b"x" * 10] * 20


def test_delete_records_before(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    expected = _fill(log, random.Random(9), 60)
    bases = [s.base_offset for s in log.segments]
    cut = bases[3] + 1
    assert log.delete_records_before(cut) == cut
    assert log.log_start_offset == cut
    assert [s.base_offset for s in log.segments] == bases[3:]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(cut - 1, 100)
    assert read_all_values(log) == expected[cut:]
    assert log.delete_records_before(2) == cut  # never moves backwards
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(log.high_watermark + 1)
    assert log.delete_records_before(log.high_watermark) == log.log_end_offset
    assert len(log.segments) == 1  # the active segment always stays
    assert log.read(log.log_end_offset, 100).records == b""
    log.close()
    reopened = Log(
        str(tmp_path / "t-0"), settings(), now_ms=NOW, log_start_offset=log.log_start_offset
    )
    assert reopened.log_start_offset == reopened.log_end_offset == len(expected)


def test_retention_by_time(tmp_path: Path) -> None:
    day = 86_400_000
    log = Log(str(tmp_path / "t-0"), settings(retention_ms=7 * day, segment_bytes=1500), now_ms=NOW)
    for i in range(30):
        log.append(
            bytearray(make_batch([b"v" * 200], timestamp=i * day)), leader_epoch=0, now_ms=NOW
        )
    before = [(s.base_offset, s.max_timestamp) for s in log.segments]
    now = 20 * day
    deleted = log.apply_retention(now)
    kept = [(b, t) for b, t in before if now - t <= 7 * day]
    assert deleted == len(before) - len(kept)
    assert [(s.base_offset, s.max_timestamp) for s in log.segments] == kept
    assert log.log_start_offset == kept[0][0]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(log.log_start_offset - 1, 100)
    # Everything expired: the active segment still stays.
    log.apply_retention(100 * day)
    assert len(log.segments) == 1
    unlimited = Log(
        str(tmp_path / "t-1"), settings(retention_ms=-1, segment_bytes=1500), now_ms=NOW
    )
    for _ in range(10):
        unlimited.append(
            bytearray(make_batch([b"v" * 200], timestamp=0)), leader_epoch=0, now_ms=NOW
        )
    assert unlimited.apply_retention(100 * day) == 0


def test_retention_by_bytes(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(retention_ms=-1, retention_bytes=20_000), now_ms=NOW)
    _fill(log, random.Random(1), 60)
    sizes = [s.size for s in log.segments]
    # Kafka deletes the oldest segments while the log stays at or above retention.bytes.
    keep_from = 0
    excess = sum(sizes) - 20_000
    while keep_from < len(sizes) - 1 and excess - sizes[keep_from] >= 0:
        excess -= sizes[keep_from]
        keep_from += 1
    assert log.apply_retention(NOW) == keep_from > 0
    assert [s.size for s in log.segments] == sizes[keep_from:]
    assert log.size_in_bytes >= 20_000 > log.size_in_bytes - log.segments[0].size
    assert log.log_start_offset == log.segments[0].base_offset
    with pytest.raises(OffsetOutOfRangeError):
        log.read(log.log_start_offset - 1, 100)


def test_flush_messages_moves_recovery_point(tmp_path: Path) -> None:
    log = Log(str(tmp_path / "t-0"), settings(flush_messages=3), now_ms=NOW)
    log.append(bytearray(make_batch([b"a", b"b"])), leader_epoch=0, now_ms=NOW)
    assert log.recovery_point == 0
    log.append(bytearray(make_batch([b"c"])), leader_epoch=0, now_ms=NOW)
    assert log.recovery_point == 3
    timed = Log(str(tmp_path / "t-1"), settings(flush_ms=100), now_ms=NOW)
    timed.append(bytearray(make_batch([b"a"])), leader_epoch=0, now_ms=NOW + 50)
    assert timed.recovery_point == 0 and not timed.maybe_flush(NOW + 99)
    assert timed.maybe_flush(NOW + 100) and timed.recovery_point == 1


def test_close_handles_and_custom_opener(tmp_path: Path) -> None:
    opened: list[str] = []

    def opener(path: str, flags: int, mode: int) -> int:
        opened.append(os.path.basename(path))
        return os.open(path, flags, mode)

    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW, opener=opener)
    expected = _fill(log, random.Random(2), 40)
    log.close_handles()
    assert all(s._fd is None for s in log.segments[:-1])
    count = len(opened)
    assert read_all_values(log) == expected  # descriptors come back on demand
    assert len(opened) > count


def test_shared_fd_pool_bounds_descriptors(tmp_path: Path) -> None:
    from kafkacompat.storage.fdpool import FdPool

    pool = FdPool(capacity=3)
    logs = [Log(str(tmp_path / f"t-{p}"), settings(), now_ms=NOW, fd_pool=pool) for p in range(4)]
    rng = random.Random(4)
    expected: list[list[tuple[int, bytes]]] = [[] for _ in logs]
    for tag in range(120):
        p = rng.randrange(len(logs))
        blob, values = random_blob(rng, tag)
        logs[p].append(blob, leader_epoch=0, now_ms=NOW)
        expected[p] += list(enumerate(values, start=len(expected[p])))
        assert len(pool) <= 3
    for log, want in zip(logs, expected, strict=True):
        assert read_all_values(log, max_bytes=900) == want
        assert len(pool) <= 3
        log.close()
    reopened = Log(
        str(tmp_path / "t-0"), settings(), now_ms=NOW, fd_pool=pool, clean_shutdown=False
    )
    assert read_all_values(reopened) == expected[0]
    pool.close_all()


def _walker_verdict(blob: bytes) -> object:
    """What the records layer's walker and client checks say about a blob."""
    try:
        batches = list(iter_batches(blob))
        for batch in batches:
            batch.ensure_valid_from_client()
    except Exception as exc:  # compared by type and message
        return type(exc), str(exc)
    out, position = [], 0
    for batch in batches:
        out.append((position, batch.header_fields()))
        position += batch.size_in_bytes
    return out


def _one_pass_verdict(blob: bytes) -> object:
    try:
        return check_client_batches(bytearray(blob))
    except Exception as exc:
        return type(exc), str(exc)


def test_append_validation_agrees_with_the_batch_walker() -> None:
    # Log.append reads each header once (check_client_batches); it must refuse exactly what
    # iter_batches + ensure_valid_from_client refuse, with the same error, in the same order.
    rng = random.Random(99)
    control = RecordBatchBuilder(is_control=True, producer_id=1, producer_epoch=0)
    control.append(b"v", timestamp=1, key=b"\x00\x00\x00\x00")
    pieces = [make_batch([b"a" * rng.randint(0, 50)] * rng.randint(1, 4)) for _ in range(6)]
    pieces.append(control.build())
    verdicts = set()
    for _ in range(600):
        blob = bytearray(b"".join(rng.sample(pieces, rng.randint(0, 3))))
        mutation = rng.randrange(5)
        if blob and mutation == 1:
            blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        elif blob and mutation == 2:
            del blob[rng.randrange(len(blob)) :]
        elif mutation == 3:
            blob += bytes(rng.randrange(80))
        expected = _walker_verdict(bytes(blob))
        assert _one_pass_verdict(bytes(blob)) == expected, bytes(blob).hex()
        verdicts.add(expected[0] if isinstance(expected, tuple) else "ok")
    assert {"ok", CorruptRecordError, InvalidRecordError} <= verdicts
