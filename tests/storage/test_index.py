"""The sparse indexes on their own: lookups, persistence on flush, lazy loading, sanity checks."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from kafkacompat.storage.index import CorruptIndexError, OffsetIndex, TimeIndex


def test_offset_index_lookup_and_reload(tmp_path: Path) -> None:
    path = str(tmp_path / "00000000000000000100.index")
    index = OffsetIndex(path, 100, 1024)
    index.reset()
    entries = [(100 + 10 * i + 9, 500 * i + 40) for i in range(50)]
    for offset, position in entries:
        index.append(offset, position)
    index.append(105, 99_999)  # out of order: ignored, never corrupts the index
    assert index.lookup(99) == (100, 0)
    assert index.lookup(108) == (100, 0)
    assert index.lookup(109) == (109, 40)
    rng = random.Random(0)
    for _ in range(200):
        target = rng.randrange(90, 700)
        want = max(((o, p) for o, p in entries if o <= target), default=(100, 0))
        assert index.lookup(target) == want
    assert index.floor_position(1039) == 540 and index.floor_position(10) == 0
    assert os.path.getsize(path) == 0  # entries reach the file on flush only
    index.flush()
    assert os.path.getsize(path) == 8 * len(entries)
    with open(path, "rb") as f:
        assert struct.unpack(">ii", f.read(8)) == (9, 40)  # relative offset, position; big-endian
    reloaded = OffsetIndex(path, 100, 1024)
    reloaded.quick_check()
    assert reloaded.lookup(300) == index.lookup(300)
    assert reloaded.last_entry() == entries[-1]


def test_offset_index_full_and_checks(tmp_path: Path) -> None:
    path = str(tmp_path / "00000000000000000000.index")
    index = OffsetIndex(path, 0, 8 * 3)
    index.reset()
    for i in range(3):
        assert not index.is_full
        index.append(i, i * 100)
    assert index.is_full
    index.flush()
    index.check_against_log(201)
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0, 8 * 3).check_against_log(200)  # points at the log's end
    with open(path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0, 1 << 20).quick_check()
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0, 1 << 20).load()
    with open(path, "wb") as f:
        f.write(struct.pack(">iiii", 5, 10, 4, 20))
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0, 1 << 20).load()
    with pytest.raises(CorruptIndexError):
        OffsetIndex(str(tmp_path / "missing.index"), 0, 1 << 20).quick_check()


def test_time_index(tmp_path: Path) -> None:
    path = str(tmp_path / "00000000000000000010.timeindex")
    index = TimeIndex(path, 10, 1024)
    index.reset()
    assert index.last_entry() is None and index.lookup(5) == 10
    index.maybe_append(1000, 12)
    index.maybe_append(1000, 14)  # the max timestamp did not grow: no entry
    index.maybe_append(900, 15)
    index.maybe_append(2000, 20)
    assert len(index) == 2
    assert index.lookup(999) == 10
    assert index.lookup(1000) == 12 and index.lookup(1999) == 12
    assert index.lookup(5000) == 20
    index.flush()
    with open(path, "rb") as f:
        assert struct.unpack(">qi", f.read(12)) == (1000, 2)
    reloaded = TimeIndex(path, 10, 1024)
    assert reloaded.last_entry() == (2000, 20)
    reloaded.check_against_log(21)
    with pytest.raises(CorruptIndexError):
        TimeIndex(path, 10, 1024).check_against_log(20)
    with open(path, "wb") as f:
        f.write(struct.pack(">qiqi", 5, 1, 4, 2))
    with pytest.raises(CorruptIndexError):
        TimeIndex(path, 10, 1024).load()


def test_unload_keeps_unflushed_entries(tmp_path: Path) -> None:
    index = OffsetIndex(str(tmp_path / "00000000000000000000.index"), 0, 1024)
    index.reset()
    index.append(5, 100)
    index.unload()  # pending entries are not in the file yet: must not be dropped
    assert index.lookup(6) == (5, 100)
    index.flush()
    index.unload()
    assert index.lookup(6) == (5, 100)  # reread from disk
