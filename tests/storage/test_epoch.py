"""The leader epoch cache (Kafka's LeaderEpochFileCache) and its checkpoint file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkacompat.storage.atomic_file import CorruptFileError
from kafkacompat.storage.checkpoint_file import (
    LEADER_EPOCH_CHECKPOINT,
    read_leader_epoch_checkpoint,
    write_leader_epoch_checkpoint,
)
from kafkacompat.storage.epoch import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, LeaderEpochCache

UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def test_assign_keeps_epochs_and_offsets_increasing() -> None:
    cache = LeaderEpochCache()
    assert cache.latest_epoch == UNDEFINED_EPOCH
    assert cache.assign(0, 0)
    assert not cache.assign(0, 5)  # same epoch, later offset: nothing new
    assert cache.assign(2, 10)
    assert cache.assign(5, 30)
    assert cache.entries == [(0, 0), (2, 10), (5, 30)]
    assert cache.latest_epoch == 5
    # A smaller epoch or start offset drops the entries it contradicts (Kafka's
    # maybeTruncateNonMonotonicEntries), then is added.
    assert cache.assign(3, 20)
    assert cache.entries == [(0, 0), (2, 10), (3, 20)]
    assert cache.assign(4, 5)
    assert cache.entries == [(0, 0), (4, 5)]
    with pytest.raises(ValueError):
        cache.assign(-1, 3)
    with pytest.raises(ValueError):
        cache.assign(6, -3)


def test_loading_sanitises_a_non_monotonic_list() -> None:
    cache = LeaderEpochCache([(1, 0), (3, 50), (2, 40), (4, 60)])
    assert cache.entries == [(1, 0), (2, 40), (4, 60)]


def test_truncate_from_end_drops_entries_at_or_past_the_new_end() -> None:
    cache = LeaderEpochCache([(0, 0), (2, 10), (5, 30)])
    assert not cache.truncate_from_end(31)
    assert not cache.truncate_from_end(-1)
    assert cache.truncate_from_end(30)
    assert cache.entries == [(0, 0), (2, 10)] and cache.latest_epoch == 2
    assert cache.truncate_from_end(0)
    assert cache.entries == [] and cache.latest_epoch == UNDEFINED_EPOCH


def test_truncate_from_start_keeps_the_epoch_of_the_new_start() -> None:
    cache = LeaderEpochCache([(0, 0), (2, 10), (5, 30)])
    assert not cache.truncate_from_start(0)  # the first entry already starts there
    assert cache.truncate_from_start(15)
    assert cache.entries == [(2, 15), (5, 30)]
    assert cache.truncate_from_start(30)  # exclusive: an entry at the offset is kept
    assert cache.entries == [(5, 30)]
    assert not cache.truncate_from_start(30)
    assert cache.truncate_from_start(99)
    assert cache.entries == [(5, 99)] and cache.latest_epoch == 5


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (UNDEFINED_EPOCH, UNDEFINED),
        (0, (0, 10)),  # the start of the next epoch ends it
        (1, (0, 10)),  # an epoch this log never saw: the largest below it
        (2, (2, 30)),
        (4, (2, 30)),
        (5, (5, 42)),  # the latest epoch ends at the log end offset
        (6, UNDEFINED),  # newer than anything known
    ],
)
def test_end_offset_for_follows_kafka(requested: int, expected: tuple[int, int]) -> None:
    cache = LeaderEpochCache([(0, 0), (2, 10), (5, 30)])
    assert cache.end_offset_for(requested, 42) == expected


def test_end_offset_for_an_epoch_older_than_the_log() -> None:
    # Retention removed epoch 1's data: Kafka answers the requested epoch with the first start
    # offset, so a follower truncates to where this log begins.
    cache = LeaderEpochCache([(3, 100), (4, 150)])
    assert cache.end_offset_for(1, 200) == (1, 100)
    assert LeaderEpochCache().end_offset_for(0, 200) == UNDEFINED


def test_checkpoint_file_is_kafkas_format(tmp_path: Path) -> None:
    path = tmp_path / LEADER_EPOCH_CHECKPOINT
    write_leader_epoch_checkpoint(path, [(0, 0), (3, 150)])
    assert path.read_bytes() == b"0\n2\n0 0\n3 150\n"
    assert read_leader_epoch_checkpoint(path) == [(0, 0), (3, 150)]
    write_leader_epoch_checkpoint(path, [])
    assert path.read_bytes() == b"0\n0\n"
    assert read_leader_epoch_checkpoint(path) == []
    assert read_leader_epoch_checkpoint(tmp_path / "absent") is None
    path.write_bytes(b"")  # how Kafka creates it
    assert read_leader_epoch_checkpoint(path) == []


@pytest.mark.parametrize(
    "content",
    [b"0\n", b"1\n0\n", b"0\n2\n0 0\n", b"0\n1\n0\n", b"0\n1\nx 5\n", b"0\n1\n1 2 3\n", b"\xff\n"],
)
def test_checkpoint_file_parsing_is_strict(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / LEADER_EPOCH_CHECKPOINT
    path.write_bytes(content)
    with pytest.raises(CorruptFileError):
        read_leader_epoch_checkpoint(path)
