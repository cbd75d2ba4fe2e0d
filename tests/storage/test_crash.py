"""Crash safety: SIGKILL a process mid-append many times; every acknowledged append survives
exactly once, offsets stay contiguous, and the next append gets the next offset."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafkacompat.records import iter_batches
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.log import Log

from .crash_child import NOW, SETTINGS, values
from .log_helpers import epochs_from_batches, make_batch, read_all_values

TRIALS = 50
ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(
    directory: Path, trial: int, recovery_point: int, rng: random.Random
) -> list[tuple[int, int, int]]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.storage.crash_child",
            str(directory),
            str(trial),
            str(recovery_point),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert child.stdout is not None
    ready = child.stdout.readline()
    assert ready.startswith(b"ready"), ready
    time.sleep(rng.uniform(0, 0.04))
    child.send_signal(signal.SIGKILL)
    output = child.stdout.read()
    child.wait()
    acknowledged = []
    for line in output.split(b"\n"):
        parts = line.split()
        if len(parts) == 4:  # a line cut by the kill was never acknowledged
            base, last, _, i = map(int, parts)
            acknowledged.append((base, last, i))
    return acknowledged


def _check(log: Log, expected: dict[int, bytes], from_offset: int) -> dict[int, bytes]:
    """Offsets from ``from_offset`` on: contiguous, CRC-valid, holding every acknowledged value."""
    got = read_all_values(log) if from_offset == 0 else _values_from(log, from_offset)
    offsets = [offset for offset, _ in got]
    assert offsets == list(range(from_offset, from_offset + len(got))), "offsets not contiguous"
    stored = dict(got)
    for offset, value in expected.items():
        if offset >= from_offset:
            assert stored.get(offset) == value, f"acknowledged offset {offset} lost or changed"
    assert log.log_end_offset == from_offset + len(got)
    return stored


def _values_from(log: Log, offset: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        assert isinstance(result.records, FileRegion)
        for batch in iter_batches(result.records.read()):  # CRC-checked
            out += [(r.offset, r.value or b"") for r in batch.iter_records() if r.offset >= offset]
            offset = batch.next_offset
    return out


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(2024)
    directory = tmp_path / "crash-0"
    expected: dict[int, bytes] = {}
    total_acknowledged = 0
    checked_up_to = 0
    recovery_point = 0
    for trial in range(TRIALS):
        # Mostly the recovery point a manager would have checkpointed; sometimes none at all,
        # which makes recovery revalidate the whole log.
        child_recovery_point = 0 if trial % 10 == 9 else recovery_point
        for base, last, i in _run_and_kill(directory, trial, child_recovery_point, rng):
            batch_values = values(trial, i)
            assert last - base + 1 == len(batch_values)
            for offset, value in enumerate(batch_values, start=base):
                assert offset not in expected, "an offset was handed out twice"
                expected[offset] = value
            total_acknowledged += 1
        log = Log(
            str(directory),
            SETTINGS,
            now_ms=NOW,
            recovery_point=recovery_point,
            clean_shutdown=False,
        )
        # Unacknowledged appends that did land are kept: remember them so later checks hold.
        expected.update(_check(log, expected, checked_up_to))
        # Each trial leads in its own epoch: the checkpoint, written at a random moment of the
        # kill, must still agree with the batches after recovery.
        assert log.leader_epoch_entries == epochs_from_batches(log)
        checked_up_to = log.log_end_offset
        recovery_point = log.recovery_point
        log.close()
    assert total_acknowledged > TRIALS  # the kills landed mid-stream, not before the first append
    final = Log(str(directory), SETTINGS, now_ms=NOW, recovery_point=0, clean_shutdown=False)
    _check(final, expected, 0)
    assert len(final.leader_epoch_entries) > TRIALS // 2
    assert final.leader_epoch_entries == epochs_from_batches(final)
    assert len(set(expected.values())) == len(expected), "a record is stored twice"
    for segment in final.segments:
        with open(segment.log_path, "rb") as f:
            list(iter_batches(f.read()))  # nothing corrupt is left behind
    next_offset = final.append(bytearray(make_batch([b"last"])), leader_epoch=0, now_ms=NOW)
    assert next_offset.base_offset == len(expected)
