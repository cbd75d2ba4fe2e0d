#!/usr/bin/env python3
"""kafkacompat and franz-go's kfake side by side, in one run (issue 12; first figures only).

Usage: .venv/bin/python scripts/bench/bench_vs_kfake.py [--runs 3] [--records 1000000]
       [--kfake PATH] [--json]

Every figure is measured on a fresh broker of each kind, alternating kafkacompat and kfake run
by run, and reported as median (min-max) with the ratio kafkacompat / kfake (for times and
memory above 1 is worse, for rates below 1 is worse).  Figures so far:

- spawn -> first connection accepted, spawn -> first ApiVersions answered;
- idle RSS, half a second after the first ApiVersions;
- produce N x 100 B, acks=all (confluent-kafka, linger.ms=5, batch.size=1 MiB);
- consume the same N records with default consumer settings, timed from the first message.

kfake is a measuring peer only, built offline from ``../shared/peers/kfake`` (``build.sh``)
into a cache folder on first use; where ``../shared`` is absent the kfake column is skipped
with the reason printed.  Both brokers keep their data on disk (kfake with ``-data-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from kafkacompat.protocol.framing import decode_response, encode_request
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.request_header import RequestHeader

REPO = Path(__file__).resolve().parents[2]
PEER = REPO.parent / "shared" / "peers" / "kfake"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafkacompat-kfake"
WAIT_S = 30.0
VALUE = b"x" * 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kfake_binary(given: str | None) -> tuple[Path | None, str]:
    """The kfake binary, built on first use; None and the reason where it cannot be had."""
    if given:
        return Path(given), ""
    binary = CACHE / "kfake"
    if binary.exists():
        return binary, ""
    if not (PEER / "build.sh").exists():
        return None, f"{PEER} is absent (the kfake peer lives in ../shared beside the checkout)"
    built = subprocess.run(
        ["bash", str(PEER / "build.sh"), str(CACHE)], capture_output=True, text=True, timeout=600
    )
    if built.returncode != 0 or not binary.exists():
        return None, f"kfake did not build: {built.stderr.strip()[-500:]}"
    return binary, ""


class Broker:
    """One broker process on a fresh port and data dir."""

    def __init__(self, kind: str, argv: Callable[[int, Path], list[str]], work: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.data = work / f"{kind}-{uuid.uuid4().hex[:8]}"
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv(self.port, self.data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_accepting(self) -> float:
        deadline = self.started + WAIT_S
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return (time.perf_counter() - self.started) * 1000
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(f"{self.kind} exited with {self.process.returncode}") from None
                time.sleep(0.0005)
        raise SystemExit(f"{self.kind} accepted no connection in {WAIT_S}s")

    def wait_api_versions(self) -> float:
        header = RequestHeader(
            request_api_key=18, request_api_version=3, correlation_id=1, client_id="bench"
        )
        frame = encode_request(
            header, ApiVersionsRequest(client_software_name="bench", client_software_version="1")
        )
        deadline = self.started + WAIT_S
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(frame)
                    stream = sock.makefile("rb")
                    (size,) = struct.unpack(">i", stream.read(4))
                    decode_response(18, 3, stream.read(size))
                    return (time.perf_counter() - self.started) * 1000
            except (OSError, struct.error):
                time.sleep(0.0005)
        raise SystemExit(f"{self.kind} answered no ApiVersions in {WAIT_S}s")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT_S)
        shutil.rmtree(self.data, ignore_errors=True)


def produce(bootstrap: str, topic: str, records: int) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(WAIT_S)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20}
    )
    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, VALUE, partition=0)
                break
            except BufferError:
                producer.poll(0.005)
    if producer.flush(WAIT_S * 4):
        raise SystemExit(f"records still unacknowledged after {WAIT_S * 4}s")
    return records / (time.perf_counter() - started)


def consume(bootstrap: str, topic: str, records: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = 0
        first = 0.0
        deadline = time.perf_counter() + WAIT_S * 4
        while got < records:
            if time.perf_counter() > deadline:
                raise SystemExit(f"consumed {got} of {records} in {WAIT_S * 4}s")
            messages = consumer.consume(10_000, 1.0)
            if messages and not first:
                first = time.perf_counter()
            got += sum(1 for m in messages if m.error() is None)
        return records / (time.perf_counter() - first)
    finally:
        consumer.close()


def one_run(broker: Broker, records: int) -> dict[str, float]:
    try:
        accept_ms = broker.wait_accepting()
        api_versions_ms = broker.wait_api_versions()
        time.sleep(0.5)
        rss = broker.rss_mib()
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        produce_rate = produce(broker.bootstrap, topic, records)
        consume_rate = consume(broker.bootstrap, topic, records)
    finally:
        broker.stop()
    return {
        "spawn -> first connection accepted, ms": accept_ms,
        "spawn -> first ApiVersions answered, ms": api_versions_ms,
        "idle RSS, MiB": rss,
        f"produce {records:,} x 100 B acks=all, msg/s": produce_rate,
        f"consume {records:,} x 100 B, default settings, msg/s": consume_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--kfake", help="a kfake binary (default: build from ../shared)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    kfake, why_not = kfake_binary(args.kfake)
    if kfake is None:
        print(f"kfake skipped: {why_not}", file=sys.stderr)
    kinds: dict[str, Callable[[int, Path], list[str]]] = {
        "kafkacompat": lambda port, data: [
            sys.executable,
            "-m",
            "kafkacompat",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ]
    }
    if kfake is not None:
        kinds["kfake"] = lambda port, data: [
            str(kfake), "-port", str(port), "-data-dir", str(data), "-partitions", "1"
        ]  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-vs-kfake-") as work:
        for run in range(args.runs):
            order = list(kinds) if run % 2 == 0 else list(reversed(kinds))
            for kind in order:
                results[kind].append(one_run(Broker(kind, kinds[kind], Path(work)), args.records))
    report: dict[str, Any] = {}
    for figure in results["kafkacompat"][0]:
        row: dict[str, Any] = {}
        for kind, runs in results.items():
            values = [r[figure] for r in runs]
            row[kind] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
        if "kfake" in row:
            row["ratio"] = row["kafkacompat"]["median"] / row["kfake"]["median"]
        report[figure] = row
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.runs} runs each, alternating; median (min-max); ratio = kafkacompat / kfake")
    for figure, row in report.items():
        cells = [
            f"{kind} {v['median']:,.1f} ({v['min']:,.1f}-{v['max']:,.1f})"
            for kind, v in row.items()
            if kind != "ratio"
        ]
        ratio = f"  ratio {row['ratio']:.2f}" if "ratio" in row else ""
        print(f"{figure:<52} " + "   ".join(cells) + ratio)


if __name__ == "__main__":
    main()
