"""confluent-kafka's consume-transform-produce loop: ``send_offsets_to_transaction`` sends
TxnOffsetCommit, and the group's committed offset moves only when the transaction commits."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kafkacompat.pytest_plugin import TopicFactory
from tests.embedded.clients import TIMEOUT_S, produce

FAST_GROUPS = {"group.initial.rebalance.delay.ms": 0}


@pytest.mark.kafka_broker(per_test=False, configs=FAST_GROUPS)
def test_offsets_sent_to_a_transaction(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    source, sink = kafka_topic_factory(partitions=1), kafka_topic_factory(partitions=1)
    produce(kafka_bootstrap, source, [b"v%d" % i for i in range(5)])
    group = f"group-{source}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": group})
    try:
        consumer.subscribe([source])
        seen = 0
        deadline = time.monotonic() + TIMEOUT_S
        while seen < 5 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen += 1
        assert seen == 5
        tp = TopicPartition(source, 0)
        producer.init_transactions(TIMEOUT_S)
        producer.begin_transaction()
        producer.produce(sink, b"out")
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()),
            consumer.consumer_group_metadata(),
            TIMEOUT_S,
        )
        producer.commit_transaction(TIMEOUT_S)
        # librdkafka fetches with require_stable: this answers once the marker is written.
        assert [p.offset for p in consumer.committed([tp], TIMEOUT_S)] == [5]
        producer.begin_transaction()
        producer.send_offsets_to_transaction(
            [TopicPartition(source, 0, 2)], consumer.consumer_group_metadata(), TIMEOUT_S
        )
        producer.abort_transaction(TIMEOUT_S)
        assert [p.offset for p in consumer.committed([tp], TIMEOUT_S)] == [5]
    finally:
        consumer.close()
        del producer  # closes its connections before the broker stops
