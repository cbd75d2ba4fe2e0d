"""Transactional offset commits in the group coordinator (Kafka's OffsetMetadataManager):
pending by producer id, decided by the marker, and what deletion, expiry, deleted topics and
the start-up load do with them."""

from __future__ import annotations

from kafkacompat.coordinators.group_loader import load_records
from kafkacompat.coordinators.group_metadata import GroupState, OffsetAndMetadata
from kafkacompat.coordinators.group_records import offset_commit_key
from kafkacompat.errors import ErrorCode
from kafkacompat.records.control import ControlRecordType, build_end_transaction_marker_batch
from tests.coordinators.test_group_coordinator import Harness
from tests.coordinators.test_group_store import FakeLog, _batch

E = ErrorCode
T0 = ("t", 0)
T1 = ("t", 1)
PID, OTHER = 1000, 2000
RETENTION = 7 * 24 * 60 * 60_000


def txn_commit(
    h: Harness,
    offsets: dict[tuple[str, int], int],
    *,
    producer_id: int = PID,
    group: str = "g",
    member_id: str = "",
    generation: int = -1,
) -> dict[tuple[str, int], ErrorCode]:
    return h.coordinator.commit_transactional_offsets(
        group,
        producer_id,
        0,
        member_id,
        None,
        generation,
        {
            tp: OffsetAndMetadata(offset=o, metadata="", commit_timestamp=h.now)
            for tp, o in offsets.items()
        },
    )


def marker(h: Harness, committed: bool, producer_id: int = PID) -> None:
    h.coordinator.on_transaction_completed(producer_id, [0], committed)


def test_pending_until_commit_then_visible() -> None:
    h = Harness()
    assert txn_commit(h, {T0: 5, T1: 6}) == {T0: E.NONE, T1: E.NONE}
    assert h.committed() == {}
    assert h.coordinator.pending_offsets("g") == {T0, T1}
    marker(h, committed=False, producer_id=OTHER)  # another producer's marker: nothing
    assert h.coordinator.pending_offsets("g") == {T0, T1}
    marker(h, committed=True)
    assert h.committed() == {T0: 5, T1: 6}
    assert h.coordinator.pending_offsets("g") == set()


def test_abort_drops_them() -> None:
    h = Harness()
    h.commit({T0: 1})
    txn_commit(h, {T0: 5, T1: 6})
    marker(h, committed=False)
    assert h.committed() == {T0: 1}
    assert h.coordinator.pending_offsets("g") == set()


def test_the_later_record_wins_between_transactions_and_plain_commits() -> None:
    h = Harness()
    txn_commit(h, {T0: 10, T1: 11})  # first in the log
    txn_commit(h, {T0: 20}, producer_id=OTHER)  # later
    h.commit({T1: 99})  # later still, plain
    marker(h, committed=True, producer_id=OTHER)
    assert h.committed() == {T0: 20, T1: 99}
    marker(h, committed=True)  # older records than both: neither partition changes
    assert h.committed() == {T0: 20, T1: 99}
    txn_commit(h, {T0: 30})  # a new transaction, after every commit so far
    marker(h, committed=True)
    assert h.committed() == {T0: 30, T1: 99}


def test_transactional_commits_skip_the_group_state_checks() -> None:
    h = Harness()
    (a,) = h.form_group(1)
    # No member id or generation (TxnOffsetCommit v0-2) while the group has members: accepted.
    assert txn_commit(h, {T0: 1}) == {T0: E.NONE}
    assert txn_commit(h, {T0: 1}, member_id=a.member_id, generation=2) == {T0: E.ILLEGAL_GENERATION}
    assert txn_commit(h, {T0: 1}, member_id="x", generation=1) == {T0: E.UNKNOWN_MEMBER_ID}
    assert txn_commit(h, {T0: 1}, member_id=a.member_id, generation=1) == {T0: E.NONE}
    assert txn_commit(h, {T0: 1}, group="") == {T0: E.INVALID_GROUP_ID}
    h.coordinator.loading = True
    assert txn_commit(h, {T0: 1}) == {T0: E.COORDINATOR_LOAD_IN_PROGRESS}


def test_delete_group_drops_pending_offsets() -> None:
    h = Harness()
    txn_commit(h, {T0: 5})
    assert h.coordinator.delete_groups(["g"]) == {"g": E.NONE}
    assert h.coordinator.pending_offsets("g") == set()
    marker(h, committed=True)
    assert h.committed() == {}


def test_deleted_topics_take_their_pending_offsets() -> None:
    h = Harness()
    txn_commit(h, {T0: 5, ("u", 0): 6})
    assert h.coordinator.on_partitions_deleted([T0, T1]) == 1
    assert h.coordinator.pending_offsets("g") == {("u", 0)}
    marker(h, committed=True)
    assert h.committed() == {("u", 0): 6}


def test_expiry_waits_for_the_transaction() -> None:
    h = Harness()
    h.commit({T0: 1, T1: 2})
    txn_commit(h, {T0: 5})
    h.advance(RETENTION + 1)
    h.coordinator.expire_offsets()
    # T1 expired; T0 has a pending offset, and the group an open transaction: both stay.
    assert h.committed() == {T0: 1}
    marker(h, committed=False)
    h.advance(RETENTION + 1)
    h.coordinator.expire_offsets()
    assert "g" not in h.coordinator.groups


def test_an_empty_group_with_an_open_transaction_is_not_removed() -> None:
    h = Harness()
    txn_commit(h, {T0: 5})  # a simple group, with nothing committed yet
    h.advance(RETENTION + 1)
    h.coordinator.expire_offsets()
    assert h.coordinator.groups["g"].state is GroupState.EMPTY
    marker(h, committed=True)
    assert h.committed() == {T0: 5}


# -- the start-up scan ------------------------------------------------------------------------------


def _marker(kind: ControlRecordType, producer_id: int = PID) -> bytes:
    return build_end_transaction_marker_batch(
        control_type=kind,
        producer_id=producer_id,
        producer_epoch=0,
        coordinator_epoch=0,
        timestamp=1,
    )


def _txn(producer_id: int = PID) -> dict[str, object]:
    return {
        "producer_id": producer_id,
        "producer_epoch": 0,
        "base_sequence": 0,
        "is_transactional": True,
    }


def test_the_load_keeps_open_transactions_apart() -> None:
    a, b, c = (offset_commit_key("g", "t", p) for p in range(3))
    log = FakeLog(
        [
            _batch([(a, b"a0"), (b, b"b0"), (c, b"c0")]),  # offsets 0-2
            _batch([(a, b"a-open"), (b, b"b-open"), (c, b"c-open")], **_txn()),  # 3-5
            _batch([(b, b"b-plain"), (c, None)]),  # 6-7: later than the open records
            _batch([(a, b"a-done")], **_txn(OTHER)),  # 8
            _marker(ControlRecordType.COMMIT, OTHER),  # 9
        ]
    )
    loaded = load_records(log, 0)
    assert loaded.latest == {a: b"a-done", b: b"b-plain", c: None}
    # The tombstone of c came after the open record: it removed it, as Kafka's replay does.
    assert loaded.pending == {PID: {a: (3, b"a-open"), b: (4, b"b-open")}}
    # b's plain record and a's committed one are later than the open ones: a COMMIT of
    # PID will keep them.
    assert loaded.record_offsets[b] > 4 and loaded.record_offsets[a] == 8


def test_a_commit_marker_applies_only_records_later_than_the_committed_ones() -> None:
    a, b = (offset_commit_key("g", "t", p) for p in range(2))
    log = FakeLog(
        [
            _batch([(a, b"a-txn"), (b, b"b-txn")], **_txn()),
            _batch([(b, b"b-plain")]),
            _marker(ControlRecordType.COMMIT),
            _batch([(a, b"aborted")], **_txn()),
            _marker(ControlRecordType.ABORT),
        ]
    )
    loaded = load_records(log, 0)
    assert loaded.latest == {a: b"a-txn", b: b"b-plain"}
    assert loaded.pending == {} and loaded.record_offsets == {}


def test_a_tombstone_before_an_open_record_does_not_remove_it_at_replay() -> None:
    a = offset_commit_key("g", "t", 0)
    log = FakeLog([_batch([(a, None)]), _batch([(a, b"a-open")], **_txn())])
    loaded = load_records(log, 0)
    # Replayed after the pending record, the tombstone would remove it: it is left out.
    assert loaded.latest == {}
    assert loaded.pending == {PID: {a: (1, b"a-open")}}
