"""Restarts of a disk-backed broker: stopped cleanly (SIGTERM, SIGINT) or killed (SIGKILL),
every acknowledged record is still there, byte for byte at its offset, and producing goes
on at the next offset."""

from __future__ import annotations

import signal
import time

import pytest

from interop.clients import CLIENT_TIMEOUT_S, Consumed, Record, consume, produce
from interop.conftest import BrokerFactory, BrokerProcess
from interop.records import standard_records

SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]


def read_all(bootstrap: str, topic: str, count: int, client: str) -> list[Consumed]:
    return consume(client, bootstrap, topic, 0, 0, count)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_restart_keeps_acknowledged_records(
    broker_factory: BrokerFactory, signum: int, topic: str
) -> None:
    broker = broker_factory(storage="disk")
    records = standard_records()
    first = produce("confluent", broker.bootstrap, topic, records, compression="zstd")
    second = produce("kafka-python", broker.bootstrap, topic, records, compression="none")
    n = len(records)
    assert first + second == list(range(2 * n))
    before = read_all(broker.bootstrap, topic, 2 * n, "kafka-python")

    code = broker.restart(signum)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 0, broker.log_tail()
        assert "stopped cleanly" in broker.log_text()

    for client in ("kafka-python", "confluent"):
        assert read_all(broker.bootstrap, topic, 2 * n, client) == before
    (next_offset,) = produce("aiokafka", broker.bootstrap, topic, [Record(b"k", b"after")])
    assert next_offset == 2 * n
    (after,) = consume("confluent", broker.bootstrap, topic, 0, 2 * n, 1)
    assert after.record.value == b"after"


def test_sigkill_under_load_keeps_every_acknowledged_record(
    broker_factory: BrokerFactory, topic: str
) -> None:
    """SIGKILL while a producer streams acks=all records: whatever the broker acknowledged
    before dying is there after the restart, at the offset it was acknowledged with."""
    from confluent_kafka import KafkaError, Producer

    broker = broker_factory(storage="disk")
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 1,
            "batch.num.messages": 50,
            "message.timeout.ms": 3000,
            "retries": 0,
        }
    )
    acknowledged: dict[int, bytes] = {}
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: object) -> None:
        if error is None:
            acknowledged[message.offset()] = message.value()  # type: ignore[attr-defined]
        else:
            failed.append(error)

    sent = 0
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(acknowledged) < 2000 and time.monotonic() < deadline:
        try:
            producer.produce(
                topic, value=f"record {sent:06d}".encode(), partition=0, on_delivery=delivered
            )
        except BufferError:
            # The client's queue is full (a slow, shared machine): wait for acknowledgements
            # as an application would, instead of failing the test on the client's limit.
            producer.poll(0.05)
            continue
        sent += 1
        producer.poll(0)
    assert len(acknowledged) >= 2000, f"only {len(acknowledged)} acknowledged in time"
    for _ in range(500):  # more in flight while the broker dies
        try:
            producer.produce(
                topic, value=f"record {sent:06d}".encode(), partition=0, on_delivery=delivered
            )
        except BufferError:
            break  # the client's queue is full: plenty are in flight already
        sent += 1
    producer.poll(0)
    broker.kill()
    producer.flush(10)  # the rest fail (message.timeout.ms), or were acknowledged in time
    assert len(acknowledged) + len(failed) == sent

    broker.start(broker.port)
    high = max(acknowledged) + 1
    read = consume("kafka-python", broker.bootstrap, topic, 0, 0, high)
    on_disk = {c.offset: c.record.value for c in read}
    lost = {o: v for o, v in acknowledged.items() if on_disk.get(o) != v}
    assert lost == {}, f"{len(lost)} acknowledged records lost or changed"

    # The log ends where the records that reached the disk end; producing resumes there.
    end = _end_offset(broker, topic)
    assert end >= high
    (next_offset,) = produce("confluent", broker.bootstrap, topic, [Record(None, b"resumed")])
    assert next_offset == end


def _end_offset(broker: BrokerProcess, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def test_clean_stop_after_topic_deletion(broker_factory: BrokerFactory, topic: str) -> None:
    """A deleted topic leaves nothing for the shutdown to trip on."""
    from interop.admin_clients import admin_client

    broker = broker_factory(storage="disk")
    produce("confluent", broker.bootstrap, topic, [Record(b"k", b"v")])
    with admin_client("confluent", broker.bootstrap) as admin:
        admin.delete_topic(topic)
    assert broker.stop() == 0, broker.log_tail()
    assert "stopped cleanly" in broker.log_text()
