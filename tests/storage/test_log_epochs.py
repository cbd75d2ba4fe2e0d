"""The disk log's leader epoch cache and its leader-epoch-checkpoint file: recorded on append,
answered by end_offset_for_epoch, trimmed with the log, re-derived by recovery and rebuilt
from the batches when the file is missing or damaged."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from kafkacompat.storage.checkpoint_file import (
    LEADER_EPOCH_CHECKPOINT,
    read_leader_epoch_checkpoint,
    write_leader_epoch_checkpoint,
)
from kafkacompat.storage.log import Log

from .log_helpers import epochs_from_batches, make_batch, settings

NOW = 1_700_000_000_000


def _append(log: Log, epoch: int, records: int = 3, size: int = 200) -> int:
    blob = bytearray(make_batch([b"v" * size] * records))
    return log.append(blob, leader_epoch=epoch, now_ms=NOW).base_offset


def _checkpoint(directory: Path) -> bytes:
    return (directory / LEADER_EPOCH_CHECKPOINT).read_bytes()


def _epoch_log(directory: Path, epochs: list[int]) -> Log:
    log = Log(str(directory), settings(), now_ms=NOW)
    for epoch in epochs:
        _append(log, epoch)
    return log


def test_appends_record_epoch_changes_in_kafkas_file(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log(str(directory), settings(), now_ms=NOW)
    assert log.end_offset_for_epoch(0) == (-1, -1)  # nothing known yet
    _append(log, -1)  # no leader epoch (NO_PARTITION_LEADER_EPOCH): nothing to record
    assert log.leader_epoch_entries == []
    assert not (directory / LEADER_EPOCH_CHECKPOINT).exists()
    first = _append(log, 0)
    _append(log, 0)
    third = _append(log, 3)
    _append(log, 2)  # a stale epoch adds nothing (the broker fences such appends)
    fifth = _append(log, 5)
    assert (first, third, fifth) == (3, 9, 15)
    assert log.leader_epoch_entries == [(0, 3), (3, 9), (5, 15)]
    # Not written on the append path: recovery re-derives unflushed epochs from the batches.
    assert not (directory / LEADER_EPOCH_CHECKPOINT).exists()
    assert not log.maybe_flush(NOW)  # the broker's periodic call persists it
    assert _checkpoint(directory) == b"0\n3\n0 3\n3 9\n5 15\n"
    leo = log.log_end_offset
    assert log.end_offset_for_epoch(0) == (0, 9)
    assert log.end_offset_for_epoch(2) == (0, 9)
    assert log.end_offset_for_epoch(4) == (3, 15)
    assert log.end_offset_for_epoch(5) == (5, leo)
    assert log.end_offset_for_epoch(6) == (-1, -1)
    assert log.end_offset_for_epoch(-1) == (-1, -1)
    log.close()
    reopened = Log(str(directory), settings(), now_ms=NOW)
    assert reopened.leader_epoch_entries == [(0, 3), (3, 9), (5, 15)]
    assert reopened.end_offset_for_epoch(5) == (5, leo)


@pytest.mark.parametrize("damage", ["delete", "garbage", "wrong_count", "negative"])
@pytest.mark.parametrize("clean", [True, False])
def test_a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches(
    tmp_path: Path, damage: str, clean: bool
) -> None:
    directory = tmp_path / "t-0"
    rng = random.Random(5)
    epochs = sorted(rng.randrange(0, 9) for _ in range(60))
    log = _epoch_log(directory, epochs)
    assert len(log.segments) > 3
    expected = log.leader_epoch_entries
    assert expected == epochs_from_batches(log)
    log.close()
    path = directory / LEADER_EPOCH_CHECKPOINT
    path.write_bytes(
        {
            "delete": b"",
            "garbage": b"\x00\x01 nonsense",
            "wrong_count": b"0\n5\n0 0\n",
            "negative": b"0\n1\n-4 0\n",
        }[damage]
    )
    if damage == "delete":
        path.unlink()
    reopened = Log(
        str(directory),
        settings(),
        now_ms=NOW,
        recovery_point=reopened_point(log, clean),
        clean_shutdown=clean,
    )
    assert reopened.leader_epoch_entries == expected
    assert read_leader_epoch_checkpoint(path) == expected  # rewritten, so rebuilt once


def reopened_point(log: Log, clean: bool) -> int:
    # Unclean: recover the last two segments, trust (and rescan for epochs) the rest.
    return log.recovery_point if clean else log.segments[-2].base_offset


def test_recovery_cuts_entries_past_the_surviving_log(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = _epoch_log(directory, [0] * 13 + [4] * 3)
    start_of_4 = log.leader_epoch_entries[-1][1]
    active = log.active_segment
    assert active.base_offset < start_of_4, "epoch 4 must start inside the active segment"
    # The crash loses everything from epoch 4 on; the checkpoint (written before the data,
    # as Kafka does) still names it, plus an epoch whose data never arrived at all.
    cut = next(
        position for position, base, *_ in _batch_starts(active.log_path) if base == start_of_4
    )
    with open(active.log_path, "r+b") as f:
        f.truncate(cut)
    write_leader_epoch_checkpoint(
        directory / LEADER_EPOCH_CHECKPOINT, [*log.leader_epoch_entries, (7, 10_000)]
    )
    recovered = Log(
        str(directory),
        settings(),
        now_ms=NOW,
        recovery_point=active.base_offset,
        clean_shutdown=False,
    )
    assert recovered.log_end_offset == start_of_4
    assert recovered.leader_epoch_entries == [(0, 0)]
    assert recovered.end_offset_for_epoch(4) == (-1, -1)
    assert read_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT) == [(0, 0)]
    # The next leader's appends start a new entry at the new log end.
    assert _append(recovered, 5) == start_of_4
    assert recovered.leader_epoch_entries == [(0, 0), (5, start_of_4)]


def test_the_checkpoint_is_complete_below_the_recovery_point(tmp_path: Path) -> None:
    # What recovery trusts without rescanning must be on disk: every roll (which moves the
    # recovery point) writes the epochs it covers, without any explicit flush.
    directory = tmp_path / "t-0"
    log = _epoch_log(directory, [0] * 5 + [1] * 5 + [2] * 30)
    covered = [e for e in log.leader_epoch_entries if e[1] < log.recovery_point]
    assert len(covered) == 3
    on_disk = read_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT)
    assert on_disk is not None and on_disk[: len(covered)] == covered


def test_recovery_rederives_an_epoch_the_checkpoint_missed(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = _epoch_log(directory, [1] * 13 + [2] * 3)
    expected = log.leader_epoch_entries
    assert len(expected) == 2 and expected[1][1] > log.active_segment.base_offset
    # A crash before the next flush: the checkpoint lacks epoch 2, which began after the
    # recovery point; the unflushed tail's batches say when.
    write_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT, expected[:1])
    recovered = Log(
        str(directory),
        settings(),
        now_ms=NOW,
        recovery_point=log.active_segment.base_offset,
        clean_shutdown=False,
    )
    assert recovered.leader_epoch_entries == expected


def test_delete_records_and_retention_trim_from_the_start(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = _epoch_log(directory, [0] * 10 + [1] * 10 + [2] * 10)
    entries = log.leader_epoch_entries
    assert [epoch for epoch, _ in entries] == [0, 1, 2]
    cut = entries[1][1] + 2  # inside epoch 1
    log.delete_records_before(cut)
    assert log.leader_epoch_entries == [(1, cut), entries[2]]
    assert log.end_offset_for_epoch(0) == (0, cut)  # older than the log: its first offset
    # Trimming is persisted at the next flush, not at once (Kafka flushes it asynchronously).
    assert read_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT) == entries
    log.flush()
    assert read_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT) == [
        (1, cut),
        entries[2],
    ]
    log.close()
    # A crash before that flush is harmless: loading trims from the log start offset again.
    write_leader_epoch_checkpoint(directory / LEADER_EPOCH_CHECKPOINT, entries)
    reopened = Log(str(directory), settings(), now_ms=NOW, log_start_offset=cut)
    assert reopened.leader_epoch_entries == [(1, cut), entries[2]]


def test_the_cache_always_matches_what_the_batches_say(tmp_path: Path) -> None:
    rng = random.Random(11)
    log = Log(str(tmp_path / "t-0"), settings(retention_bytes=30_000, retention_ms=-1), now_ms=NOW)
    epoch = 0
    for step in range(200):
        epoch += rng.choice([0, 0, 0, 1, 2])  # mostly steady, sometimes a new leader
        _append(log, epoch, records=rng.randint(1, 4), size=rng.randint(10, 300))
        if step % 37 == 36:
            log.apply_retention(NOW)
        if step % 53 == 52:
            log.delete_records_before(log.log_end_offset - rng.randint(0, 20))
        assert log.leader_epoch_entries == epochs_from_batches(log), step
    assert log.log_start_offset > 0 and len(log.leader_epoch_entries) > 5
    log.close()
    os.unlink(tmp_path / "t-0" / LEADER_EPOCH_CHECKPOINT)
    rebuilt = Log(
        str(tmp_path / "t-0"), settings(), now_ms=NOW, log_start_offset=log.log_start_offset
    )
    assert rebuilt.leader_epoch_entries == log.leader_epoch_entries


def _batch_starts(path: str) -> list[tuple[int, int]]:
    from kafkacompat.records import iter_batches

    with open(path, "rb") as f:
        data = f.read()
    out, position = [], 0
    for batch in iter_batches(data):
        out.append((position, batch.base_offset))
        position += batch.size_in_bytes
    return out
