"""The KIP-664 admin APIs with real clients: a confluent-kafka transactional producer opens
and commits transactions, kafka-python's KafkaAdminClient (the only Python admin client with
them; confluent-kafka's and kafkajs's have none) lists and describes them (ListTransactions,
DescribeTransactions) and the producers in their partitions (DescribeProducers)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from interop.conftest import BrokerProcess

TIMEOUT_S = 30.0


@pytest.fixture
def admin(broker: BrokerProcess) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        yield client
    finally:
        client.close()


def _create_topic(admin: Any, topic: str, partitions: int) -> None:
    from kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, partitions, 1)])


def _producer(bootstrap: str, transactional_id: str) -> Any:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 60000,
        }
    )
    producer.init_transactions(TIMEOUT_S)
    return producer


def test_list_describe_and_producers_of_a_real_transaction(
    broker: BrokerProcess, admin: Any, topic: str
) -> None:
    from kafka import TopicPartition

    _create_topic(admin, topic, 2)
    transactional_id = f"txn-{uuid.uuid4().hex[:8]}"
    producer = _producer(broker.bootstrap, transactional_id)
    before = int(time.time() * 1000)
    producer.begin_transaction()
    for value in (b"a", b"b", b"c"):
        producer.produce(topic, value=value, partition=1)
    assert producer.flush(TIMEOUT_S) == 0  # the records are in the log: the partition is added

    def mine(listing: dict[int, list[Any]]) -> list[Any]:
        return [t for ts in listing.values() for t in ts if t.transactional_id == transactional_id]

    [ongoing] = mine(admin.list_transactions())
    assert ongoing.state.value == "Ongoing"
    described = admin.describe_transactions([transactional_id])[transactional_id]
    assert described.state.value == "Ongoing"
    assert described.producer_id == ongoing.producer_id
    assert described.transaction_timeout_ms == 60000
    assert described.transaction_start_time_ms >= before - 1000  # the broker's clock
    assert described.topic_partitions == {TopicPartition(topic, 1)}
    assert mine(admin.list_transactions(state_filters=["Ongoing"])) == [ongoing]
    assert mine(admin.list_transactions(state_filters=["CompleteCommit"])) == []
    assert mine(admin.list_transactions(producer_id_filters=[ongoing.producer_id])) == [ongoing]
    # KIP-994 (ListTransactions v1): open for longer than an hour: not this one.
    assert mine(admin.list_transactions(duration_filter_ms=3_600_000)) == []

    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    states = admin.describe_producers(partitions)
    assert states[partitions[0]].active_producers == []
    [active] = states[partitions[1]].active_producers
    assert (active.producer_id, active.producer_epoch) == (
        described.producer_id,
        described.producer_epoch,
    )
    assert active.last_sequence == 2
    assert active.current_transaction_start_offset == 0

    producer.commit_transaction(TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # the markers are written after EndTxn answers
        [done] = mine(admin.list_transactions())
        if done.state.value == "CompleteCommit" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert done.state.value == "CompleteCommit"
    after = admin.describe_transactions([transactional_id])[transactional_id]
    assert (after.state.value, after.topic_partitions) == ("CompleteCommit", set())
    [closed] = admin.describe_producers([partitions[1]])[partitions[1]].active_producers
    assert closed.current_transaction_start_offset == -1
    assert closed.coordinator_epoch >= 0


def test_describe_an_unknown_transactional_id(admin: Any) -> None:
    import kafka.errors

    with pytest.raises(kafka.errors.TransactionalIdNotFoundError):
        admin.describe_transactions([f"never-{uuid.uuid4().hex[:8]}"])
