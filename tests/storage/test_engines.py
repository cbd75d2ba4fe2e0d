"""Storage scenarios written once and run against every engine that keeps data.

The disk and memory engines must be indistinguishable through the PartitionLog
interface: what a client observes cannot depend on ``--storage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import RecordBatchBuilder, iter_batches
from kafkacompat.storage.base import FileRegion, OffsetOutOfRangeError, PartitionLog, ReadResult
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log import Log
from kafkacompat.storage.memory import MemoryLog

NOW = 1_700_000_000_000
MakeLog = Callable[[LogConfig], PartitionLog]


@pytest.fixture(params=["disk", "memory"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLog]:
    opened: list[PartitionLog] = []

    def make(config: LogConfig) -> PartitionLog:
        log: PartitionLog
        if request.param == "disk":
            log = Log(str(tmp_path / "topic-0"), config, now_ms=NOW)
        else:
            log = MemoryLog(config)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def blob(n: int, timestamp: int = NOW, size: int = 10) -> bytearray:
    builder = RecordBatchBuilder()
    for i in range(n):
        builder.append(bytes([i % 256]) * size, timestamp=timestamp + i)
    return bytearray(builder.build())


def data(result: ReadResult) -> bytes:
    r = result.records
    return r.read() if isinstance(r, FileRegion) else bytes(r)


def offsets(result: ReadResult) -> list[int]:
    return [b.base_offset for b in iter_batches(data(result))]


def test_offsets_are_assigned_from_the_log_end(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    infos = [log.append(blob(n), leader_epoch=3, now_ms=NOW) for n in (1, 5, 2)]
    assert [(i.base_offset, i.last_offset) for i in infos] == [(0, 0), (1, 5), (6, 7)]
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 8, 8)
    batches = list(iter_batches(data(log.read(0, 1 << 20))))
    assert [b.base_offset for b in batches] == [0, 1, 6]
    assert {b.partition_leader_epoch for b in batches} == {3}
    assert all(b.is_valid() for b in batches)


def test_reads_return_whole_batches_and_at_least_one(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    for _ in range(4):
        log.append(blob(3, size=100), leader_epoch=0, now_ms=NOW)
    one = log.read(4, 1)  # KIP-74: a limit smaller than the batch still returns it
    assert offsets(one) == [3]
    assert offsets(log.read(0, len(data(one)) * 2)) == [0, 3]
    assert offsets(log.read(11, 1 << 20)) == [9]
    assert len(log.read(12, 1 << 20)) == 0  # at the log end: empty, not an error


@pytest.mark.parametrize("offset", [-1, 13])
def test_reads_outside_the_log_are_out_of_range(make_log: MakeLog, offset: int) -> None:
    log = make_log(LogConfig())
    log.append(blob(12), leader_epoch=0, now_ms=NOW)
    with pytest.raises(OffsetOutOfRangeError) as info:
        log.read(offset, 1 << 20)
    assert info.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE


def test_delete_records_moves_the_log_start(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    for _ in range(3):
        log.append(blob(4), leader_epoch=0, now_ms=NOW)
    assert log.delete_records_before(6) == 6
    assert log.log_start_offset == 6
    with pytest.raises(OffsetOutOfRangeError):
        log.read(5, 1 << 20)
    assert offsets(log.read(6, 1 << 20))[0] == 4  # the batch holding offset 6
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(13)  # beyond the high watermark


def test_time_lookups(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    log.append(blob(3, timestamp=1000), leader_epoch=0, now_ms=NOW)  # 1000..1002
    log.append(blob(3, timestamp=5000), leader_epoch=0, now_ms=NOW)  # 5000..5002
    found = log.offset_for_timestamp(1001)
    assert found is not None and found.offset == 1
    found = log.offset_for_timestamp(1003)
    assert found is not None and found.offset == 3
    assert log.offset_for_timestamp(9999) is None
    top = log.max_timestamp_offset()
    assert top is not None and (top.timestamp, top.offset) == (5002, 5)


def test_log_append_time_is_stamped(make_log: MakeLog) -> None:
    log = make_log(LogConfig.from_props({"message.timestamp.type": "LogAppendTime"}))
    info = log.append(blob(2, timestamp=5), leader_epoch=0, now_ms=NOW)
    assert info.log_append_time == NOW
    (batch,) = iter_batches(data(log.read(0, 1 << 20)))
    assert batch.max_timestamp == NOW and batch.is_valid()
    assert [r.timestamp for r in batch.iter_records()] == [NOW, NOW]


def test_a_corrupt_blob_appends_nothing(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    log.append(blob(2), leader_epoch=0, now_ms=NOW)
    bad = blob(2) + blob(3)
    bad[-1] ^= 0xFF  # the second batch's CRC no longer matches
    with pytest.raises(KafkaProtocolError) as info:
        log.append(bad, leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE
    assert log.log_end_offset == 2
    assert offsets(log.read(0, 1 << 20)) == [0]


def test_retention_by_bytes_keeps_the_newest(make_log: MakeLog) -> None:
    config = LogConfig.from_props({"retention.bytes": "1", "segment.bytes": "200"})
    log = make_log(config)
    for _ in range(5):
        log.append(blob(2, size=60), leader_epoch=0, now_ms=NOW)
    deleted = log.apply_retention(NOW)
    assert deleted >= 1
    assert log.log_start_offset > 0
    assert log.log_end_offset == 10
    assert offsets(log.read(log.log_start_offset, 1 << 20))[-1] == 8  # the newest batch stays


def test_retention_by_time_empties_an_expired_log(make_log: MakeLog) -> None:
    # Kafka rolls the active segment when it too is past retention.ms, then deletes it.
    log = make_log(LogConfig.from_props({"retention.ms": "1000"}))
    log.append(blob(3), leader_epoch=0, now_ms=NOW)
    assert log.apply_retention(NOW + 500) == 0
    assert log.apply_retention(NOW + 10_000) >= 1
    assert (log.log_start_offset, log.log_end_offset) == (3, 3)
    assert len(log.read(3, 1 << 20)) == 0
    log.append(blob(1, timestamp=NOW + 10_000), leader_epoch=0, now_ms=NOW + 10_000)
    assert offsets(log.read(3, 1 << 20)) == [3]


def test_compact_only_topics_are_not_deleted_by_retention(make_log: MakeLog) -> None:
    log = make_log(LogConfig.from_props({"retention.ms": "1000", "cleanup.policy": "compact"}))
    log.append(blob(3), leader_epoch=0, now_ms=NOW)
    assert log.apply_retention(NOW + 10_000) == 0
    assert log.log_start_offset == 0


def test_a_produce_without_batches_is_invalid_record(make_log: MakeLog) -> None:
    # Kafka's ProduceRequest.validateRecords: "must have at least one record batch per
    # partition", INVALID_RECORD; never CORRUPT_MESSAGE (nothing is damaged) nor a silent no-op.
    log = make_log(LogConfig())
    log.append(blob(2), leader_epoch=0, now_ms=NOW)
    with pytest.raises(KafkaProtocolError) as info:
        log.append(bytearray(), leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 2


def test_delete_records_to_minus_one_means_the_high_watermark(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    log.append(blob(4), leader_epoch=0, now_ms=NOW)
    assert log.delete_records_before(-1) == 4 == log.log_start_offset
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(-2)


def test_offset_for_leader_epoch(make_log: MakeLog) -> None:
    log = make_log(LogConfig())
    assert log.end_offset_for_epoch(0) == (-1, -1)
    log.append(blob(3), leader_epoch=1, now_ms=NOW)  # 0..2
    log.append(blob(3), leader_epoch=1, now_ms=NOW)  # 3..5
    log.append(blob(2), leader_epoch=4, now_ms=NOW)  # 6..7
    log.append(blob(2), leader_epoch=6, now_ms=NOW)  # 8..9
    assert log.end_offset_for_epoch(0) == (0, 0)  # older than all: the first epoch's start
    assert log.end_offset_for_epoch(1) == (1, 6)
    assert log.end_offset_for_epoch(3) == (1, 6)  # never a leader: the epoch before it
    assert log.end_offset_for_epoch(4) == (4, 8)
    assert log.end_offset_for_epoch(6) == (6, 10)  # the latest ends at the log end offset
    assert log.end_offset_for_epoch(7) == (-1, -1)
    assert log.end_offset_for_epoch(-1) == (-1, -1)
    log.delete_records_before(7)
    assert log.end_offset_for_epoch(1) == (1, 7)  # its data is gone: where the log starts
    assert log.end_offset_for_epoch(4) == (4, 8)
