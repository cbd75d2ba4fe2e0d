"""UnifiedLog: the one leader append path and the producer state that follows the log."""

from __future__ import annotations

from pathlib import Path

import pytest

import kafkacompat.records.batch as batch_module
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log import Log
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.producer_snapshot import list_snapshots
from kafkacompat.storage.unified_log import UnifiedLog
from tests.coordinators.helpers import batch_bytes

NOW = 1_700_000_000_000


def memory_log(**props: str) -> UnifiedLog:
    config = LogConfig.from_props(props)
    return UnifiedLog(("t", 0), MemoryLog(config), config)


def disk_log(path: Path, **props: str) -> UnifiedLog:
    config = LogConfig.from_props(props)
    return UnifiedLog(("t", 0), Log(str(path), config, now_ms=NOW), config, directory=path)


def test_one_crc_pass_per_batch_on_the_idempotent_path(monkeypatch: pytest.MonkeyPatch) -> None:
    log = memory_log()
    idempotent, plain = bytearray(batch_bytes(7, 0, 0, count=3)), bytearray(batch_bytes(count=2))
    calls: list[int] = []
    real = batch_module.crc32c.crc32c

    def counting(data: bytes) -> int:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(batch_module.crc32c, "crc32c", counting)
    log.append_as_leader(idempotent, leader_epoch=0, now_ms=NOW)
    log.append_as_leader(plain, leader_epoch=0, now_ms=NOW)
    assert len(calls) == 2  # one per batch: the validator's; producer state reuses its headers


def test_a_retry_is_answered_with_its_original_offsets_and_writes_nothing() -> None:
    log = memory_log()
    log.append_as_leader(bytearray(batch_bytes(count=2)), leader_epoch=0, now_ms=NOW)
    first = log.append_as_leader(bytearray(batch_bytes(7, 0, 0, 3)), leader_epoch=0, now_ms=NOW)
    retry = log.append_as_leader(bytearray(batch_bytes(7, 0, 0, 3)), leader_epoch=0, now_ms=NOW)
    assert (
        (retry.base_offset, retry.last_offset) == (first.base_offset, first.last_offset) == (2, 4)
    )
    assert log.log_end_offset == 5
    with pytest.raises(KafkaProtocolError) as info:
        log.append_as_leader(bytearray(batch_bytes(7, 0, 9, 1)), leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.log_end_offset == 5


def test_the_leader_epoch_is_stamped_and_recorded() -> None:
    log = memory_log()
    assert log.latest_epoch() == -1
    log.append_as_leader(bytearray(batch_bytes(count=2)), leader_epoch=3, now_ms=NOW)
    log.append_as_leader(bytearray(batch_bytes(count=1)), leader_epoch=5, now_ms=NOW)
    assert log.latest_epoch() == 5
    assert [log.epoch_for_offset(o) for o in (0, 1, 2)] == [3, 3, 5]


def test_keyless_records_on_a_compacted_topic_are_named(tmp_path: Path) -> None:
    log = memory_log(**{"cleanup.policy": "compact"})
    with pytest.raises(KafkaProtocolError) as info:
        log.append_as_leader(bytearray(batch_bytes(count=4)), leader_epoch=0, now_ms=NOW)
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    assert [index for index, _ in info.value.record_errors] == [0, 1, 2, 3]
    assert log.log_end_offset == 0


def test_producer_state_is_snapshotted_at_every_roll(tmp_path: Path) -> None:
    log = disk_log(tmp_path, **{"segment.bytes": "300"})
    sequence = 0
    for _ in range(8):
        log.append_as_leader(
            bytearray(batch_bytes(7, 0, sequence, 2, NOW)), leader_epoch=0, now_ms=NOW
        )
        sequence += 2
    local = log.local
    assert isinstance(local, Log) and len(local.segments) > 2
    rolled_at = [segment.base_offset for segment in local.segments[1:]]
    assert [offset for offset, _ in list_snapshots(tmp_path)][-2:] == rolled_at[-2:]
    # A crash now: the state reloads from the newest snapshot and the segment after it.
    reopened = disk_log(tmp_path, **{"segment.bytes": "300"})
    retry = reopened.append_as_leader(
        bytearray(batch_bytes(7, 0, sequence - 2, 2, NOW)), leader_epoch=0, now_ms=NOW
    )
    assert retry.base_offset == sequence - 2  # answered from the reloaded state


def test_moving_the_log_start_drops_snapshots_below_it(tmp_path: Path) -> None:
    log = disk_log(tmp_path, **{"segment.bytes": "300"})
    for sequence in range(0, 16, 2):
        log.append_as_leader(
            bytearray(batch_bytes(7, 0, sequence, 2, NOW)), leader_epoch=0, now_ms=NOW
        )
    assert list_snapshots(tmp_path)
    start = log.delete_records_before(log.log_end_offset)
    assert all(offset >= start for offset, _ in list_snapshots(tmp_path))
    # The producer is kept (KIP-360): its next batch continues its sequence.
    info = log.append_as_leader(
        bytearray(batch_bytes(7, 0, 16, 1, NOW)), leader_epoch=0, now_ms=NOW
    )
    assert info.base_offset == 16


def test_the_cleaner_sees_producers_only_once_their_state_is_loaded() -> None:
    log = memory_log()
    assert log.producer_last_offsets() is None
    log.append_as_leader(bytearray(batch_bytes(7, 0, 0, 3)), leader_epoch=0, now_ms=NOW)
    log.append_as_leader(bytearray(batch_bytes(count=1)), leader_epoch=0, now_ms=NOW)
    assert log.producer_last_offsets() == {7: 2}
