"""TransactionMetadata: Kafka's state graph, prepare/complete with one pending transition."""

from __future__ import annotations

import pytest

from kafkacompat.coordinators.transaction_metadata import (
    MAX_PRODUCER_EPOCH,
    IllegalTransactionStateError,
    TransactionMetadata,
    TransactionState,
    TxnTransitMetadata,
    is_epoch_exhausted,
)
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID

S = TransactionState

# Kafka's validPreviousStates, written out independently of the module's table.
EXPECTED_PREVIOUS = {
    S.EMPTY: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.ONGOING: {S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_COMMIT: {S.ONGOING},
    S.PREPARE_ABORT: {S.ONGOING, S.PREPARE_EPOCH_FENCE},
    S.COMPLETE_COMMIT: {S.PREPARE_COMMIT},
    S.COMPLETE_ABORT: {S.PREPARE_ABORT},
    S.DEAD: {S.EMPTY, S.COMPLETE_ABORT, S.COMPLETE_COMMIT},
    S.PREPARE_EPOCH_FENCE: {S.ONGOING},
}


def test_state_ids_names_and_previous_states_are_kafkas() -> None:
    assert [(s.value, s.state_name) for s in S] == [
        (0, "Empty"),
        (1, "Ongoing"),
        (2, "PrepareCommit"),
        (3, "PrepareAbort"),
        (4, "CompleteCommit"),
        (5, "CompleteAbort"),
        (6, "Dead"),
        (7, "PrepareEpochFence"),
    ]
    for state, previous in EXPECTED_PREVIOUS.items():
        assert state.valid_previous_states == previous, state
    assert {s for s in S if s.is_expiration_allowed} == {
        S.EMPTY,
        S.COMPLETE_COMMIT,
        S.COMPLETE_ABORT,
    }
    assert S.from_name("PrepareEpochFence") is S.PREPARE_EPOCH_FENCE
    assert S.from_name("prepareepochfence") is None


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", [s for s in S if s not in (S.DEAD,)])
def test_every_transition_is_allowed_exactly_from_its_previous_states(
    current: TransactionState, target: TransactionState
) -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=0, state=current)

    def prepare() -> TxnTransitMetadata:
        return metadata.prepare_transition_to(
            target, 1, 0, NO_PRODUCER_EPOCH, 1000, frozenset(), -1, 5
        )

    if current in EXPECTED_PREVIOUS[target]:
        transit = prepare()
        assert transit.txn_state is target
        assert metadata.pending_state is target
        assert metadata.state is current  # nothing applied before the append
    else:
        with pytest.raises(IllegalTransactionStateError):
            prepare()
        assert metadata.pending_state is None


def test_a_second_prepare_while_one_is_pending_is_refused() -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=0)
    metadata.prepare_add_partitions({("a", 0)}, 10)
    with pytest.raises(IllegalTransactionStateError):
        metadata.prepare_add_partitions({("a", 1)}, 11)


def test_complete_without_prepare_or_with_another_state_fails() -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=0)
    other = TransactionMetadata("t", producer_id=1, producer_epoch=0)
    transit = other.prepare_add_partitions({("a", 0)}, 10)
    with pytest.raises(IllegalTransactionStateError):
        metadata.complete_transition_to(transit)
    metadata.prepare_increment_producer_epoch(1000, None, 10)
    with pytest.raises(IllegalTransactionStateError):
        metadata.complete_transition_to(transit)


def test_init_add_commit_complete_lifecycle() -> None:
    metadata = TransactionMetadata("t", producer_id=7, txn_timeout_ms=500)
    init = metadata.prepare_increment_producer_epoch(1000, None, 10)
    assert init is not None and (init.producer_epoch, init.last_producer_epoch) == (0, -1)
    metadata.complete_transition_to(init)
    assert (metadata.state, metadata.producer_epoch, metadata.txn_timeout_ms) == (S.EMPTY, 0, 1000)

    add = metadata.prepare_add_partitions({("a", 0)}, 20)
    assert add.txn_start_timestamp == 20  # the transaction starts with its first partition
    metadata.complete_transition_to(add)
    more = metadata.prepare_add_partitions({("b", 1)}, 30)
    assert more.txn_start_timestamp == 20
    metadata.complete_transition_to(more)
    assert metadata.topic_partitions == {("a", 0), ("b", 1)}
    assert metadata.txn_last_update_timestamp == 30

    prepare = metadata.prepare_abort_or_commit(S.PREPARE_COMMIT, 0, NO_PRODUCER_ID, 40)
    assert prepare.topic_partitions == {("a", 0), ("b", 1)}
    metadata.complete_transition_to(prepare)
    assert metadata.state is S.PREPARE_COMMIT and metadata.producer_epoch == 0
    metadata.remove_partition(("a", 0))
    complete = metadata.prepare_complete(50)
    assert complete.txn_state is S.COMPLETE_COMMIT and complete.topic_partitions == frozenset()
    metadata.complete_transition_to(complete)
    assert metadata.state is S.COMPLETE_COMMIT
    assert metadata.topic_partitions == set()
    assert metadata.txn_start_timestamp == 20

    again = metadata.prepare_add_partitions({("c", 0)}, 60)
    assert again.txn_start_timestamp == 60  # a new transaction after a completed one


def test_remove_partition_only_while_preparing() -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=0, state=S.ONGOING)
    metadata.topic_partitions.add(("a", 0))
    with pytest.raises(IllegalTransactionStateError):
        metadata.remove_partition(("a", 0))


@pytest.mark.parametrize(
    ("expected", "current", "last", "outcome"),
    [
        (None, 3, 2, (4, NO_PRODUCER_EPOCH)),  # a new instance: bump, forget the last epoch
        (3, 3, 2, (4, 3)),  # KIP-360 recovery of the current producer
        (2, 3, 2, (3, 2)),  # retry of a bump whose answer was lost: the same answer
        (1, 3, 2, None),  # anything else is fenced
        (5, NO_PRODUCER_EPOCH, NO_PRODUCER_EPOCH, (0, NO_PRODUCER_EPOCH)),  # just created
    ],
)
def test_increment_producer_epoch(
    expected: int | None, current: int, last: int, outcome: tuple[int, int] | None
) -> None:
    metadata = TransactionMetadata(
        "t", producer_id=1, producer_epoch=current, last_producer_epoch=last
    )
    transit = metadata.prepare_increment_producer_epoch(1000, expected, 10)
    if outcome is None:
        assert transit is None
        assert metadata.pending_state is None
    else:
        assert transit is not None
        assert (transit.producer_epoch, transit.last_producer_epoch) == outcome
        metadata.complete_transition_to(transit)
        assert metadata.producer_epoch == outcome[0]


def test_epoch_exhaustion_and_rotation() -> None:
    assert not is_epoch_exhausted(MAX_PRODUCER_EPOCH - 2)
    assert is_epoch_exhausted(MAX_PRODUCER_EPOCH - 1)
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=MAX_PRODUCER_EPOCH - 1)
    with pytest.raises(IllegalTransactionStateError):
        metadata.prepare_increment_producer_epoch(1000, None, 10)
    transit = metadata.prepare_producer_id_rotation(2, 1000, 10, record_last_epoch=True)
    assert (transit.producer_id, transit.producer_epoch) == (2, 0)
    assert (transit.prev_producer_id, transit.last_producer_epoch) == (1, MAX_PRODUCER_EPOCH - 1)
    metadata.complete_transition_to(transit)
    assert (metadata.producer_id, metadata.previous_producer_id) == (2, 1)
    ongoing = TransactionMetadata("t", producer_id=1, producer_epoch=0, state=S.ONGOING)
    with pytest.raises(IllegalTransactionStateError):
        ongoing.prepare_producer_id_rotation(2, 1000, 10, record_last_epoch=False)


def test_fence_bumps_once_and_reuses_a_failed_fence() -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=4, state=S.ONGOING)
    fence = metadata.prepare_fence_producer_epoch()
    assert (fence.txn_state, fence.producer_epoch) == (S.PREPARE_EPOCH_FENCE, 5)
    with pytest.raises(IllegalTransactionStateError):
        metadata.complete_transition_to(fence)  # a fence is never completed as such
    metadata.pending_state = None
    metadata.has_failed_epoch_fence = True
    assert metadata.prepare_fence_producer_epoch().producer_epoch == 4
    maxed = TransactionMetadata(
        "t", producer_id=1, producer_epoch=MAX_PRODUCER_EPOCH, state=S.ONGOING
    )
    with pytest.raises(IllegalTransactionStateError):
        maxed.prepare_fence_producer_epoch()


def test_dead_is_prepared_but_never_completed() -> None:
    metadata = TransactionMetadata("t", producer_id=1, producer_epoch=0, state=S.COMPLETE_ABORT)
    dead = metadata.prepare_dead()
    assert dead.txn_state is S.DEAD
    with pytest.raises(IllegalTransactionStateError):
        metadata.complete_transition_to(dead)


def test_transaction_version_2_bumps_the_epoch_at_end_and_rotates_on_overflow() -> None:
    metadata = TransactionMetadata(
        "t",
        producer_id=1,
        producer_epoch=3,
        state=S.ONGOING,
        topic_partitions={("a", 0)},
        txn_start_timestamp=5,
        client_transaction_version=2,
    )
    prepare = metadata.prepare_abort_or_commit(S.PREPARE_ABORT, 2, NO_PRODUCER_ID, 10)
    assert (prepare.producer_epoch, prepare.last_producer_epoch) == (4, 3)
    metadata.complete_transition_to(prepare)
    assert metadata.producer_epoch == 4
    metadata.complete_transition_to(metadata.prepare_complete(20))
    assert (metadata.state, metadata.producer_id, metadata.producer_epoch) == (
        S.COMPLETE_ABORT,
        1,
        4,
    )

    exhausted = TransactionMetadata(
        "u",
        producer_id=1,
        producer_epoch=MAX_PRODUCER_EPOCH - 1,
        state=S.ONGOING,
        topic_partitions={("a", 0)},
        txn_start_timestamp=5,
        client_transaction_version=2,
    )
    exhausted.complete_transition_to(exhausted.prepare_abort_or_commit(S.PREPARE_COMMIT, 2, 9, 10))
    assert exhausted.next_producer_id == 9
    complete = exhausted.prepare_complete(20)
    assert (complete.producer_id, complete.producer_epoch) == (9, 0)
    exhausted.complete_transition_to(complete)
    assert (exhausted.producer_id, exhausted.producer_epoch, exhausted.previous_producer_id) == (
        9,
        0,
        1,
    )
    assert exhausted.next_producer_id == NO_PRODUCER_ID


def test_prepare_rejects_illegal_ids_and_epochs() -> None:
    metadata = TransactionMetadata("t", producer_id=1)
    with pytest.raises(ValueError):
        metadata.prepare_transition_to(S.EMPTY, -1, 0, -1, 1000, frozenset(), -1, 5)
    with pytest.raises(ValueError):
        metadata.prepare_transition_to(S.EMPTY, 1, -1, -1, 1000, frozenset(), -1, 5)
    # A never-initialised id (epoch -1) may still expire.
    assert metadata.prepare_dead().producer_epoch == NO_PRODUCER_EPOCH
