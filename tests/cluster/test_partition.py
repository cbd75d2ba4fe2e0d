"""Partition: the high watermark apart from the log end, leader epochs, fencing, offsets."""

from __future__ import annotations

import uuid

import pytest

from kafkacompat.cluster.partition import FetchIsolation, Partition
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.unified_log import UnifiedLog
from tests.coordinators.helpers import batch_bytes

NOW = 1_700_000_000_000
HW = FetchIsolation.HIGH_WATERMARK


def partition(local: MemoryLog | None = None, high_watermark: int | None = None) -> Partition:
    config = LogConfig()
    log = UnifiedLog(("t", 0), local or MemoryLog(config), config)
    return Partition("t", 0, uuid.uuid4(), log, local_broker_id=1, high_watermark=high_watermark)


def test_a_new_partition_is_led_by_this_broker_in_epoch_zero() -> None:
    p = partition()
    assert (p.leader_id, p.leader_epoch, p.replicas, p.isr) == (1, 0, (1,), (1,))
    assert p.high_watermark == p.log_end_offset == p.last_stable_offset == 0


def test_the_high_watermark_is_kept_apart_and_moves_with_the_isr() -> None:
    local = MemoryLog()
    local.append(bytearray(batch_bytes(count=3)), leader_epoch=4, now_ms=NOW)
    # A checkpointed watermark below the log end: with one replica in the ISR the leader moves
    # it to the log end at once, as Kafka's leader does when the ISR shrinks to itself.
    p = partition(local, high_watermark=1)
    assert p.high_watermark == 3 and p.leader_epoch == 4
    p.append_records_to_leader(bytearray(batch_bytes(count=2)), now_ms=NOW)
    assert p.high_watermark == p.log_end_offset == 5


def test_reads_stop_at_the_high_watermark() -> None:
    p = partition()
    p.append_records_to_leader(bytearray(batch_bytes(count=2)), now_ms=NOW)
    assert p.read_records(0, 1 << 20, HW).records
    p._high_watermark = 0  # as a follower lagging would hold it
    assert p.read_records(0, 1 << 20, HW).records == b""
    assert p.read_records(0, 1 << 20, FetchIsolation.LOG_END).records
    with pytest.raises(KafkaProtocolError) as info:
        p.read_records(3, 100, HW)
    assert info.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE


def test_leader_epoch_fencing() -> None:
    local = MemoryLog()
    local.append(bytearray(batch_bytes()), leader_epoch=2, now_ms=NOW)
    p = partition(local)
    assert p.check_leader_epoch(-1) == ErrorCode.NONE
    assert p.check_leader_epoch(2) == ErrorCode.NONE
    assert p.check_leader_epoch(1) == ErrorCode.FENCED_LEADER_EPOCH
    assert p.check_leader_epoch(3) == ErrorCode.UNKNOWN_LEADER_EPOCH


def test_list_offsets_answers_the_epoch_the_log_stored() -> None:
    local = MemoryLog()
    local.append(bytearray(batch_bytes(count=2, timestamp=100)), leader_epoch=1, now_ms=NOW)
    local.append(bytearray(batch_bytes(count=2, timestamp=200)), leader_epoch=3, now_ms=NOW)
    p = partition(local)
    assert p.fetch_offset_for_timestamp(-2, HW) == (-1, 0, 1)  # earliest: written in epoch 1
    assert p.fetch_offset_for_timestamp(-1, HW) == (-1, 4, 3)  # latest
    assert p.fetch_offset_for_timestamp(150, HW) == (200, 2, 3)
    assert p.fetch_offset_for_timestamp(-3, HW) == (201, 3, 3)  # the largest timestamp
    assert p.fetch_offset_for_timestamp(10_000, HW) == (-1, -1, -1)
    assert p.fetch_offset_for_timestamp(-5, HW) == (-1, -1, -1)  # nothing is tiered
    assert p.last_offset_for_leader_epoch(2) == (1, 2)


def test_delete_records_stops_at_the_high_watermark() -> None:
    p = partition()
    p.append_records_to_leader(bytearray(batch_bytes(count=4)), now_ms=NOW)
    with pytest.raises(KafkaProtocolError) as info:
        p.delete_records_on_leader(5)
    assert info.value.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert p.delete_records_on_leader(-1) == 4 == p.log_start_offset
