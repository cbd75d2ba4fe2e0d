"""Transactions with real clients (KIP-98): what read_committed and read_uncommitted
consumers see of committed, aborted, open and timed-out transactions; the last stable
offset; fencing of a zombie producer; and consume-transform-produce with
``send_offsets_to_transaction``, exactly once, across SIGKILLs of the broker and of the
application.  Also the broker behaviour librdkafka's own transaction tests check (0055,
0061, 0129, 0137), with confluent-kafka.

Every record here is written to partition 0 of a fresh topic unless said otherwise, so
offsets are predictable: each transaction ends with one control record (its marker).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.clients import CLIENT_TIMEOUT_S, require
from interop.conftest import BrokerFactory, BrokerProcess
from interop.group_clients import (
    committed_offsets,
    create_topic,
    produce_batch,
)
from interop.txn_clients import (
    TXN_CLIENTS,
    Txn,
    latest_offset,
    read_to_end,
    transact,
    values_to_end,
    wait_stable,
)


def wait_for(check: Any, what: str, timeout_s: float = CLIENT_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.05)


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


# -- consume-transform-produce --------------------------------------------------------------


APP = [sys.executable, "-m", "interop.apps.ctp_app"]
INPUTS_PER_PARTITION = 100
PARTITIONS = 2


class App:
    """One ctp_app instance: its stdout events, read from a file."""

    def __init__(self, spec: dict[str, Any], folder: Path, index: int) -> None:
        self.out_path = folder / f"app-{index}.out"
        self.err_path = folder / f"app-{index}.err"
        root = Path(__file__).resolve().parent.parent
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*APP, json.dumps(spec)], stdout=out, stderr=err, cwd=root,
                start_new_session=True,
            )  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.out_path.read_text().splitlines():
            # A line still being written (the last one) is not an event yet.
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def committed(self) -> int:
        done = [e["inputs"] for e in self.events() if e["event"] == "committed"]
        return max(done, default=0)

    def has(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events())

    def describe(self) -> str:
        err = self.err_path.read_text()[-3000:]
        return f"exit {self.process.poll()}; stdout {self.events()[-5:]}; stderr {err}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.kill()


def _ctp_setup(bootstrap: str, topic: str) -> dict[str, Any]:
    create_topic(bootstrap, f"{topic}-in", PARTITIONS)
    create_topic(bootstrap, f"{topic}-out", PARTITIONS)
    produce_batch(bootstrap, f"{topic}-in", range(PARTITIONS), INPUTS_PER_PARTITION, "in")
    return {
        "bootstrap": bootstrap,
        "input": f"{topic}-in",
        "output": f"{topic}-out",
        "partitions": PARTITIONS,
        "group": f"{topic}-group",
        "transactional_id": f"{topic}-app",
        "expected": PARTITIONS * INPUTS_PER_PARTITION,
        "batch": 10,
        "pause_ms": 0,
        "hold_after": None,
    }


def _start(apps: list[App], spec: dict[str, Any], tmp_path: Path) -> App:
    app = App(spec, tmp_path, len(apps))
    apps.append(app)
    return app


def _supervise(apps: list[App], spec: dict[str, Any], tmp_path: Path, limit: int = 3) -> None:
    """Wait for the latest instance to finish; start a new one after a fatal exit (a
    supervisor's job), at most ``limit`` times."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code = apps[-1].process.poll()
        if code == 0:
            return
        if code is not None:
            assert limit > 0, "the application kept failing:\n" + apps[-1].describe()
            limit -= 1
            _start(apps, spec, tmp_path)
        time.sleep(0.05)
    raise AssertionError("the application did not finish in 60s:\n" + apps[-1].describe())


def _assert_exactly_once(spec: dict[str, Any]) -> dict[str, int]:
    """Each input appears exactly once in the output, read_committed, and the group's
    committed offsets are the ends of the input partitions.  What read_uncommitted sees
    besides (aborted duplicates), for the report."""
    bootstrap = spec["bootstrap"]
    seen: Counter[bytes | None] = Counter()
    uncommitted = 0
    wait_stable(bootstrap, spec["output"], range(PARTITIONS))
    for partition in range(PARTITIONS):
        read, _ = read_to_end(bootstrap, spec["output"], partition, "read_committed")
        seen.update(value for _, value in read)
        uncommitted += len(read_to_end(bootstrap, spec["output"], partition, "read_uncommitted")[0])
    inputs: Counter[bytes | None] = Counter()
    for partition in range(PARTITIONS):
        read, end = read_to_end(bootstrap, spec["input"], partition, "read_uncommitted")
        assert end == INPUTS_PER_PARTITION
        inputs.update(b"out:" + (value or b"") for _, value in read)
    duplicates = {v: n for v, n in seen.items() if n > 1}
    missing = set(inputs) - set(seen)
    extra = set(seen) - set(inputs)
    assert (duplicates, missing, extra) == ({}, set(), set())
    tps = [(spec["input"], p) for p in range(PARTITIONS)]
    expected = {tp: INPUTS_PER_PARTITION for tp in tps}
    # The offsets become committed when the marker reaches __consumer_offsets, after EndTxn.
    wait_for(lambda: committed_offsets(bootstrap, spec["group"], tps) == expected, "offsets")
    return {"outputs": sum(seen.values()), "read_uncommitted": uncommitted}


@pytest.mark.parametrize("membership", ["assign", "subscribe"])
def test_consume_transform_produce_exactly_once(
    broker: BrokerProcess, topic: str, apps: list[App], tmp_path: Path, membership: str
) -> None:
    """Assigned partitions send offsets with generation -1 (no member); a subscribed group
    member sends its generation and member id."""
    spec = {**_ctp_setup(broker.bootstrap, topic), "subscribe": membership == "subscribe"}
    _start(apps, spec, tmp_path)
    _supervise(apps, spec, tmp_path, limit=0)
    counts = _assert_exactly_once(spec)
    assert counts["read_uncommitted"] == spec["expected"]  # nothing aborted without kills


def test_consume_transform_produce_survives_application_sigkill(
    broker: BrokerProcess, topic: str, apps: list[App], tmp_path: Path
) -> None:
    """The application is SIGKILLed with a transaction open and its records flushed; the
    next instance fences it, the open transaction is aborted, and processing resumes at
    the committed offsets."""
    spec = _ctp_setup(broker.bootstrap, topic)
    first = _start(apps, {**spec, "hold_after": 5}, tmp_path)
    wait_for(lambda: first.has("holding") or first.process.poll() is not None, "holding")
    assert first.has("holding"), first.describe()
    assert first.committed() > 0
    (held,) = [e["records"] for e in first.events() if e["event"] == "holding"]
    first.kill()
    # Atomic so far: with the held transaction still open (nothing has fenced it yet), the
    # outputs read_committed sees and the group's committed offsets both count exactly the
    # inputs of the committed transactions (OFFSET_INVALID, -1001, where none is committed).
    done = first.committed()
    tps = [(spec["input"], p) for p in range(PARTITIONS)]
    wait_for(
        lambda: (
            sum(max(0, o) for o in committed_offsets(broker.bootstrap, spec["group"], tps).values())
            == done
        ),
        f"{done} inputs committed",
    )
    visible = sum(
        len(read_to_end(broker.bootstrap, spec["output"], p, "read_committed")[0])
        for p in range(PARTITIONS)
    )
    assert visible == done
    _start(apps, spec, tmp_path)
    _supervise(apps, spec, tmp_path, limit=0)
    counts = _assert_exactly_once(spec)
    # The held transaction's records are in the log, aborted.
    assert counts["read_uncommitted"] == spec["expected"] + held


def test_consume_transform_produce_survives_broker_sigkill(
    broker_factory: BrokerFactory, topic: str, apps: list[App], tmp_path: Path
) -> None:
    """The broker is SIGKILLed mid-run (most likely with a transaction open: the app
    pauses inside each) and restarted on the same data directory and port."""
    broker = broker_factory()
    spec = _ctp_setup(broker.bootstrap, topic)
    # librdkafka 2.16.0 re-bootstraps (KIP-899) once every broker is down, and a
    # send_offsets_to_transaction under way then never sends its TxnOffsetCommit: it waits
    # on the group coordinator's decommissioned broker handle, past its own timeout, while
    # AddOffsetsToTxn and FindCoordinator are answered normally.  A client matter: with
    # re-bootstrap off the same run recovers.
    librdkafka = {"metadata.recovery.strategy": "none"}
    spec = {**spec, "librdkafka": librdkafka}
    app = _start(apps, {**spec, "pause_ms": 50}, tmp_path)
    wait_for(lambda: app.committed() >= 60 or app.process.poll() is not None, "60 inputs committed")
    assert app.process.poll() is None, app.describe()
    assert broker.restart(signal.SIGKILL) == -signal.SIGKILL
    _supervise(apps, spec, tmp_path)
    counts = _assert_exactly_once(spec)
    assert counts["outputs"] == spec["expected"]


@pytest.mark.parametrize("client", TXN_CLIENTS)
def test_send_offsets_commit_with_the_transaction(
    broker: BrokerProcess, client: str, topic: str
) -> None:
    """Offsets sent to a transaction become the group's committed offsets when it commits,
    and are dropped when it aborts."""
    require(client)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    create_topic(bootstrap, f"{topic}-in", 1)
    group = f"{topic}-group"
    inputs = (f"{topic}-in", 0)
    transact(
        client,
        bootstrap,
        f"{topic}-txn",
        topic,
        [
            Txn([b"out-1"], "commit", send_offsets=(group, {0: 5})),
            Txn([b"out-2"], "abort", send_offsets=(group, {0: 9})),
        ],
        offsets_topic=inputs[0],
    )
    assert values_to_end(bootstrap, topic, "read_committed") == [b"out-1"]
    wait_for(lambda: committed_offsets(bootstrap, group, [inputs]) == {inputs: 5}, "offset 5")
    transact(
        client,
        bootstrap,
        f"{topic}-txn",
        topic,
        [Txn([b"out-3"], "commit", send_offsets=(group, {0: 7}))],
        offsets_topic=inputs[0],
    )
    wait_for(lambda: committed_offsets(bootstrap, group, [inputs]) == {inputs: 7}, "offset 7")
    assert values_to_end(bootstrap, topic, "read_committed") == [b"out-1", b"out-3"]


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
