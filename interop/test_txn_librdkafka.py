"""The broker side of librdkafka's own transaction tests (0055, 0061, 0129, 0137), with
confluent-kafka: librdkafka's suite cannot run here, so each scenario is redone against a
real ``kafkacompat serve``.
"""

from __future__ import annotations

import json
import time

from interop.clients import CLIENT_TIMEOUT_S
from interop.conftest import BrokerProcess
from interop.group_clients import (
    create_topic,
    produce_batch,
)
from interop.txn_clients import (
    Txn,
    read_to_end,
    transact,
    values_to_end,
    wait_stable,
)

# -- librdkafka's transaction tests, their broker side ---------------------------------------


def test_0129_fetch_of_only_aborted_records_moves_on(broker: BrokerProcess, topic: str) -> None:
    """librdkafka 0129-fetch_aborted_msgs: a topic with a small max.message.bytes, 1,000
    records of 1,000 bytes in one aborted transaction: fetch responses hold nothing but
    aborted batches, and a read_committed consumer gets through them to the end with no
    error (librdkafka #2993: it used to report MSG_SIZE_TOO_LARGE)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"max.message.bytes": "10000", "segment.bytes": "20000"}
    (future,) = admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values()
    future.result(timeout=15)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{topic}-txn",
            "message.max.bytes": 10000,
            "linger.ms": 100,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    producer.begin_transaction()
    for i in range(1000):
        producer.produce(topic, value=bytes([i % 256]) * 1000, partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    producer.abort_transaction(CLIENT_TIMEOUT_S)
    transact("confluent", bootstrap, f"{topic}-after", topic, [Txn([b"after"], "commit")])
    assert read_to_end(bootstrap, topic, 0, "read_committed") == ([(1001, b"after")], 1003)


def test_0061_consumer_lag_is_zero_past_aborted_records_and_markers(
    broker: BrokerProcess, topic: str
) -> None:
    """librdkafka 0061-consumer_lag with transactions: after plain records and an aborted
    transaction, a read_committed consumer's lag (LSO - stored offset, in its statistics) goes
    to 0: its position moves past the aborted records and the marker."""
    from confluent_kafka import Consumer, TopicPartition

    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    produce_batch(bootstrap, topic, [0], 10, "plain")
    transact("confluent", bootstrap, f"{topic}-txn", topic, [Txn([b"a"] * 3, "abort")])
    lags: list[int] = []

    def stats(text: str) -> None:
        partition = json.loads(text)["topics"].get(topic, {}).get("partitions", {}).get("0")
        if partition is not None:
            # librdkafka 2.x: consumer_lag is from the committed offset (none here),
            # consumer_lag_stored from the offset stored as the application reads.
            lags.append(int(partition["consumer_lag_stored"]))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-group",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "statistics.interval.ms": 100,
            "stats_cb": stats,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        read = 0
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline and not (read == 10 and lags and lags[-1] == 0):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                read += 1
        assert read == 10
        assert lags and lags[-1] == 0, lags
        assert consumer.position([TopicPartition(topic, 0)])[0].offset == 14
    finally:
        consumer.close()


def test_0137_batch_consume_across_control_records_commits_past_them(
    broker: BrokerProcess, topic: str
) -> None:
    """librdkafka 0137-barrier_batch_consume, control messages: a committed transaction of
    2 and an aborted one of 3; a group member consuming in batches of 10 (pausing and
    resuming the partition) gets the 2, and its committed offset is 7, past both markers."""
    from confluent_kafka import Consumer, TopicPartition

    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    transact(
        "confluent",
        bootstrap,
        f"{topic}-txn",
        topic,
        [Txn([b"c1", b"c2"], "commit"), Txn([b"a1", b"a2", b"a3"], "abort")],
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([topic])
        tp = TopicPartition(topic, 0)
        values: list[bytes | None] = []
        paused = False
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            for message in consumer.consume(10, 0.5):
                assert message.error() is None, message.error()
                values.append(message.value())
            if consumer.assignment() and not paused:
                consumer.pause([tp])
                consumer.resume([tp])
                paused = True
            position = consumer.position([tp])[0].offset if consumer.assignment() else -1
            if len(values) == 2 and position == 7:
                break
        assert values == [b"c1", b"c2"]
        consumer.commit(asynchronous=False)
        (committed,) = consumer.committed([tp], timeout=10)
        assert committed.offset == 7
    finally:
        consumer.close()


def test_0055_transactional_records_are_delivered_before_the_commit(
    broker: BrokerProcess, topic: str
) -> None:
    """librdkafka 0055-producer_latency, transactional: records in a transaction are sent
    and acknowledged as they are produced (linger.ms 0), not held until the commit; the
    delivery reports come before commit_transaction is called."""
    from confluent_kafka import Producer

    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-txn", "linger.ms": 0}
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    delivered: list[int | None] = []
    for round_ in range(3):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(
                topic,
                value=f"{round_}-{i}".encode(),
                partition=0,
                on_delivery=lambda err, msg: delivered.append(msg.offset()) if not err else None,
            )
        want = 5 * (round_ + 1)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(delivered) < want and time.monotonic() < deadline:
            producer.poll(0.05)
        assert len(delivered) == want  # before, and without, the commit
        producer.commit_transaction(CLIENT_TIMEOUT_S)
    # Each round's 5 records and its marker.
    assert delivered == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16]
    wait_stable(bootstrap, topic)
    assert len(values_to_end(bootstrap, topic, "read_committed")) == 15
