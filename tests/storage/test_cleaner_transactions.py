"""Compaction of transactional data (Kafka's ``Cleaner`` with ``CleanedTransactionMetadata``):
aborted data removed and never mapped, markers removed only once their transaction has no data
left and ``delete.retention.ms`` has passed, nothing cleaned past the last stable offset, the
cleaned segments' ``.txnindex``, and read_committed fetches and restarts after cleaning.

Rounds are driven by hand as in ``test_cleaner.py``, on a disk log behind a UnifiedLog and a
Partition, so the producer state, the LSO and the read_committed fetch path are the broker's.
"""

from __future__ import annotations

import heapq
import os
import uuid
from pathlib import Path

import pytest

from kafkacompat.cluster.partition import FetchIsolation, Partition
from kafkacompat.records import RecordBatch, RecordBatchBuilder, iter_batches
from kafkacompat.records.control import (
    ControlRecordType,
    build_end_transaction_marker_batch,
    decode_control_record_key,
)
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log import Log
from kafkacompat.storage.log_cleaner import CleanResult, clean
from kafkacompat.storage.log_cleaner_manager import LogCleanerManager, cleanable_range
from kafkacompat.storage.transaction_index import AbortedTxn
from kafkacompat.storage.unified_log import UnifiedLog

from .log_helpers import region_bytes

NOW = 1_700_000_000_000
LATER = NOW + 1_000_000
RETENTION = 10_000
COMMIT, ABORT = ControlRecordType.COMMIT, ControlRecordType.ABORT

Row = tuple[int, bytes | None, bytes | None]
KeyValues = list[tuple[bytes, bytes | None]]


class TxnLog:
    """A compacted disk partition written the way the broker writes it: client batches, and
    markers through the coordinator's path (``from_client=False``)."""

    def __init__(self, path: Path, *, clean_shutdown: bool = True, recovery_point: int = 0) -> None:
        self.path = path
        self.config = LogConfig.from_props(
            {
                "cleanup.policy": "compact",
                "segment.bytes": str(1 << 20),  # segments roll only when a test says so
                "delete.retention.ms": str(RETENTION),
            }
        )
        self.local = Log(
            str(path),
            self.config,
            now_ms=NOW,
            clean_shutdown=clean_shutdown,
            recovery_point=recovery_point,
        )
        self.log = UnifiedLog(("t", 0), self.local, self.config, directory=path)
        self.partition = Partition("t", 0, uuid.uuid4(), self.log, local_broker_id=1)
        self.sequences: dict[int, int] = {}

    def write(self, records: KeyValues, pid: int | None = None) -> int:
        """One batch, transactional when ``pid`` is given; its base offset."""
        if pid is None:
            builder = RecordBatchBuilder()
        else:
            seq = self.sequences.get(pid, 0)
            self.sequences[pid] = seq + len(records)
            builder = RecordBatchBuilder(
                producer_id=pid, producer_epoch=0, base_sequence=seq, is_transactional=True
            )
        for i, (key, value) in enumerate(records):
            builder.append(value, key=key, timestamp=NOW + i)
        blob = bytearray(builder.build())
        return self.partition.append_records_to_leader(blob, now_ms=NOW).base_offset

    def end(self, pid: int, kind: ControlRecordType) -> int:
        blob = build_end_transaction_marker_batch(
            control_type=kind, producer_id=pid, producer_epoch=0, coordinator_epoch=0, timestamp=NOW
        )
        info = self.partition.append_records_to_leader(
            bytearray(blob), now_ms=NOW, from_client=False
        )
        return info.base_offset

    def roll(self) -> None:
        self.local.roll()

    def round(self, now_ms: int = LATER, first_dirty: int | None = None) -> CleanResult:
        """One round as the broker runs it: the plan bounded by the first unstable offset, the
        active producers' last offsets, then the swap."""
        plan = cleanable_range(self.local, first_dirty, now_ms, self.log.first_unstable_offset)
        assert plan is not None
        plan.open_files()
        result = clean(
            plan,
            now_ms=now_ms,
            map_budget_bytes=1 << 20,
            producer_last_offsets=self.log.producer_last_offsets(),
            producer_epochs=self.log.producer_epochs_without_data(),
        )
        for cleaned in result.cleaned:
            assert self.local.replace_segments(cleaned, now_ms)
        return result

    def batches(self) -> list[RecordBatch]:
        out: list[RecordBatch] = []
        offset = self.local.log_start_offset
        while offset < self.local.log_end_offset:
            found = list(iter_batches(region_bytes(self.local, offset, 1 << 20)))
            assert found, f"nothing read at {offset}"
            out += found
            offset = found[-1].next_offset
        assert all(batch.is_valid() for batch in out)
        return out

    def committed_view(self) -> list[Row]:
        """What a read_committed consumer receives: fetches at TXN_COMMITTED, and the records
        of the aborted transactions each fetch lists dropped as Kafka's consumer drops them."""
        rows: list[Row] = []
        offset = self.local.log_start_offset
        while True:
            read = self.partition.read_records(offset, 1 << 20, FetchIsolation.TXN_COMMITTED)
            if not read.records:
                assert offset == read.last_stable_offset
                return rows
            pending = [(t.first_offset, t.producer_id) for t in read.aborted_transactions or ()]
            heapq.heapify(pending)
            aborting: set[int] = set()
            for batch in iter_batches(bytes(read.records)):
                while pending and pending[0][0] <= batch.last_offset:
                    aborting.add(heapq.heappop(pending)[1])
                if batch.is_control:
                    records = list(batch.iter_records())
                    if records and decode_control_record_key(records[0].key) == ABORT:
                        aborting.discard(batch.producer_id)
                elif not (batch.is_transactional and batch.producer_id in aborting):
                    rows += [
                        (r.offset, r.key, r.value)
                        for r in batch.iter_records()
                        if r.offset >= offset
                    ]
                offset = batch.next_offset

    def aborted(self) -> list[AbortedTxn]:
        return self.log.collect_aborted_txns(0, self.local.log_end_offset)


def markers(log: TxnLog) -> list[tuple[int, int | None]]:
    """(offset, delete horizon) of every control batch left."""
    return [(b.base_offset, b.delete_horizon_ms) for b in log.batches() if b.is_control]


def txn_index_files(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".txnindex"))


@pytest.fixture
def mixed(tmp_path: Path) -> TxnLog:
    """A committed transaction, an aborted one that rewrites one of its keys, plain data."""
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"c1"), (b"k2", b"c2")], pid=1)  # 0-1
    log.end(1, COMMIT)  # 2
    log.write([(b"k1", b"a1"), (b"k3", b"a3")], pid=2)  # 3-4, newer k1, aborted
    log.end(2, ABORT)  # 5
    log.write([(b"k4", b"v4")])  # 6
    log.write([(b"k5", b"c5")], pid=2)  # 7, producer 2's last batch
    log.end(2, COMMIT)  # 8
    log.roll()
    log.write([(b"z", b"z")])  # 9, the active segment
    return log


COMMITTED_ROWS: list[Row] = [
    (0, b"k1", b"c1"),
    (1, b"k2", b"c2"),
    (6, b"k4", b"v4"),
    (7, b"k5", b"c5"),
    (9, b"z", b"z"),
]


# -- aborted data -----------------------------------------------------------------------------------


def test_aborted_data_is_removed_and_never_shadows_committed_values(mixed: TxnLog) -> None:
    assert mixed.committed_view() == COMMITTED_ROWS
    assert mixed.aborted() == [AbortedTxn(2, 3, 5, 6)]

    result = mixed.round()

    assert result.stats.aborted_records_removed == 2
    layout = [(b.base_offset, b.last_offset, b.records_count) for b in mixed.batches()]
    assert layout == [(0, 1, 2), (2, 2, 1), (5, 5, 1), (6, 6, 1), (7, 7, 1), (8, 8, 1), (9, 9, 1)]
    # k1=c1 is still there: the aborted k1=a1 at offset 3 was not put in the offset map.
    assert mixed.committed_view() == COMMITTED_ROWS
    # A committed transaction's batch keeps its producer fields and transactional flag.
    first = mixed.batches()[0]
    assert first.is_transactional and (first.producer_id, first.producer_epoch) == (1, 0)
    # Every marker stays this round: the COMMIT's data survives, and the ABORT's data was
    # met (and removed) by this very round, so the cleaned segment lists its transaction.
    assert markers(mixed) == [(2, None), (5, None), (8, None)]
    assert mixed.local.segments[0].txn_index.entries == [AbortedTxn(2, 3, 5, 6)]


def test_an_abort_marker_goes_only_after_delete_retention_ms(mixed: TxnLog) -> None:
    first = mixed.round()
    second = mixed.round(LATER, first.end_offset)

    # No data of the aborted transaction is left: its marker is stamped with a delete
    # horizon, and the cleaned segment's index no longer lists the transaction.
    horizon = LATER + RETENTION
    assert markers(mixed) == [(2, None), (5, horizon), (8, None)]
    assert mixed.local.segments[0].txn_index.entries == []
    assert txn_index_files(mixed.path) == []
    assert second.stats.markers_removed == 0
    assert mixed.committed_view() == COMMITTED_ROWS
    stamped = [bytes(b.buffer) for b in mixed.batches()]

    before_horizon = mixed.round(horizon - 1, second.end_offset)
    assert [bytes(b.buffer) for b in mixed.batches()] == stamped  # stamped once, kept
    assert before_horizon.stats.markers_removed == 0

    after = mixed.round(horizon, before_horizon.end_offset)
    assert after.stats.markers_removed == 1
    assert markers(mixed) == [(2, None), (8, None)]
    assert mixed.committed_view() == COMMITTED_ROWS


def test_a_commit_marker_goes_once_its_transaction_has_no_data_left(tmp_path: Path) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"c1")], pid=1)  # 0
    log.end(1, COMMIT)  # 1
    log.write([(b"k2", b"c2")], pid=1)  # 2, producer 1's last batch
    log.end(1, COMMIT)  # 3
    log.write([(b"k1", b"new")])  # 4 supersedes offset 0
    log.roll()
    log.write([(b"z", b"z")])  # 5
    expected = [(2, b"k2", b"c2"), (4, b"k1", b"new"), (5, b"z", b"z")]

    first = log.round()
    # Offset 0 is gone, but this round met it: its marker stays unstamped.
    assert [b.base_offset for b in log.batches()] == [1, 2, 3, 4, 5]
    assert markers(log) == [(1, None), (3, None)]
    second = log.round(LATER, first.end_offset)
    assert markers(log) == [(1, LATER + RETENTION), (3, None)]
    assert log.committed_view() == expected
    third = log.round(LATER + RETENTION, second.end_offset)
    assert third.stats.markers_removed == 1
    assert markers(log) == [(3, None)]
    assert log.committed_view() == expected


def test_an_aborted_batch_that_is_its_producers_last_keeps_its_header(tmp_path: Path) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"a1"), (b"k2", b"a2")], pid=3)  # 0-1, aborted
    log.end(3, ABORT)  # 2
    log.write([(b"k9", b"v9")])  # 3
    log.roll()
    log.write([(b"z", b"z")])  # 4

    first = log.round()
    second = log.round(LATER + 2 * RETENTION, first.end_offset)

    header = log.batches()[0]
    assert (header.base_offset, header.last_offset, header.records_count) == (0, 1, 0)
    assert header.is_transactional and not header.is_control
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (3, 0, 0)
    assert list(header.iter_records()) == []
    # The header is data of the aborted transaction: its marker and index entry stay.
    assert markers(log) == [(2, None)]
    assert second.stats.markers_removed == 0
    assert log.aborted() == [AbortedTxn(3, 0, 2, 3)]
    assert log.committed_view() == [(3, b"k9", b"v9"), (4, b"z", b"z")]
    # The producer's next sequence is still accepted after it.
    assert log.write([(b"k1", b"c1")], pid=3) == 5


def test_a_marker_that_bumped_its_producers_epoch_keeps_its_header(tmp_path: Path) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"a1")], pid=8)  # 0, epoch 0
    # The coordinator aborts the timed-out transaction with a bumped epoch: the producer's
    # state keeps no data batch of epoch 1, and this marker is what carries that epoch.
    blob = build_end_transaction_marker_batch(
        control_type=ABORT, producer_id=8, producer_epoch=1, coordinator_epoch=0, timestamp=NOW
    )
    log.partition.append_records_to_leader(bytearray(blob), now_ms=NOW, from_client=False)  # 1
    log.write([(b"k2", b"v2")])  # 2
    log.roll()
    log.write([(b"z", b"z")])  # 3
    assert log.log.producer_epochs_without_data() == {8: 1}

    first = log.round()
    assert [b.base_offset for b in log.batches()] == [1, 2, 3]  # no header: not its last
    second = log.round(LATER, first.end_offset)
    assert markers(log) == [(1, LATER + RETENTION)]
    third = log.round(LATER + RETENTION, second.end_offset)
    fourth = log.round(LATER + 2 * RETENTION, third.end_offset)

    assert third.stats.markers_removed == 1 and fourth.stats.markers_removed == 0
    header = log.batches()[0]
    assert (header.base_offset, header.records_count, header.is_control) == (1, 0, True)
    assert (header.producer_id, header.producer_epoch) == (8, 1)
    assert log.committed_view() == [(2, b"k2", b"v2"), (3, b"z", b"z")]


def test_an_aborted_transaction_whose_marker_is_past_the_cleanable_range(tmp_path: Path) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"c1")])  # 0
    log.write([(b"k1", b"a1"), (b"k2", b"a2")], pid=4)  # 1-2
    log.roll()
    log.end(4, ABORT)  # 3, in the active segment: the index entry is that segment's
    log.write([(b"k3", b"c3")], pid=4)  # 4
    log.end(4, COMMIT)  # 5

    result = log.round()

    assert result.stats.aborted_records_removed == 2
    assert [b.base_offset for b in log.batches()] == [0, 3, 4, 5]
    assert log.local.segments[0].txn_index.entries == []
    assert log.local.segments[-1].txn_index.entries == [AbortedTxn(4, 1, 3, 4)]
    assert log.committed_view() == [(0, b"k1", b"c1"), (4, b"k3", b"c3")]


def test_a_producer_commits_after_an_aborted_transaction_below_the_dirty_range(
    tmp_path: Path,
) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"a1")], pid=5)  # 0, aborted
    log.end(5, ABORT)  # 1
    log.roll()
    log.write([(b"k2", b"x")])  # 2
    first = log.round()
    log.write([(b"k2", b"c2")], pid=5)  # 3, committed
    log.end(5, COMMIT)  # 4
    log.roll()
    log.write([(b"z", b"z")])  # 5

    # The first dirty offset is past the ABORT marker: its transaction must not swallow
    # the producer's committed batch, in the map or in the cleaning.
    log.round(LATER, first.end_offset)

    assert log.committed_view() == [(3, b"k2", b"c2"), (5, b"z", b"z")]
    assert [r for r in log.committed_view() if r[1] == b"k2"] == [(3, b"k2", b"c2")]


# -- the last stable offset -------------------------------------------------------------------------


def test_nothing_at_or_past_the_first_unstable_offset_is_cleaned(tmp_path: Path) -> None:
    log = TxnLog(tmp_path)
    log.write([(b"k1", b"a")])  # 0
    log.write([(b"k1", b"b")])  # 1
    log.roll()
    log.write([(b"k1", b"c")])  # 2
    log.write([(b"k2", b"t1")], pid=6)  # 3, open
    log.write([(b"k1", b"d")])  # 4
    log.roll()
    log.write([(b"k1", b"e")])  # 5
    log.roll()
    log.write([(b"z", b"z")])  # 6

    assert log.log.first_unstable_offset == 3
    without = cleanable_range(log.local, None, LATER)
    assert without is not None and without.first_uncleanable_offset == 6
    # Whole segments only: the bound is the base of the segment holding the LSO.
    plan = cleanable_range(log.local, None, LATER, log.log.first_unstable_offset)
    assert plan is not None and plan.first_uncleanable_offset == 2
    manager = LogCleanerManager(None, dedupe_buffer_size=1 << 20)
    picked = manager.grab_filthiest(
        [(("t", 0), log.local)], LATER, lambda tp: log.log.first_unstable_offset
    )
    assert picked is not None and picked[1].first_uncleanable_offset == 2

    first = log.round()

    assert first.end_offset == 2
    assert [b.base_offset for b in log.batches()] == [1, 2, 3, 4, 5, 6]

    log.end(6, COMMIT)  # 7
    assert log.log.first_unstable_offset is None
    log.roll()
    log.write([(b"y", b"y")])  # 8
    log.round(LATER, first.end_offset)

    assert [b.base_offset for b in log.batches()] == [3, 5, 6, 7, 8]
    assert log.committed_view() == [
        (3, b"k2", b"t1"),
        (5, b"k1", b"e"),
        (6, b"z", b"z"),
        (8, b"y", b"y"),
    ]


# -- restarts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shutdown", ["clean", "crash"])
def test_a_cleaned_transactional_log_reopens_with_the_same_committed_view(
    mixed: TxnLog, shutdown: str
) -> None:
    mixed.write([(b"k6", b"open")], pid=7)  # 10, still open at the restart
    mixed.roll()
    mixed.write([(b"y", b"y")])  # 11
    first = mixed.round()
    mixed.round(LATER, first.end_offset)  # the ABORT marker now waits for its horizon
    view = mixed.committed_view()
    layout = [bytes(b.buffer) for b in mixed.batches()]
    assert view == COMMITTED_ROWS
    if shutdown == "clean":
        assert mixed.log.snapshot_producer_state()
        mixed.local.close()
    else:
        mixed.local.flush()
        mixed.local.close_handles()
        for name in os.listdir(mixed.path):  # no snapshot: the state replays the whole log
            if name.endswith(".snapshot"):
                os.unlink(mixed.path / name)

    # The recovery point as the manager's checkpoint holds it; a crash recovers from 0.
    recovery_point = mixed.local.recovery_point if shutdown == "clean" else 0
    reopened = TxnLog(mixed.path, clean_shutdown=shutdown == "clean", recovery_point=recovery_point)

    assert [bytes(b.buffer) for b in reopened.batches()] == layout
    assert reopened.log.first_unstable_offset == 10
    assert reopened.committed_view() == view
    reopened.end(7, COMMIT)  # 12
    assert reopened.committed_view() == [*view, (10, b"k6", b"open"), (11, b"y", b"y")]
    # Rounds go on from the reopened log, and the marker goes at its horizon.
    reopened.round(LATER + RETENTION)
    assert 5 not in [offset for offset, _ in markers(reopened)]
    assert [r for r in reopened.committed_view() if r[0] < 10] == view
