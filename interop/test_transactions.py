"""Transactions with real clients (KIP-98): what read_committed and read_uncommitted
consumers see of committed, aborted, open and timed-out transactions; the last stable
offset; fencing of a zombie producer; an open transaction across a broker SIGKILL.
Consume-transform-produce is in ``test_txn_consume_transform_produce.py``, the broker side
of librdkafka's own transaction tests in ``test_txn_librdkafka.py``.

Every record here is written to partition 0 of a fresh topic unless said otherwise, so
offsets are predictable: each transaction ends with one control record (its marker).
"""

from __future__ import annotations

import signal
import time

import pytest

from interop.clients import CLIENT_TIMEOUT_S, require
from interop.conftest import BrokerFactory, BrokerProcess
from interop.group_clients import (
    create_topic,
)
from interop.txn_clients import (
    TXN_CLIENTS,
    Txn,
    latest_offset,
    read_to_end,
    transact,
    values_to_end,
    wait_for,
    wait_stable,
)

# -- committed and aborted, every client -----------------------------------------------------


@pytest.mark.parametrize("client", TXN_CLIENTS)
def test_committed_visible_to_both_isolations_aborted_only_to_read_uncommitted(
    broker: BrokerProcess, client: str, topic: str
) -> None:
    require(client)
    create_topic(broker.bootstrap, topic, 1)
    transact(
        client,
        broker.bootstrap,
        f"{topic}-txn",
        topic,
        [
            Txn([b"c1", b"c2", b"c3"], "commit"),
            Txn([b"a1", b"a2"], "abort"),
            Txn([b"c4"], "commit"),
        ],
    )
    committed, end = read_to_end(broker.bootstrap, topic, 0, "read_committed")
    # Offsets 0-2, marker 3; 4-5, marker 6; 7, marker 8.
    assert committed == [(0, b"c1"), (1, b"c2"), (2, b"c3"), (7, b"c4")]
    assert end == 9  # the last stable offset: past the last marker
    uncommitted, end = read_to_end(broker.bootstrap, topic, 0, "read_uncommitted")
    assert [v for _, v in uncommitted] == [b"c1", b"c2", b"c3", b"a1", b"a2", b"c4"]
    assert end == 9
    for reader in ("confluent", "kafka-python"):
        assert latest_offset(broker.bootstrap, topic, 0, "read_committed", reader) == 9
        assert latest_offset(broker.bootstrap, topic, 0, "read_uncommitted", reader) == 9


def test_kafkajs_kafka_python_and_aiokafka_consumers_skip_aborted_records(
    broker: BrokerProcess, topic: str
) -> None:
    """The other clients' consumers filter with the response's aborted transactions too,
    and their positions move past aborted records and markers to the end."""
    require("kafkajs")
    from interop.clients import consume, run_kafkajs

    create_topic(broker.bootstrap, topic, 1)
    transact(
        "confluent",
        broker.bootstrap,
        f"{topic}-txn",
        topic,
        [Txn([b"a1", b"a2"], "abort"), Txn([b"c1"], "commit"), Txn([b"a3"], "abort")],
    )
    fetched = run_kafkajs(
        {
            "op": "fetch",
            "brokers": [broker.bootstrap],
            "topic": topic,
            "partition": 0,
            "offset": 0,
            "count": 1,
            "timeoutMs": 10000,
            "isolationLevel": 1,
        }
    )
    assert [(r["offset"], r["value"]) for r in fetched] == [(3, "YzE=")]  # b"c1"
    read = consume("kafka-python", broker.bootstrap, topic, 0, 0, 4)
    assert [c.record.value for c in read] == [b"a1", b"a2", b"c1", b"a3"]  # read_uncommitted
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, isolation_level="read_committed"
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        seen: list[bytes] = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while consumer.position(tp) < 7 and time.monotonic() < deadline:
            seen += [m.value for m in consumer.poll(timeout_ms=200).get(tp, [])]
        assert seen == [b"c1"]
        assert consumer.position(tp) == 7
    finally:
        consumer.close()
    assert _aiokafka_read_committed(broker.bootstrap, topic, 7) == [b"c1"]


def _aiokafka_read_committed(bootstrap: str, topic: str, end: int) -> list[bytes]:
    """What an aiokafka read_committed consumer reads from 0 until its position is ``end``."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATopicPartition

    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed"
        )
        await asyncio.wait_for(consumer.start(), CLIENT_TIMEOUT_S)
        try:
            tp = ATopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            seen: list[bytes] = []
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            while await consumer.position(tp) < end and time.monotonic() < deadline:
                batches = await consumer.getmany(tp, timeout_ms=200)
                seen += [m.value for m in batches.get(tp, [])]
            assert await consumer.position(tp) == end
            return seen
        finally:
            await asyncio.wait_for(consumer.stop(), 10)

    return asyncio.run(run())


def test_transaction_over_several_partitions_and_topics(broker: BrokerProcess, topic: str) -> None:
    """One transaction writes to three partitions of one topic and one of another: a marker
    goes to each, and each partition shows all or nothing of it."""
    from confluent_kafka import Producer

    bootstrap = broker.bootstrap
    other = f"{topic}-other"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, other, 1)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-txn"})
    producer.init_transactions(CLIENT_TIMEOUT_S)
    for end in ("abort", "commit"):
        producer.begin_transaction()
        for partition in range(3):
            producer.produce(topic, value=f"{end}-{partition}".encode(), partition=partition)
        producer.produce(other, value=end.encode(), partition=0)
        if end == "abort":
            assert producer.flush(CLIENT_TIMEOUT_S) == 0
            producer.abort_transaction(CLIENT_TIMEOUT_S)
        else:
            producer.commit_transaction(CLIENT_TIMEOUT_S)
    wait_stable(bootstrap, topic, range(3))
    wait_stable(bootstrap, other)
    for partition in range(3):
        # abort-N at 0, its marker at 1, commit-N at 2, its marker at 3.
        read = read_to_end(bootstrap, topic, partition, "read_committed")
        assert read == ([(2, f"commit-{partition}".encode())], 4)
        assert values_to_end(bootstrap, topic, "read_uncommitted", partition) == [
            f"abort-{partition}".encode(),
            f"commit-{partition}".encode(),
        ]
    assert read_to_end(bootstrap, other, 0, "read_committed") == ([(2, b"commit")], 4)


# -- open transactions and the last stable offset --------------------------------------------


@pytest.mark.parametrize("first_ends", ["commit", "abort"])
def test_open_transaction_holds_read_committed_at_the_lso(
    broker: BrokerProcess, topic: str, first_ends: str
) -> None:
    """Producer A opens a transaction first; B commits one after it.  Until A ends,
    read_committed readers stop at A's first offset (the LSO), B's committed records too."""
    from confluent_kafka import Producer

    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    a = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-a"})
    b = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-b"})
    a.init_transactions(CLIENT_TIMEOUT_S)
    b.init_transactions(CLIENT_TIMEOUT_S)
    a.begin_transaction()
    a.produce(topic, value=b"a1", partition=0)
    assert a.flush(CLIENT_TIMEOUT_S) == 0  # a1 at offset 0, in the log, uncommitted
    b.begin_transaction()
    b.produce(topic, value=b"b1", partition=0)
    b.produce(topic, value=b"b2", partition=0)
    b.commit_transaction(CLIENT_TIMEOUT_S)  # b1, b2 at 1-2, marker at 3
    wait_for(
        lambda: latest_offset(bootstrap, topic, 0, "read_uncommitted", "confluent") == 4,
        "B's commit marker",
    )

    for reader in ("confluent", "kafka-python"):
        assert latest_offset(bootstrap, topic, 0, "read_committed", reader) == 0
        assert latest_offset(bootstrap, topic, 0, "read_uncommitted", reader) == 4
    assert read_to_end(bootstrap, topic, 0, "read_committed") == ([], 0)
    assert values_to_end(bootstrap, topic, "read_uncommitted") == [b"a1", b"b1", b"b2"]

    a.produce(topic, value=b"a2", partition=0)  # offset 4
    if first_ends == "commit":
        a.commit_transaction(CLIENT_TIMEOUT_S)
        expected = [(0, b"a1"), (1, b"b1"), (2, b"b2"), (4, b"a2")]
    else:
        a.flush(CLIENT_TIMEOUT_S)
        a.abort_transaction(CLIENT_TIMEOUT_S)
        expected = [(1, b"b1"), (2, b"b2")]
    wait_stable(bootstrap, topic)
    assert read_to_end(bootstrap, topic, 0, "read_committed") == (expected, 6)
    assert latest_offset(bootstrap, topic, 0, "read_committed", "kafka-python") == 6


@pytest.mark.parametrize("then", ["commit", "fence"])
def test_open_transaction_survives_broker_sigkill(
    broker_factory: BrokerFactory, topic: str, then: str
) -> None:
    """A transaction open, its records flushed, when the broker is SIGKILLed: after the
    restart (same data directory and port) the LSO still holds at its first offset (the
    producer state is rebuilt from the log, the coordinator's from __transaction_state), and
    the same producer can commit it, or a new one with its id fences it and it is aborted."""
    from confluent_kafka import Producer

    broker = broker_factory()
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    txn_id = f"{topic}-txn"
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    producer.init_transactions(CLIENT_TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, value=b"c0", partition=0)
    producer.commit_transaction(CLIENT_TIMEOUT_S)  # c0 at 0, marker at 1
    wait_stable(bootstrap, topic)
    producer.begin_transaction()
    producer.produce(topic, value=b"r1", partition=0)
    producer.produce(topic, value=b"r2", partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0  # r1, r2 at 2-3, open

    assert broker.restart(signal.SIGKILL) == -signal.SIGKILL
    assert latest_offset(bootstrap, topic, 0, "read_committed", "kafka-python") == 2
    assert latest_offset(bootstrap, topic, 0, "read_uncommitted", "kafka-python") == 4
    assert read_to_end(bootstrap, topic, 0, "read_committed") == ([(0, b"c0")], 2)

    if then == "commit":
        producer.produce(topic, value=b"r3", partition=0)
        producer.commit_transaction(CLIENT_TIMEOUT_S)
        expected = [(0, b"c0"), (2, b"r1"), (3, b"r2"), (4, b"r3")]
    else:
        new = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
        new.init_transactions(CLIENT_TIMEOUT_S)  # aborts the open transaction
        del new
        expected = [(0, b"c0")]
    wait_stable(bootstrap, topic)
    committed, end = read_to_end(bootstrap, topic, 0, "read_committed")
    assert committed == expected
    assert end == latest_offset(bootstrap, topic, 0, "read_uncommitted", "kafka-python")
    del producer

    # And once more, a clean restart: the markers and the LSO are where they were.
    broker.restart(signal.SIGTERM)
    assert read_to_end(bootstrap, topic, 0, "read_committed") == (expected, end)


# -- zombies ------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_zombie_producer_is_fenced(broker: BrokerProcess, client: str, topic: str) -> None:
    """A second producer with the same transactional id bumps the epoch and aborts the
    first's open transaction; the first's next produce or commit fails, fatally."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    txn_id = f"{topic}-txn"
    error = _ZOMBIES[client](bootstrap, txn_id, topic)
    assert "fenc" in error.lower() or "epoch" in error.lower(), error
    wait_stable(bootstrap, topic)
    assert values_to_end(bootstrap, topic, "read_committed") == [b"new"]
    uncommitted = values_to_end(bootstrap, topic, "read_uncommitted")
    assert uncommitted[0] == b"zombie" and uncommitted[-1] == b"new"


def _confluent_zombie(bootstrap: str, txn_id: str, topic: str) -> str:
    from confluent_kafka import KafkaException, Producer

    old = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    old.init_transactions(CLIENT_TIMEOUT_S)
    old.begin_transaction()
    old.produce(topic, value=b"zombie", partition=0)
    assert old.flush(CLIENT_TIMEOUT_S) == 0
    new = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    new.init_transactions(CLIENT_TIMEOUT_S)  # fences the old one, aborting its transaction
    new.begin_transaction()
    new.produce(topic, value=b"new", partition=0)
    new.commit_transaction(CLIENT_TIMEOUT_S)
    old.produce(topic, value=b"zombie-after", partition=0)
    with pytest.raises(KafkaException) as caught:
        old.commit_transaction(CLIENT_TIMEOUT_S)
    error = caught.value.args[0]
    assert error.fatal(), error
    return f"{error.name()}: {error.str()}"


def _kafka_python_zombie(bootstrap: str, txn_id: str, topic: str) -> str:
    import kafka.errors
    from kafka import KafkaProducer

    def producer() -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=txn_id, request_timeout_ms=10000
        )

    old = producer()
    new = producer()
    try:
        old.init_transactions()
        old.begin_transaction()
        old.send(topic, value=b"zombie", partition=0).get(CLIENT_TIMEOUT_S)
        new.init_transactions()
        new.begin_transaction()
        new.send(topic, value=b"new", partition=0)
        new.commit_transaction()
        with pytest.raises(kafka.errors.KafkaError) as caught:
            old.send(topic, value=b"zombie-after", partition=0).get(CLIENT_TIMEOUT_S)
            old.commit_transaction()
        return repr(caught.value)
    finally:
        old.close(timeout=5)
        new.close(timeout=5)


def _aiokafka_zombie(bootstrap: str, txn_id: str, topic: str) -> str:
    import asyncio

    import aiokafka.errors
    from aiokafka import AIOKafkaProducer

    async def run() -> str:
        old = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
        new = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
        await asyncio.wait_for(old.start(), CLIENT_TIMEOUT_S)
        try:
            await old.begin_transaction()
            await asyncio.wait_for(
                old.send_and_wait(topic, value=b"zombie", partition=0), CLIENT_TIMEOUT_S
            )
            await asyncio.wait_for(new.start(), CLIENT_TIMEOUT_S)
            async with new.transaction():
                await new.send_and_wait(topic, value=b"new", partition=0)
            with pytest.raises(aiokafka.errors.KafkaError) as caught:
                await asyncio.wait_for(
                    old.send_and_wait(topic, value=b"zombie-after", partition=0),
                    CLIENT_TIMEOUT_S,
                )
                await asyncio.wait_for(old.commit_transaction(), CLIENT_TIMEOUT_S)
            return repr(caught.value)
        finally:
            await asyncio.wait_for(new.stop(), 10)
            await asyncio.wait_for(old.stop(), 10)

    return asyncio.run(run())


_ZOMBIES = {
    "confluent": _confluent_zombie,
    "kafka-python": _kafka_python_zombie,
    "aiokafka": _aiokafka_zombie,
}


# -- timed-out transactions -----------------------------------------------------------------


def test_transaction_past_its_timeout_is_aborted_by_the_broker(
    broker_factory: BrokerFactory, topic: str
) -> None:
    from confluent_kafka import KafkaException, Producer

    broker = broker_factory(
        settings={"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}
    )
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{topic}-txn",
            "transaction.timeout.ms": 2000,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, value=b"left-open", partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert latest_offset(bootstrap, topic, 0, "read_committed", "confluent") == 0

    # The broker aborts it (timeout 2 s, checked every 0.5 s): its abort marker at 1 moves
    # the LSO to the high watermark, 2.
    wait_for(
        lambda: latest_offset(bootstrap, topic, 0, "read_committed", "kafka-python") == 2,
        "the LSO moving past the timed-out transaction",
        timeout_s=20,
    )
    assert read_to_end(bootstrap, topic, 0, "read_committed") == ([], 2)
    assert values_to_end(bootstrap, topic, "read_uncommitted") == [b"left-open"]

    # The abort bumped the producer's epoch (as Kafka's timed-out abort does): the old
    # producer's EndTxn is fenced, a fatal error for librdkafka.
    with pytest.raises(KafkaException) as caught:
        producer.commit_transaction(10)
    assert caught.value.args[0].fatal(), caught.value
    del producer

    # The transactional id works again for a new producer.
    transact("confluent", bootstrap, f"{topic}-txn", topic, [Txn([b"later"], "commit")])
    assert read_to_end(bootstrap, topic, 0, "read_committed") == ([(2, b"later")], 4)
