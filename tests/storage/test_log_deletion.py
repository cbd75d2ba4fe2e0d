"""Deferred segment deletion (Kafka's file.delete.delay.ms): retention and DeleteRecords rename
segments to ``*.deleted``; the files are unlinked only once the delay has passed (or at close),
so a region handed out before the deletion stays readable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kafkacompat.records import iter_batches
from kafkacompat.storage.base import DELETED_SUFFIX, FileRegion
from kafkacompat.storage.fdpool import FdPool
from kafkacompat.storage.log import Log

from .log_helpers import make_batch, read_all_values, settings

NOW = 1_700_000_000_000
DAY = 86_400_000


def _fill(log: Log, appends: int, timestamp: int = NOW) -> None:
    for i in range(appends):
        blob = bytearray(make_batch([b"%d" % i + b"." * 300], timestamp=timestamp))
        log.append(blob, leader_epoch=0, now_ms=NOW)


def _names(directory: Path, suffix: str) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(suffix)}


def test_retention_defers_the_unlink_by_file_delete_delay_ms(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log(str(directory), settings(retention_ms=DAY, file_delete_delay_ms=60_000), now_ms=NOW)
    _fill(log, 80, timestamp=NOW - 2 * DAY)
    _fill(log, 1)  # the active segment holds a young batch
    old = log.segments[:-1]
    assert len(old) > 2
    region = log.read(0, 1 << 20).records
    assert isinstance(region, FileRegion)
    first_batch = region.read()

    assert log.apply_retention(NOW) == len(old)
    assert log.log_start_offset == log.segments[0].base_offset
    renamed = _names(directory, DELETED_SUFFIX)
    assert len(renamed) == 3 * len(old)  # .log, .index and .timeindex of each
    assert not any(os.path.exists(s.log_path) for s in old)
    # A reader that got its region before the deletion still reads the same bytes.
    assert not os.path.exists(region.path)
    assert region.read() == first_batch
    assert next(iter_batches(region.read())).base_offset == 0

    assert log.delete_expired_files(NOW + 59_999) == 0
    assert _names(directory, DELETED_SUFFIX) == renamed
    assert log.apply_retention(NOW + 60_000) == 0  # retention runs the sweep too
    assert _names(directory, DELETED_SUFFIX) == set()
    with pytest.raises(FileNotFoundError):
        region.read()
    assert log.delete_expired_files(NOW + 120_000) == 0


def test_delete_records_starts_the_delay_at_the_next_sweep(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log(str(directory), settings(file_delete_delay_ms=1000), now_ms=NOW)
    _fill(log, 80)
    expected = read_all_values(log)
    cut = log.segments[2].base_offset
    log.delete_records_before(cut)  # told no time: the delay counts from the first sweep
    renamed = _names(directory, DELETED_SUFFIX)
    assert len(renamed) == 6
    assert log.delete_expired_files(NOW + 10**9) == 0  # first sweep after: the clock starts
    assert log.delete_expired_files(NOW + 10**9 + 999) == 0
    assert _names(directory, DELETED_SUFFIX) == renamed
    assert log.delete_expired_files(NOW + 10**9 + 1000) == 6
    assert _names(directory, DELETED_SUFFIX) == set()
    assert read_all_values(log) == expected[cut:]


def test_close_unlinks_what_is_still_waiting_and_a_restart_removes_leftovers(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "t-0"
    log = Log(str(directory), settings(), now_ms=NOW)
    _fill(log, 80)
    log.delete_records_before(log.segments[1].base_offset)
    assert _names(directory, DELETED_SUFFIX)
    log.close()
    assert _names(directory, DELETED_SUFFIX) == set()

    # A crash leaves the renamed files behind; the next load deletes them.
    crashed = Log(str(directory), settings(), now_ms=NOW, log_start_offset=log.log_start_offset)
    crashed.delete_records_before(crashed.segments[1].base_offset)
    left = _names(directory, DELETED_SUFFIX)
    assert left
    for segment in crashed.segments:
        segment.close_handles()
    Log(str(directory), settings(), now_ms=NOW, log_start_offset=crashed.log_start_offset)
    assert _names(directory, DELETED_SUFFIX) == set()


def test_a_pooled_descriptor_never_outlives_the_rename(tmp_path: Path) -> None:
    pool = FdPool(capacity=8)
    directory = tmp_path / "t-0"
    log = Log(str(directory), settings(), now_ms=NOW, fd_pool=pool)
    _fill(log, 80)
    read_all_values(log)  # every segment's descriptor is now in the pool
    doomed = log.segments[0].log_path
    assert doomed in pool
    log.delete_records_before(log.segments[1].base_offset)
    assert doomed not in pool
    log.close()
    pool.close_all()


def test_periodic_calls_on_an_idle_log_touch_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(
        str(tmp_path / "t-0"),
        settings(retention_ms=DAY, retention_bytes=10**9, flush_ms=1000),
        now_ms=NOW,
    )
    _fill(log, 80)
    assert len(log.segments) > 2  # retention has an oldest segment to look at every time
    log.flush(NOW)
    log.close_handles()
    assert log.apply_retention(NOW) == 0  # the first look may read an index; later ones may not

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("an idle log's periodic housekeeping did I/O")

    for name in ("open", "stat", "unlink", "replace", "rename", "fsync", "write", "pread"):
        monkeypatch.setattr(os, name, no_io)
    for tick in range(1, 100):
        now = NOW + tick * 5000
        assert not log.maybe_flush(now)
        assert log.apply_retention(now) == 0
        assert log.delete_expired_files(now) == 0


def test_flushing_an_idle_log_again_does_no_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker may flush every partition on a timer; partitions without new data must cost
    # no fsync (10,000 idle partitions would otherwise mean 20,000 fsyncs per tick).
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    _fill(log, 80)
    log.delete_records_before(10)  # a trimmed epoch cache is written by this flush, once
    log.flush(NOW)

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("flushing an idle log did I/O")

    monkeypatch.setattr(os, "fsync", no_io)
    monkeypatch.setattr(os, "open", no_io)
    log.flush(NOW + 1)
    log.flush()
    monkeypatch.undo()
    _fill(log, 1)
    log.flush(NOW + 2)  # new data: flushed as usual
    assert log.recovery_point == log.log_end_offset
