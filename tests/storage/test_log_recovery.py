"""Torn writes and damaged files: an unclean reopen recovers, never crashes, never serves a
corrupt batch, and appends continue at the right offset."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from kafkacompat.records import iter_batches
from kafkacompat.storage import segment as segment_module
from kafkacompat.storage.epoch import LeaderEpochCache
from kafkacompat.storage.log import Log
from kafkacompat.storage.segment import LogSegment

from .log_helpers import make_batch, random_blob, read_all_values, region_bytes, settings

NOW = 1_700_000_000_000


def _build(directory: Path, blobs: int = 40, seed: int = 1) -> tuple[Log, list[tuple[int, bytes]]]:
    log = Log(str(directory), settings(), now_ms=NOW)
    rng = random.Random(seed)
    expected: list[tuple[int, bytes]] = []
    for tag in range(blobs):
        blob, values = random_blob(rng, tag)
        log.append(blob, leader_epoch=0, now_ms=NOW)
        expected += list(enumerate(values, start=len(expected)))
    return log, expected


def _batch_ends(path: str) -> list[tuple[int, int]]:
    """(end position, next offset) after each batch of a segment file."""
    with open(path, "rb") as f:
        data = f.read()
    ends, position = [], 0
    for batch in iter_batches(data):
        position += batch.size_in_bytes
        ends.append((position, batch.next_offset))
    return ends


def _reopen(directory: Path, log: Log, *, clean: bool = False) -> Log:
    return Log(
        str(directory),
        settings(),
        now_ms=NOW,
        recovery_point=log.recovery_point,
        clean_shutdown=clean,
    )


def _check_consistent(log: Log, expected: list[tuple[int, bytes]]) -> None:
    """Whatever survived is a prefix of what was written, every batch passes its CRC, and the
    next append lands right after it."""
    got = read_all_values(log)
    assert got == expected[: len(got)]
    assert log.log_end_offset == len(got)
    for segment in log.segments:
        with open(segment.log_path, "rb") as f:
            list(iter_batches(f.read()))  # CRC-checked walk of the whole file
    info = log.append(bytearray(make_batch([b"after"])), leader_epoch=1, now_ms=NOW)
    assert info.base_offset == len(got)
    assert read_all_values(log)[-1] == (len(got), b"after")


@pytest.mark.parametrize("seed", range(12))
def test_truncated_active_segment(tmp_path: Path, seed: int) -> None:
    log, expected = _build(tmp_path / "t-0", seed=seed)
    active = log.active_segment.log_path
    ends = _batch_ends(active)
    rng = random.Random(seed)
    cut = rng.randrange(1, ends[-1][0])
    with open(active, "r+b") as f:
        f.truncate(cut)
    whole = [n for e, n in ends if e <= cut]
    survivor = whole[-1] if whole else log.active_segment.base_offset
    recovered = _reopen(tmp_path / "t-0", log)
    assert recovered.log_end_offset == survivor
    _check_consistent(recovered, expected)


@pytest.mark.parametrize("where", ["length", "crc", "attributes", "records", "tail"])
def test_flipped_bytes_in_last_batch(tmp_path: Path, where: str) -> None:
    log, expected = _build(tmp_path / "t-0")
    active = log.active_segment.log_path
    ends = _batch_ends(active)
    last_start = ends[-2][0] if len(ends) > 1 else 0
    offset_in_batch = {"length": 8, "crc": 18, "attributes": 21, "records": 70, "tail": None}[where]
    position = ends[-1][0] - 1 if offset_in_batch is None else last_start + offset_in_batch
    with open(active, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x5A]))
    recovered = _reopen(tmp_path / "t-0", log)
    assert recovered.log_end_offset == (
        ends[-2][1] if len(ends) > 1 else log.active_segment.base_offset
    )
    _check_consistent(recovered, expected)


def test_garbage_and_zeroes_after_the_tail(tmp_path: Path) -> None:
    for i, junk in enumerate([b"\x00" * 5000, os.urandom(3000), b"\xff" * 70, b"\x00\x00\x00"]):
        log, expected = _build(tmp_path / f"t-{i}", blobs=10, seed=i)
        leo = log.log_end_offset
        with open(log.active_segment.log_path, "ab") as f:
            f.write(junk)
        recovered = _reopen(tmp_path / f"t-{i}", log)
        assert recovered.log_end_offset == leo
        _check_consistent(recovered, expected)


@pytest.mark.parametrize("damage", ["delete", "zero", "garbage_length", "decreasing", "past_end"])
@pytest.mark.parametrize("clean", [True, False])
def test_damaged_indexes_are_rebuilt(tmp_path: Path, damage: str, clean: bool) -> None:
    log, expected = _build(tmp_path / "t-0", blobs=60)
    log.close()
    for segment in log.segments:
        for path in (segment.offset_index.path, segment.time_index.path):
            size = os.path.getsize(path)
            if damage == "delete":
                os.unlink(path)
            elif damage == "zero":
                with open(path, "r+b") as f:
                    f.write(b"\x00" * size)
            elif damage == "garbage_length":
                with open(path, "ab") as f:
                    f.write(b"\x01\x02\x03")
            elif damage == "decreasing":
                with open(path, "wb") as f:
                    f.write(b"\x00\x00\x00\x05\x00\x00\x01\x00" * 3)
            elif damage == "past_end":
                with open(path, "wb") as f:
                    f.write(
                        b"\x00\x00\x00\x01\x00\x00\x00\x10"
                        if path.endswith(".index")
                        else b"\x00" * 8 + b"\x00\x01\x00\x00"
                    )
                    if path.endswith(".index"):
                        f.write(b"\x00\x01\x00\x00\x7f\x00\x00\x00")
    recovered = _reopen(tmp_path / "t-0", log, clean=clean)
    assert recovered.log_end_offset == len(expected)
    assert read_all_values(recovered, max_bytes=300) == expected
    for segment in recovered.segments:
        for offset in range(segment.base_offset, segment.next_offset, 3):
            found = segment.find_batch(offset)
            assert found is not None and found.base_offset <= offset <= found.last_offset
    _check_consistent(recovered, expected)


def test_clean_flag_over_a_torn_tail_never_serves_it(tmp_path: Path) -> None:
    log, expected = _build(tmp_path / "t-0")
    log.close()
    active = log.active_segment.log_path
    with open(active, "r+b") as f:
        f.truncate(os.path.getsize(active) - 7)
    reopened = _reopen(tmp_path / "t-0", log, clean=True)
    _check_consistent(reopened, expected)


def test_recovery_only_revalidates_the_unflushed_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, expected = _build(tmp_path / "t-0", blobs=80)
    assert len(log.segments) > 5
    recovered_bases: list[int] = []
    original = LogSegment.recover

    def spy(segment: LogSegment, epochs: LeaderEpochCache | None = None) -> int:
        recovered_bases.append(segment.base_offset)
        return original(segment, epochs)

    monkeypatch.setattr(LogSegment, "recover", spy)
    recovered = _reopen(tmp_path / "t-0", log)
    assert recovered_bases == [log.active_segment.base_offset]
    assert recovered.recovery_point == recovered.log_end_offset == len(expected)
    recovered_bases.clear()
    # With no recovery point checkpoint, everything is revalidated.
    Log(str(tmp_path / "t-0"), settings(), now_ms=NOW, clean_shutdown=False)
    assert recovered_bases == [s.base_offset for s in log.segments]


def test_truncation_in_an_older_unflushed_segment_drops_later_ones(tmp_path: Path) -> None:
    log, expected = _build(tmp_path / "t-0", blobs=60)
    second = log.segments[1]
    with open(second.log_path, "r+b") as f:
        f.truncate(second.size // 2)
    recovered = Log(
        str(tmp_path / "t-0"), settings(), now_ms=NOW, recovery_point=0, clean_shutdown=False
    )
    assert len(recovered.segments) == 2
    _check_consistent(recovered, expected)


def test_stray_files_are_removed(tmp_path: Path) -> None:
    log, expected = _build(tmp_path / "t-0", blobs=10)
    log.close()
    directory = tmp_path / "t-0"
    for name in ("00000000000000000099.log.deleted", "x.tmp", "00000000000000000005.index.swap"):
        (directory / name).write_bytes(b"junk")
    (directory / "00000000000000099999.index").write_bytes(b"\x00" * 8)  # orphan index
    (directory / "partition.metadata").write_bytes(b"version: 0\n")
    reopened = _reopen(directory, log, clean=True)
    names = set(os.listdir(directory))
    assert "x.tmp" not in names and "00000000000000099999.index" not in names
    assert not any(n.endswith((".deleted", ".swap")) for n in names)
    assert "partition.metadata" in names
    _check_consistent(reopened, expected)


def test_recovered_reads_are_crc_valid_regions(tmp_path: Path) -> None:
    log, expected = _build(tmp_path / "t-0", blobs=30)
    with open(log.active_segment.log_path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"\xde\xad\xbe")
    recovered = _reopen(tmp_path / "t-0", log)
    offset = recovered.log_start_offset
    while offset < recovered.log_end_offset:
        batches = list(iter_batches(region_bytes(recovered, offset, 1000)))
        offset = batches[-1].next_offset
    _check_consistent(recovered, expected)


@pytest.mark.parametrize("chunk", [61, 333, 1000, 1 << 20])
@pytest.mark.parametrize("seed", range(6))
def test_recovery_is_the_same_whatever_the_chunk_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, seed: int
) -> None:
    # Chunks smaller than one batch, a few batches, and the real size: batches cut by a chunk
    # boundary, and damage just before, on or after one, must recover exactly as a whole read.
    monkeypatch.setattr(segment_module, "RECOVERY_CHUNK_BYTES", chunk)
    rng = random.Random(seed)
    log, expected = _build(tmp_path / "t-0", blobs=30, seed=seed)
    first = log.segments[0]
    ends = _batch_ends(first.log_path)
    assert len(log.segments) > 2
    victim = rng.randrange(len(ends))
    start = ends[victim - 1][0] if victim else 0
    with open(first.log_path, "r+b") as f:
        if seed % 2:
            position = rng.randrange(start + 21, ends[victim][0])  # inside the CRC's range
            f.seek(position)
            byte = f.read(1)
            f.seek(position)
            f.write(bytes([byte[0] ^ 0x01]))
        else:
            f.truncate(rng.randrange(start + 1, ends[victim][0]))
    survivor = ends[victim - 1][1] if victim else first.base_offset
    recovered = Log(
        str(tmp_path / "t-0"), settings(), now_ms=NOW, recovery_point=0, clean_shutdown=False
    )
    assert recovered.log_end_offset == survivor
    assert len(recovered.segments) == 1  # everything after the damage is gone
    assert recovered.recovered_bytes_truncated > 0
    _check_consistent(recovered, expected)
    # Undamaged, the rebuilt indexes are byte for byte the ones the appends wrote.
    fresh, _ = _build(tmp_path / "t-1", blobs=30, seed=seed)
    fresh.close()
    paths = [p for s in fresh.segments for p in (s.offset_index.path, s.time_index.path)]
    appended = [Path(p).read_bytes() for p in paths]
    assert all(appended[:2])
    Log(
        str(tmp_path / "t-1"), settings(), now_ms=NOW, recovery_point=0, clean_shutdown=False
    ).close()
    assert [Path(p).read_bytes() for p in paths] == appended
