"""DescribeProducers, DescribeTransactions and ListTransactions through their handlers, with
real transactions driven by hand (tests/handlers/test_transactions.py's Txn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode as E
from kafkacompat.protocol.messages.describe_producers_request import (
    DescribeProducersRequest,
    TopicRequest,
)
from kafkacompat.protocol.messages.describe_transactions_request import (
    DescribeTransactionsRequest,
)
from kafkacompat.protocol.messages.list_transactions_request import ListTransactionsRequest
from kafkacompat.security.authorizer import AclOperation, Action, ResourceType
from kafkacompat.security.session import Session
from tests.handlers.test_transactions import Clock, Txn, run_with_broker, send


class Denying:
    """Says no to the listed (operation, resource type, name) triples, yes to all else."""

    def __init__(self, *denied: tuple[AclOperation, ResourceType, str]) -> None:
        self.denied = set(denied)

    def authorize(self, session: Session, actions: Sequence[Action]) -> list[bool]:
        return [(a.operation, a.resource_type, a.resource_name) not in self.denied for a in actions]


async def producers(broker: Broker, topic: str, *partitions: int) -> Any:
    request = DescribeProducersRequest(
        topics=[TopicRequest(name=topic, partition_indexes=list(partitions))]
    )
    return (await send(broker, request, 0)).topics[0]


async def listed(broker: Broker, version: int = 1, **filters: Any) -> Any:
    return await send(broker, ListTransactionsRequest(**filters), version)


async def described(broker: Broker, *ids: str) -> dict[str, Any]:
    answer = await send(broker, DescribeTransactionsRequest(transactional_ids=list(ids)), 0)
    return {state.transactional_id: state for state in answer.transaction_states}


def test_describe_producers_shows_an_open_transaction_then_its_end(tmp_path: Path) -> None:
    async def scenario(broker: Broker, clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        txn = Txn(broker, "app-1")
        assert (await txn.init()).error_code == E.NONE
        assert await txn.add(("t", 0)) == {("t", 0): E.NONE}
        assert (await txn.produce("t", 0, [b"a", b"b", b"c"])).error_code == E.NONE
        topic = await producers(broker, "t", 0, 1)
        first, second = topic.partitions
        assert (first.partition_index, first.error_code) == (0, E.NONE)
        [producer] = first.active_producers
        assert (producer.producer_id, producer.producer_epoch) == (txn.producer_id, txn.epoch)
        assert producer.last_sequence == 2  # three records from sequence 0
        assert producer.last_timestamp == clock.now
        assert producer.current_txn_start_offset == 0
        assert (second.error_code, second.active_producers) == (E.NONE, [])
        assert await txn.end(commit=True) == E.NONE
        await broker.txn_coordinator.wait_for_markers()
        [closed] = (await producers(broker, "t", 0)).partitions[0].active_producers
        assert closed.current_txn_start_offset == -1
        assert closed.coordinator_epoch >= 0  # the marker's writer
        assert closed.last_sequence == 2  # the marker has no sequence of its own

    run_with_broker(tmp_path, scenario)


def test_describe_producers_errors_as_kafka(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        broker.controller.create_topic("secret", 1)
        broker.authorizer = Denying((AclOperation.READ, ResourceType.TOPIC, "secret"))
        missing = (await producers(broker, "t", 0, 5)).partitions
        assert [(p.partition_index, p.error_code) for p in missing] == [
            (0, E.NONE),
            (5, E.UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert missing[1].error_message is None
        secret = (await producers(broker, "secret", 0, 1)).partitions
        assert [p.error_code for p in secret] == [E.TOPIC_AUTHORIZATION_FAILED] * 2
        assert secret[0].error_message == "Topic authorization failed."
        unknown = (await producers(broker, "nowhere", 0)).partitions[0]
        assert unknown.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
        invalid = (await producers(broker, "bad/name", 0)).partitions[0]
        assert invalid.error_code == E.INVALID_TOPIC_EXCEPTION
        assert invalid.error_message is not None and "illegal" in invalid.error_message
        # A log offline after a disk failure: Kafka's HostedPartition.Offline.
        local = broker.replica_manager.get_partition_or_error("t", 0).log.local
        local.go_offline(OSError(5, "Input/output error"))  # type: ignore[attr-defined]
        offline = (await producers(broker, "t", 0)).partitions[0]
        assert offline.error_code == E.KAFKA_STORAGE_ERROR

    run_with_broker(tmp_path, scenario)


def test_list_and_describe_follow_a_transaction(tmp_path: Path) -> None:
    async def scenario(broker: Broker, clock: Clock) -> None:
        broker.controller.create_topic("t", 2)
        broker.controller.create_topic("u", 1)
        txn = Txn(broker, "app-1", timeout_ms=30_000)
        assert (await txn.init()).error_code == E.NONE
        idle = await described(broker, "app-1")
        assert idle["app-1"].transaction_state == "Empty"
        start = clock.now
        assert await txn.add(("t", 1), ("u", 0), ("t", 0)) == dict.fromkeys(
            [("t", 1), ("u", 0), ("t", 0)], E.NONE
        )
        every = await listed(broker)
        assert every.error_code == E.NONE
        assert [
            (s.transactional_id, s.producer_id, s.transaction_state)
            for s in every.transaction_states
        ] == [("app-1", txn.producer_id, "Ongoing")]
        state = (await described(broker, "app-1"))["app-1"]
        assert state.error_code == E.NONE
        assert (state.transaction_state, state.transaction_timeout_ms) == ("Ongoing", 30_000)
        assert (state.producer_id, state.producer_epoch) == (txn.producer_id, txn.epoch)
        assert state.transaction_start_time_ms == start
        assert {(t.topic, tuple(t.partitions)) for t in state.topics} == {
            ("t", (0, 1)),
            ("u", (0,)),
        }
        assert await txn.end(commit=True) == E.NONE
        await broker.txn_coordinator.wait_for_markers()
        done = (await described(broker, "app-1"))["app-1"]
        assert (done.transaction_state, done.topics) == ("CompleteCommit", [])
        assert [s.transaction_state for s in (await listed(broker)).transaction_states] == [
            "CompleteCommit"
        ]

    run_with_broker(tmp_path, scenario)


def test_list_transactions_filters(tmp_path: Path) -> None:
    async def scenario(broker: Broker, clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        old, new = Txn(broker, "old"), Txn(broker, "new")
        for txn in (old, new):
            assert (await txn.init()).error_code == E.NONE
        assert await old.add(("t", 0)) == {("t", 0): E.NONE}
        clock.now += 5_000
        assert await new.add(("t", 0)) == {("t", 0): E.NONE}
        clock.now += 1_000

        def ids(answer: Any) -> list[str]:
            return sorted(s.transactional_id for s in answer.transaction_states)

        assert ids(await listed(broker)) == ["new", "old"]
        # KIP-994: open for longer than 3 s: only the older one (v1).
        assert ids(await listed(broker, duration_filter=3_000)) == ["old"]
        assert ids(await listed(broker, producer_id_filters=[new.producer_id])) == ["new"]
        assert ids(await listed(broker, producer_id_filters=[12345678])) == []
        assert ids(await listed(broker, state_filters=["Ongoing"])) == ["new", "old"]
        assert ids(await listed(broker, state_filters=["Empty"])) == []
        odd = await listed(broker, state_filters=["Ongoing", "Nonsense"])
        assert (ids(odd), odd.unknown_state_filters) == (["new", "old"], ["Nonsense"])
        # v0 has no duration filter: the field is not sent, and nothing is filtered by it.
        assert ids(await listed(broker, version=0, duration_filter=3_000)) == ["new", "old"]

    run_with_broker(tmp_path, scenario)


def test_ids_and_topics_the_caller_may_not_describe_are_hidden(tmp_path: Path) -> None:
    async def scenario(broker: Broker, _clock: Clock) -> None:
        broker.controller.create_topic("t", 1)
        broker.controller.create_topic("secret", 1)
        open_txn, hidden = Txn(broker, "open"), Txn(broker, "hidden")
        for txn in (open_txn, hidden):
            assert (await txn.init()).error_code == E.NONE
            assert await txn.add(("t", 0), ("secret", 0)) == {
                ("t", 0): E.NONE,
                ("secret", 0): E.NONE,
            }
        broker.authorizer = Denying(
            (AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, "hidden"),
            (AclOperation.DESCRIBE, ResourceType.TOPIC, "secret"),
        )
        assert [s.transactional_id for s in (await listed(broker)).transaction_states] == ["open"]
        states = await described(broker, "open", "hidden", "never-seen", "")
        assert [(t.topic, t.partitions) for t in states["open"].topics] == [("t", [0])]
        refused = states["hidden"]
        assert refused.error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        # Kafka sets only the id and the error: the rest keep the schema's defaults.
        assert (refused.transaction_state, refused.producer_id, refused.topics) == ("", 0, [])
        assert states["never-seen"].error_code == E.TRANSACTIONAL_ID_NOT_FOUND
        assert states["never-seen"].transaction_start_time_ms == 0
        assert states[""].error_code == E.INVALID_REQUEST

    run_with_broker(tmp_path, scenario)
