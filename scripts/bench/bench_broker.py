#!/usr/bin/env python3
"""The whole broker over the wire: confluent-kafka clients against ``kafkacompat serve``.

    python scripts/bench/bench_broker.py [--quick] [--json] [--repeats N] [--dir D]
                                         [--profile [PREFIX]]

Every figure comes from real ``kafkacompat serve`` subprocesses (one per storage engine, on
port 0) driven by confluent-kafka (librdkafka) in this process, and is printed next to a
baseline measured in the same run, because the machine is shared and noisy:

1. Produce 1,000,000 x 100-byte records (``--quick``: 100,000) to a 1-partition topic with
   ``linger.ms=5``, ``batch.size=1048576``, no compression, once with ``acks=1`` and once with
   ``acks=all``, on the disk, memory and null engines.  Time: first ``produce()`` to
   ``flush()`` returning.  The null engine acknowledges and keeps nothing, so it is the
   ceiling of the protocol layer and client; every produce figure is also given as a ratio
   to it (x null).  A second reference is the client alone: the same ``produce()`` loop
   against a port where nothing listens (messages only queue in librdkafka).
2. Produce 200,000 x 10 KiB records (``--quick``: 20,000), same settings, same engines.
3. Consume back, from the disk engine, the 100-byte and 10 KiB topics of the acks=1 runs with
   a confluent-kafka Consumer (``assign()``, no group, no commits, fetch.max.bytes 50 MiB,
   max.partition.fetch.bytes 10 MiB), against ``os.sendfile`` of the same partition's
   ``.log`` segment files to a loopback TCP socket drained by a thread (goal: >= 0.5x).
4. Produce-to-consume latency: ``linger.ms=0``, 1,000 msgs/s for ~5 s, the send time in the
   payload, a consumer thread long-polling (fetch.wait.max.ms=500, fetch.min.bytes=1);
   p50/p99/max, on the disk and memory engines.
5. Start-up: ``Popen`` to the first accepted TCP connection, empty data dir, best of 5,
   against ``python -c pass`` in the same run (goal: <= 150 ms); the broker's idle RSS
   (VmRSS) after start-up and after the benchmarks (goal: <= 40 MB idle).

Client and broker share the machine's cores (librdkafka's threads, this Python loop, the
broker's event loop), so absolute rates describe this machine only.  The produce cases run
round-robin over the three engines (null, memory, disk) so that noise spreads evenly.
Failed deliveries, short logs or a broker that dies are reported, not hidden.

``--profile`` also runs a memory-engine broker under ``python -m cProfile -o FILE`` during
the 100-byte and (another broker) the 10 KiB acks=1 produce, and prints the top functions
by cumulative and by own time, for the request path alone and for the whole process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import pstats
import queue
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
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 10**6
ENGINES = ("null", "memory", "disk")
_SCRIPT = Path(sys.executable).parent / "kafkacompat"
SERVE = (
    [str(_SCRIPT), "serve"] if _SCRIPT.exists() else [sys.executable, "-m", "kafkacompat", "serve"]
)
"""What a user runs: the venv's console script (``python -m kafkacompat`` where it is absent)."""
STARTUP_WAIT_S = 30.0
FLUSH_WAIT_S = 600.0
STALL_S = 30.0
"""A produce that makes no progress for this long is abandoned and reported."""
BROKER_STOP_WAIT_S = 30.0
WAIT_S = 120.0
FETCH_MAX_BYTES = 50 * MiB
PARTITION_FETCH_BYTES = 10 * MiB
SEND_CHUNK = 10 * MiB
"""Chunk of every raw os.sendfile call: a consumer fetch's partition limit."""


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    small_count: int
    small_size: int
    big_count: int
    big_size: int
    latency_rate: int
    latency_seconds: float
    latency_warmup_s: float
    startup_repeats: int
    sendfile_repeats: int


DEFAULT = Settings(
    "default",
    repeats=1,
    small_count=1_000_000,
    small_size=100,
    big_count=200_000,
    big_size=10 * KiB,
    latency_rate=1000,
    latency_seconds=5.0,
    latency_warmup_s=1.0,
    startup_repeats=5,
    sendfile_repeats=3,
)
QUICK = Settings(
    "quick",
    repeats=1,
    small_count=100_000,
    small_size=100,
    big_count=20_000,
    big_size=10 * KiB,
    latency_rate=1000,
    latency_seconds=1.0,
    latency_warmup_s=0.5,
    startup_repeats=5,
    sendfile_repeats=3,
)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench_broker: {message}")


class ClientLog(logging.Handler):
    """librdkafka's log lines (disconnects and the like): counted, the first few kept."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 10:
            self.first.append(record.getMessage())


CLIENT_LOG = ClientLog()
RDKAFKA = logging.getLogger("bench_broker.rdkafka")
RDKAFKA.addHandler(CLIENT_LOG)
RDKAFKA.propagate = False
RDKAFKA.setLevel(logging.INFO)
SILENT = logging.getLogger("bench_broker.silent")
SILENT.addHandler(logging.NullHandler())
SILENT.propagate = False


def mbps(size: int, seconds: float) -> float:
    return size / MB / seconds if seconds > 0 else float("nan")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a live process, in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return float("nan")
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the broker subprocess -------------------------------------------------------------------


class BrokerProcess:
    """``kafkacompat serve`` on port 0; its stderr is kept (and scanned for the port)."""

    def __init__(
        self, engine: str, data_dir: Path, prefix: list[str] | None = None, log_level: str = "info"
    ) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self.echo = True
        command = [*(prefix or SERVE)]
        command += ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)]
        command += ["--storage", engine, "--log-level", log_level]
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.bootstrap = ""
        self.started_at = perf_counter()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"stderr-{engine}")
        self._reader.start()
        if not self._ready.wait(STARTUP_WAIT_S) or not self.bootstrap:
            self.stop()
            fail(f"{engine} broker did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if self.echo and (" WARNING " in line or " ERROR " in line):
                print(f"   [{self.engine} broker] {line.rstrip()}", file=sys.stderr)
            if not self.bootstrap and "bootstrap.servers=" in line:
                self.bootstrap = line.split("bootstrap.servers=", 1)[1].split(")")[0].split()[0]
                self._ready.set()
        self._ready.set()  # the process ended

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> dict[str, int]:
        return rss_kib(self.pid)

    def problems(self) -> list[str]:
        return [line.rstrip() for line in self.lines if " WARNING " in line or " ERROR " in line
                or "Traceback" in line]  # fmt: skip

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(BROKER_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.lines.append(f"(bench) no exit {BROKER_STOP_WAIT_S:.0f} s after SIGTERM\n")
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


# --- 1 and 2: produce ------------------------------------------------------------------------


def producer_config(bootstrap: str, acks: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.size": 1_048_576,
        "acks": acks,
        "compression.type": "none",
        "enable.idempotence": False,  # no InitProducerId yet
        "delivery.report.only.error": True,
        "message.timeout.ms": int(FLUSH_WAIT_S * 1000),
        "logger": RDKAFKA,
    }
    config.update(extra)
    return config


class Delivery:
    """Counts failed deliveries (only errors are reported back: delivery.report.only.error)."""

    def __init__(self) -> None:
        self.errors = 0
        self.first: str | None = None

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors += 1
            if self.first is None:
                self.first = str(err)


def produce_loop(producer: Producer, topic: str, value: bytes, count: int) -> tuple[int, int]:
    """``count`` produce() calls: (calls made, times the local queue was full).  Gives up
    when the queue stays full for STALL_S (the broker is not taking anything)."""
    produce = producer.produce
    poll = producer.poll
    full = 0
    for done in range(count):
        try:
            produce(topic, value)
            continue
        except BufferError:
            pass
        stuck_since = time.monotonic()
        while True:
            full += 1
            poll(0.001)
            try:
                produce(topic, value)
                break
            except BufferError:
                if time.monotonic() - stuck_since > STALL_S:
                    return done, full
    return count, full


def flush(producer: Producer) -> int:
    """flush() until empty, or until nothing was delivered for STALL_S: the messages left."""
    last = len(producer)
    last_progress = time.monotonic()
    deadline = last_progress + FLUSH_WAIT_S
    while True:
        remaining = producer.flush(1.0)
        now = time.monotonic()
        if remaining == 0 or now > deadline:
            return remaining
        if remaining < last:
            last, last_progress = remaining, now
        elif now - last_progress > STALL_S:
            return remaining


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-watermarks",
         "enable.auto.commit": False, "logger": RDKAFKA}
    )  # fmt: skip
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high)
    except Exception:  # reported by the caller as a wrong end offset, not fatal
        return -1
    finally:
        consumer.close()


def produce_case(
    broker: BrokerProcess, topic: str, count: int, size: int, acks: str
) -> dict[str, Any]:
    value = os.urandom(size)
    delivery = Delivery()
    producer = Producer(producer_config(broker.bootstrap, acks, on_delivery=delivery))
    # Connect and auto-create the topic before the clock starts.
    metadata = producer.list_topics(topic, timeout=30)
    meta = metadata.topics.get(topic)
    partitions = len(meta.partitions) if meta is not None else 0
    if meta is None or meta.error is not None or partitions != 1:
        fail(f"{broker.engine}: topic {topic} not ready: {meta and meta.error}, {partitions} parts")
    logged = CLIENT_LOG.count
    cpu_before = cpu_s(broker.pid)
    start = perf_counter()
    produced, full = produce_loop(producer, topic, value, count)
    loop_s = perf_counter() - start
    remaining = flush(producer)
    elapsed = perf_counter() - start
    broker_cpu = cpu_s(broker.pid) - cpu_before
    problems: list[str] = []
    if produced < count:
        problems.append(f"produce() stalled (queue full {STALL_S:.0f} s) after {produced:,} msgs")
    if remaining:
        problems.append(f"{remaining:,} messages undelivered, no progress for {STALL_S:.0f} s")
        producer.purge()
        producer.flush(5)
    producer.poll(0)
    if CLIENT_LOG.count > logged:
        problems.append(f"{CLIENT_LOG.count - logged} librdkafka log lines")
    leo = end_offset(broker.bootstrap, topic)
    if delivery.errors:
        problems.append(f"{delivery.errors} failed deliveries, first: {delivery.first}")
    if broker.engine != "null" and leo != count:
        problems.append(f"log end offset {leo} after producing {count}")
    if not broker.alive():
        problems.append(f"broker exited with {broker.proc.returncode}")
    return {
        "engine": broker.engine,
        "topic": topic,
        "acks": acks,
        "count": count,
        "size": size,
        "seconds": elapsed,
        "loop_seconds": loop_s,
        "broker_cpu_s": broker_cpu,
        "queue_full_waits": full,
        "msgs_per_s": count / elapsed,
        "mb_per_s": mbps(count * size, elapsed),
        "end_offset": leo,
        "problems": problems,
    }


def client_only_case(count: int, size: int) -> dict[str, Any]:
    """The produce() loop with nowhere to deliver: the client's own ceiling.  The local queue
    is purged every ~100 MB (at most 100,000 messages, librdkafka's default queue bound), as
    deliveries would empty it, so the client does not grow a heap that the real runs never
    have; the purges are inside the time."""
    value = os.urandom(size)
    chunk = max(1, min(100_000, 100 * MB // size))
    producer = Producer(
        producer_config(
            f"127.0.0.1:{free_port()}",
            "1",
            **{
                "queue.buffering.max.messages": chunk + 1,
                "queue.buffering.max.kbytes": 2_097_151,
                "log_level": 0,
                "logger": SILENT,
                "error_cb": lambda _err: None,
                "message.timeout.ms": 600_000,
            },
        )
    )
    full = 0
    start = perf_counter()
    for first in range(0, count, chunk):
        _, waits = produce_loop(producer, "bench-client-only", value, min(chunk, count - first))
        full += waits
        producer.purge()
        producer.poll(0)  # drains the purged messages' delivery reports
    elapsed = perf_counter() - start
    producer.flush(5)
    return {
        "count": count,
        "size": size,
        "seconds": elapsed,
        "queue_full_waits": full,
        "msgs_per_s": count / elapsed,
        "mb_per_s": mbps(count * size, elapsed),
    }


# --- 3: consume ------------------------------------------------------------------------------


class Drain:
    """A loopback TCP connection whose receiving end a thread empties, round by round."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.sender = socket.create_connection(listener.getsockname())
            self.receiver, _ = listener.accept()
        self.receiver.settimeout(WAIT_S)
        self._requests: queue.Queue[int | None] = queue.Queue()
        self._done: queue.Queue[int | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = memoryview(bytearray(MiB))
        try:
            while (target := self._requests.get()) is not None:
                got = 0
                while got < target:
                    n = self.receiver.recv_into(buffer, min(len(buffer), target - got))
                    if n == 0:
                        break
                    got += n
                self._done.put(got)
        except BaseException as exc:  # handed to the main thread
            self._done.put(exc)
            self.receiver.close()

    def expect(self, size: int) -> None:
        self._requests.put(size)

    def wait(self) -> int:
        got = self._done.get(timeout=WAIT_S)
        if isinstance(got, BaseException):
            raise got
        return got

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=10)
        self.sender.close()
        self.receiver.close()


def sendfile_case(paths: list[Path], drain: Drain) -> float:
    size = sum(p.stat().st_size for p in paths)
    sock_fd = drain.sender.fileno()
    drain.expect(size)
    start = perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            file_size = os.fstat(fd).st_size
            position = 0
            while position < file_size:
                sent = os.sendfile(sock_fd, fd, position, min(SEND_CHUNK, file_size - position))
                if sent == 0:
                    fail(f"sendfile of {path} stopped at {position}")
                position += sent
        finally:
            os.close(fd)
    got = drain.wait()
    elapsed = perf_counter() - start
    if got != size:
        fail(f"raw sendfile delivered {got} of {size} bytes")
    return elapsed


def consume_case(broker: BrokerProcess, topic: str, count: int, size: int) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-unused",  # librdkafka requires one; assign() uses no group
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": PARTITION_FETCH_BYTES,
            "receive.message.max.bytes": FETCH_MAX_BYTES + MiB,
            "queued.max.messages.kbytes": 256 * 1024,
            "enable.partition.eof": False,
            "logger": RDKAFKA,
        }
    )
    messages = 0
    payload = 0
    errors: list[str] = []
    try:
        consumer.list_topics(topic, timeout=30)  # connected before the clock starts
        cpu_before = cpu_s(broker.pid)
        start = perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + FLUSH_WAIT_S
        consume = consumer.consume
        last_progress = time.monotonic()
        while messages < count and time.monotonic() < deadline:
            batch = consume(10_000, 1.0)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                errors.append(f"no records for {STALL_S:.0f} s")
                break
            # len(message) is the value's length without copying it into a Python bytes:
            # the loop measures delivery, not this process copying 10 KiB per record.
            for message in batch:
                if message.error() is not None:
                    if len(errors) < 5:
                        errors.append(str(message.error()))
                    continue
                messages += 1
                payload += len(message)
        elapsed = perf_counter() - start
        broker_cpu = cpu_s(broker.pid) - cpu_before
    finally:
        consumer.close()
    problems = [f"consumer error: {e}" for e in errors]
    if messages != count or payload != count * size:
        problems.append(f"consumed {messages:,} records / {payload:,} bytes of {count:,}")
    return {
        "seconds": elapsed,
        "broker_cpu_s": broker_cpu,
        "messages": messages,
        "payload": payload,
        "problems": problems,
    }


def bench_consume(
    settings: Settings, broker: BrokerProcess, topic: str, count: int, size: int
) -> dict[str, Any]:
    part_dir = broker.data_dir / f"{topic}-0"
    paths = sorted(part_dir.glob("*.log"))
    if not paths:
        fail(f"no segment files under {part_dir}")
    log_bytes = sum(p.stat().st_size for p in paths)
    drain = Drain()
    try:
        raw = [sendfile_case(paths, drain) for _ in range(settings.sendfile_repeats)]
        runs = []
        for _ in range(settings.repeats):
            runs.append(consume_case(broker, topic, count, size))
            raw.append(sendfile_case(paths, drain))
    finally:
        drain.close()
    best = min(runs, key=lambda r: r["seconds"])
    raw_s = min(raw)
    return {
        "topic": topic,
        "count": count,
        "size": size,
        "log_bytes": log_bytes,
        "segments": len(paths),
        "sendfile_s": raw_s,
        "sendfile_mb_per_s": mbps(log_bytes, raw_s),
        "consume_s": best["seconds"],
        "broker_cpu_s": best["broker_cpu_s"],
        "consume_mb_per_s": mbps(log_bytes, best["seconds"]),
        "consume_payload_mb_per_s": mbps(count * size, best["seconds"]),
        "consume_msgs_per_s": count / best["seconds"],
        "x_sendfile": raw_s / best["seconds"],
        "problems": [p for r in runs for p in r["problems"]],
    }


# --- 4: latency ------------------------------------------------------------------------------

_STAMP = struct.Struct(">qq")


def bench_latency(settings: Settings, broker: BrokerProcess, topic: str) -> dict[str, Any]:
    rate = settings.latency_rate
    warm = int(settings.latency_warmup_s * rate)
    measured = int(settings.latency_seconds * rate)
    total = warm + measured
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "linger.ms": 0,
            "acks": "1",
            "compression.type": "none",
            "enable.idempotence": False,
            "logger": RDKAFKA,
        }
    )
    producer.list_topics(topic, timeout=30)  # auto-creates the topic
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "bench-unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 500,
            "fetch.min.bytes": 1,
            "enable.partition.eof": False,
            "logger": RDKAFKA,
        }
    )
    start_offset = end_offset(broker.bootstrap, topic)
    consumer.assign([TopicPartition(topic, 0, max(start_offset, 0))])
    latencies: list[float] = []
    received = 0
    errors: list[str] = []
    stop = threading.Event()

    def consume() -> None:
        nonlocal received
        while not stop.is_set() and received < total:
            message = consumer.poll(0.1)  # consume(n, t) would wait for n messages
            if message is not None:
                now = time.perf_counter_ns()
                if message.error() is not None:
                    if len(errors) < 5:
                        errors.append(str(message.error()))
                    continue
                received += 1
                seq, sent = _STAMP.unpack_from(message.value())
                if seq >= warm:
                    latencies.append((now - sent) / 1e6)

    thread = threading.Thread(target=consume, name="latency-consumer", daemon=True)
    thread.start()
    time.sleep(0.5)  # let the consumer's first fetch park on the partition
    pad = b"\0" * (settings.small_size - _STAMP.size)
    begin = perf_counter()
    for seq in range(total):
        target = begin + seq / rate
        delay = target - perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, _STAMP.pack(seq, time.perf_counter_ns()) + pad)
        producer.poll(0)
    send_s = perf_counter() - begin
    producer.flush(30)
    deadline = time.monotonic() + 10
    while received < total and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)
    consumer.close()
    problems = [f"consumer error: {e}" for e in errors]
    if received != total:
        problems.append(f"received {received} of {total} messages")
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {
        "engine": broker.engine,
        "sent": total,
        "measured": len(latencies),
        "send_rate": total / send_s,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "problems": problems,
    }


# --- 5: start-up -----------------------------------------------------------------------------


IMPORTS = "import uvloop, kafkacompat.cli, kafkacompat.server"
"""What ``kafkacompat serve`` imports before it can listen."""


def time_python(code: str) -> float:
    start = perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return perf_counter() - start


def time_broker_start(work: Path, n: int) -> tuple[float, float, dict[str, int]]:
    """Popen to first accepted connection, and to the 'listening' log line; RSS when idle."""
    data_dir = work / f"startup-{n}"
    port = free_port()
    command = [*SERVE, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
               "--storage", "disk", "--log-level", "info"]  # fmt: skip
    start = perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        accepted = None
        while perf_counter() - start < STARTUP_WAIT_S:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    accepted = perf_counter() - start
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.0005)
        if accepted is None:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            fail(f"broker never accepted on port {port}: {err}")
        time.sleep(1.0)  # idle
        rss = rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=BROKER_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    started_ms = float("nan")
    for line in err.splitlines():
        if "started in" in line:
            with contextlib.suppress(ValueError):
                started_ms = float(line.rsplit("started in", 1)[1].split()[0])
    shutil.rmtree(data_dir, ignore_errors=True)
    return accepted, started_ms, rss


def bench_startup(settings: Settings, work: Path) -> dict[str, Any]:
    python_s: list[float] = []
    import_s: list[float] = []
    broker_s: list[float] = []
    internal_ms: list[float] = []
    rss: list[dict[str, int]] = []
    time_python("pass")  # warm the page cache for all three
    time_python(IMPORTS)
    time_broker_start(work, -1)
    for n in range(settings.startup_repeats):
        python_s.append(time_python("pass"))
        import_s.append(time_python(IMPORTS))
        accepted, started_ms, idle = time_broker_start(work, n)
        broker_s.append(accepted)
        internal_ms.append(started_ms)
        rss.append(idle)
    return {
        "python_pass_ms": min(python_s) * 1e3,
        "python_pass_median_ms": statistics.median(python_s) * 1e3,
        "imports_ms": min(import_s) * 1e3,
        "imports_median_ms": statistics.median(import_s) * 1e3,
        "broker_accept_ms": min(broker_s) * 1e3,
        "broker_accept_median_ms": statistics.median(broker_s) * 1e3,
        "broker_logged_start_ms": min(internal_ms),
        "x_python": min(broker_s) / min(python_s),
        "idle_rss_kib": min(r.get("VmRSS", 0) for r in rss),
    }


# --- profile ---------------------------------------------------------------------------------


REQUEST_ROOTS = {
    "buffer_updated",
    "get_buffer",
    "_work",
    "connection_made",
    "connection_lost",
    "eof_received",
}
"""kafkacompat/server.py's Connection callbacks: everything a request costs runs under them."""


def _is_import(func: tuple[str, int, str]) -> bool:
    filename, _line, name = func
    return (
        filename.startswith("<frozen")
        or name in ("<module>", "<built-in method builtins.exec>")
        or name == "<built-in method builtins.__import__>"
    )


def _where(filename: str, line: int, func: str) -> str:
    where = filename
    with contextlib.suppress(ValueError):
        where = str(Path(filename).resolve().relative_to(ROOT))
    return f"{func} ({where}:{line})" if line else func


def profile_produce(work: Path, out: Path, label: str, count: int, size: int) -> dict[str, Any]:
    """One memory-engine broker under cProfile for one acks=1 produce case.  The tops are
    given for the whole process and for the request path alone: the functions reachable in
    the call graph from the server's Connection callbacks, without walking into imports (lazy
    imports on the path count whole), so start-up drops out."""
    prefix = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "kafkacompat", "serve"]
    broker = BrokerProcess("memory", work / f"profile-{label}", prefix=prefix)
    try:
        result = produce_case(broker, f"bench-profile-{label}", count, size, "1")
    finally:
        code = broker.stop()
    if not out.exists():
        fail(f"the profiled broker wrote no profile (exit {code})")
    return {"label": label, "produce": result, "exit_code": code, **analyse_profile(out)}


def analyse_profile(out: Path) -> dict[str, Any]:
    rows = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    callees: dict[Any, set[Any]] = {}
    for func, (_cc, _nc, _tt, _ct, callers) in rows.items():
        for caller in callers:
            callees.setdefault(caller, set()).add(func)
    roots = [f for f in rows if f[0].endswith("kafkacompat/server.py") and f[2] in REQUEST_ROOTS]
    reachable = set(roots)
    todo = list(roots)
    while todo:
        func = todo.pop()
        if _is_import(func):
            continue  # a lazy import on the path: counted whole, not walked into
        for callee in callees.get(func, ()):
            if callee not in reachable:
                reachable.add(callee)
                todo.append(callee)

    def top(key: int, only: set[Any] | None, limit: int = 15) -> list[dict[str, Any]]:
        items = [item for item in rows.items() if only is None or item[0] in only]
        items.sort(key=lambda item: -item[1][key])
        return [
            {
                "function": _where(*func),
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
            for func, (_cc, calls, tottime, cumtime, _callers) in items[:limit]
        ]

    return {
        "file": str(out),
        "total_tottime_s": sum(v[2] for v in rows.values()),
        "request_path_tottime_s": sum(rows[f][2] for f in reachable),
        "by_cumtime": top(3, None),
        "by_tottime": top(2, None),
        "request_by_cumtime": top(3, reachable),
        "request_by_tottime": top(2, reachable),
    }


# --- output ----------------------------------------------------------------------------------


def print_produce(title: str, rows: list[dict[str, Any]], client: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(
        f"   {'engine':<8} {'acks':<4} {'seconds':>8} {'msgs/s':>10} {'MB/s':>8} {'x null':>7} "
        f"{'loop s':>7} {'brk CPU s':>9} {'q-full':>7}  problems"
    )
    null = {r["acks"]: r for r in rows if r["engine"] == "null"}
    for acks in ("1", "all"):
        for r in (r for r in rows if r["acks"] == acks):
            ref = null.get(acks)
            ratio = ref["seconds"] / r["seconds"] if ref else float("nan")
            print(
                f"   {r['engine']:<8} {r['acks']:<4} {r['seconds']:>8.2f} {r['msgs_per_s']:>10,.0f} "
                f"{r['mb_per_s']:>8,.1f} {ratio:>6.2f}x {r['loop_seconds']:>7.2f} "
                f"{r['broker_cpu_s']:>9.2f} {r['queue_full_waits']:>7,}  "
                f"{'; '.join(r['problems']) or '-'}"
            )
    ref = null.get("1")
    ratio = ref["seconds"] / client["seconds"] if ref else float("nan")
    print(
        f"   {'client':<8} {'-':<4} {client['seconds']:>8.2f} {client['msgs_per_s']:>10,.0f} "
        f"{client['mb_per_s']:>8,.1f} {ratio:>6.2f}x {client['seconds']:>7.2f} {'-':>9} "
        f"{client['queue_full_waits']:>7,}  -"
    )
    print(
        "   - seconds: first produce() to flush() returning; loop s: the produce() calls alone; "
        "brk CPU s: the broker process's user+system CPU over the case; q-full: produce() calls "
        "that met a full local queue (librdkafka default 100,000 msgs)\n"
        "   - client: the same produce() loop with no broker reachable, the local queue purged "
        "every ~100 MB: the client's own ceiling (its x null is against null acks=1)"
    )


def raw_write_case(directory: Path, total: int) -> dict[str, Any]:
    """The filesystem's own ceiling for the disk engine: os.write of ``total`` bytes in 1 MiB
    writes to a file beside the broker's segments (page cache and writeback included, no
    fsync, as the broker's appends), then the file is removed."""
    chunk = os.urandom(MiB)
    path = directory / "bench-raw-write.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    cpu_before = time.process_time()
    start = perf_counter()
    try:
        written = 0
        while written < total:
            written += os.write(fd, chunk[: min(MiB, total - written)])
        elapsed = perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return {
        "seconds": elapsed,
        "mb_per_s": mbps(total, elapsed),
        "cpu_s": time.process_time() - cpu_before,
    }


def print_results(results: dict[str, Any]) -> None:
    s = results["settings"]
    print(
        f"\n1. Produce {s['small_count']:,} x {s['small_size']}-byte records, 1 partition, "
        "linger.ms=5, batch.size=1048576, compression none; MB = 10**6 payload bytes",
        end="",
    )
    print_produce("", results["produce_small"], results["client_small"])
    print(
        f"\n2. Produce {s['big_count']:,} x {s['big_size'] // KiB} KiB records, same settings",
        end="",
    )
    print_produce("", results["produce_big"], results["client_big"])
    raw = results.get("raw_write_big")
    if raw is not None:
        disk = next(r for r in results["produce_big"] if r["engine"] == "disk" and r["acks"] == "1")
        print(
            f"   - filesystem ceiling: os.write of the same bytes in 1 MiB writes to the disk "
            f"engine's directory: {raw['seconds']:.2f} s, {raw['mb_per_s']:,.1f} MB/s "
            f"({raw['cpu_s']:.2f} s CPU); disk acks=1 is {raw['seconds'] / disk['seconds']:.2f}x it"
        )

    print("\n3. Consume from the disk engine: confluent-kafka Consumer, assign(), fetch.max.bytes "
          "50 MiB, max.partition.fetch.bytes 10 MiB; vs os.sendfile of the segment files")  # fmt: skip
    print(
        f"   {'records':<20} {'log MB':>8} {'sendfile MB/s':>14} {'consume MB/s':>13} "
        f"{'msgs/s':>11} {'x sendfile':>11} {'brk CPU s':>9}  problems"
    )
    for c in results["consume"]:
        print(
            f"   {c['count']:,} x {c['size']:<9,} {c['log_bytes'] / MB:>8,.0f} "
            f"{c['sendfile_mb_per_s']:>14,.0f} {c['consume_mb_per_s']:>13,.0f} "
            f"{c['consume_msgs_per_s']:>11,.0f} {c['x_sendfile']:>10.2f}x "
            f"{c['broker_cpu_s']:>9.2f}  "
            f"{'; '.join(c['problems']) or '-'}"
        )
    print("   - MB/s over the segment bytes (record framing included); goal x sendfile >= 0.5")

    print(
        f"\n4. Produce-to-consume latency, linger.ms=0, acks=1, {s['latency_rate']:,} msgs/s for "
        f"{s['latency_seconds']:.0f} s after {s['latency_warmup_s']:.1f} s warm-up, "
        "fetch.wait.max.ms=500, fetch.min.bytes=1"
    )
    print(
        f"   {'engine':<8} {'sent/s':>7} {'measured':>9} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}  problems"
    )
    for r in results["latency"]:
        print(
            f"   {r['engine']:<8} {r['send_rate']:>7,.0f} {r['measured']:>9,} {r['p50_ms']:>7.2f} "
            f"{r['p90_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.1f}  "
            f"{'; '.join(r['problems']) or '-'}"
        )

    st = results["startup"]
    print(f"\n5. Start-up (empty data dir, disk engine, best of {s['startup_repeats']}) and memory")
    print(f"   {'what':<52} {'best':>9} {'median':>9} {'x python':>9}")
    print(
        f"   {'python -c pass (baseline)':<52} {st['python_pass_ms']:>6.1f} ms "
        f"{st['python_pass_median_ms']:>6.1f} ms {1:>8.2f}x"
    )
    print(
        f"   {'python -c <the imports of serve, see below>':<52} {st['imports_ms']:>6.1f} ms "
        f"{st['imports_median_ms']:>6.1f} ms {st['imports_ms'] / st['python_pass_ms']:>8.2f}x"
    )
    print(
        f"   {'kafkacompat serve: Popen to accepted connection':<52} "
        f"{st['broker_accept_ms']:>6.1f} ms {st['broker_accept_median_ms']:>6.1f} ms "
        f"{st['x_python']:>8.2f}x   (goal <= 150 ms)"
    )
    print(f"   - imports of serve: python -c {IMPORTS!r}")
    print(f"   - the broker's own 'started in' log figure: {st['broker_logged_start_ms']:.0f} ms")
    print(
        f"   {'engine':<8} {'idle RSS after start':>21} {'RSS after benchmarks':>21} {'peak RSS':>9}"
    )
    for engine, m in results["memory"].items():
        print(
            f"   {engine:<8} {m['start'].get('VmRSS', 0) / 1024:>18.1f} MB "
            f"{m['end'].get('VmRSS', 0) / 1024:>18.1f} MB {m['end'].get('VmHWM', 0) / 1024:>6.0f} MB"
        )
    print(f"   - idle RSS goal <= 40 MB (MB here = MiB, from /proc/<pid>/status VmRSS); "
          f"start-up probe idle RSS {st['idle_rss_kib'] / 1024:.1f} MB")  # fmt: skip

    if results.get("client_log_lines"):
        print(f"\nlibrdkafka logged {results['client_log_lines']} lines; the first:")
        for line in results["client_log_first"]:
            print(f"   {line}")

    if results.get("broker_problems"):
        print("\nbroker stderr warnings/errors:")
        for engine, lines in results["broker_problems"].items():
            for line in lines[:20]:
                print(f"   [{engine}] {line}")

    for p in results.get("profile", []):
        r = p["produce"]
        print(
            f"\nProfile: memory-engine broker under cProfile ({p['file']}) during "
            f"{r['count']:,} x {r['size']:,} B acks=1 ({r['seconds']:.2f} s, "
            f"{r['mb_per_s']:,.1f} MB/s under the profiler); own time: whole process "
            f"{p['total_tottime_s']:.2f} s, request path {p['request_path_tottime_s']:.2f} s"
        )
        print(
            "   (uvloop runs in C: its socket reads and writes are own time of asyncio's "
            "Runner.run, which calls every callback)"
        )
        for key, label in (
            ("request_by_cumtime", "request path, by cumulative time"),
            ("request_by_tottime", "request path, by own time"),
            ("by_cumtime", "whole process (start-up imports included), by cumulative time"),
            ("by_tottime", "whole process, by own time"),
        ):
            print(f"   top 15, {label}:")
            print(f"     {'function':<78} {'calls':>9} {'own s':>7} {'cum s':>7}")
            for row in p[key]:
                print(
                    f"     {row['function'][-78:]:<78} {row['calls']:>9,} "
                    f"{row['tottime_s']:>7.3f} {row['cumtime_s']:>7.3f}"
                )


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/10 of the sizes (smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--repeats", type=int, help="produce/consume runs per case (best kept)")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="also profile a memory-engine broker during the 100-byte and the 10 KiB acks=1 "
        "produce (cProfile output to PREFIX.100b.prof and PREFIX.10k.prof; by default inside "
        "the temporary directory, removed at the end)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else DEFAULT
    if args.repeats:
        settings = Settings(**{**asdict(settings), "repeats": max(1, args.repeats)})

    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    per_repeat = 2 * (
        settings.small_count * (settings.small_size + 80) + settings.big_count * settings.big_size
    )
    needed = settings.repeats * per_repeat + 256 * MiB
    if shutil.disk_usage(base).free < needed:
        fail(f"{base} needs {needed / GiB:.1f} GiB free")

    emit = not args.json
    if emit:
        print(
            f"kafkacompat broker benchmark: Python {platform.python_version()} "
            f"({platform.python_implementation()}), {settings.mode} mode, {os.cpu_count()} CPUs, "
            f"confluent-kafka {__import__('confluent_kafka').version()[0]} "
            f"(librdkafka {__import__('confluent_kafka').libversion()[0]})"
        )
        print(
            "Client and brokers share this machine; absolute figures describe this run, compare "
            "the ratios (each against a baseline from the same run)."
        )
        sys.stdout.flush()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "settings": asdict(settings),
        "date": time.strftime("%Y-%m-%d"),
    }
    work = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-broker-", dir=base))
    brokers: dict[str, BrokerProcess] = {}
    try:
        # 5 first, while nothing else of ours runs.
        results["startup"] = bench_startup(settings, work)
        for engine in ENGINES:
            brokers[engine] = BrokerProcess(engine, work / f"data-{engine}")
        time.sleep(1.0)
        memory = {e: {"start": b.rss()} for e, b in brokers.items()}

        def produce_round(count: int, size: int, label: str) -> list[dict[str, Any]]:
            best: dict[tuple[str, str], dict[str, Any]] = {}
            for repeat in range(settings.repeats):
                for acks in ("1", "all"):
                    for engine in ENGINES:
                        topic = f"bench-{label}-acks{acks}-{repeat}"
                        r = produce_case(brokers[engine], topic, count, size, acks)
                        key = (engine, acks)
                        if key not in best or r["seconds"] < best[key]["seconds"]:
                            best[key] = r
                        if emit:
                            print(
                                f"   . {label} acks={acks} {engine}: {r['seconds']:.2f} s "
                                f"{'; '.join(r['problems'])}",
                                file=sys.stderr,
                            )
            return list(best.values())

        results["produce_small"] = produce_round(settings.small_count, settings.small_size, "100b")
        results["client_small"] = client_only_case(settings.small_count, settings.small_size)
        results["produce_big"] = produce_round(settings.big_count, settings.big_size, "10k")
        results["client_big"] = client_only_case(settings.big_count, settings.big_size)
        results["raw_write_big"] = raw_write_case(
            work / "data-disk", settings.big_count * settings.big_size
        )

        disk = brokers["disk"]
        results["consume"] = [
            bench_consume(settings, disk, "bench-100b-acks1-0", settings.small_count,
                          settings.small_size),
            bench_consume(settings, disk, "bench-10k-acks1-0", settings.big_count,
                          settings.big_size),
        ]  # fmt: skip
        results["latency"] = [
            bench_latency(settings, brokers[engine], "bench-latency")
            for engine in ("disk", "memory")
        ]
        time.sleep(1.0)
        for engine, broker in brokers.items():
            memory[engine]["end"] = broker.rss()
        results["memory"] = memory
        for broker in brokers.values():
            code = broker.stop()
            if code not in (0, None):
                broker.lines.append(f"(bench) exit code {code}\n")
        results["broker_problems"] = {
            e: b.problems() + [ln.rstrip() for ln in b.lines if ln.startswith("(bench)")]
            for e, b in brokers.items()
            if b.problems() or any(ln.startswith("(bench)") for ln in b.lines)
        }
        results["client_log_lines"] = CLIENT_LOG.count
        results["client_log_first"] = CLIENT_LOG.first
        if args.profile is not None:
            prefix = args.profile or str(work / "broker")
            results["profile"] = [
                profile_produce(work, Path(f"{prefix}.{label}.prof"), label, count, size)
                for label, count, size in (
                    ("100b", settings.small_count, settings.small_size),
                    ("10k", settings.big_count, settings.big_size),
                )
            ]
    finally:
        for broker in brokers.values():
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)


if __name__ == "__main__":
    main()
