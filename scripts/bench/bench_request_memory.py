#!/usr/bin/env python3
"""Request memory (issue 16): what large frames cost the broker, with and without a pool.

    python scripts/bench/bench_request_memory.py [--quick] [--connections N] [--rounds R]

Three parts, each against a baseline from the same run (the machine is shared and noisy):

1. The frame reader alone (sans I/O, no sockets): cutting 1 MiB and 4 MiB frames read in
   256 KiB pieces through ``get_buffer``/``buffer_updated``, as the event loop does.  The
   baseline ("before") allocates each large frame's buffer whole and zero-filled (``GROWTH``
   set past any frame size and ``bytearray`` as the allocator: what the reader did before,
   apart from the frame first filling the scratch buffer); "whole" the same without the
   zero fill; then the reader as it is, growing the buffer by ``GROWTH`` as bytes arrive,
   without and with a (never exhausted) pool: what the growth copies and the accounting
   cost.  Small frames
   (1 KiB, 64 per read) with and without a pool: they never touch it.
2. ``kafkacompat serve --storage null`` (nothing kept, so RSS is request memory only) with
   ``socket.request.max.bytes`` = 8 MiB, once unbounded (``queued.max.request.bytes=-1``,
   Kafka's default) and once per pool size: N connections (default 16) each send R (default
   3) produce requests of one 4 MiB batch, one after the other, all connections at once.
   Peak RSS (VmRSS sampled every 5 ms) over the idle RSS after a warm-up produce, the RSS
   1 s after the load (glibc keeps freed memory: see ``server.tune_allocator``), the
   time the load took, and peak growth as a ratio of the unbounded run's.
3. Claims: N connections each send a length prefix claiming 100 MiB and 14 more bytes, then
   1 MiB more of the claimed body; RSS growth after each step (the issue measured +800 MiB
   for 8 such connections sending 8 bytes, before the reader grew frames as bytes arrive).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kafkacompat.protocol import framing  # noqa: E402
from kafkacompat.protocol.framing import FrameReader, decode_response, encode_request  # noqa: E402
from kafkacompat.protocol.memory_pool import SimpleMemoryPool  # noqa: E402
from kafkacompat.protocol.messages.metadata_request import (  # noqa: E402
    MetadataRequest,
    MetadataRequestTopic,
)
from kafkacompat.protocol.messages.produce_request import (  # noqa: E402
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.request_header import RequestHeader  # noqa: E402
from kafkacompat.records.builder import RecordBatchBuilder  # noqa: E402

MiB = 1 << 20
_SIZE = struct.Struct(">i")
_LISTENING = re.compile(r"listening on \[?([^\s\]]+)\]?:(\d+)[ ,]")
TIMEOUT = 60.0

# --- 1. the reader alone -------------------------------------------------------------------


def time_reader(wire: bytes, read: int, pool: SimpleMemoryPool | None, repeats: int) -> float:
    """Best µs to cut ``wire`` (whole frames) read ``read`` bytes at a time."""
    view = memoryview(wire)
    frames: list[bytearray] = []
    reader = FrameReader(on_frame=frames.append, pool=pool)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            pos = 0
            while pos < len(wire):
                target = reader.get_buffer()
                n = min(len(target), read, len(wire) - pos)
                target[:n] = view[pos : pos + n]
                reader.buffer_updated(n)
                pos += n
            for frame in frames:
                reader.release(frame)
            frames.clear()
        best = min(best, (time.perf_counter() - start) / 10)
    return best * 1e6


def bench_reader(quick: bool) -> None:
    repeats = 7 if quick else 25
    growth = framing.GROWTH
    print("1. FrameReader alone: best us per stream, reads of 256 KiB (small: whole stream)")
    print(f"   {'stream':<20} {'before':>8} {'whole':>8} {'growth x' + str(growth):>10} "
          f"{'+ pool':>8} {'x before':>9} {'+ pool':>7} {'x whole':>8}")  # fmt: skip
    framing._frame_buffer(1)  # resolves the allocator
    allocate = framing._new_buffer
    gc.disable()
    try:
        for label, wire, read in (
            ("1 MiB frame", _SIZE.pack(MiB) + bytes(MiB), 256 << 10),
            ("4 MiB frame", _SIZE.pack(4 * MiB) + bytes(4 * MiB), 256 << 10),
            ("64 x 1 KiB frames", (_SIZE.pack(1024) + bytes(1024)) * 64, 1 << 30),
        ):
            pool = SimpleMemoryPool(1 << 40)
            before = whole = grown = pooled = float("inf")
            for _ in range(3):  # round-robin, so each case sees the same noise
                framing.GROWTH = 1 << 40
                framing._new_buffer = bytearray
                before = min(before, time_reader(wire, read, None, repeats))
                framing._new_buffer = allocate
                whole = min(whole, time_reader(wire, read, None, repeats))
                framing.GROWTH = growth
                grown = min(grown, time_reader(wire, read, None, repeats))
                pooled = min(pooled, time_reader(wire, read, pool, repeats))
            assert pool.used == 0
            print(f"   {label:<20} {before:>8.1f} {whole:>8.1f} {grown:>10.1f} {pooled:>8.1f} "
                  f"{grown / before:>8.2f}x {pooled / before:>6.2f}x "
                  f"{grown / whole:>7.2f}x")  # fmt: skip
    finally:
        framing.GROWTH = growth
        framing._new_buffer = allocate
        gc.enable()
    print("   before: each large frame's buffer allocated whole and zero-filled, as until this")
    print("   issue; whole: allocated whole, not zero-filled; growth: as the reader does now")


# --- the broker and a raw client -----------------------------------------------------------


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


class Broker:
    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        command = [sys.executable, "-m", "kafkacompat", "serve", "--host", "127.0.0.1"]
        command += ["--port", "0", "--storage", "null", "--data-dir", str(workdir / "data")]
        for key, value in settings.items():
            command += ["--set", f"{key}={value}"]
        self.proc = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.address = ("", 0)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                self.address = (match.group(1), int(match.group(2)))
                break
        if not self.address[1]:
            raise SystemExit("the broker did not start")
        # Keep draining stderr so the broker never blocks on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def request(body: ProduceRequest | MetadataRequest, version: int, correlation_id: int) -> bytes:
    assert body.API_KEY is not None
    header = RequestHeader(body.API_KEY, version, correlation_id, "bench")
    return encode_request(header, body)


def produce_frame(topic: str, value_size: int, correlation_id: int) -> bytes:
    builder = RecordBatchBuilder()
    builder.append(bytes(value_size), timestamp=int(time.time() * 1000))
    records = builder.build()
    data = PartitionProduceData(index=0, records=records)
    body = ProduceRequest(
        acks=1,
        timeout_ms=30_000,
        topic_data=[TopicProduceData(name=topic, partition_data=[data])],
    )
    return request(body, 9, correlation_id)


def exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, MiB))
        if not chunk:
            raise ConnectionError("closed by the broker")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def call(sock: socket.socket, frame: bytes, api_key: int, version: int) -> object:
    sock.sendall(frame)
    (size,) = _SIZE.unpack(exactly(sock, 4))
    return decode_response(api_key, version, exactly(sock, size))[1]


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, rss(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, rss(self.pid))


# --- 2. concurrent large produces ------------------------------------------------------------

VALUE = 4 * MiB - 200


def load_run(workdir: Path, queued: int, connections: int, rounds: int) -> dict[str, float]:
    settings = {
        "socket.request.max.bytes": str(8 * MiB),
        "message.max.bytes": str(8 * MiB),
        "queued.max.request.bytes": str(queued),
    }
    broker = Broker(workdir, settings)
    try:
        frame = produce_frame("bulk", VALUE, 1)
        with connect(broker.address) as sock:
            topics = [MetadataRequestTopic(name="bulk")]
            call(sock, request(MetadataRequest(topics=topics), 12, 0), 3, 12)
            for _ in range(2):  # warm-up: every code path of a large produce, twice
                call(sock, frame, 0, 9)
        time.sleep(0.5)
        idle = rss(broker.proc.pid)
        sockets = [connect(broker.address) for _ in range(connections)]
        failures: list[BaseException] = []
        start_line = threading.Barrier(connections + 1)

        def client(sock: socket.socket) -> None:
            try:
                start_line.wait(TIMEOUT)
                for _ in range(rounds):
                    response = call(sock, frame, 0, 9)
                    code = response.responses[0].partition_responses[0].error_code  # type: ignore[attr-defined]
                    assert code == 0, code
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in sockets]
        sampler = PeakRss(broker.proc.pid)
        sampler.start()
        for thread in threads:
            thread.start()
        start_line.wait(TIMEOUT)
        began = time.perf_counter()
        for thread in threads:
            thread.join(3 * TIMEOUT)
        took = time.perf_counter() - began
        sampler.done.set()
        sampler.join()
        for sock in sockets:
            sock.close()
        if failures:
            raise SystemExit(f"queued.max.request.bytes={queued}: {failures[0]!r}")
        time.sleep(1.0)
        after = rss(broker.proc.pid)
        return {
            "idle": idle / MiB,
            "peak": sampler.peak / MiB,
            "growth": (sampler.peak - idle) / MiB,
            "after": after / MiB,
            "seconds": took,
            "mb_s": connections * rounds * len(frame) / took / 1e6,
        }
    finally:
        broker.stop()


def bench_load(connections: int, rounds: int) -> None:
    print(
        f"\n2. {connections} connections x {rounds} produce requests of one 4 MiB batch, all "
        "at once; --storage null, socket.request.max.bytes=8 MiB; RSS in MiB"
    )
    print(f"   {'queued.max.request.bytes':<26} {'idle':>7} {'peak':>7} {'growth':>8} "
          f"{'x unbounded':>12} {'1 s after':>10} {'load s':>7} {'MB/s':>7}")  # fmt: skip
    unbounded: float | None = None
    for queued in (-1, 8 * MiB, 16 * MiB, 32 * MiB):
        with tempfile.TemporaryDirectory() as tmp:
            row = load_run(Path(tmp), queued, connections, rounds)
        if unbounded is None:
            unbounded = row["growth"]
        label = "-1 (unbounded, default)" if queued < 0 else f"{queued // MiB} MiB"
        print(f"   {label:<26} {row['idle']:>7.1f} {row['peak']:>7.1f} {row['growth']:>8.1f} "
              f"{row['growth'] / unbounded:>11.2f}x {row['after']:>10.1f} "
              f"{row['seconds']:>7.2f} {row['mb_s']:>7.0f}")  # fmt: skip


# --- 3. claims ---------------------------------------------------------------------------------


def bench_claims(connections: int) -> None:
    print(f"\n3. {connections} connections claiming 100 MiB each (default settings); RSS in MiB")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), {})
        try:
            time.sleep(0.5)
            idle = rss(broker.proc.pid)
            sockets = [connect(broker.address) for _ in range(connections)]
            for sock in sockets:
                sock.sendall(_SIZE.pack(100 * MiB) + b"\x00\x00\x00\x01" + bytes(10))
            time.sleep(1.0)
            claimed = rss(broker.proc.pid)
            for sock in sockets:
                sock.sendall(bytes(MiB))
            time.sleep(1.0)
            sent = rss(broker.proc.pid)
            for sock in sockets:
                sock.close()
        finally:
            broker.stop()
    print(f"   idle {idle / MiB:.1f}; after 18 bytes each: +{(claimed - idle) / MiB:.1f}; "
          f"after 1 MiB more each: +{(sent - idle) / MiB:.1f} "
          f"({(sent - idle) / (connections * MiB):.2f} x the bytes sent)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"request memory benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    bench_reader(args.quick)
    bench_load(args.connections, 1 if args.quick else args.rounds)
    bench_claims(args.connections)


if __name__ == "__main__":
    main()
