"""Real clients against the plugin's fixtures: confluent-kafka (round trip, a consumer group,
topic configs) and kafka-python."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPythonTopicPartition

from kafkacompat import EmbeddedKafka
from kafkacompat.pytest_plugin import TopicFactory
from tests.embedded.clients import TIMEOUT_S, consume, produce

# Groups form at once instead of after Kafka's default 3 s initial rebalance delay.
FAST_GROUPS = {"group.initial.rebalance.delay.ms": 0}


def test_confluent_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    values = [f"record {i}".encode() for i in range(100)]
    produce(kafka_bootstrap, kafka_topic, values)
    assert consume(kafka_bootstrap, kafka_topic, len(values)) == values


def test_the_session_broker_is_shared(kafka: EmbeddedKafka, kafka_broker: EmbeddedKafka) -> None:
    assert kafka_broker is kafka and kafka.running


@pytest.mark.kafka_broker(per_test=False, configs=FAST_GROUPS)
def test_confluent_consumer_group(kafka_bootstrap: str, kafka_topic_factory: TopicFactory) -> None:
    topic = kafka_topic_factory(partitions=3)
    for partition in range(3):
        produce(kafka_bootstrap, topic, [f"p{partition}".encode()] * 2, partition=partition)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"group-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        seen: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(seen) < 6:
            assert time.monotonic() < deadline, f"read {len(seen)} of 6 records"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            seen.append(message.value())
        assert sorted(seen) == [b"p0", b"p0", b"p1", b"p1", b"p2", b"p2"]
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], TIMEOUT_S)
        assert sorted(tp.offset for tp in committed) == [2, 2, 2]
    finally:
        consumer.close()


def test_topic_factory_partitions_configs_and_unique_names(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    compacted = kafka_topic_factory(partitions=4, configs={"cleanup.policy": "compact"})
    other = kafka_topic_factory()
    assert compacted != other
    assert compacted.startswith("test_topic_factory_partitions_configs_and_unique_names-")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=TIMEOUT_S).topics
    assert len(topics[compacted].partitions) == 4 and len(topics[other].partitions) == 1
    resource = ConfigResource(ConfigResource.Type.TOPIC, compacted)
    configs = admin.describe_configs([resource])[resource].result(TIMEOUT_S)
    assert configs["cleanup.policy"].value == "compact"


def test_kafka_python_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for i in range(10):
            producer.send(kafka_topic, key=b"k", value=f"v{i}".encode())
        producer.flush(TIMEOUT_S)
    finally:
        producer.close(TIMEOUT_S)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=1000)
    try:
        partition = KafkaPythonTopicPartition(kafka_topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < 10:
            assert time.monotonic() < deadline, f"read {len(values)} of 10 records"
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
        assert values == [f"v{i}".encode() for i in range(10)]
    finally:
        consumer.close()
