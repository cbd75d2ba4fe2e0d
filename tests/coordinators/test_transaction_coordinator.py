"""TransactionCoordinator over a fake __transaction_state, a fake marker writer and a fake
clock: each request path and error code as Kafka's TransactionCoordinator answers them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.coordinators.group_loader import drain
from kafkacompat.coordinators.producer_ids import ProducerIdManager
from kafkacompat.coordinators.transaction_coordinator import (
    DescribedTransaction,
    EndTxnResult,
    InitProducerIdResult,
    ListTransactionsResult,
    TransactionCoordinator,
    TransactionResult,
)
from kafkacompat.coordinators.transaction_log import (
    Record,
    load_transactions_steps,
    read_txn_record_key,
    read_txn_record_value,
    replay,
)
from kafkacompat.coordinators.transaction_metadata import (
    MAX_PRODUCER_EPOCH,
    TopicPartition,
    TransactionMetadata,
    TransactionState,
)
from kafkacompat.coordinators.transaction_state_manager import (
    TransactionStateManager,
    TransactionStateManagerConfig,
)
from kafkacompat.errors import ErrorCode
from kafkacompat.records import RecordBatchBuilder

S = TransactionState
E = ErrorCode
COMMIT, ABORT = TransactionResult.COMMIT, TransactionResult.ABORT
T = TypeVar("T")
TIMEOUT_S = 5.0


class FakeTxnLog:
    """The appender: keeps what was written; ``errors`` answers the next appends instead."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int, Record]] = []
        self.errors: list[ErrorCode] = []
        self.gate: asyncio.Event | None = None
        self.on_append: Callable[[], None] | None = None

    async def append(self, partition: int, coordinator_epoch: int, records: list[Record]) -> E:
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), TIMEOUT_S)
        if self.on_append is not None:
            self.on_append()
        if self.errors:
            return self.errors.pop(0)
        self.written.extend((partition, coordinator_epoch, r) for r in records)
        return E.NONE

    def states(self, transactional_id: str) -> list[TransactionState | None]:
        out: list[TransactionState | None] = []
        for _, _, (key, value) in self.written:
            if read_txn_record_key(key) == transactional_id:
                metadata = read_txn_record_value(transactional_id, value)
                out.append(None if metadata is None else metadata.state)
        return out

    def last(self, transactional_id: str) -> TransactionMetadata:
        for _, _, (key, value) in reversed(self.written):
            if read_txn_record_key(key) == transactional_id:
                metadata = read_txn_record_value(transactional_id, value)
                assert metadata is not None
                return metadata
        raise AssertionError(f"nothing written for {transactional_id}")


class FakeMarkers:
    """The marker writer: records each call; ``answers`` override the next calls' errors."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, TransactionResult, frozenset[TopicPartition]]] = []
        self.answers: list[dict[TopicPartition, ErrorCode]] = []
        self.gate: asyncio.Event | None = None

    async def write_txn_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        result: TransactionResult,
        partitions: frozenset[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), TIMEOUT_S)
        self.calls.append((producer_id, producer_epoch, coordinator_epoch, result, partitions))
        answer = self.answers.pop(0) if self.answers else {}
        return {tp: answer.get(tp, E.NONE) for tp in partitions}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


class Harness:
    def __init__(self, **config: int) -> None:
        self.log = FakeTxnLog()
        self.markers = FakeMarkers()
        self.clock = Clock()
        self.config = TransactionStateManagerConfig(**config)
        self.manager = TransactionStateManager(self.log, self.config, self.clock)
        self.coordinator = TransactionCoordinator(
            self.manager,
            ProducerIdManager(None),
            self.markers,
            self.clock,
            marker_retry_backoff_ms=1,
        )

    def own_all(self, epoch: int = 0) -> None:
        for partition in range(self.config.num_partitions):
            self.manager.add_loading_partition(partition, epoch)
            assert self.coordinator.on_election(partition, epoch, {})

    async def init(
        self, tid: str = "t", timeout_ms: int = 60_000, expected: tuple[int, int] | None = None
    ) -> InitProducerIdResult:
        return await self.coordinator.handle_init_producer_id(tid, timeout_ms, expected)

    async def add(
        self, pid: int, epoch: int, *partitions: TopicPartition, tid: str = "t"
    ) -> ErrorCode:
        return await self.coordinator.handle_add_partitions_to_transaction(
            tid, pid, epoch, partitions
        )

    async def end(
        self, pid: int, epoch: int, result: TransactionResult, tid: str = "t", tv: int = 0
    ) -> EndTxnResult:
        return await self.coordinator.handle_end_transaction(tid, pid, epoch, result, tv)

    def metadata(self, tid: str = "t") -> TransactionMetadata:
        found = self.manager.get_transaction_state(tid)
        assert found is not None and not isinstance(found, ErrorCode)
        return found.transaction_metadata

    async def settle(self) -> None:
        await asyncio.wait_for(self.coordinator.wait_for_markers(), TIMEOUT_S)


def run(test: Callable[[Harness], Awaitable[None]], **config: int) -> None:
    async def main() -> None:
        harness = Harness(**config)
        harness.own_all()
        await test(harness)

    asyncio.run(main())


def run_raw(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# -- InitProducerId ---------------------------------------------------------------------------


def test_init_without_transactional_id_hands_out_fresh_ids() -> None:
    async def body(h: Harness) -> None:
        first = await h.coordinator.handle_init_producer_id(None, 0)
        second = await h.coordinator.handle_init_producer_id(None, 0, (first.producer_id, 0))
        assert first == InitProducerIdResult(0, 0, E.NONE)
        assert second == InitProducerIdResult(1, 0, E.NONE)
        assert h.log.written == []

    run(body)


@pytest.mark.parametrize(
    ("tid", "timeout_ms", "error"),
    [
        ("", 1000, E.INVALID_REQUEST),
        ("t", 900_001, E.INVALID_TRANSACTION_TIMEOUT),
        ("t", 0, E.INVALID_TRANSACTION_TIMEOUT),
        ("t", -5, E.INVALID_TRANSACTION_TIMEOUT),
    ],
)
def test_init_refuses_bad_requests(tid: str, timeout_ms: int, error: ErrorCode) -> None:
    async def body(h: Harness) -> None:
        assert await h.init(tid, timeout_ms) == InitProducerIdResult(-1, -1, error)
        assert h.log.written == []

    run(body)


def test_init_accepts_the_maximum_timeout_and_honours_a_lower_maximum() -> None:
    async def body(h: Harness) -> None:
        assert (await h.init("a", 5_000)).error_code == E.NONE
        assert (await h.init("b", 5_001)).error_code == E.INVALID_TRANSACTION_TIMEOUT

    run(body, transaction_max_timeout_ms=5_000)


def test_init_creates_then_bumps_the_epoch_and_persists_each_step() -> None:
    async def body(h: Harness) -> None:
        first = await h.init()
        assert first == InitProducerIdResult(0, 0, E.NONE)
        second = await h.init()
        assert second == InitProducerIdResult(0, 1, E.NONE)
        partition = h.manager.partition_for("t")
        assert {p for p, _, _ in h.log.written} == {partition}
        assert h.log.states("t") == [S.EMPTY, S.EMPTY]
        assert h.log.last("t").producer_epoch == 1
        assert h.log.last("t").txn_timeout_ms == 60_000

    run(body)


def test_requests_for_partitions_not_owned_or_loading() -> None:
    async def body() -> None:
        h = Harness(num_partitions=1)
        assert (await h.init()).error_code == E.NOT_COORDINATOR
        assert await h.add(0, 0, ("a", 0)) == E.NOT_COORDINATOR
        assert (await h.end(0, 0, COMMIT)).error_code == E.NOT_COORDINATOR
        h.manager.add_loading_partition(0, 3)
        assert (await h.init()).error_code == E.COORDINATOR_LOAD_IN_PROGRESS
        assert (await h.end(0, 0, COMMIT)).error_code == E.COORDINATOR_LOAD_IN_PROGRESS
        assert h.coordinator.on_election(0, 3, {})
        assert (await h.init()).error_code == E.NONE
        h.coordinator.on_resignation(0, 3)
        assert (await h.init()).error_code == E.NOT_COORDINATOR

    run_raw(body())


def test_init_with_epoch_exhausted_rotates_to_a_new_producer_id() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        h.metadata().producer_epoch = MAX_PRODUCER_EPOCH - 1
        # The producer holding the last epoch recovers (KIP-360): a new id, epoch 0.
        rotated = await h.init(expected=(0, MAX_PRODUCER_EPOCH - 1))
        assert rotated.error_code == E.NONE
        assert rotated.producer_id != 0 and rotated.producer_epoch == 0
        assert h.metadata().previous_producer_id == 0
        assert h.log.last("t").producer_id == rotated.producer_id
        # Its retry (the answer was lost) gets the same id and epoch again.
        assert await h.init(expected=(0, MAX_PRODUCER_EPOCH - 1)) == rotated

    run(body)


def test_rotation_by_a_new_instance_fences_the_old_producer() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        h.metadata().producer_epoch = MAX_PRODUCER_EPOCH - 1
        rotated = await h.init()
        assert rotated.error_code == E.NONE and rotated.producer_epoch == 0
        assert rotated.producer_id != 0
        assert (await h.init(expected=(0, MAX_PRODUCER_EPOCH - 1))).error_code == (
            E.PRODUCER_FENCED
        )

    run(body)


def test_kip_360_recovery_with_expected_producer_id_and_epoch() -> None:
    async def body(h: Harness) -> None:
        await h.init()  # (0, 0)
        recovered = await h.init(expected=(0, 0))
        assert recovered == InitProducerIdResult(0, 1, E.NONE)
        assert h.metadata().last_producer_epoch == 0
        # The response was lost and the producer retries with its old epoch: same answer.
        assert await h.init(expected=(0, 0)) == InitProducerIdResult(0, 1, E.NONE)
        assert (await h.init(expected=(0, 7))).error_code == E.PRODUCER_FENCED
        assert (await h.init(expected=(99, 1))).error_code == E.PRODUCER_FENCED
        # A new instance (no expected pair) takes over and the old epochs are forgotten.
        assert await h.init() == InitProducerIdResult(0, 2, E.NONE)
        assert (await h.init(expected=(0, 1))).error_code == E.PRODUCER_FENCED

    run(body)


def test_init_while_a_transition_is_pending_is_concurrent() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        h.log.gate = asyncio.Event()
        slow = asyncio.ensure_future(h.init())
        await asyncio.sleep(0)
        assert await h.add(0, 0, ("a", 0)) == E.CONCURRENT_TRANSACTIONS
        assert (await h.end(0, 0, ABORT)).error_code == E.CONCURRENT_TRANSACTIONS
        assert (await h.init()).error_code == E.CONCURRENT_TRANSACTIONS
        h.log.gate.set()
        assert (await asyncio.wait_for(slow, TIMEOUT_S)).producer_epoch == 1

    run(body)


def test_init_for_a_prepared_transaction_is_concurrent() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        h.markers.gate = asyncio.Event()
        assert (await h.end(0, 0, COMMIT)).error_code == E.NONE
        assert (await h.init()).error_code == E.CONCURRENT_TRANSACTIONS
        h.markers.gate.set()
        await h.settle()
        assert await h.init() == InitProducerIdResult(0, 1, E.NONE)

    run(body)


# -- AddPartitionsToTxn -----------------------------------------------------------------------


def test_add_partitions_errors() -> None:
    async def body(h: Harness) -> None:
        assert await h.add(0, 0, ("a", 0), tid="") == E.INVALID_REQUEST
        assert await h.add(0, 0, ("a", 0), tid="unknown") == E.INVALID_PRODUCER_ID_MAPPING
        await h.init()
        await h.init()  # epoch 1
        assert await h.add(5, 1, ("a", 0)) == E.INVALID_PRODUCER_ID_MAPPING
        assert await h.add(0, 0, ("a", 0)) == E.PRODUCER_FENCED
        assert await h.add(0, 2, ("a", 0)) == E.PRODUCER_FENCED
        assert h.log.states("t") == [S.EMPTY, S.EMPTY]

    run(body)


def test_add_partitions_persists_new_partitions_only() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        assert await h.add(0, 0, ("a", 0), ("a", 1)) == E.NONE
        h.clock.now += 10
        assert await h.add(0, 0, ("a", 1)) == E.NONE  # already in: nothing written
        assert h.log.states("t") == [S.EMPTY, S.ONGOING]
        assert await h.add(0, 0, ("b", 0)) == E.NONE
        last = h.log.last("t")
        assert last.topic_partitions == {("a", 0), ("a", 1), ("b", 0)}
        assert last.txn_start_timestamp == 1_000
        assert h.metadata().state is S.ONGOING

    run(body)


def test_verify_only_answers_per_partition_without_writing() -> None:
    async def body(h: Harness) -> None:
        verify = h.coordinator.handle_verify_partitions_in_transaction
        parts = [("a", 0), ("b", 0)]
        assert verify("", 0, 0, parts) == dict.fromkeys(parts, E.INVALID_REQUEST)
        assert verify("t", 0, 0, parts) == dict.fromkeys(parts, E.INVALID_PRODUCER_ID_MAPPING)
        await h.init()
        await h.add(0, 0, ("a", 0))
        written = len(h.log.written)
        assert verify("t", 0, 0, parts) == {("a", 0): E.NONE, ("b", 0): E.TRANSACTION_ABORTABLE}
        assert verify("t", 1, 0, parts) == dict.fromkeys(parts, E.INVALID_PRODUCER_ID_MAPPING)
        assert verify("t", 0, 1, parts) == dict.fromkeys(parts, E.PRODUCER_FENCED)
        h.markers.gate = asyncio.Event()
        await h.end(0, 0, COMMIT)
        assert verify("t", 0, 0, parts) == dict.fromkeys(parts, E.CONCURRENT_TRANSACTIONS)
        h.markers.gate.set()
        await h.settle()
        assert len(h.log.written) == written + 2  # only EndTxn's two records

    run(body)


# -- EndTxn -----------------------------------------------------------------------------------


def test_commit_persists_prepare_writes_markers_then_persists_complete() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0), ("b", 2))
        h.markers.gate = asyncio.Event()
        assert await h.end(0, 0, COMMIT) == EndTxnResult(E.NONE, 0, 0)
        # Answered once PrepareCommit is durable, before any marker.
        assert h.log.states("t")[-1] is S.PREPARE_COMMIT
        assert h.markers.calls == []
        assert h.metadata().pending_state is S.COMPLETE_COMMIT
        h.markers.gate.set()
        await h.settle()
        assert h.markers.calls == [(0, 0, 0, COMMIT, frozenset({("a", 0), ("b", 2)}))]
        assert h.log.states("t") == [S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT]
        assert h.log.last("t").topic_partitions == set()
        metadata = h.metadata()
        assert (metadata.state, metadata.pending_state, metadata.topic_partitions) == (
            S.COMPLETE_COMMIT,
            None,
            set(),
        )
        # The next transaction starts from the completed one.
        assert await h.add(0, 0, ("c", 0)) == E.NONE

    run(body)


def test_end_retries_and_invalid_states() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        assert (await h.end(0, 0, COMMIT)).error_code == E.INVALID_TXN_STATE  # Empty
        await h.add(0, 0, ("a", 0))
        await h.end(0, 0, ABORT)
        await h.settle()
        # A retried abort after it completed is answered as a success, a commit is not.
        assert await h.end(0, 0, ABORT) == EndTxnResult(E.NONE, 0, 0)
        assert (await h.end(0, 0, COMMIT)).error_code == E.INVALID_TXN_STATE
        await h.add(0, 0, ("a", 0))
        await h.end(0, 0, COMMIT)
        await h.settle()
        assert await h.end(0, 0, COMMIT) == EndTxnResult(E.NONE, 0, 0)
        assert (await h.end(0, 0, ABORT)).error_code == E.INVALID_TXN_STATE
        assert h.log.states("t").count(S.PREPARE_COMMIT) == 1

    run(body)


@pytest.mark.parametrize(
    ("state", "result", "error"),
    [
        (S.PREPARE_COMMIT, COMMIT, E.CONCURRENT_TRANSACTIONS),
        (S.PREPARE_COMMIT, ABORT, E.INVALID_TXN_STATE),
        (S.PREPARE_ABORT, ABORT, E.CONCURRENT_TRANSACTIONS),
        (S.PREPARE_ABORT, COMMIT, E.INVALID_TXN_STATE),
    ],
)
def test_end_against_a_prepared_state(
    state: TransactionState, result: TransactionResult, error: ErrorCode
) -> None:
    async def body(h: Harness) -> None:
        h.manager.put_transaction_state_if_not_exists(
            TransactionMetadata(
                "t", producer_id=3, producer_epoch=0, state=state, topic_partitions={("a", 0)}
            )
        )
        assert await h.end(3, 0, result) == EndTxnResult(error)

    run(body)


def test_end_with_wrong_ids_or_epochs() -> None:
    async def body(h: Harness) -> None:
        assert (await h.end(0, 0, COMMIT, tid="")).error_code == E.INVALID_REQUEST
        assert (await h.end(0, 0, COMMIT)).error_code == E.INVALID_PRODUCER_ID_MAPPING
        await h.init()
        await h.init()
        await h.add(0, 1, ("a", 0))
        assert await h.end(7, 1, COMMIT) == EndTxnResult(E.INVALID_PRODUCER_ID_MAPPING)
        assert await h.end(0, 0, COMMIT) == EndTxnResult(E.PRODUCER_FENCED)
        assert await h.end(0, 2, COMMIT) == EndTxnResult(E.PRODUCER_FENCED)
        assert h.metadata().state is S.ONGOING

    run(body)


def test_failed_append_is_mapped_and_clears_the_pending_state() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        h.log.errors = [E.NOT_ENOUGH_REPLICAS]
        assert await h.end(0, 0, COMMIT) == EndTxnResult(E.COORDINATOR_NOT_AVAILABLE)
        assert h.metadata().pending_state is None and h.metadata().state is S.ONGOING
        h.log.errors = [E.KAFKA_STORAGE_ERROR]
        assert await h.add(0, 0, ("b", 0)) == E.NOT_COORDINATOR
        h.log.errors = [E.RECORD_LIST_TOO_LARGE]
        assert (await h.init("u")).error_code == E.UNKNOWN_SERVER_ERROR
        assert await h.end(0, 0, COMMIT) == EndTxnResult(E.NONE, 0, 0)
        await h.settle()
        assert h.metadata().state is S.COMPLETE_COMMIT

    run(body)


def test_coordinator_epoch_change_during_append_answers_not_coordinator() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        partition = h.manager.partition_for("t")
        loaded = {"t": h.metadata()}

        def move() -> None:
            h.log.on_append = None
            h.coordinator.on_resignation(partition, 0)
            h.manager.add_loading_partition(partition, 1)
            h.coordinator.on_election(partition, 1, loaded)

        h.log.on_append = move
        assert await h.add(0, 0, ("a", 0)) == E.NOT_COORDINATOR

    run(body)


def test_markers_are_retried_while_partitions_are_unavailable() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0), ("b", 0))
        h.markers.answers = [{("a", 0): E.NOT_LEADER_OR_FOLLOWER}, {("a", 0): E.REQUEST_TIMED_OUT}]
        h.log.errors = []
        await h.end(0, 0, ABORT)
        await h.settle()
        written = [c[4] for c in h.markers.calls]
        assert written == [
            frozenset({("a", 0), ("b", 0)}),
            frozenset({("a", 0)}),
            frozenset({("a", 0)}),
        ]
        assert h.metadata().state is S.COMPLETE_ABORT

    run(body)


def test_complete_append_is_retried_on_coordinator_not_available() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        await h.end(0, 0, COMMIT)
        h.log.errors = [E.NOT_ENOUGH_REPLICAS, E.REQUEST_TIMED_OUT]
        await h.settle()
        assert h.log.states("t")[-1] is S.COMPLETE_COMMIT
        assert h.metadata().state is S.COMPLETE_COMMIT

    run(body)


def test_markers_stop_when_the_producer_epoch_moved_on() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        h.markers.answers = [{("a", 0): E.INVALID_PRODUCER_EPOCH}]
        await h.end(0, 0, COMMIT)
        await h.settle()
        assert h.log.states("t")[-1] is S.PREPARE_COMMIT  # never completed

    run(body)


def test_transaction_version_2_end_bumps_the_epoch() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        assert await h.end(0, 0, COMMIT, tv=2) == EndTxnResult(E.NONE, 0, 1)
        await h.settle()
        assert h.markers.calls[0][:2] == (0, 1)
        metadata = h.metadata()
        assert (metadata.state, metadata.producer_epoch, metadata.last_producer_epoch) == (
            S.COMPLETE_COMMIT,
            1,
            1,  # Kafka's prepareComplete records the bumped epoch as the last one
        )
        # A retry with the epoch it ended is answered with the bumped epoch.
        assert await h.end(0, 0, COMMIT, tv=2) == EndTxnResult(E.NONE, 0, 1)
        assert await h.add(0, 1, ("a", 0)) == E.NONE

    run(body)


# -- fencing ----------------------------------------------------------------------------------


def test_new_producer_fences_an_ongoing_transaction() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        assert (await h.init()).error_code == E.CONCURRENT_TRANSACTIONS
        await h.settle()
        assert h.markers.calls == [(0, 1, 0, ABORT, frozenset({("a", 0)}))]
        assert h.log.states("t")[-2:] == [S.PREPARE_ABORT, S.COMPLETE_ABORT]
        assert h.log.last("t").producer_epoch == 1
        # The zombie is fenced; the retried InitProducerId bumps once more.
        assert await h.add(0, 0, ("b", 0)) == E.PRODUCER_FENCED
        assert (await h.end(0, 0, COMMIT)).error_code == E.PRODUCER_FENCED
        assert await h.init() == InitProducerIdResult(0, 2, E.NONE)

    run(body)


def test_a_failed_fence_is_not_bumped_twice() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        await h.add(0, 0, ("a", 0))
        h.log.errors = [E.NOT_LEADER_OR_FOLLOWER]
        assert (await h.init()).error_code == E.NOT_COORDINATOR
        metadata = h.metadata()
        assert metadata.has_failed_epoch_fence and metadata.producer_epoch == 1
        assert (metadata.state, metadata.pending_state) == (S.ONGOING, None)
        assert (await h.init()).error_code == E.CONCURRENT_TRANSACTIONS
        await h.settle()
        assert h.log.last("t").producer_epoch == 1
        assert not h.metadata().has_failed_epoch_fence
        assert await h.init() == InitProducerIdResult(0, 2, E.NONE)

    run(body)


def test_timed_out_transactions_are_aborted_and_their_producer_fenced() -> None:
    async def body(h: Harness) -> None:
        await h.init("slow", 1_000)
        await h.init("fast", 60_000)
        await h.add(0, 0, ("a", 0), tid="slow")
        await h.add(1, 0, ("b", 0), tid="fast")
        h.clock.now += 1_000
        assert await h.coordinator.abort_timed_out_transactions() == []  # not yet past it
        h.clock.now += 1
        outcomes = await h.coordinator.abort_timed_out_transactions()
        assert [(txn.transactional_id, error) for txn, error in outcomes] == [("slow", E.NONE)]
        await h.settle()
        slow = h.metadata("slow")
        assert (slow.state, slow.producer_epoch) == (S.COMPLETE_ABORT, 1)
        assert h.metadata("fast").state is S.ONGOING
        assert (await h.end(0, 0, COMMIT, tid="slow")).error_code == E.PRODUCER_FENCED
        assert await h.coordinator.abort_timed_out_transactions() == []

    run(body)


def test_timed_out_transaction_with_a_pending_transition_is_skipped() -> None:
    async def body(h: Harness) -> None:
        await h.init("t", 1_000)
        await h.add(0, 0, ("a", 0))
        h.clock.now += 5_000
        h.log.gate = asyncio.Event()
        ending = asyncio.ensure_future(h.end(0, 0, COMMIT))
        await asyncio.sleep(0)
        assert await h.coordinator.abort_timed_out_transactions() == []
        h.log.gate.set()
        assert (await asyncio.wait_for(ending, TIMEOUT_S)).error_code == E.NONE
        await h.settle()
        assert h.metadata().state is S.COMPLETE_COMMIT

    run(body)


# -- expiration and loading -------------------------------------------------------------------


def test_idle_transactional_ids_expire_with_a_tombstone() -> None:
    async def body(h: Harness) -> None:
        await h.init("idle")
        await h.init("open")
        await h.add(1, 0, ("a", 0), tid="open")
        h.clock.now += 9_999
        assert await h.coordinator.remove_expired_transactional_ids() == []
        h.clock.now += 1
        assert await h.coordinator.remove_expired_transactional_ids() == ["idle"]
        assert h.log.states("idle")[-1] is None  # the tombstone
        assert h.manager.get_transaction_state("idle") is None
        assert h.metadata("open").state is S.ONGOING  # an open transaction never expires
        # The id can be used again, with a new producer id.
        assert (await h.init("idle")).producer_id == 2

    run(body, transactional_id_expiration_ms=10_000)


def test_a_failed_tombstone_keeps_the_id() -> None:
    async def body(h: Harness) -> None:
        await h.init("idle")
        h.clock.now += 20_000
        h.log.errors = [E.NOT_ENOUGH_REPLICAS]
        assert await h.coordinator.remove_expired_transactional_ids() == []
        assert h.metadata("idle").pending_state is None
        assert await h.init("idle") == InitProducerIdResult(0, 1, E.NONE)

    run(body, transactional_id_expiration_ms=10_000)


def test_election_finishes_transactions_left_prepared() -> None:
    async def body() -> None:
        h = Harness(num_partitions=1)
        loaded = {
            "c": TransactionMetadata(
                "c",
                producer_id=4,
                producer_epoch=2,
                state=S.PREPARE_COMMIT,
                topic_partitions={("a", 0)},
                txn_start_timestamp=10,
            ),
            "o": TransactionMetadata(
                "o",
                producer_id=5,
                producer_epoch=0,
                state=S.ONGOING,
                topic_partitions={("b", 0)},
                txn_start_timestamp=10,
            ),
        }
        h.manager.add_loading_partition(0, 7)
        assert not h.coordinator.on_election(0, 6, loaded)  # a stale load is not installed
        assert h.coordinator.on_election(0, 7, loaded)
        await h.settle()
        assert h.markers.calls == [(4, 2, 7, COMMIT, frozenset({("a", 0)}))]
        assert h.log.states("c") == [S.COMPLETE_COMMIT]
        assert h.metadata("c").state is S.COMPLETE_COMMIT
        assert h.metadata("o").state is S.ONGOING

    run_raw(body())


# -- admin ------------------------------------------------------------------------------------


def test_describe_transactions() -> None:
    async def body(h: Harness) -> None:
        describe = h.coordinator.handle_describe_transactions
        assert describe("t").error_code == E.COORDINATOR_NOT_AVAILABLE
        h.coordinator.startup()
        assert describe("").error_code == E.INVALID_REQUEST
        assert describe("t").error_code == E.TRANSACTIONAL_ID_NOT_FOUND
        await h.init("t", 30_000)
        await h.add(0, 0, ("b", 1), ("a", 3), ("a", 0))
        assert describe("t") == DescribedTransaction(
            "t", E.NONE, "Ongoing", 30_000, 1_000, 0, 0, (("a", (0, 3)), ("b", (1,)))
        )
        h.metadata().state = S.DEAD
        assert describe("t").error_code == E.TRANSACTIONAL_ID_NOT_FOUND
        await h.coordinator.shutdown()
        assert describe("t").error_code == E.COORDINATOR_NOT_AVAILABLE

    run(body)


def test_list_transactions_filters() -> None:
    async def body(h: Harness) -> None:
        listing = h.coordinator.handle_list_transactions
        assert listing().error_code == E.COORDINATOR_NOT_AVAILABLE
        h.coordinator.startup()
        await h.init("empty")  # producer id 0
        await h.init("open")  # producer id 1
        await h.add(1, 0, ("a", 0), tid="open")
        h.clock.now += 500

        def ids(result: ListTransactionsResult) -> set[str]:
            assert result.error_code == E.NONE
            return {t.transactional_id for t in result.transaction_states}

        assert ids(listing()) == {"empty", "open"}
        assert ids(listing(filtered_states=["Ongoing"])) == {"open"}
        assert ids(listing(filtered_producer_ids=[0])) == {"empty"}
        # Open for longer than the duration: strictly more than 499 ms, not 500 ms.
        assert ids(listing(filtered_states=["Ongoing"], filtered_duration_ms=499)) == {"open"}
        assert ids(listing(filtered_states=["Ongoing"], filtered_duration_ms=500)) == set()
        unknown = listing(filtered_states=["Ongoing", "Bogus"])
        assert unknown.unknown_state_filters == ["Bogus"] and ids(unknown) == {"open"}
        only_unknown = listing(filtered_states=["Bogus"])
        assert ids(only_unknown) == set()
        assert listing().transaction_states[0].transaction_state in {"Empty", "Ongoing"}
        h.manager.add_loading_partition(0, 9)
        assert listing().error_code == E.COORDINATOR_LOAD_IN_PROGRESS

    run(body)


def test_fencing_at_the_last_epoch_then_rotates() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        h.metadata().producer_epoch = MAX_PRODUCER_EPOCH - 1
        await h.add(0, MAX_PRODUCER_EPOCH - 1, ("a", 0))
        assert (await h.init()).error_code == E.CONCURRENT_TRANSACTIONS
        await h.settle()
        assert h.markers.calls[-1][:2] == (0, MAX_PRODUCER_EPOCH)  # the fence used the last one
        retry = await h.init()
        assert retry.error_code == E.NONE
        assert retry.producer_id != 0 and retry.producer_epoch == 0

    run(body)


def test_shutdown_cancels_completions_in_flight() -> None:
    async def body(h: Harness) -> None:
        h.coordinator.startup()
        await h.init()
        await h.add(0, 0, ("a", 0))
        h.markers.gate = asyncio.Event()
        await h.end(0, 0, COMMIT)
        await asyncio.wait_for(h.coordinator.shutdown(), TIMEOUT_S)
        await h.settle()
        assert h.log.states("t")[-1] is S.PREPARE_COMMIT

    run(body)


# -- the log and the cache agree --------------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("init"), st.sampled_from(["x", "y"]), st.booleans()),
        st.tuples(st.just("add"), st.sampled_from(["x", "y"]), st.integers(0, 2)),
        st.tuples(st.just("end"), st.sampled_from(["x", "y"]), st.booleans()),
        st.tuples(st.just("fail_next_append"), st.just(""), st.booleans()),
        st.tuples(st.just("tick"), st.just(""), st.booleans()),
    ),
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(ops=_OPS)
def test_after_any_requests_the_log_replays_to_the_cache(
    ops: list[tuple[str, str, Any]],
) -> None:
    async def body(h: Harness) -> None:
        for op, tid, arg in ops:
            found = h.manager.get_transaction_state(tid) if tid else None
            current = None if not isinstance(found, tuple) else found.transaction_metadata
            pid = -1 if current is None else current.producer_id
            epoch = -1 if current is None else current.producer_epoch
            if op == "init":
                await h.init(tid, 1_000, (pid, epoch) if arg and current else None)
            elif op == "add":
                await h.add(pid, epoch, ("p", arg), tid=tid)
            elif op == "end":
                await h.end(pid, epoch, COMMIT if arg else ABORT, tid=tid)
            elif op == "fail_next_append":
                h.log.errors.append(E.NOT_ENOUGH_REPLICAS if arg else E.NOT_LEADER_OR_FOLLOWER)
            else:
                h.clock.now += 600
                await h.coordinator.abort_timed_out_transactions()
            if arg:
                await h.settle()
        h.log.errors.clear()
        await h.settle()
        # Timed-out aborts may still be pending a retry: finish them, then compare.
        await h.coordinator.abort_timed_out_transactions()
        await h.settle()
        latest: dict[bytes, bytes | None] = {}
        for _, _, (key, value) in h.log.written:
            latest[key] = value
        replayed = replay(latest)
        for tid in ("x", "y"):
            found = h.manager.get_transaction_state(tid)
            if found is None:
                assert tid not in replayed
                continue
            assert isinstance(found, tuple)
            cached = found.transaction_metadata
            if cached.producer_epoch == -1 and tid not in replayed:
                continue  # created, but its first append failed
            assert cached.pending_state is None
            assert tid in replayed, tid
            log = replayed[tid]
            assert (log.state, log.producer_id, log.topic_partitions, log.txn_timeout_ms) == (
                cached.state,
                cached.producer_id,
                cached.topic_partitions,
                cached.txn_timeout_ms,
            )
            if not cached.has_failed_epoch_fence:
                assert log.producer_epoch == cached.producer_epoch
        # Every id's records follow Kafka's state graph.
        for tid in ("x", "y"):
            states = [s for s in h.log.states(tid) if s is not None]
            for before, after in itertools.pairwise(states):
                assert before in after.valid_previous_states, (before, after)

    run(body)


def test_a_restart_mid_commit_replays_the_log_and_finishes_the_commit() -> None:
    async def body() -> None:
        before = Harness(num_partitions=1)
        before.own_all()
        await before.init()
        await before.init("idle")
        await before.add(0, 0, ("a", 0), ("a", 1))
        before.markers.gate = asyncio.Event()  # the broker dies before any marker is written
        await before.end(0, 0, COMMIT)
        await before.coordinator.shutdown()

        builder = RecordBatchBuilder()
        for _, _, (key, value) in before.log.written:
            builder.append(value, key=key, timestamp=1)
        blob = builder.build()

        class OnePartition:
            def log_start_offset(self, partition: int) -> int:
                return 0

            def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]:
                return (blob, len(before.log.written)) if offset == 0 else (b"", 0)

        after = Harness(num_partitions=1)
        after.manager.add_loading_partition(0, 1)
        assert (await after.init()).error_code == E.COORDINATOR_LOAD_IN_PROGRESS
        loaded = drain(load_transactions_steps(OnePartition(), 0))
        assert after.coordinator.on_election(0, 1, loaded)
        await after.settle()
        assert after.markers.calls == [(0, 0, 1, COMMIT, frozenset({("a", 0), ("a", 1)}))]
        assert after.log.states("t") == [S.COMPLETE_COMMIT]
        assert after.metadata().state is S.COMPLETE_COMMIT
        assert after.metadata("idle").state is S.EMPTY
        # The producer carries on where it was.
        assert await after.end(0, 0, COMMIT) == EndTxnResult(E.NONE, 0, 0)
        assert await after.init() == InitProducerIdResult(0, 1, E.NONE)

    run_raw(body())


def test_transaction_version_2_epoch_overflow_moves_to_a_new_producer_id() -> None:
    async def body(h: Harness) -> None:
        await h.init()
        last = MAX_PRODUCER_EPOCH - 1
        h.metadata().producer_epoch = last
        await h.add(0, last, ("a", 0))
        assert (await h.end(0, last, COMMIT, tv=2)).error_code == E.NONE
        assert h.log.last("t").next_producer_id == 1  # chosen before the markers
        await h.settle()
        assert h.markers.calls == [(0, MAX_PRODUCER_EPOCH, 0, COMMIT, frozenset({("a", 0)}))]
        metadata = h.metadata()
        assert (metadata.producer_id, metadata.producer_epoch) == (1, 0)
        assert metadata.previous_producer_id == 0
        # The retry of the overflowing end, with the old id and epoch, is recognised.
        assert await h.end(0, last, COMMIT, tv=2) == EndTxnResult(E.NONE, 1, 0)
        assert await h.add(1, 0, ("a", 0)) == E.NONE

    # Clients use TV2 only when the cluster finalised it; its log records are version 1.
    run(body, transaction_version_level=2)
