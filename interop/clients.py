"""One producer and one consumer per real client, behind the same two calls, so the interop
tests are written once and run over every client (and every pair of them).

    produce(client, bootstrap, topic, records, ...) -> offsets
    consume(client, bootstrap, topic, partition, offset, count) -> records read

Clients: confluent-kafka (librdkafka), kafka-python, aiokafka, kcat (librdkafka again, but
its own command line and JSON output), kafkajs (node, through ``js/kafkajs_client.js``).

Not every client can express every record.  ``sendable(client, record)`` is the record a
producer actually sends for the one asked of it (kcat cannot set timestamps, pass NUL bytes in
argv, or send a null key with an empty value; kafkajs and kafka-python cannot send null
header values), and
``observable(client, record)`` is how a consumer can report it (kafkajs groups headers by
name).  Both are applied to the expectation, never to what was read, and the full-fidelity
clients change nothing.

A client that reports a Kafka error raises :class:`ClientError` with Kafka's numeric code, so
tests assert on the broker's answer whatever the client calls it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kafka.errors

CLIENTS = ("confluent", "kafka-python", "aiokafka", "kcat", "kafkajs")
CODECS = ("gzip", "snappy", "lz4", "zstd")

JS_DIR = Path(__file__).resolve().parent / "js"
KAFKAJS_SCRIPT = JS_DIR / "kafkajs_client.js"

CLIENT_TIMEOUT_S = 30.0
"""Ceiling for one client call (connect, produce and flush, or read)."""

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: int | None = None
    """CreateTime in ms; None lets the producer stamp its own clock."""


@dataclass(frozen=True)
class Consumed:
    offset: int
    record: Record


@dataclass
class ClientError(Exception):
    """A Kafka error the client surfaced: ``code`` is Kafka's error code when known."""

    client: str
    code: int | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.client}: error code {self.code}: {self.message}"


def _kafka_code_name(code: int) -> str:
    return str(kafka.errors.for_code(code).message)


# -- what each client can express ----------------------------------------------------------


def sendable(client: str, record: Record) -> Record:
    """The record ``client`` sends when asked to send ``record``."""
    if client == "kcat":
        key = record.key
        if record.value is not None and record.value != b"" and key is not None:
            key = key.replace(b"\x00", b"")  # -k is an argv string
        elif record.value is None and key == b"":
            key = None  # -Z: an empty key is sent as null too
        elif record.value == b"" and key is None:
            key = b""  # stdin mode without -Z: the key delimiter makes the key empty
        headers = tuple(
            (name, None if value is None else value.replace(b"\x00", b""))
            for name, value in record.headers
            if "=" not in name
        )
        return Record(key, record.value, headers, None)
    if client == "kafkajs":
        return replace(record, headers=_group_headers(record.headers, drop_null=True))
    if client == "kafka-python":  # send() insists on (str, bytes) headers
        return replace(record, headers=tuple(h for h in record.headers if h[1] is not None))
    return record


def observable(client: str, record: Record) -> Record:
    """How ``client``, consuming, reports ``record``."""
    if client == "kafkajs":
        return replace(record, headers=_group_headers(record.headers, drop_null=False))
    return record


def _group_headers(headers: Headers, *, drop_null: bool) -> Headers:
    """kafkajs keeps headers in an object: one entry per name, in first-seen order, with
    repeated names' values in an array."""
    grouped: dict[str, list[bytes | None]] = {}
    for name, value in headers:
        if value is None and drop_null:
            continue
        grouped.setdefault(name, []).append(value)
    return tuple((name, value) for name, values in grouped.items() for value in values)


def supports_timestamps(client: str) -> bool:
    return client != "kcat"


# -- tools ---------------------------------------------------------------------------------


def kcat_path() -> str | None:
    return shutil.which("kcat") or shutil.which("kafkacat")


def node_path() -> str | None:
    return shutil.which("node")


def missing_tool(client: str) -> str | None:
    """Why ``client`` cannot run here, or None."""
    if client == "kcat" and kcat_path() is None:
        return "kcat not installed: ./scripts/test installs it with apt-get (kcat package)"
    if client == "kafkajs":
        if node_path() is None:
            return "kafkajs needs node, which is not installed"
        if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
            return f"kafkajs not installed: run `npm ci` in {JS_DIR} (./scripts/test does)"
    return None


def require(*clients: str) -> None:
    """Skip the calling test, saying why, when one of ``clients`` is not installed."""
    import pytest

    for client in clients:
        reason = missing_tool(client)
        if reason:
            pytest.skip(reason)


def run_kafkajs(command: dict[str, Any], timeout_s: float = CLIENT_TIMEOUT_S) -> Any:
    """Run one kafkajs_client.js command; its result, or ClientError for a Kafka error."""
    node = node_path()
    assert node is not None, "node is not installed"
    done = subprocess.run(
        [node, str(KAFKAJS_SCRIPT)],
        input=json.dumps(command).encode(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            f"kafkajs_client.js exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    answer = json.loads(done.stdout.strip().split(b"\n")[-1])
    if answer["ok"]:
        return answer["result"]
    error = answer["error"]
    raise ClientError("kafkajs", _kafkajs_code(error), error.get("message", ""), error)


def _kafkajs_code(error: dict[str, Any] | None) -> int | None:
    """The Kafka code of the first KafkaJSProtocolError inside ``error`` (kafkajs wraps them
    in retry, non-retriable and aggregate errors)."""
    if error is None:
        return None
    if isinstance(error.get("code"), int):  # node's own errors carry string codes
        return int(error["code"])
    for inner in [*error.get("errors", []), error.get("cause"), error.get("originalError")]:
        code = _kafkajs_code(inner)
        if code is not None:
            return code
    return None


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


# -- producing -----------------------------------------------------------------------------


def produce(
    client: str,
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    partition: int = 0,
    compression: str = "none",
    acks: int = -1,
    idempotent: bool | None = False,
    max_request_bytes: int | None = None,
) -> list[int | None]:
    """Send ``records`` in order to one partition and wait for every acknowledgement.

    Returns each record's offset (None where the client cannot know it: acks=0, kcat).
    ``idempotent=None`` leaves the client's default.  ``max_request_bytes`` raises the
    client's own size limits so that the broker, not the client, judges large records.
    """
    producer = _PRODUCERS[client]
    offsets = producer(
        bootstrap, topic, records, partition, compression, acks, idempotent, max_request_bytes
    )
    # Under acks=0 the broker answers nothing: what a client reports (kafka-python makes
    # offsets up from -1) means nothing.
    return [None] * len(records) if acks == 0 else offsets


def _confluent_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    partition: int,
    compression: str,
    acks: int,
    idempotent: bool | None,
    max_request_bytes: int | None,
) -> list[int | None]:
    from confluent_kafka import KafkaError, Producer

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": str(acks),
        "compression.type": compression,
        "linger.ms": 5,
        "message.timeout.ms": int(CLIENT_TIMEOUT_S * 1000) - 5000,
    }
    if idempotent is not None:
        config["enable.idempotence"] = idempotent
    if max_request_bytes is not None:
        config["message.max.bytes"] = max_request_bytes
    producer = Producer(config)
    offsets: list[int | None] = [None] * len(records)
    errors: list[KafkaError] = []

    def delivered(index: int) -> Any:
        def callback(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(error)
            else:
                offset = message.offset()  # None under acks=0
                offsets[index] = offset if offset is not None and offset >= 0 else None

        return callback

    for index, record in enumerate(records):
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            partition=partition,
            headers=list(record.headers),
            timestamp=record.timestamp or 0,
            on_delivery=delivered(index),
        )
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    if errors:
        error = errors[0]
        code = error.code()
        raise ClientError("confluent", code if code >= 0 else None, f"{error.name()}: {error}")
    assert remaining == 0, f"confluent-kafka: {remaining} records undelivered"
    return offsets


def _kafka_python_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    partition: int,
    compression: str,
    acks: int,
    idempotent: bool | None,
    max_request_bytes: int | None,
) -> list[int | None]:
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all" if acks == -1 else acks,
        "compression_type": None if compression == "none" else compression,
        "linger_ms": 5,
        "request_timeout_ms": 10000,
        "max_block_ms": 10000,
    }
    if idempotent is not None:
        config["enable_idempotence"] = idempotent
    if max_request_bytes is not None:
        config["max_request_size"] = max_request_bytes
    producer = KafkaProducer(**config)
    try:
        futures = [
            producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(sendable("kafka-python", record).headers),
                partition=partition,
                timestamp_ms=record.timestamp,
            )
            for record in records
        ]
        producer.flush(CLIENT_TIMEOUT_S)
        offsets: list[int | None] = []
        for future in futures:
            try:
                metadata = future.get(timeout=CLIENT_TIMEOUT_S)
            except kafka.errors.KafkaError as exc:
                raise ClientError("kafka-python", getattr(exc, "errno", None), repr(exc)) from exc
            offsets.append(metadata.offset if metadata.offset >= 0 else None)
        return offsets
    finally:
        producer.close(timeout=5)


def _aiokafka_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    partition: int,
    compression: str,
    acks: int,
    idempotent: bool | None,
    max_request_bytes: int | None,
) -> list[int | None]:
    import aiokafka.errors
    from aiokafka import AIOKafkaProducer

    async def run() -> list[int | None]:
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all" if acks == -1 else acks,
            "compression_type": None if compression == "none" else compression,
            "linger_ms": 5,
            "request_timeout_ms": 10000,
        }
        if idempotent is not None:
            config["enable_idempotence"] = idempotent
        if max_request_bytes is not None:
            config["max_request_size"] = max_request_bytes
        producer = AIOKafkaProducer(**config)
        await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
        try:
            futures = [
                await producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=partition,
                    timestamp_ms=record.timestamp,
                    headers=list(record.headers),
                )
                for record in records
            ]
            offsets: list[int | None] = []
            for future in futures:
                try:
                    metadata = await asyncio.wait_for(future, CLIENT_TIMEOUT_S)
                except aiokafka.errors.KafkaError as exc:
                    code = getattr(exc, "errno", None)
                    raise ClientError("aiokafka", code, repr(exc)) from exc
                # No metadata at all under acks=0.
                offsets.append(None if metadata is None or metadata.offset < 0 else metadata.offset)
            return offsets
        finally:
            await asyncio.wait_for(producer.stop(), 10)

    return asyncio.run(run())


_KCAT_ERRORS = {
    # librdkafka's rd_kafka_err2str() for the broker errors the tests provoke.
    "Broker: Message size too large": 10,
    "Broker: Message batch larger than configured server segment size": 18,
    "Broker: Invalid timestamp": 32,
    "Broker: Unknown topic or partition": 3,
}


def kcat_base(bootstrap: str) -> list[str]:
    kcat = kcat_path()
    assert kcat is not None, "kcat is not installed"
    return [kcat, "-b", bootstrap, "-m", "10", "-X", "api.version.request=true"]


def _kcat_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    partition: int,
    compression: str,
    acks: int,
    idempotent: bool | None,
    max_request_bytes: int | None,
) -> list[int | None]:
    """One kcat run per record: each record has its own key and headers, which kcat takes
    from argv for the whole run.  A value is passed as a file (kcat sends a file's bytes as
    one message, byte-exact); null and empty values go through stdin with delimiters."""
    options = ["-P", "-t", topic, "-p", str(partition), "-X", f"acks={acks}"]
    options += ["-X", f"compression.codec={compression}"]
    if idempotent is not None:
        options += ["-X", f"enable.idempotence={str(idempotent).lower()}"]
    if max_request_bytes is not None:
        options += ["-X", f"message.max.bytes={max_request_bytes}"]
    with tempfile.TemporaryDirectory(prefix="kcat-") as folder:
        for index, asked in enumerate(records):
            record = sendable("kcat", asked)
            argv = kcat_base(bootstrap) + options
            for name, value in record.headers:
                header = name if value is None else f"{name}={os.fsdecode(value)}"
                argv += ["-H", header]
            stdin = b""
            if record.value:
                path = Path(folder) / f"value-{index}"
                path.write_bytes(record.value)
                if record.key is not None:
                    argv += ["-k", os.fsdecode(record.key)]
                argv.append(str(path))
            else:
                argv += ["-K", r"\x1f", "-D", r"\x1e"]
                if record.value is None:
                    argv.append("-Z")
                stdin = (record.key or b"") + b"\x1f"
            done = subprocess.run(
                argv, input=stdin, capture_output=True, timeout=CLIENT_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                stderr = done.stderr.decode(errors="replace")
                code = next((c for text, c in _KCAT_ERRORS.items() if text in stderr), None)
                raise ClientError("kcat", code, stderr.strip())
    return [None] * len(records)


def _kafkajs_produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    partition: int,
    compression: str,
    acks: int,
    idempotent: bool | None,
    max_request_bytes: int | None,
) -> list[int | None]:
    sent = [sendable("kafkajs", record) for record in records]
    command = {
        "op": "produce",
        "brokers": [bootstrap],
        "topic": topic,
        "compression": compression,
        "acks": acks,
        "idempotent": bool(idempotent),
        "sends": [
            {
                "partition": partition,
                "records": [
                    {
                        "key": b64(r.key),
                        "value": b64(r.value),
                        "headers": [[name, b64(value)] for name, value in r.headers],
                        "timestamp": r.timestamp,
                    }
                    for r in sent
                ],
            }
        ],
    }
    (metadata,) = run_kafkajs(command)
    if acks == 0:
        return [None] * len(records)
    (answer,) = metadata
    assert answer["errorCode"] == 0, answer
    base = int(answer["baseOffset"])
    return [base + i for i in range(len(records))]


_PRODUCERS = {
    "confluent": _confluent_produce,
    "kafka-python": _kafka_python_produce,
    "aiokafka": _aiokafka_produce,
    "kcat": _kcat_produce,
    "kafkajs": _kafkajs_produce,
}


# -- consuming -----------------------------------------------------------------------------


def consume(
    client: str,
    bootstrap: str,
    topic: str,
    partition: int,
    offset: int,
    count: int,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> list[Consumed]:
    """Read ``count`` records from ``offset`` by manual assignment (no consumer group).
    Fails with what was read if fewer arrive within ``timeout_s``."""
    records = _CONSUMERS[client](bootstrap, topic, partition, offset, count, timeout_s)
    assert len(records) >= count, (
        f"{client} read {len(records)} of {count} records from {topic}[{partition}]@{offset} "
        f"in {timeout_s}s: {records}"
    )
    return records[:count]


def _confluent_consume(
    bootstrap: str, topic: str, partition: int, offset: int, count: int, timeout_s: float
) -> list[Consumed]:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    # librdkafka insists on a group.id, but assign() never joins the group.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafkacompat-interop-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.message.max.bytes": 2 * 1024 * 1024,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ClientError("confluent", error.code(), str(error))
            _, timestamp = message.timestamp()
            headers = tuple((name, value) for name, value in message.headers() or [])
            out.append(
                Consumed(
                    message.offset(), Record(message.key(), message.value(), headers, timestamp)
                )
            )
        return out
    finally:
        consumer.close()


def _kafka_python_consume(
    bootstrap: str, topic: str, partition: int, offset: int, count: int, timeout_s: float
) -> list[Consumed]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        request_timeout_ms=10000,
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for message in consumer.poll(timeout_ms=200).get(tp, []):
                out.append(
                    Consumed(
                        message.offset,
                        Record(
                            message.key, message.value, tuple(message.headers), message.timestamp
                        ),
                    )
                )
        return out
    finally:
        consumer.close()


def _aiokafka_consume(
    bootstrap: str, topic: str, partition: int, offset: int, count: int, timeout_s: float
) -> list[Consumed]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[Consumed]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=2 * 1024 * 1024,
            request_timeout_ms=10000,
        )
        await asyncio.wait_for(consumer.start(), CLIENT_TIMEOUT_S)
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            out: list[Consumed] = []
            deadline = time.monotonic() + timeout_s
            while len(out) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(tp, timeout_ms=200)
                for message in batches.get(tp, []):
                    out.append(
                        Consumed(
                            message.offset,
                            Record(
                                message.key,
                                message.value,
                                tuple(message.headers),
                                message.timestamp,
                            ),
                        )
                    )
            return out
        finally:
            await asyncio.wait_for(consumer.stop(), 10)

    return asyncio.run(run())


def _bytes_of(text: str | None) -> bytes | None:
    # kcat writes keys, values and header values into its JSON unescaped (control characters
    # aside), so non-UTF-8 bytes come back through surrogateescape exactly.
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _kcat_consume(
    bootstrap: str, topic: str, partition: int, offset: int, count: int, timeout_s: float
) -> list[Consumed]:
    argv = [*kcat_base(bootstrap), "-C", "-t", topic, "-p", str(partition), "-o", str(offset)]
    argv += ["-c", str(count), "-e", "-J", "-X", "fetch.message.max.bytes=2097152"]
    done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise ClientError("kcat", None, done.stderr.decode(errors="replace"))
    out: list[Consumed] = []
    for line in done.stdout.split(b"\n"):
        if not line.strip():
            continue
        envelope = json.loads(line.decode("utf-8", "surrogateescape"))
        flat = envelope.get("headers") or []
        headers = tuple((str(flat[i]), _bytes_of(flat[i + 1])) for i in range(0, len(flat), 2))
        record = Record(
            _bytes_of(envelope["key"]), _bytes_of(envelope["payload"]), headers, envelope["ts"]
        )
        out.append(Consumed(int(envelope["offset"]), record))
    return out


def _kafkajs_consume(
    bootstrap: str, topic: str, partition: int, offset: int, count: int, timeout_s: float
) -> list[Consumed]:
    result = run_kafkajs(
        {
            "op": "fetch",
            "brokers": [bootstrap],
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "count": count,
            "timeoutMs": int(timeout_s * 1000),
        },
        timeout_s=timeout_s + 10,
    )
    return [
        Consumed(
            int(r["offset"]),
            Record(
                unb64(r["key"]),
                unb64(r["value"]),
                tuple((name, unb64(value)) for name, value in r["headers"]),
                int(r["timestamp"]),
            ),
        )
        for r in result
    ]


_CONSUMERS = {
    "confluent": _confluent_consume,
    "kafka-python": _kafka_python_consume,
    "aiokafka": _aiokafka_consume,
    "kcat": _kcat_consume,
    "kafkajs": _kafkajs_consume,
}
