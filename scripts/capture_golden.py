"""Capture golden request frames from real Kafka clients.

Usage: ``.venv/bin/python scripts/capture_golden.py`` (rewrites tests/fixtures/golden/).

Each scenario starts a fake broker built on our codec (``tests/golden/fake_broker.py``) and
drives one real client through its ordinary flow against it: confluent-kafka's Producer once per
codec (and once idempotent, for InitProducerId) and its Consumer in a group; kafka-python's
KafkaProducer with default settings (idempotent) once per codec and its KafkaConsumer in a group.
The producers write ``tests/golden/produced.py``'s records into a log all brokers share, and the
consumers read every one of them back, which checks our responses end to end on the way.

The point is the requests. The first frame each broker received of each (api, version, client
[, codec]) is saved as ``<api>_request_v<N>_<client>[_<codec>].bin``: the bytes after the 4-byte
length prefix, header and body; the codec suffix is only on Produce. Nothing is written unless
every scenario succeeded. Every socket read has a timeout, every scenario a deadline, and the
whole run a watchdog.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The imports below need the repository on sys.path.
from kafkacompat.protocol import APIS, ApiKey  # noqa: E402
from kafkacompat.protocol.framing import read_request_header  # noqa: E402
from tests.golden import produced  # noqa: E402
from tests.golden.fake_broker import HOST, FakeBroker, Log  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "golden"
RUN_TIMEOUT_S = 50.0
SCENARIO_TIMEOUT_S = 15.0

# The first frame of each kind is kept, except for these: a client may join a group before it
# knows its topics' partitions (kafka-python does), send an empty assignment, and rejoin. The
# last round is the settled one, with a real assignment in it.
PREFER_LAST = frozenset({ApiKey.SYNC_GROUP})


def log(message: str) -> None:
    print(message, flush=True)


def api_file_name(api_key: int) -> str:
    """``api_versions`` for ApiVersions: the generated request module's name minus ``_request``."""
    return APIS[api_key].request_module.rsplit(".", 1)[1].removesuffix("_request")


# -- scenarios: each drives one client against its own broker ----------------------------------


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def confluent_producer(port: int, codec: str, idempotent: bool = False) -> None:
    from confluent_kafka import Producer

    errors: list[Any] = []
    results: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": f"{HOST}:{port}",
            "compression.type": codec,
            "enable.idempotence": idempotent,
            "linger.ms": 20,  # all records in one batch
            "message.timeout.ms": int(SCENARIO_TIMEOUT_S * 1000),
            "error_cb": errors.append,
            "log_level": 5,  # no info chatter (KIP-714 telemetry) in the output
        }
    )
    for r in produced.RECORDS:
        producer.produce(
            produced.TOPIC,
            value=r.value,
            key=r.key,
            headers=list(r.headers),
            partition=produced.PARTITION,
            timestamp=r.timestamp,
            on_delivery=lambda err, msg: results.append(err),
        )
    left = producer.flush(SCENARIO_TIMEOUT_S)
    del producer
    gc.collect()
    _check(left == 0 and results == [None] * len(produced.RECORDS), f"delivery: {results} {errors}")


def confluent_consumer(port: int, expected: int) -> None:
    from confluent_kafka import Consumer

    errors: list[Any] = []
    consumer = Consumer(
        {
            "bootstrap.servers": f"{HOST}:{port}",
            "group.id": produced.CONFLUENT_GROUP,
            "auto.offset.reset": "earliest",
            "error_cb": errors.append,
            "log_level": 5,
        }
    )
    consumer.subscribe([produced.TOPIC])
    got: list[Any] = []
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while len(got) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            got.append(message)
    consumer.close()
    del consumer
    gc.collect()
    _check(len(got) == expected, f"consumed {len(got)} of {expected}: {errors}")


def kafka_python_producer(port: int, codec: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=f"{HOST}:{port}",
        compression_type=None if codec == "none" else codec,
        linger_ms=20,  # all records in one batch
    )
    futures = [
        producer.send(
            produced.TOPIC,
            value=r.value,
            key=r.key,
            headers=list(r.headers),
            partition=produced.PARTITION,
            timestamp_ms=r.timestamp,
        )
        for r in produced.RECORDS
    ]
    producer.flush(SCENARIO_TIMEOUT_S)
    for future in futures:
        future.get(timeout=1)
    producer.close(timeout=5)


def kafka_python_consumer(port: int, expected: int) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        produced.TOPIC,
        bootstrap_servers=f"{HOST}:{port}",
        group_id=produced.KAFKA_PYTHON_GROUP,
        auto_offset_reset="earliest",
    )
    got: list[Any] = []
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while len(got) < expected and time.monotonic() < deadline:
        for messages in consumer.poll(timeout_ms=100).values():
            got.extend(messages)
    consumer.close()
    _check(len(got) == expected, f"consumed {len(got)} of {expected}")


def client_versions() -> dict[str, str]:
    import confluent_kafka
    import kafka

    return {
        "confluent-kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "kafka-python": kafka.__version__,
        "python": platform.python_version(),
    }


def write_readme(versions: dict[str, str], names: list[str]) -> None:
    lines = [
        "# Golden request frames from real clients",
        "",
        "Written by `scripts/capture_golden.py`; do not edit by hand. Recapture with",
        "",
        "    .venv/bin/python scripts/capture_golden.py",
        "",
        "The script starts a fake broker built on our codec (`tests/golden/fake_broker.py`) on",
        "127.0.0.1 and drives real clients through their ordinary flows against it:",
        "confluent-kafka's `Producer` once per codec (plus one idempotent run, for InitProducerId)",
        "and its `Consumer` in a group; kafka-python's `KafkaProducer` with default settings",
        "(idempotent) once per codec and its `KafkaConsumer` in a group. The records produced are",
        "defined in `tests/golden/produced.py`; the consumers read all of them back.",
        "",
        "Each file is one request frame exactly as the client sent it, without the 4-byte length",
        "prefix (request header + body): the first frame seen of each api, version and client",
        "(for SyncGroup the last, once the group settled), and for Produce of each codec too.",
        "Names: `<api>_request_v<N>_<client>[_<codec>].bin`. A recapture is not byte-identical:",
        "kafka-python's gzip stream embeds the time, and correlation ids and which partitions",
        "librdkafka lists first depend on timing. The tests only assert what is stable.",
        "`manifest.json` holds the client versions the tests compare against.",
        "",
        "Captured with " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Files:",
        "",
        *(f"- `{name}`" for name in names),
        "",
    ]
    (FIXTURES / "README.md").write_text("\n".join(lines))


Scenario = tuple[str, str, str | None, Callable[[int], None]]
"""(label, client, codec for Produce fixtures or None to save none, run(port))."""


def scenarios() -> list[Scenario]:
    out: list[Scenario] = [
        (f"confluent producer {c}", "confluent", c, partial(confluent_producer, codec=c))
        for c in produced.CODECS
    ]
    idempotent = partial(confluent_producer, codec="none", idempotent=True)
    out.append(("confluent producer idempotent", "confluent", None, idempotent))
    out += [
        (f"kafka-python producer {c}", "kafka_python", c, partial(kafka_python_producer, codec=c))
        for c in produced.CODECS
    ]
    expected = records_in_log(out)
    out.append(
        ("confluent consumer", "confluent", None, partial(confluent_consumer, expected=expected))
    )
    consumer = partial(kafka_python_consumer, expected=expected)
    out.append(("kafka-python consumer", "kafka_python", None, consumer))
    return out


def records_in_log(all_scenarios: list[Scenario]) -> int:
    producers = [s for s in all_scenarios if "producer" in s[0]]
    return len(producers) * len(produced.RECORDS)


def main() -> int:
    faulthandler.dump_traceback_later(RUN_TIMEOUT_S, exit=True)
    started = time.monotonic()
    data = Log()
    saved: dict[str, bytes] = {}
    plan = scenarios()
    for label, client, codec, run in plan:
        began = time.monotonic()
        problems: list[str] = []
        with FakeBroker(data) as broker:
            try:
                run(broker.port)
            except Exception as exc:
                problems.append(repr(exc))
        problems += broker.errors + data.refused
        apis = []
        for frame in broker.frames:
            header, _ = read_request_header(memoryview(frame))
            key, version = header.request_api_key, header.request_api_version
            apis.append(f"{APIS[key].name} v{version}")
            if key == ApiKey.PRODUCE and codec is None:
                continue  # the idempotent run is there for InitProducerId
            suffix = f"_{codec}" if key == ApiKey.PRODUCE else ""
            name = f"{api_file_name(key)}_request_v{version}_{client}{suffix}.bin"
            if key in PREFER_LAST or name not in saved:
                saved[name] = frame
        took = time.monotonic() - began
        log(f"{label}: {took:.1f}s, {len(broker.frames)} frames: {', '.join(dict.fromkeys(apis))}")
        if broker.unhandled:
            log(f"  answered with defaults: {', '.join(sorted(broker.unhandled))}")
        if problems:
            for problem in problems:
                log(f"  PROBLEM: {problem}")
            log("nothing written")
            return 1

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for stale in FIXTURES.glob("*_request_v*.bin"):
        if stale.name not in saved:
            stale.unlink()
    for name, frame in saved.items():
        (FIXTURES / name).write_bytes(frame)
    names = sorted(saved)
    versions = client_versions()
    manifest = {"clients": versions, "records_in_log": records_in_log(plan), "fixtures": names}
    (FIXTURES / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_readme(versions, names)
    took = time.monotonic() - started
    log(f"wrote {len(names)} fixtures to {FIXTURES.relative_to(REPO)} in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
