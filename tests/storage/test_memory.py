"""MemoryLog and NullLog behaviour (the disk Log's own suite lives in test_log*.py)."""

from __future__ import annotations

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import RecordBatch, RecordBatchBuilder, TimestampType, iter_batches
from kafkacompat.storage.base import OffsetOutOfRangeError, TimestampOffset
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.null import NullLog

NOW = 1_700_000_000_000


def batch(*timestamps: int, value: bytes = b"v" * 10) -> bytearray:
    builder = RecordBatchBuilder()
    for ts in timestamps:
        builder.append(value, timestamp=ts)
    return bytearray(builder.build())


def test_append_assigns_offsets_and_stamps_epoch() -> None:
    log = MemoryLog()
    first = log.append(batch(NOW, NOW + 1), leader_epoch=3, now_ms=NOW)
    assert (first.base_offset, first.last_offset, first.log_append_time) == (0, 1, -1)
    assert first.max_timestamp == NOW + 1
    second = log.append(batch(NOW) + batch(NOW, NOW, NOW), leader_epoch=4, now_ms=NOW)
    assert (second.base_offset, second.last_offset) == (2, 5)
    assert log.log_end_offset == log.high_watermark == 6
    stored = list(iter_batches(log.read(0, 1 << 20).records))  # type: ignore[arg-type]
    assert [(b.base_offset, b.partition_leader_epoch) for b in stored] == [(0, 3), (2, 4), (3, 4)]
    assert all(b.is_valid() for b in stored)


def test_log_append_time() -> None:
    log = MemoryLog(LogConfig.from_props({"message.timestamp.type": "LogAppendTime"}))
    info = log.append(batch(5, 6), leader_epoch=0, now_ms=NOW)
    assert info.log_append_time == NOW and info.max_timestamp == NOW
    (stored,) = iter_batches(log.read(0, 1000).records)  # type: ignore[arg-type]
    assert stored.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in stored.iter_records()] == [NOW, NOW]


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        (bytearray(b""), ErrorCode.INVALID_RECORD),
        (bytearray(b"\x00" * 70), ErrorCode.CORRUPT_MESSAGE),
    ],
)
def test_bad_input_is_refused(blob: bytearray, code: ErrorCode) -> None:
    log = MemoryLog()
    with pytest.raises(KafkaProtocolError) as info:
        log.append(blob, leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == code
    assert log.log_end_offset == 0


def test_refused_append_changes_nothing() -> None:
    log = MemoryLog()
    good = batch(NOW)
    bad = batch(NOW)
    bad[-1] ^= 0xFF  # CRC mismatch in the second batch
    blob = good + bad
    before = bytes(blob)
    with pytest.raises(KafkaProtocolError) as info:
        log.append(blob, leader_epoch=7, now_ms=NOW)
    assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE
    assert bytes(blob) == before and log.log_end_offset == 0


def test_max_message_bytes() -> None:
    log = MemoryLog(LogConfig.from_props({"max.message.bytes": "100"}))
    with pytest.raises(KafkaProtocolError) as info:
        log.append(batch(NOW, value=b"x" * 200), leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_read_kip74_and_batch_alignment() -> None:
    log = MemoryLog()
    sizes = []
    for i in range(5):
        b = batch(NOW, NOW, value=b"x" * (50 + i))
        sizes.append(len(b))
        log.append(b, leader_epoch=0, now_ms=NOW)
    assert len(log.read(0, 1)) == sizes[0], "KIP-74: one whole batch even over max_bytes"
    assert len(log.read(0, sizes[0] + sizes[1])) == sizes[0] + sizes[1]
    assert len(log.read(0, sizes[0] + sizes[1] - 1)) == sizes[0]
    mid = log.read(3, 1 << 20)  # offset 3 is inside the batch at 2
    assert RecordBatch(mid.records[: sizes[1]]).base_offset == 2  # type: ignore[index]
    at_end = log.read(10, 100)
    assert len(at_end) == 0 and at_end.high_watermark == 10
    for offset in (-1, 11):
        with pytest.raises(OffsetOutOfRangeError):
            log.read(offset, 100)


def test_time_lookups() -> None:
    log = MemoryLog()
    log.append(batch(100, 300, 200), leader_epoch=0, now_ms=NOW)
    log.append(batch(250, 400), leader_epoch=0, now_ms=NOW)
    log.append(batch(400), leader_epoch=0, now_ms=NOW)
    assert log.offset_for_timestamp(0) == TimestampOffset(100, 0)
    assert log.offset_for_timestamp(150) == TimestampOffset(300, 1)
    assert log.offset_for_timestamp(301) == TimestampOffset(400, 4)
    assert log.offset_for_timestamp(401) is None
    assert log.max_timestamp_offset() == TimestampOffset(400, 4)
    assert MemoryLog().max_timestamp_offset() is None


def test_retention_by_time_and_bytes() -> None:
    config = LogConfig.from_props({"retention.ms": "1000"})
    log = MemoryLog(config)
    for ts in (0, 500, 2000):
        log.append(batch(ts), leader_epoch=0, now_ms=ts)
    assert log.apply_retention(1400) == 1
    assert log.log_start_offset == 1
    assert log.apply_retention(1400) == 0
    assert log.apply_retention(10_000) == 2
    assert log.log_start_offset == log.log_end_offset == 3
    assert len(log.read(3, 100)) == 0

    size = len(batch(NOW))
    log = MemoryLog(LogConfig.from_props({"retention.bytes": str(2 * size), "retention.ms": "-1"}))
    for _ in range(5):
        log.append(batch(NOW), leader_epoch=0, now_ms=NOW)
    assert log.apply_retention(NOW) == 3
    assert log.log_start_offset == 3 and log.size_in_bytes == 2 * size

    compacted = MemoryLog(LogConfig.from_props({"cleanup.policy": "compact", "retention.ms": "1"}))
    compacted.append(batch(0), leader_epoch=0, now_ms=0)
    assert compacted.apply_retention(NOW) == 0


def test_delete_records_before() -> None:
    log = MemoryLog()
    log.append(batch(NOW, NOW, NOW), leader_epoch=0, now_ms=NOW)
    log.append(batch(NOW, NOW), leader_epoch=0, now_ms=NOW)
    assert log.delete_records_before(1) == 1
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)
    assert len(log.read(1, 1 << 20)) > 0  # the batch holding offset 1 still comes back whole
    assert log.offset_for_timestamp(0) == TimestampOffset(NOW, 1)
    assert log.delete_records_before(0) == 1, "never moves backwards"
    assert log.delete_records_before(3) == 3
    assert log.size_in_bytes == len(batch(NOW, NOW))
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(6)
    assert log.delete_records_before(-1) == 5
    assert log.size_in_bytes == 0
    info = log.append(batch(NOW), leader_epoch=0, now_ms=NOW)
    assert info.base_offset == 5 and info.log_start_offset == 5


def test_null_log_counts_and_forgets() -> None:
    log = NullLog()
    info = log.append(batch(1, 2) + batch(3), leader_epoch=0, now_ms=NOW)
    assert (info.base_offset, info.last_offset) == (0, 2)
    assert log.log_end_offset == 3
    assert len(log.read(0, 100)) == 0 and len(log.read(3, 100)) == 0
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    with pytest.raises(KafkaProtocolError):
        log.append(bytearray(b"\x00" * 10), leader_epoch=0, now_ms=NOW)
    assert log.end_offset_for_epoch(0) == (0, 3)
    log.append(batch(4), leader_epoch=2, now_ms=NOW)
    assert log.end_offset_for_epoch(0) == (0, 3) and log.end_offset_for_epoch(2) == (2, 4)
    with pytest.raises(KafkaProtocolError) as refused:
        log.append(bytearray(), leader_epoch=0, now_ms=NOW)
    assert refused.value.error_code == ErrorCode.INVALID_RECORD
    assert log.delete_records_before(2) == 2
    assert log.offset_for_timestamp(0) is None and log.apply_retention(NOW) == 0
