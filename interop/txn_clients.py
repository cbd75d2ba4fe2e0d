"""Transactional producers of every client behind one call, and readers that say what a
read_committed or read_uncommitted consumer sees, for ``test_transactions.py``.

    transact(client, bootstrap, transactional_id, topic, [Txn(values, "commit"), ...])
    read_to_end(bootstrap, topic, partition, isolation) -> [(offset, value), ...]
    latest_offset(bootstrap, topic, partition, isolation, client) -> ListOffsets latest
    wait_for(check, what) -> check's first true value, within a timeout

``transact`` runs every transaction with one producer (one transactional id, one producer
id and epoch), in order; each ends with a commit or an abort.  ``send_offsets`` on a Txn
adds consumer offsets to it (TxnOffsetCommit through the group coordinator).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from interop.clients import CLIENT_TIMEOUT_S, ClientError, b64, run_kafkajs

TXN_CLIENTS = ("confluent", "kafka-python", "aiokafka", "kafkajs")
Isolation = Literal["read_committed", "read_uncommitted"]


@dataclass(frozen=True)
class Txn:
    values: Sequence[bytes]
    end: Literal["commit", "abort"]
    partition: int = 0
    send_offsets: tuple[str, dict[int, int]] | None = None
    """(group id, {partition of the offsets topic: next offset}) to commit with the
    transaction; the offsets topic is ``Txn.offsets_topic`` of the call."""


def transact(
    client: str,
    bootstrap: str,
    transactional_id: str,
    topic: str,
    transactions: Sequence[Txn],
    offsets_topic: str | None = None,
) -> None:
    """Run ``transactions`` in order with one transactional producer of ``client``."""
    _RUNNERS[client](bootstrap, transactional_id, topic, transactions, offsets_topic)
    wait_stable(bootstrap, topic, sorted({txn.partition for txn in transactions}))


def wait_stable(
    bootstrap: str, topic: str, partitions: Sequence[int] = (0,), timeout_s: float = 15.0
) -> None:
    """Wait until no transaction is open on ``partitions``: the LSO is the high watermark.

    EndTxn answers once the coordinator has logged PrepareCommit or PrepareAbort; the
    markers are written after the answer (in Kafka as here), so a reader right after a
    commit may still find the LSO before it.  A marker that never comes fails here."""
    for partition in partitions:
        deadline = time.monotonic() + timeout_s
        while True:
            stable = latest_offset(bootstrap, topic, partition, "read_committed", "confluent")
            high = latest_offset(bootstrap, topic, partition, "read_uncommitted", "confluent")
            if stable == high:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}[{partition}]: LSO {stable} still below the high watermark "
                    f"{high} after {timeout_s}s: a marker not written?"
                )
            time.sleep(0.05)


def _confluent(
    bootstrap: str,
    transactional_id: str,
    topic: str,
    transactions: Sequence[Txn],
    offsets_topic: str | None,
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5}
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    for txn in transactions:
        producer.begin_transaction()
        for value in txn.values:
            producer.produce(topic, value=value, partition=txn.partition)
        if txn.send_offsets is not None:
            group, offsets = txn.send_offsets
            assert offsets_topic is not None
            # The group's metadata only: this consumer never joins (generation -1), as a
            # consumer with assigned partitions does not.
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
            try:
                producer.send_offsets_to_transaction(
                    [TopicPartition(offsets_topic, p, o) for p, o in offsets.items()],
                    consumer.consumer_group_metadata(),
                    CLIENT_TIMEOUT_S,
                )
            finally:
                consumer.close()
        if txn.end == "commit":
            producer.commit_transaction(CLIENT_TIMEOUT_S)
        else:
            # librdkafka may not have sent the records yet: flush, so that they reach the
            # log and the abort marker has something to abort.
            producer.flush(CLIENT_TIMEOUT_S)
            producer.abort_transaction(CLIENT_TIMEOUT_S)


def _kafka_python(
    bootstrap: str,
    transactional_id: str,
    topic: str,
    transactions: Sequence[Txn],
    offsets_topic: str | None,
) -> None:
    from kafka import KafkaProducer, OffsetAndMetadata, TopicPartition

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        request_timeout_ms=10000,
        max_block_ms=int(CLIENT_TIMEOUT_S * 1000),
    )
    try:
        producer.init_transactions()
        for txn in transactions:
            producer.begin_transaction()
            for value in txn.values:
                producer.send(topic, value=value, partition=txn.partition)
            if txn.send_offsets is not None:
                group, offsets = txn.send_offsets
                producer.send_offsets_to_transaction(
                    {
                        TopicPartition(offsets_topic, p): OffsetAndMetadata(o, "", -1)
                        for p, o in offsets.items()
                    },
                    group,  # a bare group id: generation -1, as for assigned partitions
                )
            producer.flush(CLIENT_TIMEOUT_S)
            if txn.end == "commit":
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=5)


def _aiokafka(
    bootstrap: str,
    transactional_id: str,
    topic: str,
    transactions: Sequence[Txn],
    offsets_topic: str | None,
) -> None:
    from aiokafka import AIOKafkaProducer, TopicPartition

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=transactional_id,
            request_timeout_ms=10000,
        )
        await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
        try:
            for txn in transactions:
                await producer.begin_transaction()
                for value in txn.values:
                    await producer.send(topic, value=value, partition=txn.partition)
                if txn.send_offsets is not None:
                    group, offsets = txn.send_offsets
                    await asyncio.wait_for(
                        producer.send_offsets_to_transaction(
                            {TopicPartition(offsets_topic, p): o for p, o in offsets.items()},
                            group,
                        ),
                        CLIENT_TIMEOUT_S,
                    )
                await asyncio.wait_for(producer.flush(), CLIENT_TIMEOUT_S)
                if txn.end == "commit":
                    await asyncio.wait_for(producer.commit_transaction(), CLIENT_TIMEOUT_S)
                else:
                    await asyncio.wait_for(producer.abort_transaction(), CLIENT_TIMEOUT_S)
        finally:
            await asyncio.wait_for(producer.stop(), 10)

    asyncio.run(run())


def _kafkajs(
    bootstrap: str,
    transactional_id: str,
    topic: str,
    transactions: Sequence[Txn],
    offsets_topic: str | None,
) -> None:
    specs: list[dict[str, Any]] = []
    for txn in transactions:
        spec: dict[str, Any] = {
            "partition": txn.partition,
            "records": [{"key": None, "value": b64(v), "headers": []} for v in txn.values],
            "end": txn.end,
            "sendOffsets": None,
        }
        if txn.send_offsets is not None:
            group, offsets = txn.send_offsets
            spec["sendOffsets"] = {
                "consumerGroupId": group,
                "topics": [
                    {
                        "topic": offsets_topic,
                        "partitions": [
                            {"partition": p, "offset": str(o)} for p, o in offsets.items()
                        ],
                    }
                ],
            }
        specs.append(spec)
    run_kafkajs(
        {
            "op": "transaction",
            "brokers": [bootstrap],
            "transactionalId": transactional_id,
            "topic": topic,
            "transactions": specs,
        },
        timeout_s=CLIENT_TIMEOUT_S * 2,
    )


_RUNNERS = {
    "confluent": _confluent,
    "kafka-python": _kafka_python,
    "aiokafka": _aiokafka,
    "kafkajs": _kafkajs,
}


# -- what consumers see ----------------------------------------------------------------------


def read_to_end(
    bootstrap: str,
    topic: str,
    partition: int,
    isolation: Isolation,
    *,
    offset: int = 0,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> tuple[list[tuple[int, bytes | None]], int]:
    """Everything a confluent-kafka consumer under ``isolation`` reads from ``offset`` up to
    the end it reports (partition EOF: the high watermark, or under read_committed the last
    stable offset), and that end offset."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafkacompat-interop-unused",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        out: list[tuple[int, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            at = message.offset()
            assert at is not None  # set on records and on partition EOF
            if error is None:
                out.append((at, message.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                return out, at
            else:
                raise ClientError("confluent", error.code(), str(error))
        raise AssertionError(f"no partition EOF in {timeout_s}s under {isolation}; read {out}")
    finally:
        consumer.close()


def values_to_end(
    bootstrap: str, topic: str, isolation: Isolation, partition: int = 0
) -> list[bytes | None]:
    return [value for _, value in read_to_end(bootstrap, topic, partition, isolation)[0]]


def latest_offset(
    bootstrap: str, topic: str, partition: int, isolation: Isolation, client: str
) -> int:
    """ListOffsets LATEST under ``isolation``: the high watermark, or the last stable
    offset under read_committed."""
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "kafkacompat-interop-unused",
                "isolation.level": isolation,
            }
        )
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False
            )
            return int(high)
        finally:
            consumer.close()
    if client == "kafka-python":
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTopicPartition

        kconsumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation
        )
        try:
            tp = KTopicPartition(topic, partition)
            return int(kconsumer.end_offsets([tp])[tp])
        finally:
            kconsumer.close()
    raise ValueError(client)


def wait_for(check: Any, what: str, timeout_s: float = CLIENT_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.05)
