"""Producer state across restarts: snapshots, rebuilding from a real log (the unified log's
use of it: test_unified_log.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.storage.log import DefaultLogSettings, Log
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.null import NullLog
from kafkacompat.storage.producer_entry import BatchMetadata as Meta
from kafkacompat.storage.producer_entry import ProducerStateEntry
from kafkacompat.storage.producer_snapshot import (
    CorruptSnapshotError,
    decode_snapshot,
    encode_snapshot,
    list_snapshots,
    snapshot_path,
)
from kafkacompat.storage.producer_state import ProducerStateManager
from tests.coordinators.helpers import batch_bytes, produce

TP = ("orders", 0)
NOW = 10_000
SMALL_SEGMENTS = DefaultLogSettings(segment_bytes=600, index_interval_bytes=128)


def open_log(directory: Path) -> Log:
    return Log(str(directory), SMALL_SEGMENTS, now_ms=NOW)


def loaded(directory: Path, log: Log, now_ms: int = NOW) -> ProducerStateManager:
    state = ProducerStateManager(TP, directory)
    state.load(log, now_ms)
    return state


def fill(state: ProducerStateManager, log: Log, producers: int = 3, rounds: int = 8) -> None:
    """Interleaved producers, each in sequence, with plain batches in between."""
    for r in range(rounds):
        for pid in range(producers):
            produce(state, log, batch_bytes(pid, 0, 2 * r, count=2, timestamp=NOW))
        produce(state, log, batch_bytes(count=3))


def entries(state: ProducerStateManager) -> dict[int, ProducerStateEntry]:
    return dict(state.active_producers)


# -- the snapshot format ---------------------------------------------------------------------


def test_snapshot_round_trip() -> None:
    producers = [
        ProducerStateEntry(9, 2, 1_234, [Meta(0, 4, 100, 4, 1_230), Meta(5, 5, 105, 0, 1_234)]),
        ProducerStateEntry(3, 0, -1, []),
        ProducerStateEntry(2**62, 32_767, 7, [Meta(2**31 - 1, 0, 2**40, 1, 7)]),
    ]
    offset, decoded = decode_snapshot(encode_snapshot(500, producers))
    assert offset == 500
    assert sorted(decoded, key=lambda e: e.producer_id) == sorted(
        producers, key=lambda e: e.producer_id
    )


@pytest.mark.parametrize("position", [0, 5, 8, 12, 20, 30, -1])
def test_any_flipped_byte_is_detected(position: int) -> None:
    data = bytearray(encode_snapshot(7, [ProducerStateEntry(1, 0, 5, [Meta(0, 0, 6, 0, 5)])]))
    data[position] ^= 0x01
    with pytest.raises(CorruptSnapshotError):
        decode_snapshot(bytes(data))


@pytest.mark.parametrize("cut", [0, 3, 21, 25, 40])
def test_truncated_snapshot_is_detected(cut: int) -> None:
    data = encode_snapshot(7, [ProducerStateEntry(1, 0, 5, [Meta(0, 0, 6, 0, 5)])])
    with pytest.raises(CorruptSnapshotError):
        decode_snapshot(data[:cut])


def test_snapshot_file_is_named_by_its_20_digit_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log, rounds=2)
    path = state.snapshot(log.log_end_offset)
    assert path is not None
    assert path.name == f"{log.log_end_offset:020d}.snapshot"
    assert state.snapshot(log.log_end_offset) is None  # nothing new to write


# -- loading ---------------------------------------------------------------------------------


def test_clean_restart_loads_the_snapshot_without_scanning(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log)
    state.snapshot(log.log_end_offset)
    expected = entries(state)
    log.close()

    reopened = open_log(tmp_path)
    # Scanning would find nothing: prove the state comes from the snapshot alone.
    for segment in reopened.segments:
        Path(segment.log_path).write_bytes(b"")
    assert entries(loaded(tmp_path, reopened)) == expected


def test_restart_without_a_snapshot_rebuilds_from_the_whole_log(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log)
    assert len(log.segments) > 2  # the scan crosses segment boundaries
    expected = entries(state)
    log.close()

    reopened = open_log(tmp_path)
    rebuilt = loaded(tmp_path, reopened)
    assert entries(rebuilt) == expected
    # The rebuilt state answers a retry of the last batch with its original offset.
    last = expected[1].batches[-1]
    assert produce(rebuilt, reopened, batch_bytes(1, 0, last.first_seq, count=2)) == (
        last.first_offset,
        True,
    )


def test_snapshot_then_tail_scan(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log, rounds=3)
    state.snapshot(log.log_end_offset)
    # More appends, then a crash: no snapshot at the end.
    for r in range(3, 6):
        produce(state, log, batch_bytes(0, 0, 2 * r, count=2, timestamp=NOW))
    produce(state, log, batch_bytes(1, 1, 0, timestamp=NOW))  # epoch bump after the snapshot
    produce(state, log, batch_bytes(99, 0, 0, timestamp=NOW))  # a producer new since then
    expected = entries(state)
    log.close()  # closing the log is not a producer snapshot

    rebuilt = loaded(tmp_path, open_log(tmp_path))
    assert entries(rebuilt) == expected


def test_corrupt_snapshot_is_deleted_and_the_log_scanned(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log)
    path = state.snapshot(log.log_end_offset)
    assert path is not None
    expected = entries(state)
    log.close()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    rebuilt = loaded(tmp_path, open_log(tmp_path))
    assert entries(rebuilt) == expected
    assert not path.exists()


def test_corrupt_newest_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log, rounds=2)
    older = state.snapshot(log.log_end_offset)
    fill(state, log, rounds=1)
    newer = state.snapshot(log.log_end_offset)
    assert older is not None and newer is not None
    expected = entries(state)
    newer.write_bytes(b"kcps garbage")

    rebuilt = loaded(tmp_path, log)
    assert entries(rebuilt) == expected
    assert [p for _, p in list_snapshots(tmp_path)] == [older]


def test_snapshots_above_the_log_end_are_deleted(tmp_path: Path) -> None:
    # A snapshot beyond the log end describes records a truncation removed.
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log, rounds=2)
    expected = entries(state)
    bogus = snapshot_path(tmp_path, log.log_end_offset + 10)
    bogus.write_bytes(encode_snapshot(log.log_end_offset + 10, [ProducerStateEntry(0, 9, NOW, [])]))

    rebuilt = loaded(tmp_path, log)
    assert entries(rebuilt) == expected
    assert not bogus.exists()


def test_snapshot_below_the_log_start_is_not_used(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    produce(state, log, batch_bytes(5, 0, 0, timestamp=NOW))
    old = state.snapshot(log.log_end_offset)
    produce(state, log, batch_bytes(5, 0, 1, timestamp=NOW))
    fill(state, log, rounds=4)
    log.delete_records_before(log.log_end_offset - 3)
    assert old is not None

    rebuilt = loaded(tmp_path, log)
    assert not old.exists()
    # Producer 5's records are gone: it is unknown now, so any sequence is accepted.
    assert rebuilt.last_entry(5) is None


def test_at_most_two_snapshots_are_kept(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    offsets = []
    for _ in range(4):
        fill(state, log, rounds=1)
        state.snapshot(log.log_end_offset)
        offsets.append(log.log_end_offset)
    assert state.snapshot_offsets() == offsets[-2:]


def test_expired_producers_are_not_loaded(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    produce(state, log, batch_bytes(1, 0, 0, timestamp=1_000))
    produce(state, log, batch_bytes(2, 0, 0, timestamp=90_000_000))
    state.snapshot(log.log_end_offset)
    rebuilt = loaded(tmp_path, log, now_ms=1_000 + 86_400_000)
    assert list(rebuilt.active_producers) == [2]


def test_snapshot_below_the_state_is_a_bug(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    state = loaded(tmp_path, log)
    fill(state, log, rounds=1)
    with pytest.raises(ValueError):
        state.snapshot(state.map_end_offset - 1)


def test_memory_engine_state_is_rebuilt_from_the_memory_log() -> None:
    log = MemoryLog()
    first = ProducerStateManager(TP, None)
    produce(first, log, batch_bytes(1, 0, 0, count=2, timestamp=NOW))
    second = ProducerStateManager(TP, None)
    second.load(log, NOW)
    assert entries(second) == entries(first)
    assert second.snapshot(log.log_end_offset) is None  # nowhere to write


def test_null_engine_keeps_nothing_to_rebuild_from() -> None:
    log = NullLog()
    state = ProducerStateManager(TP, None)
    state.load(log, NOW)
    assert produce(state, log, batch_bytes(1, 0, 0, timestamp=NOW)) == (0, False)
    # Deduplication still works while the process lives.
    assert produce(state, log, batch_bytes(1, 0, 0, timestamp=NOW)) == (0, True)
    reloaded = ProducerStateManager(TP, None)
    reloaded.load(log, NOW)
    assert dict(reloaded.active_producers) == {}


# -- property: the live state equals the state rebuilt after a restart -----------------------

_step = st.tuples(
    st.sampled_from(["next", "retry", "bump", "plain", "snapshot"]),
    st.integers(0, 2),  # producer
    st.integers(1, 4),  # records
)


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=40), crash=st.booleans())
def test_restart_reproduces_the_live_state(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[str, int, int]],
    crash: bool,
) -> None:
    directory = tmp_path_factory.mktemp("partition")
    log = open_log(directory)
    state = loaded(directory, log)
    sent: dict[int, list[tuple[int, int, int, int]]] = {}  # pid -> (epoch, seq, count, offset)
    epochs = {pid: 0 for pid in range(3)}
    next_seq = {pid: 0 for pid in range(3)}
    for action, pid, count in steps:
        if action == "plain":
            produce(state, log, batch_bytes(count=count))
        elif action == "snapshot":
            state.snapshot(log.log_end_offset)
        elif action == "retry" and sent.get(pid):
            epoch, seq, n, offset = sent[pid][-1]
            assert produce(state, log, batch_bytes(pid, epoch, seq, n, NOW)) == (offset, True)
        else:
            if action == "bump":
                epochs[pid] += 1
                next_seq[pid] = 0
            epoch, seq = epochs[pid], next_seq[pid]
            offset, duplicate = produce(state, log, batch_bytes(pid, epoch, seq, count, NOW))
            assert not duplicate
            sent.setdefault(pid, []).append((epoch, seq, count, offset))
            next_seq[pid] += count
    if not crash:
        state.snapshot(log.log_end_offset)
    expected = entries(state)
    log.close()
    assert entries(loaded(directory, open_log(directory))) == expected
