"""Producer state rules (Kafka's ProducerAppendInfo / ProducerStateEntry) without persistence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.errors import ErrorCode
from kafkacompat.records import (
    ControlRecordType,
    CorruptRecordError,
    InvalidRecordError,
    RecordBatch,
    build_end_transaction_marker_batch,
)
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.producer_entry import (
    MAX_SEQUENCE,
    decrement_sequence,
    in_sequence,
    increment_sequence,
)
from kafkacompat.storage.producer_state import (
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    ProducerStateManager,
)
from tests.coordinators.helpers import batch, batch_bytes, entry_batches, produce

PID = 42
TP = ("orders", 0)


@pytest.fixture
def state() -> ProducerStateManager:
    return ProducerStateManager(TP, None)


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


def test_error_codes_are_kafkas() -> None:
    assert OutOfOrderSequenceError("x").error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER == 45
    assert InvalidProducerEpochError("x").error_code == ErrorCode.INVALID_PRODUCER_EPOCH == 47


def test_sequence_arithmetic_wraps_at_int_max() -> None:
    assert increment_sequence(MAX_SEQUENCE, 1) == 0
    assert increment_sequence(MAX_SEQUENCE - 1, 3) == 1
    assert decrement_sequence(1, 3) == MAX_SEQUENCE - 1
    assert in_sequence(MAX_SEQUENCE, 0)
    assert in_sequence(-1, 0)
    assert not in_sequence(MAX_SEQUENCE, 1)
    assert not in_sequence(5, 5)


def test_non_idempotent_batches_skip_every_check(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    for _ in range(3):
        assert produce(state, log, batch_bytes(count=2)) == (log.log_end_offset - 2, False)
    assert dict(state.active_producers) == {}


def test_in_order_batches_are_accepted_and_remembered(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    produce(state, log, batch_bytes(count=5))  # someone else's records first
    assert produce(state, log, batch_bytes(PID, 0, 0, count=3)) == (5, False)
    assert produce(state, log, batch_bytes(PID, 0, 3, count=2)) == (8, False)
    entry = state.last_entry(PID)
    assert entry is not None
    assert (entry.producer_epoch, entry.first_seq, entry.last_seq) == (0, 0, 4)
    assert [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in entry.batches] == [
        (0, 2, 5, 7),
        (3, 4, 8, 9),
    ]
    assert state.map_end_offset == 10


@pytest.mark.parametrize("bad_sequence", [4, 6, 0, 100])
def test_a_gap_or_a_step_back_is_out_of_order(
    state: ProducerStateManager, log: MemoryLog, bad_sequence: int
) -> None:
    produce(state, log, batch_bytes(PID, 0, 0, count=5))
    with pytest.raises(OutOfOrderSequenceError) as caught:
        state.check(batch(PID, 0, bad_sequence))
    assert caught.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_sequence_wraps_from_int_max_to_zero(state: ProducerStateManager, log: MemoryLog) -> None:
    # An unknown producer may start anywhere, here just before the wrap.
    produce(state, log, batch_bytes(PID, 0, MAX_SEQUENCE - 1, count=3))
    assert state.last_entry(PID) is not None
    assert entry_batches(state, PID)[-1].last_seq == 0  # records at MAX-1, MAX, 0
    assert produce(state, log, batch_bytes(PID, 0, 1)) == (3, False)
    with pytest.raises(OutOfOrderSequenceError):
        state.check(batch(PID, 0, 0))


def test_a_batch_ending_at_int_max_is_followed_by_zero(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    produce(state, log, batch_bytes(PID, 0, MAX_SEQUENCE - 1, count=2))
    with pytest.raises(OutOfOrderSequenceError):
        state.check(batch(PID, 0, 1))
    assert produce(state, log, batch_bytes(PID, 0, 0)) == (2, False)


def test_retry_of_any_of_the_last_five_returns_its_original_offsets(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    offsets = [produce(state, log, batch_bytes(PID, 0, 2 * i, count=2))[0] for i in range(7)]
    end = log.log_end_offset
    for i in range(2, 7):  # the last five
        duplicate = state.check(batch(PID, 0, 2 * i, count=2))
        assert duplicate is not None
        assert (duplicate.first_offset, duplicate.last_offset) == (offsets[i], offsets[i] + 1)
        assert produce(state, log, batch_bytes(PID, 0, 2 * i, count=2)) == (offsets[i], True)
    assert log.log_end_offset == end  # nothing was appended twice
    assert len(entry_batches(state, PID)) == 5


def test_retry_older_than_the_last_five_is_out_of_order(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    for i in range(6):
        produce(state, log, batch_bytes(PID, 0, i))
    with pytest.raises(OutOfOrderSequenceError):
        state.check(batch(PID, 0, 0))


def test_a_retry_must_match_the_whole_sequence_range(
    state: ProducerStateManager, log: MemoryLog
) -> None:
    produce(state, log, batch_bytes(PID, 0, 0, count=3))
    # Same first sequence, different last: not the same batch, and not the next one either.
    with pytest.raises(OutOfOrderSequenceError):
        state.check(batch(PID, 0, 0, count=2))


def test_duplicate_answer_carries_the_log_append_time(state: ProducerStateManager) -> None:
    plan = state.prepare_append(batch_bytes(PID, 0, 0, timestamp=5))
    state.complete_append(plan, base_offset=100, log_append_time=9_999)
    duplicate = state.check(batch(PID, 0, 0, timestamp=5))
    assert duplicate is not None
    assert (duplicate.first_offset, duplicate.max_timestamp) == (100, 9_999)


def test_epoch_bump_restarts_sequences(state: ProducerStateManager, log: MemoryLog) -> None:
    for i in range(3):
        produce(state, log, batch_bytes(PID, 0, i))
    assert produce(state, log, batch_bytes(PID, 1, 0)) == (3, False)
    entry = state.last_entry(PID)
    assert entry is not None
    assert (entry.producer_epoch, [b.first_seq for b in entry.batches]) == (1, [0])
    # The old epoch's batches cannot be answered as duplicates any more: they are fenced.
    with pytest.raises(InvalidProducerEpochError) as caught:
        state.check(batch(PID, 0, 2))
    assert caught.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH


def test_new_epoch_must_start_at_sequence_zero(state: ProducerStateManager, log: MemoryLog) -> None:
    produce(state, log, batch_bytes(PID, 0, 0))
    with pytest.raises(OutOfOrderSequenceError, match="new epoch"):
        state.check(batch(PID, 1, 1))


def test_older_epoch_is_fenced(state: ProducerStateManager, log: MemoryLog) -> None:
    produce(state, log, batch_bytes(PID, 5, 0))
    with pytest.raises(InvalidProducerEpochError):
        state.check(batch(PID, 4, 1))
    with pytest.raises(InvalidProducerEpochError):
        state.check(batch(PID, 4, 0))


@pytest.mark.parametrize(("epoch", "sequence"), [(0, 0), (0, 17), (3, 1_000), (0, MAX_SEQUENCE)])
def test_unknown_producer_is_accepted_at_any_sequence(
    state: ProducerStateManager, log: MemoryLog, epoch: int, sequence: int
) -> None:
    # Current Kafka (KIP-360) accepts instead of answering UNKNOWN_PRODUCER_ID.
    assert state.check(batch(PID, epoch, sequence)) is None
    produce(state, log, batch_bytes(PID, epoch, sequence))
    # ...after which the usual rules hold.
    with pytest.raises(OutOfOrderSequenceError):
        state.check(batch(PID, epoch, increment_sequence(sequence, 2)))
    assert state.check(batch(PID, epoch, increment_sequence(sequence, 1))) is None


def test_rejected_batch_changes_nothing(state: ProducerStateManager, log: MemoryLog) -> None:
    produce(state, log, batch_bytes(PID, 0, 0))
    before = [list(entry_batches(state, PID))]
    with pytest.raises(OutOfOrderSequenceError):
        state.prepare_append(batch_bytes(PID, 0, 0, count=2) + batch_bytes(PID, 0, 7))
    assert [list(entry_batches(state, PID))] == before


class TestMultiBatchBlobs:
    def test_batches_are_checked_against_the_earlier_ones(
        self, state: ProducerStateManager, log: MemoryLog
    ) -> None:
        blob = batch_bytes(PID, 0, 0, count=2) + batch_bytes(PID, 0, 2, count=3)
        assert produce(state, log, blob) == (0, False)
        assert [
            (b.first_seq, b.first_offset, b.last_offset) for b in entry_batches(state, PID)
        ] == [
            (0, 0, 1),
            (2, 2, 4),
        ]

    def test_a_gap_between_batches_refuses_the_whole_blob(
        self, state: ProducerStateManager, log: MemoryLog
    ) -> None:
        produce(state, log, batch_bytes(PID, 0, 0))
        blob = batch_bytes(PID, 0, 1, count=2) + batch_bytes(PID, 0, 4)
        with pytest.raises(OutOfOrderSequenceError):
            produce(state, log, blob)
        assert log.log_end_offset == 1
        assert [b.first_seq for b in entry_batches(state, PID)] == [0]

    def test_an_unknown_producer_is_not_checked_even_within_its_blob(
        self, state: ProducerStateManager
    ) -> None:
        # Kafka's checkSequence skips the check whenever the producer's *stored* epoch is
        # unknown, so a gap between two batches of an unknown producer's blob passes too.
        plan = state.prepare_append(batch_bytes(PID, 0, 0, count=2) + batch_bytes(PID, 0, 3))
        state.complete_append(plan, base_offset=0)
        assert [b.first_seq for b in entry_batches(state, PID)] == [0, 3]

    def test_epoch_bump_inside_a_blob(self, state: ProducerStateManager, log: MemoryLog) -> None:
        produce(state, log, batch_bytes(PID, 0, 0))
        blob = batch_bytes(PID, 1, 0) + batch_bytes(PID, 1, 1)
        produce(state, log, blob)
        assert [b.first_seq for b in entry_batches(state, PID)] == [0, 1]
        with pytest.raises(InvalidProducerEpochError):
            state.prepare_append(batch_bytes(PID, 2, 0) + batch_bytes(PID, 1, 2))

    def test_several_producers_and_plain_batches(
        self, state: ProducerStateManager, log: MemoryLog
    ) -> None:
        blob = (
            batch_bytes(count=4)
            + batch_bytes(PID, 0, 10, count=2)
            + batch_bytes(7, 3, 0)
            + batch_bytes(PID, 0, 12)
        )
        plan = state.prepare_append(blob)
        state.complete_append(plan, base_offset=50)
        assert [(b.first_offset, b.last_offset) for b in entry_batches(state, PID)] == [
            (54, 55),
            (57, 57),
        ]
        assert [b.first_offset for b in entry_batches(state, 7)] == [56]
        assert state.map_end_offset == 58

    def test_a_retried_batch_makes_the_whole_request_a_duplicate(
        self, state: ProducerStateManager, log: MemoryLog
    ) -> None:
        produce(state, log, batch_bytes(PID, 0, 0))
        plan = state.prepare_append(batch_bytes(7, 0, 0) + batch_bytes(PID, 0, 0))
        assert plan.duplicate is not None and plan.duplicate.first_offset == 0
        with pytest.raises(ValueError):
            state.complete_append(plan, base_offset=1)

    def test_plan_is_refused_once_the_state_moved_on(self, state: ProducerStateManager) -> None:
        stale = state.prepare_append(batch_bytes(PID, 0, 0))
        fresh = state.prepare_append(batch_bytes(PID, 0, 0))
        state.complete_append(fresh, base_offset=0)
        with pytest.raises(RuntimeError):
            state.complete_append(stale, base_offset=1)


def test_single_batch_check_and_update(state: ProducerStateManager) -> None:
    first = batch(PID, 0, 0, count=3)
    assert state.check(first) is None
    state.update(first, base_offset=20)
    assert state.check(first) is not None
    second = batch(PID, 0, 3)
    assert state.check(second) is None
    state.update(second, base_offset=23, log_append_time=77)
    assert entry_batches(state, PID)[-1].max_timestamp == 77
    state.update(batch(count=2), base_offset=24)  # no producer id: ignored
    assert list(state.active_producers) == [PID]


class TestExpiry:
    def test_idle_producers_are_forgotten(self) -> None:
        state = ProducerStateManager(TP, None, producer_id_expiration_ms=1_000)
        state.update(batch(PID, 0, 0, timestamp=10_000), base_offset=0)
        state.update(batch(7, 0, 0, timestamp=10_500), base_offset=1)
        assert state.remove_expired_producers(now_ms=10_999) == 0
        assert state.remove_expired_producers(now_ms=11_000) == 1  # Kafka's >=
        assert list(state.active_producers) == [7]

    def test_an_expired_producer_is_unknown_again(self) -> None:
        state = ProducerStateManager(TP, None, producer_id_expiration_ms=1_000)
        state.update(batch(PID, 3, 0, timestamp=0), base_offset=0)
        state.remove_expired_producers(now_ms=5_000)
        # Any sequence and any epoch, even an older one, is accepted from an unknown producer.
        assert state.check(batch(PID, 1, 99)) is None

    def test_default_is_kafkas_one_day(self) -> None:
        state = ProducerStateManager(TP, None)
        assert state.producer_id_expiration_ms == 86_400_000


def test_clients_may_not_send_control_batches(state: ProducerStateManager) -> None:
    marker = build_end_transaction_marker_batch(
        control_type=ControlRecordType.COMMIT,
        producer_id=PID,
        producer_epoch=0,
        coordinator_epoch=0,
        timestamp=5,
    )
    with pytest.raises(InvalidRecordError) as caught:
        state.prepare_append(marker)
    assert caught.value.error_code == ErrorCode.INVALID_RECORD


def test_a_marker_in_the_log_sets_the_epoch(state: ProducerStateManager) -> None:
    state.update(batch(PID, 0, 0, count=2), base_offset=0)
    marker = build_end_transaction_marker_batch(
        control_type=ControlRecordType.ABORT,
        producer_id=PID,
        producer_epoch=1,
        coordinator_epoch=0,
        timestamp=5,
    )
    state.update(RecordBatch(bytearray(marker)), base_offset=2)
    entry = state.last_entry(PID)
    assert entry is not None
    assert (entry.producer_epoch, list(entry.batches), entry.last_timestamp) == (1, [], 5)
    assert state.map_end_offset == 3
    with pytest.raises(InvalidProducerEpochError):
        state.check(batch(PID, 0, 2))


def test_a_corrupt_batch_is_refused_before_any_producer_check(
    state: ProducerStateManager,
) -> None:
    blob = bytearray(batch_bytes(PID, 0, 0))
    blob[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        state.prepare_append(blob)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    start=st.sampled_from([0, 1_000, MAX_SEQUENCE - 5]),
    data=st.data(),
)
def test_a_retry_is_a_duplicate_exactly_when_among_the_last_five(
    sizes: list[int], start: int, data: st.DataObject
) -> None:
    state = ProducerStateManager(TP, None)
    log = MemoryLog()
    sent = []
    seq = start
    for size in sizes:
        offset, _ = produce(state, log, batch_bytes(PID, 0, seq, count=size))
        sent.append((seq, size, offset))
        seq = increment_sequence(seq, size)
    index = data.draw(st.integers(0, len(sent) - 1))
    retry_seq, retry_size, original = sent[index]
    retry = batch(PID, 0, retry_seq, count=retry_size)
    if index >= len(sent) - 5:
        duplicate = state.check(retry)
        assert duplicate is not None
        assert (duplicate.first_offset, duplicate.last_offset) == (
            original,
            original + retry_size - 1,
        )
    else:
        with pytest.raises(OutOfOrderSequenceError):
            state.check(retry)
