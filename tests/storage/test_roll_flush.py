"""Deferred roll flushes: with a broker, a rolled segment's fsync leaves the append path and
the recovery point moves only once the broker reports it done (Kafka's async "flush-log")."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from kafkacompat.broker import Broker
from kafkacompat.config import BrokerConfig
from kafkacompat.storage.log import Log

from .log_helpers import make_batch, read_all_values, settings


def _rolled_log(path: Path) -> Log:
    log = Log(str(path), settings(segment_bytes=200), now_ms=0, deferred_roll_flush=True)
    for i in range(4):
        log.append(bytearray(make_batch([b"x" * 80, bytes([i])])), leader_epoch=0, now_ms=0)
    return log


def test_roll_leaves_the_recovery_point_until_the_fsync_is_reported(tmp_path: Path) -> None:
    log = _rolled_log(tmp_path / "t-0")
    assert len(log.segments) == 4
    assert log.recovery_point == 0
    flushes = log.take_roll_flushes()
    assert [f.new_base for f in flushes] == [2, 4, 6]
    assert log.take_roll_flushes() == []  # handed out once
    for flush in flushes:
        assert flush.fd is not None
        os.fsync(flush.fd)
        os.close(flush.fd)
        log.complete_roll_flush(flush)
        assert log.recovery_point == flush.new_base
    assert [offset for offset, _ in read_all_values(log)] == list(range(8))
    log.close()


def test_a_full_flush_covers_pending_roll_flushes(tmp_path: Path) -> None:
    log = _rolled_log(tmp_path / "t-0")
    log.flush()
    assert log.recovery_point == log.log_end_offset == 8
    assert log.take_roll_flushes() == []
    log.close()


def test_deleted_segment_needs_no_completion(tmp_path: Path) -> None:
    log = _rolled_log(tmp_path / "t-0")
    flushes = log.take_roll_flushes()
    log.delete_records_before(6)
    log.apply_retention(0)
    for flush in flushes:
        if flush.fd is not None:
            os.close(flush.fd)
        log.complete_roll_flush(flush)  # must not touch files of deleted segments
    assert log.log_start_offset == 6
    log.close()


def test_broker_flusher_fsyncs_rolled_segments(tmp_path: Path) -> None:
    broker = Broker(BrokerConfig({"log.segment.bytes": "200"}), engine="disk", data_dir=tmp_path)
    broker.start()
    try:
        broker.controller.create_topic("t", 1)
        log = broker.logs.get_log("t", 0)
        assert isinstance(log, Log)
        for i in range(4):
            log.append(
                bytearray(make_batch([b"x" * 80, bytes([i])], timestamp=int(time.time() * 1000))),
                leader_epoch=0,
                now_ms=0,
            )
        assert log.recovery_point == 0
        asyncio.run(broker.flush_due())
        assert log.recovery_point == 6  # every rolled segment; the active one is not flushed
    finally:
        broker.shutdown()
