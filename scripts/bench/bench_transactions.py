#!/usr/bin/env python3
"""Kafka transactions over the wire: confluent-kafka (librdkafka) against ``kafkacompat serve``.

    python scripts/bench/bench_transactions.py [--quick] [--json] [--rounds N]
                                               [--fetch-records N] [--dir D]

One real ``kafkacompat serve`` subprocess (disk engine, port 0) is driven from this process.
Every figure is printed next to a baseline measured in the same run, on the same broker,
round by round (the baseline and the measured case alternate), because the machine is
shared; median, min and max over ``--rounds``:

1. Small transactions: one transactional producer repeats begin, 10 produce() of 100 B spread
   round robin over 3 partitions, commit, for ``small_seconds`` per round.  Figure:
   transactions/s.  Baseline: an idempotent producer (enable.idempotence=true, acks=all)
   doing the same 10 produce() and a flush() per iteration, the same number of round trips
   to the partition leader minus the transaction's own (AddPartitionsToTxn, EndTxn).
2. Large transactions: begin, 10,000 produce() of 100 B to a 1-partition topic, commit,
   repeated for ``large_records`` records.  Figure: records/s as a ratio to the same records
   produced by an idempotent, non-transactional producer (acks=all) and flushed (goal:
   >= 0.8x).  Both with linger.ms=5 and batch.size=1 MiB, no compression.
3. read_committed fetch: a 1-partition log of ``fetch_records`` records in transactions of
   100, every 10th aborted (the first, 11th, ...: the last one commits), read from offset 0
   by a fresh consumer (assign(), no group) of each isolation level until it has passed
   the last record.  Figure: the time to read the whole log, as a ratio of read_uncommitted's
   time to read_committed's (goal: >= 0.8x).  Each record's key is its transaction's index,
   so the run also checks that read_committed returns no aborted record and
   read_uncommitted all of them.  The consumer loop bounds both (100 B records), so the same
   log is also read by raw Fetch v11 requests on one socket, one in flight, decoding only
   batch headers: the broker's own read_committed cost (3b, no goal).

Absolute figures describe this machine only; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from kafkacompat.protocol.framing import decode_response, encode_request
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.fetch_response import FetchResponse
from kafkacompat.protocol.messages.request_header import RequestHeader

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
_SCRIPT = Path(sys.executable).parent / "kafkacompat"
SERVE = (
    [str(_SCRIPT), "serve"] if _SCRIPT.exists() else [sys.executable, "-m", "kafkacompat", "serve"]
)
"""What a user runs: the venv's console script (``python -m kafkacompat`` where it is absent)."""
STARTUP_WAIT_S = 60.0
STOP_WAIT_S = 60.0
TXN_WAIT_S = 60.0
"""Ceiling of one init/commit/abort/flush call; librdkafka raises when it passes."""
READ_WAIT_S = 600.0
STALL_S = 30.0
RECORD_SIZE = 100
SMALL_RECORDS = 10
SMALL_PARTITIONS = 3
LARGE_TXN_RECORDS = 10_000
FETCH_TXN_RECORDS = 100
ABORT_EVERY = 10


@dataclass(frozen=True)
class Settings:
    mode: str
    rounds: int
    small_seconds: float
    large_records: int
    fetch_records: int


# 3,000,000 records in case 2: a round of 1,000,000 (about 1 s) swung 0.6-1.0x with the other
# work on this shared machine.
DEFAULT = Settings("default", 5, 5.0, 3_000_000, 1_000_000)
QUICK = Settings("quick", 2, 1.0, 100_000, 50_000)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench_transactions: {message}")


class ClientLog(logging.Handler):
    """librdkafka's log lines: counted, the first few kept for the report."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 10:
            self.first.append(record.getMessage())


CLIENT_LOG = ClientLog()
RDKAFKA = logging.getLogger("bench_transactions.rdkafka")
RDKAFKA.addHandler(CLIENT_LOG)
RDKAFKA.propagate = False
RDKAFKA.setLevel(logging.INFO)


def cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (nan where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the broker ----------------------------------------------------------------------------


class Broker:
    """``kafkacompat serve`` on port 0, disk engine; stderr kept (and scanned for the port)."""

    def __init__(self, data_dir: Path) -> None:
        command = [*SERVE, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)]
        command += ["--storage", "disk", "--log-level", "info"]
        self.lines: list[str] = []
        self.bootstrap = ""
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(STARTUP_WAIT_S) or not self.bootstrap:
            self.stop()
            fail("broker did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if not self.bootstrap and "bootstrap.servers=" in line:
                self.bootstrap = line.split("bootstrap.servers=", 1)[1].split(")")[0].split()[0]
                self._ready.set()
        self._ready.set()  # the process ended

    @property
    def pid(self) -> int:
        return self.proc.pid

    def problems(self) -> list[str]:
        return [line.rstrip() for line in self.lines if " WARNING " in line or " ERROR " in line
                or "Traceback" in line]  # fmt: skip

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.lines.append(f"(bench) no exit {STOP_WAIT_S:.0f} s after SIGTERM\n")
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": RDKAFKA}
    admin = AdminClient(config)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()],
        operation_timeout=30,
        request_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except Exception as exc:  # a benchmark without its topics measures nothing
            fail(f"create topic {name}: {exc}")


# --- the producers -------------------------------------------------------------------------


class Delivery:
    """Counts failed deliveries (only errors come back: delivery.report.only.error)."""

    def __init__(self) -> None:
        self.errors = 0
        self.first: str | None = None

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors += 1
            if self.first is None:
                self.first = str(err)


def make_producer(
    bootstrap: str, delivery: Delivery, transactional_id: str | None = None
) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": MiB,
        "compression.type": "none",
        "delivery.report.only.error": True,
        "message.timeout.ms": int(READ_WAIT_S * 1000),
        "on_delivery": delivery,
        "logger": RDKAFKA,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        # librdkafka wants a message's timeout within the transaction's.
        config["transaction.timeout.ms"] = int(TXN_WAIT_S * 1000)
        config["message.timeout.ms"] = int(TXN_WAIT_S * 1000)
    producer = Producer(config)
    if transactional_id is not None:
        producer.init_transactions(TXN_WAIT_S)
    return producer


def produce_all(producer: Producer, topic: str, value: bytes, count: int, key: bytes | None,
                partition: int = 0) -> None:  # fmt: skip
    """``count`` produce() calls; a full local queue is served by poll() until it drains."""
    produce = producer.produce
    for _ in range(count):
        while True:
            try:
                produce(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.001)


def flush(producer: Producer) -> None:
    if producer.flush(READ_WAIT_S) != 0:
        fail(f"flush left {len(producer)} messages after {READ_WAIT_S:.0f} s")


def close_producer(producer: Producer) -> None:
    # Outside the timed part: the next round's producer should not share the machine with
    # this one's threads.  close() came with confluent-kafka 2.x; older ones close the handle
    # when the last reference goes.
    producer.flush(TXN_WAIT_S)
    close = getattr(producer, "close", None)
    if close is not None:
        close()


def warm_up(producer: Producer, topic: str, value: bytes, transactional: bool) -> None:
    """One record before the clock starts: connected, the producer id given, and (in a
    transaction) the coordinator found; a transactional producer may only produce inside one."""
    if transactional:
        producer.begin_transaction()
    producer.produce(topic, value, None, 0)
    if transactional:
        producer.commit_transaction(TXN_WAIT_S)
    else:
        flush(producer)


# --- 1: small transactions -----------------------------------------------------------------


def small_case(broker: Broker, topic: str, seconds: float, transactional: bool, tag: str
               ) -> dict[str, Any]:  # fmt: skip
    delivery = Delivery()
    producer = make_producer(broker.bootstrap, delivery, f"bench-small-{tag}" if transactional
                             else None)  # fmt: skip
    value = os.urandom(RECORD_SIZE)
    produce = producer.produce
    warm_up(producer, topic, value, transactional)
    iterations = 0
    cpu_before = cpu_s(broker.pid)
    start = perf_counter()
    end = start + seconds
    while perf_counter() < end:
        if transactional:
            producer.begin_transaction()
        for i in range(SMALL_RECORDS):
            produce(topic, value, None, i % SMALL_PARTITIONS)
        if transactional:
            producer.commit_transaction(TXN_WAIT_S)
        else:
            flush(producer)
        iterations += 1
    elapsed = perf_counter() - start
    broker_cpu = cpu_s(broker.pid) - cpu_before
    close_producer(producer)
    problems = [f"{delivery.errors} failed deliveries: {delivery.first}"] if delivery.errors else []
    return {"per_s": iterations / elapsed, "iterations": iterations, "seconds": elapsed,
            "broker_cpu_s": broker_cpu, "problems": problems}  # fmt: skip


# --- 2: large transactions -----------------------------------------------------------------


def large_case(broker: Broker, topic: str, records: int, transactional: bool, tag: str
               ) -> dict[str, Any]:  # fmt: skip
    delivery = Delivery()
    producer = make_producer(broker.bootstrap, delivery, f"bench-large-{tag}" if transactional
                             else None)  # fmt: skip
    value = os.urandom(RECORD_SIZE)
    warm_up(producer, topic, value, transactional)
    cpu_before = cpu_s(broker.pid)
    start = perf_counter()
    if transactional:
        left = records
        while left > 0:
            n = min(LARGE_TXN_RECORDS, left)
            producer.begin_transaction()
            produce_all(producer, topic, value, n, None)
            producer.commit_transaction(TXN_WAIT_S)
            left -= n
    else:
        produce_all(producer, topic, value, records, None)
        flush(producer)
    elapsed = perf_counter() - start
    broker_cpu = cpu_s(broker.pid) - cpu_before
    close_producer(producer)
    problems = [f"{delivery.errors} failed deliveries: {delivery.first}"] if delivery.errors else []
    return {"per_s": records / elapsed, "records": records, "seconds": elapsed,
            "broker_cpu_s": broker_cpu, "problems": problems}  # fmt: skip


# --- 3: read_committed against read_uncommitted --------------------------------------------


def fill_aborted_log(broker: Broker, topic: str, records: int) -> dict[str, Any]:
    """Transactions of FETCH_TXN_RECORDS, every ABORT_EVERY-th aborted, the first included;
    each record keyed by its transaction's index."""
    delivery = Delivery()
    producer = make_producer(broker.bootstrap, delivery, "bench-fetch-fill")
    value = os.urandom(RECORD_SIZE)
    transactions = records // FETCH_TXN_RECORDS
    aborted = 0
    start = perf_counter()
    for index in range(transactions):
        key = struct.pack(">I", index)
        producer.begin_transaction()
        produce_all(producer, topic, value, FETCH_TXN_RECORDS, key)
        if index % ABORT_EVERY == 0:
            # Sent first: abort_transaction() purges what is still queued, and the point is
            # a log that holds the aborted records.
            flush(producer)
            producer.abort_transaction(TXN_WAIT_S)
            aborted += 1
        else:
            producer.commit_transaction(TXN_WAIT_S)
    elapsed = perf_counter() - start
    close_producer(producer)
    if delivery.errors:
        fail(f"filling {topic}: {delivery.errors} failed deliveries: {delivery.first}")
    return {"transactions": transactions, "aborted": aborted, "seconds": elapsed,
            "records": transactions * FETCH_TXN_RECORDS}  # fmt: skip


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks",
                         "enable.auto.commit": False, "logger": RDKAFKA})  # fmt: skip
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high)
    finally:
        consumer.close()


def read_case(broker: Broker, topic: str, isolation: str, last_offset: int) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "bench-unused",  # librdkafka requires one; assign() uses no group
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.max.bytes": 50 * MiB,
            "max.partition.fetch.bytes": 10 * MiB,
            "receive.message.max.bytes": 51 * MiB,
            "queued.max.messages.kbytes": 256 * 1024,
            "enable.partition.eof": False,
            "logger": RDKAFKA,
        }
    )
    messages = 0
    aborted_seen = 0
    errors: list[str] = []
    unpack = struct.Struct(">I").unpack
    try:
        consumer.list_topics(topic, timeout=30)  # connected before the clock starts
        cpu_before = cpu_s(broker.pid)
        start = perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + READ_WAIT_S
        last_progress = time.monotonic()
        consume = consumer.consume
        done = False
        while not done and time.monotonic() < deadline:
            # A short wait: consume() waits out its timeout unless the batch fills, and
            # the last batch of a log is seldom full.
            batch = consume(10_000, 0.005)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                errors.append(f"no records for {STALL_S:.0f} s")
                break
            for message in batch:
                if message.error() is not None:
                    if len(errors) < 5:
                        errors.append(str(message.error()))
                    continue
                messages += 1
                key = message.key()
                if key is not None and unpack(key)[0] % ABORT_EVERY == 0:
                    aborted_seen += 1
                offset = message.offset()
                if offset is not None and offset >= last_offset:
                    done = True
        elapsed = perf_counter() - start
        broker_cpu = cpu_s(broker.pid) - cpu_before
    finally:
        consumer.close()
    return {"seconds": elapsed, "messages": messages, "aborted_seen": aborted_seen,
            "broker_cpu_s": broker_cpu, "reached_end": done,
            "problems": [f"consumer error: {e}" for e in errors]}  # fmt: skip


FETCH_API_KEY = 1
FETCH_VERSION = 11
"""The last Fetch version that names topics (12 is flexible, 13 wants topic ids)."""
_BATCH_HEAD = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")


def next_fetch_offset(records: bytes | bytearray | memoryview) -> int | None:
    """One past the last whole batch in a fetched record set (None: no whole batch)."""
    view = memoryview(records)
    pos = 0
    last: int | None = None
    while pos + 27 <= len(view):
        base_offset, length = _BATCH_HEAD.unpack_from(view, pos)
        if pos + 12 + length > len(view):
            break  # a partial batch at the end of the response, fetched again next time
        last = base_offset + _LAST_OFFSET_DELTA.unpack_from(view, pos + 23)[0] + 1
        pos += 12 + length
    return last


def raw_read_case(broker: Broker, topic: str, isolation: int, high: int) -> dict[str, Any]:
    """The broker alone: Fetch requests on one blocking socket, one in flight, from offset 0
    to the high watermark, 10 MiB a response, no record decoded (batch headers only)."""
    host, port = broker.bootstrap.rsplit(":", 1)
    fetches = 0
    aborted = 0
    with socket.create_connection((host, int(port)), timeout=STALL_S) as sock:
        stream = sock.makefile("rb")
        cpu_before = cpu_s(broker.pid)
        start = perf_counter()
        offset = 0
        while offset < high:
            request = FetchRequest(
                max_wait_ms=0, min_bytes=1, max_bytes=50 * MiB, isolation_level=isolation,
                topics=[FetchTopic(topic=topic, partitions=[FetchPartition(
                    partition=0, fetch_offset=offset, partition_max_bytes=10 * MiB)])],
            )  # fmt: skip
            header = RequestHeader(request_api_key=FETCH_API_KEY, request_api_version=FETCH_VERSION,
                                   correlation_id=fetches, client_id="bench-transactions")  # fmt: skip
            sock.sendall(encode_request(header, request))
            size = struct.unpack(">i", stream.read(4))[0]
            _, body = decode_response(FETCH_API_KEY, FETCH_VERSION, stream.read(size))
            assert isinstance(body, FetchResponse)
            data = body.responses[0].partitions[0]
            if data.error_code != 0:
                fail(f"raw fetch of {topic} at {offset}: error {data.error_code}")
            aborted += len(data.aborted_transactions or ())
            following = next_fetch_offset(data.records or b"")
            if following is None or following <= offset:
                fail(f"raw fetch of {topic} at {offset}: no whole batch")
            offset = following
            fetches += 1
        elapsed = perf_counter() - start
        broker_cpu = cpu_s(broker.pid) - cpu_before
    return {"seconds": elapsed, "fetches": fetches, "aborted_listed": aborted,
            "broker_cpu_s": broker_cpu, "problems": []}  # fmt: skip


# --- the run -------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def alternate(rounds: int, first: Callable[[int], dict[str, Any]],
              second: Callable[[int], dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                 list[dict[str, Any]]]:  # fmt: skip
    """Both cases each round, the order swapped every round so that drift in the machine's
    load falls on both alike."""
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    for r in range(rounds):
        if r % 2 == 0:
            a.append(first(r))
            b.append(second(r))
        else:
            b.append(second(r))
            a.append(first(r))
    return a, b


def progress(message: str) -> None:
    print(f"   . {message}", file=sys.stderr, flush=True)


def run(settings: Settings, broker: Broker) -> dict[str, Any]:
    results: dict[str, Any] = {}
    create_topics(broker.bootstrap, {"bench-small": SMALL_PARTITIONS, "bench-large": 1,
                                     "bench-fetch": 1})  # fmt: skip

    # 1
    def small(transactional: bool) -> Callable[[int], dict[str, Any]]:
        def case(r: int) -> dict[str, Any]:
            out = small_case(broker, "bench-small", settings.small_seconds, transactional, str(r))
            progress(f"small {'txn' if transactional else 'idempotent'} round {r}: "
                     f"{out['per_s']:.0f}/s {'; '.join(out['problems'])}")  # fmt: skip
            return out

        return case

    txn, base = alternate(settings.rounds, small(True), small(False))
    results["small"] = {"txn": txn, "idempotent": base}

    # 2
    def large(transactional: bool) -> Callable[[int], dict[str, Any]]:
        def case(r: int) -> dict[str, Any]:
            out = large_case(broker, "bench-large", settings.large_records, transactional, str(r))
            progress(f"large {'txn' if transactional else 'idempotent'} round {r}: "
                     f"{out['per_s']:.0f} records/s {'; '.join(out['problems'])}")  # fmt: skip
            return out

        return case

    txn, base = alternate(settings.rounds, large(True), large(False))
    results["large"] = {"txn": txn, "idempotent": base}

    # 3
    fill = fill_aborted_log(broker, "bench-fetch", settings.fetch_records)
    progress(f"filled bench-fetch: {fill['transactions']} transactions in {fill['seconds']:.1f} s")
    high = high_watermark(broker.bootstrap, "bench-fetch")
    # The log ends with the last transaction's commit marker: its last record is one before.
    last_offset = high - 2
    results["fetch_fill"] = {**fill, "high_watermark": high}

    def read(isolation: str) -> Callable[[int], dict[str, Any]]:
        def case(r: int) -> dict[str, Any]:
            out = read_case(broker, "bench-fetch", isolation, last_offset)
            progress(f"read {isolation} round {r}: {out['seconds']:.2f} s, "
                     f"{out['messages']} records {'; '.join(out['problems'])}")  # fmt: skip
            return out

        return case

    committed, uncommitted = alternate(settings.rounds, read("read_committed"),
                                       read("read_uncommitted"))  # fmt: skip
    records = fill["records"]
    aborted_records = fill["aborted"] * FETCH_TXN_RECORDS
    for out in committed:
        if out["messages"] != records - aborted_records or out["aborted_seen"]:
            out["problems"].append(f"read_committed returned {out['messages']} records, "
                                   f"{out['aborted_seen']} aborted")  # fmt: skip
    for out in uncommitted:
        if out["messages"] != records or out["aborted_seen"] != aborted_records:
            out["problems"].append(f"read_uncommitted returned {out['messages']} records, "
                                   f"{out['aborted_seen']} aborted")  # fmt: skip
    results["fetch"] = {"read_committed": committed, "read_uncommitted": uncommitted}

    def raw(isolation: int) -> Callable[[int], dict[str, Any]]:
        def case(r: int) -> dict[str, Any]:
            out = raw_read_case(broker, "bench-fetch", isolation, high)
            progress(f"raw fetch isolation {isolation} round {r}: {out['seconds']:.3f} s, "
                     f"{out['fetches']} fetches, {out['aborted_listed']} aborted listed")  # fmt: skip
            return out

        return case

    raw_committed, raw_uncommitted = alternate(settings.rounds, raw(1), raw(0))
    for out in raw_committed:
        # Each aborted transaction is listed by every response that covers part of it.
        if out["aborted_listed"] < fill["aborted"]:
            out["problems"].append(f"raw read_committed listed {out['aborted_listed']} aborted "
                                   f"transactions of {fill['aborted']}")  # fmt: skip
    results["raw_fetch"] = {"read_committed": raw_committed, "read_uncommitted": raw_uncommitted}
    return results


def ratios(measured: list[dict[str, Any]], baseline: list[dict[str, Any]], key: str
           ) -> dict[str, float]:  # fmt: skip
    """The ratio of each round's measured figure to the same round's baseline."""
    return summary([m[key] / b[key] for m, b in zip(measured, baseline, strict=True)])


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per case: the measured rate, the baseline's, and their ratio per round."""
    rows: list[dict[str, Any]] = []
    small, large, fetch = results["small"], results["large"], results["fetch"]
    rows.append({
        "case": f"1. small transactions ({SMALL_RECORDS} x {RECORD_SIZE} B over "
                f"{SMALL_PARTITIONS} partitions)",
        "unit": "transactions/s", "baseline": "idempotent produce+flush iterations/s",
        "value": summary([r["per_s"] for r in small["txn"]]),
        "base": summary([r["per_s"] for r in small["idempotent"]]),
        "ratio": ratios(small["txn"], small["idempotent"], "per_s"),
        "goal": None,
    })  # fmt: skip
    rows.append({
        "case": f"2. produce in transactions of {LARGE_TXN_RECORDS:,} x {RECORD_SIZE} B",
        "unit": "records/s", "baseline": "idempotent acks=all records/s",
        "value": summary([r["per_s"] for r in large["txn"]]),
        "base": summary([r["per_s"] for r in large["idempotent"]]),
        "ratio": ratios(large["txn"], large["idempotent"], "per_s"),
        "goal": 0.8,
    })  # fmt: skip
    records = results["fetch_fill"]["high_watermark"]
    rows.append({
        "case": f"3. read_committed, {records:,} offsets, 10% aborted",
        "unit": "log offsets/s", "baseline": "read_uncommitted log offsets/s",
        "value": summary([records / r["seconds"] for r in fetch["read_committed"]]),
        "base": summary([records / r["seconds"] for r in fetch["read_uncommitted"]]),
        # A time: the baseline's over the measured one is the rate ratio.
        "ratio": ratios(fetch["read_uncommitted"], fetch["read_committed"], "seconds"),
        "goal": 0.8,
    })  # fmt: skip
    raw = results["raw_fetch"]
    rows.append({
        "case": "3b. the same log by raw Fetch v11 (broker alone)",
        "unit": "log offsets/s", "baseline": "isolation_level 0 log offsets/s",
        "value": summary([records / r["seconds"] for r in raw["read_committed"]]),
        "base": summary([records / r["seconds"] for r in raw["read_uncommitted"]]),
        "ratio": ratios(raw["read_uncommitted"], raw["read_committed"], "seconds"),
        "goal": None,
    })  # fmt: skip
    return rows


def print_results(results: dict[str, Any]) -> None:
    rows = results["figures"]
    print()
    print(f"{'case':<58} {'measured (median, min-max)':>30} {'baseline (median)':>18} "
          f"{'ratio median (min-max)':>24} goal")  # fmt: skip
    for row in rows:
        v, b, q = row["value"], row["base"], row["ratio"]
        goal = (
            ""
            if row["goal"] is None
            else (f">= {row['goal']}x {'met' if q['median'] >= row['goal'] else 'MISSED'}")
        )
        print(f"{row['case']:<58} {v['median']:>12,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) "
              f"{b['median']:>18,.0f} {q['median']:>10.2f}x ({q['min']:.2f}-{q['max']:.2f}) "
              f"{goal}")  # fmt: skip
    print()
    print(
        "   units: 1 transactions/s against idempotent 10-record produce+flush iterations/s; "
        "2 records/s; 3 log offsets (records and markers) read per second"
    )
    fill = results["fetch_fill"]
    print(
        f"   filling the log of 3: {fill['transactions']:,} transactions "
        f"({fill['aborted']:,} aborted) in {fill['seconds']:.1f} s, "
        f"{fill['transactions'] / fill['seconds']:,.0f}/s"
    )
    cpu = {
        name: statistics.median(r["broker_cpu_s"] / r["seconds"] for r in runs)
        for name, runs in (("1 txn", results["small"]["txn"]),
                           ("1 idempotent", results["small"]["idempotent"]),
                           ("2 txn", results["large"]["txn"]),
                           ("2 idempotent", results["large"]["idempotent"]),
                           ("3 read_committed", results["fetch"]["read_committed"]),
                           ("3 read_uncommitted", results["fetch"]["read_uncommitted"]))
    }  # fmt: skip
    reads = results["fetch"]
    # The consumer loop bounds both reads of 3 (100 B records); the broker's own cost of a
    # read, aborted-transaction index lookups included, shows in its CPU time.
    print("   3 broker CPU s per whole-log read (median): " + ", ".join(
        f"{level} {statistics.median(r['broker_cpu_s'] for r in reads[level]):.2f}"
        for level in ("read_committed", "read_uncommitted")))  # fmt: skip
    print("   broker CPU per wall second (median): "
          + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))  # fmt: skip
    problems = [p for case in ("small", "large", "fetch", "raw_fetch") for runs in results[case].values()
                for r in runs for p in r["problems"]]  # fmt: skip
    problems += results["broker_problems"]
    print("   problems: " + ("; ".join(problems[:10]) if problems else "none"))
    print(f"   librdkafka log lines: {results['client_log_lines']}"
          + (f" (first: {results['client_log_first'][:3]})" if results["client_log_lines"]
             else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, help="rounds of every case (median, min, max)")
    parser.add_argument("--fetch-records", type=int, help="records in the log of case 3")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    args = parser.parse_args()
    settings = QUICK if args.quick else DEFAULT
    if args.rounds:
        settings = Settings(**{**asdict(settings), "rounds": max(1, args.rounds)})
    if args.fetch_records:
        settings = Settings(**{**asdict(settings), "fetch_records": args.fetch_records})
    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    if not args.json:
        import confluent_kafka

        print(f"kafkacompat transactions benchmark: Python {platform.python_version()}, "
              f"{settings.mode} mode, {settings.rounds} rounds, {os.cpu_count()} CPUs, "
              f"confluent-kafka {confluent_kafka.version()[0]} "
              f"(librdkafka {confluent_kafka.libversion()[0]})")  # fmt: skip
        print("Client and broker share this machine; compare the ratios.", flush=True)
    work = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-txn-", dir=base))
    broker = Broker(work / "data")
    try:
        results: dict[str, Any] = {"settings": asdict(settings),
                                   "date": time.strftime("%Y-%m-%d")}  # fmt: skip
        results.update(run(settings, broker))
        code = broker.stop()
        if code not in (0, None):
            broker.lines.append(f"(bench) exit code {code}\n")
        results["broker_problems"] = broker.problems() + [
            ln.rstrip() for ln in broker.lines if ln.startswith("(bench)")
        ]
        results["client_log_lines"] = CLIENT_LOG.count
        results["client_log_first"] = CLIENT_LOG.first
        results["figures"] = figures(results)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)


if __name__ == "__main__":
    main()
