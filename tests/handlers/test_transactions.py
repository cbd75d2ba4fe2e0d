"""Transactions through their handlers, on one event loop (the coordinator writes markers in a
task of its own after EndTxn answers): FindCoordinator, InitProducerId, AddPartitionsToTxn,
Produce, EndTxn, WriteTxnMarkers, Fetch read_committed, and a restart on the same data dir."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.broker import Broker
from kafkacompat.config import BrokerConfig
from kafkacompat.errors import ErrorCode as E
from kafkacompat.handlers import HANDLERS
from kafkacompat.protocol import request_class, response_class
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from kafkacompat.protocol.messages.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from kafkacompat.protocol.messages.end_txn_request import EndTxnRequest
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kafkacompat.records.batch import iter_batches
from kafkacompat.records.builder import RecordBatchBuilder
from tests.handlers.helpers import context

TIMEOUT = 10.0
READ_UNCOMMITTED, READ_COMMITTED = 0, 1


class Clock:
    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


async def send(broker: Broker, request: Message, version: int) -> Any:
    """One request through the handler, encoded and decoded at ``version`` both ways."""
    api_key = request.API_KEY
    assert api_key is not None
    wire = request_class(api_key).decode(bytearray(request.encode(version)), version)
    response = await asyncio.wait_for(
        HANDLERS[api_key](context(broker, api_key, version), wire), TIMEOUT
    )
    assert response is not None
    return response_class(api_key).decode(response.encode(version), version)


def run_with_broker(
    tmp_path: Path,
    scenario: Callable[[Broker, Clock], Awaitable[None]],
    clock: Clock | None = None,
    props: dict[str, str] | None = None,
) -> None:
    clock = clock or Clock()
    config = BrokerConfig({"transaction.state.log.num.partitions": "4", **(props or {})})
    broker = Broker(config, engine="disk", data_dir=tmp_path, now_ms=clock)

    async def main() -> None:
        broker.start()
        try:
            await scenario(broker, clock)
            await asyncio.wait_for(broker.txn_coordinator.wait_for_markers(), TIMEOUT)
        finally:
            await broker.shutdown_transactions(TIMEOUT)
            broker.shutdown()

    asyncio.run(main())


class Txn:
    """A transactional producer's requests, by hand."""

    def __init__(self, broker: Broker, transactional_id: str, timeout_ms: int = 60_000) -> None:
        self.broker = broker
        self.id = transactional_id
        self.timeout_ms = timeout_ms
        self.producer_id = -1
        self.epoch = -1
        self.sequence: dict[tuple[str, int], int] = {}

    async def init(self) -> Any:
        found = await send(self.broker, FindCoordinatorRequest(key=self.id, key_type=1), 3)
        assert found.error_code == E.NONE
        for _ in range(50):
            answer = await send(
                self.broker,
                InitProducerIdRequest(
                    transactional_id=self.id, transaction_timeout_ms=self.timeout_ms
                ),
                4,
            )
            if answer.error_code != E.CONCURRENT_TRANSACTIONS:
                break
            await asyncio.sleep(0.01)  # the fencing abort's markers are being written
        if answer.error_code == E.NONE:
            self.producer_id, self.epoch = answer.producer_id, answer.producer_epoch
            self.sequence.clear()
        return answer

    async def add(self, *partitions: tuple[str, int], version: int = 3) -> dict[Any, int]:
        topics: dict[str, list[int]] = {}
        for topic, partition in partitions:
            topics.setdefault(topic, []).append(partition)
        request = AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=self.id,
            v3_and_below_producer_id=self.producer_id,
            v3_and_below_producer_epoch=self.epoch,
            v3_and_below_topics=[
                AddPartitionsToTxnTopic(name=name, partitions=ps) for name, ps in topics.items()
            ],
        )
        answer = await send(self.broker, request, version)
        return {
            (t.name, r.partition_index): r.partition_error_code
            for t in answer.results_by_topic_v3_and_below
            for r in t.results_by_partition
        }

    async def produce(
        self,
        topic: str,
        partition: int,
        values: list[bytes],
        version: int = 11,
        *,
        with_transactional_id: bool = True,
    ) -> Any:
        tp = (topic, partition)
        builder = RecordBatchBuilder(
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=self.sequence.get(tp, 0),
            is_transactional=True,
        )
        for value in values:
            builder.append(value, timestamp=self.broker.now_ms(), key=b"k")
        request = ProduceRequest(
            transactional_id=self.id if with_transactional_id else None,
            acks=-1,
            timeout_ms=1000,
            topic_data=[
                TopicProduceData(
                    name=topic,
                    partition_data=[
                        PartitionProduceData(index=partition, records=bytes(builder.build()))
                    ],
                )
            ],
        )
        answer = (await send(self.broker, request, version)).responses[0].partition_responses[0]
        if answer.error_code == E.NONE:
            self.sequence[tp] = self.sequence.get(tp, 0) + len(values)
        return answer

    async def end(self, commit: bool) -> int:
        answer = await send(
            self.broker,
            EndTxnRequest(
                transactional_id=self.id,
                producer_id=self.producer_id,
                producer_epoch=self.epoch,
                committed=commit,
            ),
            4,
        )
        return int(answer.error_code)


async def fetch(broker: Broker, topic: str, isolation: int, partition: int = 0) -> Any:
    request = FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        isolation_level=isolation,
        topics=[
            FetchTopic(
                topic=topic,
                topic_id=broker.logs.topics()[topic].topic_id,
                partitions=[
                    FetchPartition(partition=partition, fetch_offset=0, partition_max_bytes=1 << 20)
                ],
            )
        ],
    )
    return (await send(broker, request, 12)).responses[0].partitions[0]


def data_values(partition: Any) -> list[bytes]:
    """The data records of a fetch answer, aborted transactions left out (as a client does)."""
    aborted = {a.producer_id: a.first_offset for a in partition.aborted_transactions or []}
    values = []
    for batch in iter_batches(memoryview(bytes(partition.records or b""))):
        if batch.is_control:
            continue
        first = aborted.get(batch.producer_id)
        if first is not None and batch.base_offset >= first:
            continue
        values.extend(r.value for r in batch.iter_records())
    return values


def test_commit_and_abort_as_read_committed_sees_them(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        txn = Txn(broker, "app-1")
        assert (await txn.init()).error_code == E.NONE
        assert txn.epoch == 0
        assert await txn.add(("t", 0), ("t", 1)) == {("t", 0): E.NONE, ("t", 1): E.NONE}
        assert (await txn.produce("t", 0, [b"c1", b"c2"])).error_code == E.NONE
        assert (await txn.produce("t", 1, [b"c3"])).error_code == E.NONE
        # Open: read_committed stops at the LSO, read_uncommitted sees the records.
        open_committed = await fetch(broker, "t", READ_COMMITTED)
        assert (open_committed.last_stable_offset, data_values(open_committed)) == (0, [])
        assert data_values(await fetch(broker, "t", READ_UNCOMMITTED)) == [b"c1", b"c2"]
        assert await txn.end(commit=True) == E.NONE
        await broker.txn_coordinator.wait_for_markers()
        committed = await fetch(broker, "t", READ_COMMITTED)
        assert data_values(committed) == [b"c1", b"c2"]
        assert committed.last_stable_offset == committed.high_watermark == 3  # marker at 2
        assert data_values(await fetch(broker, "t", READ_COMMITTED, 1)) == [b"c3"]

        # An aborted transaction: only read_uncommitted sees it, with its range reported.
        assert await txn.add(("t", 0)) == {("t", 0): E.NONE}
        assert (await txn.produce("t", 0, [b"a1"])).error_code == E.NONE
        assert await txn.end(commit=False) == E.NONE
        await broker.txn_coordinator.wait_for_markers()
        aborted = await fetch(broker, "t", READ_COMMITTED)
        assert [(a.producer_id, a.first_offset) for a in aborted.aborted_transactions] == [
            (txn.producer_id, 3)
        ]
        assert data_values(aborted) == [b"c1", b"c2"]
        everything = await fetch(broker, "t", READ_UNCOMMITTED)
        assert [
            r.value
            for b in iter_batches(memoryview(bytes(everything.records)))
            if not b.is_control
            for r in b.iter_records()
        ] == [b"c1", b"c2", b"a1"]

    run_with_broker(tmp_path, scenario)


def test_a_partition_not_in_the_transaction_is_refused(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        txn = Txn(broker, "app-2")
        await txn.init()
        await txn.add(("t", 0))
        # KIP-890: the coordinator does not have t-1 in the transaction; nothing is written.
        old = await txn.produce("t", 1, [b"x"], version=10)
        assert old.error_code == E.INVALID_TXN_STATE
        assert old.error_message == "Partition was not added to the transaction"
        new = await txn.produce("t", 1, [b"x"], version=11)
        assert new.error_code == E.TRANSACTION_ABORTABLE
        assert broker.replica_manager.get_partition("t", 1).log.log_end_offset == 0  # type: ignore[union-attr]
        # Without a transactional id in the request, transactional records are refused.
        answer = await txn.produce("t", 0, [b"y"], with_transactional_id=False)
        assert answer.error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    run_with_broker(tmp_path, scenario)


def test_add_partitions_fails_whole_on_an_unknown_partition(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        txn = Txn(broker, "app-3")
        await txn.init()
        assert await txn.add(("t", 0), ("t", 5), ("nope", 0)) == {
            ("t", 0): E.OPERATION_NOT_ATTEMPTED,
            ("t", 5): E.UNKNOWN_TOPIC_OR_PARTITION,
            ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION,
        }
        described = broker.txn_coordinator.handle_describe_transactions("app-3")
        assert (described.transaction_state, described.topics) == ("Empty", ())

    run_with_broker(tmp_path, scenario)


def test_a_new_instance_fences_the_old_and_aborts_its_transaction(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        zombie = Txn(broker, "app-4")
        await zombie.init()
        await zombie.add(("t", 0))
        assert (await zombie.produce("t", 0, [b"zombie"])).error_code == E.NONE
        fresh = Txn(broker, "app-4")
        assert (await fresh.init()).error_code == E.NONE
        assert fresh.producer_id == zombie.producer_id
        assert fresh.epoch == zombie.epoch + 2  # bumped to fence, and again for the new instance
        # The zombie is fenced everywhere it turns.
        assert await zombie.add(("t", 0)) == {("t", 0): E.PRODUCER_FENCED}
        assert (await zombie.produce("t", 0, [b"late"])).error_code == E.INVALID_PRODUCER_EPOCH
        assert await zombie.end(commit=True) == E.PRODUCER_FENCED
        # Its open transaction was aborted: read_committed sees nothing, and the LSO moved on.
        after = await fetch(broker, "t", READ_COMMITTED)
        assert data_values(after) == []
        assert after.last_stable_offset == after.high_watermark == 2

    run_with_broker(tmp_path, scenario)


def test_verify_only_and_batched_add_are_the_brokers_forms(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        txn = Txn(broker, "app-5")
        await txn.init()
        await txn.add(("t", 0))

        def transaction(verify_only: bool) -> AddPartitionsToTxnTransaction:
            return AddPartitionsToTxnTransaction(
                transactional_id="app-5",
                producer_id=txn.producer_id,
                producer_epoch=txn.epoch,
                verify_only=verify_only,
                topics=[AddPartitionsToTxnTopic(name="t", partitions=[0, 1])],
            )

        verified = await send(
            broker, AddPartitionsToTxnRequest(transactions=[transaction(True)]), 5
        )
        [result] = verified.results_by_transaction
        assert {
            r.partition_index: r.partition_error_code
            for r in result.topic_results[0].results_by_partition
        } == {
            0: E.NONE,
            1: E.TRANSACTION_ABORTABLE,
        }
        added = await send(broker, AddPartitionsToTxnRequest(transactions=[transaction(False)]), 4)
        assert all(
            r.partition_error_code == E.NONE
            for r in added.results_by_transaction[0].topic_results[0].results_by_partition
        )
        described = broker.txn_coordinator.handle_describe_transactions("app-5")
        assert described.topics == (("t", (0, 1)),)

    run_with_broker(tmp_path, scenario)


def test_add_offsets_puts_the_groups_offsets_partition_in_the_transaction(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        txn = Txn(broker, "app-6")
        await txn.init()
        answer = await send(
            broker,
            AddOffsetsToTxnRequest(
                transactional_id="app-6",
                producer_id=txn.producer_id,
                producer_epoch=txn.epoch,
                group_id="readers",
            ),
            3,
        )
        assert answer.error_code == E.NONE
        partition = broker.groups.partition_for("readers")
        described = broker.txn_coordinator.handle_describe_transactions("app-6")
        assert described.topics == (("__consumer_offsets", (partition,)),)
        assert described.transaction_state == "Ongoing"

    run_with_broker(tmp_path, scenario)


def test_write_txn_markers_ends_a_transaction_in_its_partitions(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        txn = Txn(broker, "app-7")
        await txn.init()
        await txn.add(("t", 0))
        await txn.produce("t", 0, [b"v"])
        request = WriteTxnMarkersRequest(
            markers=[
                WritableTxnMarker(
                    producer_id=txn.producer_id,
                    producer_epoch=txn.epoch,
                    transaction_result=True,
                    topics=[
                        WritableTxnMarkerTopic(name="t", partition_indexes=[0]),
                        WritableTxnMarkerTopic(name="gone", partition_indexes=[0]),
                    ],
                    coordinator_epoch=0,
                )
            ]
        )
        answer = await send(broker, request, 1)
        errors = {
            (t.name, p.partition_index): p.error_code
            for t in answer.markers[0].topics
            for p in t.partitions
        }
        # A partition of a topic that does not exist counts as written (nothing to mark).
        assert errors == {("t", 0): E.NONE, ("gone", 0): E.NONE}
        assert data_values(await fetch(broker, "t", READ_COMMITTED)) == [b"v"]

    run_with_broker(tmp_path, scenario)


def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(
    tmp_path: Path,
) -> None:
    async def scenario(broker: Broker, clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        txn = Txn(broker, "app-8", timeout_ms=1000)
        await txn.init()
        await txn.add(("t", 0))
        await txn.produce("t", 0, [b"slow"])
        await broker.abort_timed_out_transactions()
        assert broker.txn_coordinator.handle_describe_transactions("app-8").transaction_state == (
            "Ongoing"
        )
        clock.now += 1001
        await broker.abort_timed_out_transactions()
        await broker.txn_coordinator.wait_for_markers()
        described = broker.txn_coordinator.handle_describe_transactions("app-8")
        assert described.transaction_state == "CompleteAbort"
        assert described.producer_epoch == txn.epoch + 1
        assert await txn.end(commit=True) == E.PRODUCER_FENCED
        after = await fetch(broker, "t", READ_COMMITTED)
        assert data_values(after) == [] and after.last_stable_offset == 2

    run_with_broker(tmp_path, scenario)


def test_transactions_survive_a_restart(tmp_path: Path) -> None:
    ids: dict[str, int] = {}

    async def before(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        done = Txn(broker, "done")
        await done.init()
        await done.add(("t", 0))
        await done.produce("t", 0, [b"committed"])
        assert await done.end(commit=True) == E.NONE
        await broker.txn_coordinator.wait_for_markers()
        ids["done"] = done.producer_id
        still_open = Txn(broker, "open")
        await still_open.init()
        await still_open.add(("t", 0))
        await still_open.produce("t", 0, [b"open"])
        ids["open"] = still_open.producer_id

    async def after(broker: Broker, _clock: Clock) -> None:
        coordinator = broker.txn_coordinator
        assert coordinator.is_active
        assert coordinator.handle_describe_transactions("done").transaction_state == (
            "CompleteCommit"
        )
        # The open transaction is still open after the restart, and holds the LSO ...
        assert coordinator.handle_describe_transactions("open").transaction_state == "Ongoing"
        held = await fetch(broker, "t", READ_COMMITTED)
        assert data_values(held) == [b"committed"] and held.last_stable_offset == 2
        # ... until its producer comes back: a new instance aborts it, same producer id.
        again = Txn(broker, "open")
        assert (await again.init()).error_code == E.NONE
        assert again.producer_id == ids["open"]
        await coordinator.wait_for_markers()
        freed = await fetch(broker, "t", READ_COMMITTED)
        assert data_values(freed) == [b"committed"]
        assert freed.last_stable_offset == freed.high_watermark

    run_with_broker(tmp_path, before)
    run_with_broker(tmp_path, after)


@pytest.mark.parametrize("version", [0, 3])
def test_init_producer_id_checks_the_timeout(tmp_path: Path, version: int) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        await send(broker, FindCoordinatorRequest(key="x", key_type=1), 1)
        too_long = await send(
            broker,
            InitProducerIdRequest(transactional_id="x", transaction_timeout_ms=5001),
            version,
        )
        assert too_long.error_code == E.INVALID_TRANSACTION_TIMEOUT
        ok = await send(
            broker,
            InitProducerIdRequest(transactional_id="x", transaction_timeout_ms=5000),
            version,
        )
        assert (ok.error_code, ok.producer_epoch) == (E.NONE, 0)

    run_with_broker(tmp_path, scenario, props={"transaction.max.timeout.ms": "5000"})


def test_a_restart_answers_load_in_progress_until_the_load_is_done(tmp_path: Path) -> None:
    async def before(broker: Broker, _clock: Clock) -> None:
        for n in range(30):
            assert (await Txn(broker, f"id-{n}").init()).error_code == E.NONE

    run_with_broker(tmp_path, before)

    config = BrokerConfig({"transaction.state.log.num.partitions": "4"})
    broker = Broker(config, engine="disk", data_dir=tmp_path)

    async def main() -> None:
        broker.start(load_groups=False)  # as the server starts: listen first, load after
        try:
            request = InitProducerIdRequest(transactional_id="id-7", transaction_timeout_ms=60_000)
            broker.begin_txn_load()
            assert not broker.txn_coordinator.is_active
            assert (await send(broker, request, 4)).error_code == E.COORDINATOR_LOAD_IN_PROGRESS
            await asyncio.wait_for(broker.load_transactions(), TIMEOUT)
            assert broker.txn_coordinator.is_active
            answer = await send(broker, request, 4)
            assert (answer.error_code, answer.producer_epoch) == (E.NONE, 1)  # loaded epoch 0
            listed = broker.txn_coordinator.handle_list_transactions()
            assert len(listed.transaction_states) == 30
        finally:
            await broker.shutdown_transactions(TIMEOUT)
            broker.shutdown()

    asyncio.run(main())


def test_a_stop_between_prepare_commit_and_the_markers_commits_on_restart(
    tmp_path: Path,
) -> None:
    async def before(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        txn = Txn(broker, "half")
        await txn.init()
        await txn.add(("t", 0), ("t", 1))
        await txn.produce("t", 0, [b"p0"])
        await txn.produce("t", 1, [b"p1"])
        writes: list[frozenset[tuple[str, int]]] = []

        async def unavailable(*args: Any) -> dict[tuple[str, int], E]:
            writes.append(args[-1])
            return dict.fromkeys(args[-1], E.NOT_LEADER_OR_FOLLOWER)  # retried, never written

        broker.txn_markers.write_txn_markers = unavailable  # type: ignore[method-assign]
        assert await txn.end(commit=True) == E.NONE  # PrepareCommit is in the log
        await asyncio.sleep(0.3)
        assert len(writes) >= 2  # the coordinator keeps retrying
        assert broker.txn_coordinator.handle_describe_transactions("half").transaction_state == (
            "PrepareCommit"
        )
        assert data_values(await fetch(broker, "t", READ_COMMITTED)) == []
        # The stop cancels the retries: the markers were never written.
        await broker.shutdown_transactions(0.1)

    async def after(broker: Broker, _clock: Clock) -> None:
        # The load found PrepareCommit and finished the commit: both partitions, never half.
        await broker.txn_coordinator.wait_for_markers()
        state = broker.txn_coordinator.handle_describe_transactions("half").transaction_state
        assert state == "CompleteCommit"
        assert data_values(await fetch(broker, "t", READ_COMMITTED, 0)) == [b"p0"]
        assert data_values(await fetch(broker, "t", READ_COMMITTED, 1)) == [b"p1"]

    run_with_broker(tmp_path, before)
    run_with_broker(tmp_path, after)


def test_admin_apis_describe_producers_and_list_transactions(tmp_path: Path) -> None:
    from kafkacompat.protocol.messages.describe_producers_request import (
        DescribeProducersRequest,
        TopicRequest,
    )
    from kafkacompat.protocol.messages.describe_transactions_request import (
        DescribeTransactionsRequest,
    )
    from kafkacompat.protocol.messages.list_transactions_request import ListTransactionsRequest

    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        txn = Txn(broker, "app-9")
        await txn.init()
        await txn.add(("t", 0))
        await txn.produce("t", 0, [b"a", b"b"])
        described = await send(
            broker, DescribeProducersRequest(topics=[TopicRequest("t", [0, 3])]), 0
        )
        known, unknown = described.topics[0].partitions
        assert unknown.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
        [producer] = known.active_producers
        assert (producer.producer_id, producer.last_sequence) == (txn.producer_id, 1)
        assert producer.current_txn_start_offset == 0
        listed = await send(
            broker, ListTransactionsRequest(state_filters=["Ongoing", "Sleeping"]), 1
        )
        assert listed.unknown_state_filters == ["Sleeping"]
        assert [(t.transactional_id, t.transaction_state) for t in listed.transaction_states] == [
            ("app-9", "Ongoing")
        ]
        none_long = await send(broker, ListTransactionsRequest(duration_filter=3_600_000), 1)
        assert none_long.transaction_states == []
        answer = await send(
            broker, DescribeTransactionsRequest(transactional_ids=["app-9", "nobody"]), 0
        )
        states = {s.transactional_id: s for s in answer.transaction_states}
        assert states["nobody"].error_code == E.TRANSACTIONAL_ID_NOT_FOUND
        assert [(d.topic, d.partitions) for d in states["app-9"].topics] == [("t", [0])]

    run_with_broker(tmp_path, scenario)
