"""Transactions as an admin client sees them (KIP-664), through kafka-python's admin client
(the one Python client that has the calls, as ``kafka-transactions.sh`` does): list and
describe transactions, describe producers, find hanging transactions and abort one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from interop.conftest import BrokerProcess

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("kafka.admin")
kafka = pytest.importorskip("kafka")

TIMEOUT_S = 15.0


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {TIMEOUT_S}s")
        time.sleep(0.1)


@pytest.fixture
def admin(broker: BrokerProcess) -> Iterator[Any]:
    client = kafka_admin.KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000
    )
    try:
        yield client
    finally:
        client.close()


def _topic(admin: Any, partitions: int) -> str:
    name = f"txn-admin-{uuid.uuid4().hex[:8]}"
    admin.create_topics([kafka_admin.NewTopic(name, partitions, 1)])
    return name


def _producer(broker: BrokerProcess, transactional_id: str) -> Any:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": transactional_id}
    )
    producer.init_transactions(TIMEOUT_S)
    return producer


def _states(admin: Any, **filters: Any) -> dict[str, Any]:
    by_broker = admin.list_transactions(**filters)  # every broker's, by node id
    return {t.transactional_id: t for listed in by_broker.values() for t in listed}


def test_list_and_describe_follow_a_transaction(broker: BrokerProcess, admin: Any) -> None:
    topic = _topic(admin, 3)
    tid = f"admin-{uuid.uuid4().hex[:8]}"
    producer = _producer(broker, tid)
    producer.begin_transaction()
    for partition in (0, 2):
        producer.produce(topic, value=b"v", partition=partition)
    producer.flush(TIMEOUT_S)

    listed = _states(admin, state_filters=["Ongoing"])
    assert tid in listed and listed[tid].state == "Ongoing"
    producer_id = listed[tid].producer_id
    assert tid in _states(admin, producer_id_filters=[producer_id])
    assert tid not in _states(admin, producer_id_filters=[producer_id + 1_000_000])
    assert tid not in _states(admin, state_filters=["CompleteCommit"])
    # KIP-994: open for longer than the filter, or not listed.
    assert tid not in _states(admin, duration_filter_ms=3_600_000)
    time.sleep(0.05)
    assert tid in _states(admin, duration_filter_ms=1)

    described = admin.describe_transactions([tid])[tid]
    assert (described.state, described.producer_id) == ("Ongoing", producer_id)
    assert described.topic_partitions == {
        kafka.TopicPartition(topic, 0),
        kafka.TopicPartition(topic, 2),
    }
    assert described.transaction_start_time_ms > 0

    producers = admin.describe_producers([kafka.TopicPartition(topic, 0)])
    [state] = producers.values()
    [active] = state.active_producers
    assert active.producer_id == producer_id
    assert active.current_transaction_start_offset == 0  # the transaction is open from offset 0

    producer.commit_transaction(TIMEOUT_S)
    wait_until(
        lambda: (
            _states(admin).get(tid) is not None and _states(admin)[tid].state == "CompleteCommit"
        ),
        "CompleteCommit",
    )
    producers = admin.describe_producers([kafka.TopicPartition(topic, 0)])
    [active] = next(iter(producers.values())).active_producers
    assert active.current_transaction_start_offset == -1  # the marker closed it


def test_describe_an_unknown_transactional_id(broker: BrokerProcess, admin: Any) -> None:
    from kafka.errors import TransactionalIdNotFoundError

    with pytest.raises(TransactionalIdNotFoundError):
        admin.describe_transactions([f"never-{uuid.uuid4().hex[:8]}"])


def test_a_transaction_aborted_by_the_admin_frees_read_committed(
    broker: BrokerProcess, admin: Any
) -> None:
    topic = _topic(admin, 1)
    tid = f"hang-{uuid.uuid4().hex[:8]}"
    producer = _producer(broker, tid)
    producer.begin_transaction()
    producer.produce(topic, value=b"stuck", partition=0)
    producer.flush(TIMEOUT_S)
    state = next(iter(admin.describe_producers([kafka.TopicPartition(topic, 0)]).values()))
    [active] = state.active_producers
    assert active.current_transaction_start_offset == 0
    # As kafka-transactions.sh --abort does: the epochs DescribeProducers reported.
    spec = kafka_admin.AbortTransactionSpec(
        topic_partition=kafka.TopicPartition(topic, 0),
        producer_id=active.producer_id,
        producer_epoch=active.producer_epoch,
        coordinator_epoch=active.coordinator_epoch,
    )
    admin.abort_transaction(spec)
    # The abort marker closed the transaction in the partition: the LSO is past it.
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(
            confluent_kafka.TopicPartition(topic, 0), timeout=TIMEOUT_S
        )
        assert (low, high) == (0, 2)  # the record and the admin's ABORT marker
    finally:
        consumer.close()
    state = next(iter(admin.describe_producers([kafka.TopicPartition(topic, 0)]).values()))
    assert [p.current_transaction_start_offset for p in state.active_producers] == [-1]
    # Its producer, still in the transaction as the coordinator sees it, may commit (as on
    # Kafka: the COMMIT marker finds nothing open there); what was aborted stays aborted.
    producer.commit_transaction(TIMEOUT_S)
    assert _read_committed(broker, topic) == []


def _read_committed(broker: BrokerProcess, topic: str) -> list[bytes]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    return values
                raise AssertionError(message.error())
            values.append(message.value())
        raise AssertionError(f"no end of partition after {TIMEOUT_S}s")
    finally:
        consumer.close()
