#!/usr/bin/env python3
"""Disk storage engine cost: append, sendfile reads, crash recovery and start-up.

    python scripts/bench/bench_storage.py [--quick] [--json] [--repeats N] [--dir D] [--profile]

Four measurements, each against a baseline timed in the same run (the machine is shared and
noisy, so absolute figures only describe this run; read the ratios):

1. ``Log.append`` of 1 MiB and of 16 KiB RecordBatch v2 blobs (1 GiB and 256 MiB per repeat;
   ``--quick``: 256 MiB and 64 MiB), against ``os.write`` of the same bytes to a plain file.
   ``append`` checks CRCs and stamps offsets in place, so every call gets a fresh
   ``bytearray`` copy of one prebuilt batch; that copy is inside the Log figure, and a second
   baseline (``os.write`` of the same ``bytearray`` copy) shows what the copy alone costs.
   segment.bytes is Kafka's default 1 GiB, so no segment rolls (and no fsync) happen here.
2. Sendfile reads: walk a whole partition (1 GiB; ``--quick`` 256 MiB) with
   ``Log.read(offset, 1 MiB)`` and ``os.sendfile`` each FileRegion to a loopback TCP socket
   drained by a thread, against ``os.sendfile`` of the segment file in 1 MiB chunks to the same
   socket. Done for a partition of 1 MiB batches and one of 16 KiB batches (64 per read).
3. Recovery after a crash with the whole partition unflushed (the partitions of 2, dropped
   without flush or close): ``Log(..., clean_shutdown=False, recovery_point=0)`` revalidates
   every batch; against a clean reopen of the same data and against reading the file once
   with ``os.pread`` in 1 MiB chunks plus ``crc32c`` over them.
4. Start-up: a LogManager (disk engine) with 1,000 partitions of a few 16 KiB batches each,
   cleanly shut down, then ``LogManager(...).start()`` timed; against a Python loop that
   ``os.listdir``s the 1,000 partition folders (and one that also ``os.stat``s their files).

All data stays in the page cache (nothing drops caches), so reads are memory-speed on both
sides of every ratio. Every timing is the best of several repeats (median kept too), the
cases of a group run round-robin, the garbage collector is off while timing. Nothing asserts
on time; the only checks are that the logs hold, return and recover exactly what was written.
Everything is written under one temporary directory (``--dir`` to choose where), removed at
the end; it needs about 2.3 GiB free (0.8 GiB with ``--quick``): two partitions at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import queue
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import crc32c

from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.fdpool import FdPool
from kafkacompat.storage.log import DefaultLogSettings, Log
from kafkacompat.storage.manager import LogManager
from kafkacompat.storage.partition_dir import partition_dir_name

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 10**6
NOW_MS = 1_700_000_000_000
RECORD_VALUE = 1000
"""Bytes per record value in the prebuilt batches (records are never decoded here)."""
READ_CHUNK = MiB
"""``max_bytes`` of every Log.read and the chunk of every raw sendfile / pread."""
TOPIC = "bench-startup"
WAIT_S = 120.0
"""Longest wait for the drain thread; a stuck socket fails the run instead of hanging it."""


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    append_big_bytes: int
    """Bytes appended per repeat in 1 MiB batches."""
    append_small_bytes: int
    """Bytes appended per repeat in 16 KiB batches."""
    partition_bytes: int
    """Size of each of the two partitions read (2) and recovered (3)."""
    partitions: int
    batches_per_partition: int
    """16 KiB batches per partition in the start-up test."""


DEFAULT = Settings(
    "default",
    repeats=7,
    append_big_bytes=GiB,
    append_small_bytes=256 * MiB,
    partition_bytes=GiB,
    partitions=1000,
    batches_per_partition=6,
)
QUICK = Settings(
    "quick",
    repeats=3,
    append_big_bytes=256 * MiB,
    append_small_bytes=64 * MiB,
    partition_bytes=256 * MiB,
    partitions=1000,
    batches_per_partition=2,
)


@dataclass(frozen=True)
class Timing:
    best_s: float
    median_s: float
    samples: int


Case = Callable[[], float]
"""Runs the operation once and returns the seconds it took (set-up and clean-up untimed)."""


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench_storage: {message}")


# --- timing ------------------------------------------------------------------------------


def time_group(cases: dict[str, Case], repeats: int) -> dict[str, Timing]:
    """Best and median seconds per case; the cases take turns within every repeat."""
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, case in cases.items():
                samples[name].append(case())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(min(s), statistics.median(s), len(s)) for name, s in samples.items()}


def profile_top(fn: Callable[[], object], limit: int = 12) -> list[dict[str, Any]]:
    """One run of ``fn`` under cProfile: the functions with the most own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    top = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in rows[:limit]:
        where = filename
        with contextlib.suppress(ValueError):
            where = str(Path(filename).resolve().relative_to(ROOT))
        top.append(
            {
                "function": f"{func} ({Path(where).name}:{line})" if line else func,
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
        )
    return top


# --- payloads ----------------------------------------------------------------------------


def _build(values: list[bytes]) -> bytes:
    builder = RecordBatchBuilder(base_offset=0)
    for i, value in enumerate(values):
        builder.append(value, key=b"user-%06d" % i, timestamp=NOW_MS + i)
    return builder.build()


@dataclass(frozen=True)
class Batch:
    data: bytes
    records: int

    @property
    def size(self) -> int:
        return len(self.data)


def exact_batch(size: int, seed: int = 7) -> Batch:
    """An uncompressed RecordBatch v2 of exactly ``size`` bytes, ~1000-byte records."""
    rng = random.Random(seed)
    values = [rng.randbytes(RECORD_VALUE)]
    while True:
        gap = size - len(_build(values))
        if gap > 2 * RECORD_VALUE:
            values.extend(
                rng.randbytes(RECORD_VALUE)
                for _ in range(max(1, (gap - 2 * RECORD_VALUE) // (RECORD_VALUE + 40)))
            )
            continue
        for length in range(gap, max(gap - 64, -1), -1):
            last = [*values, rng.randbytes(length)]
            data = _build(last)
            if len(data) == size:
                return Batch(data, len(last))
        if len(values) == 1:
            fail(f"cannot build a batch of exactly {size} bytes")
        values.pop()  # the gap is smaller than one record's framing: make room


# --- helpers -----------------------------------------------------------------------------


def drop(log: Log) -> None:
    """Forget a log as a crash would: close its descriptors, flush nothing."""
    for segment in log.segments:
        segment.close_handles()


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fill_log(directory: Path, batch: Batch, total: int) -> Log:
    log = Log(str(directory), DefaultLogSettings(), now_ms=NOW_MS)
    for _ in range(total // batch.size):
        log.append(bytearray(batch.data), leader_epoch=0, now_ms=NOW_MS)
    return log


def mbps(size: int, seconds: float) -> float:
    return size / MB / seconds


# --- 1: append ---------------------------------------------------------------------------


def bench_append(
    settings: Settings, work: Path, batch: Batch, total: int, profile: bool
) -> dict[str, Any]:
    count = total // batch.size
    size = count * batch.size
    path = work / "raw.log"
    log_dir = work / "append-0"

    def raw(copy: bool) -> Case:
        def case() -> float:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
            try:
                data = batch.data
                start = perf_counter()
                if copy:
                    for _ in range(count):
                        write_all(fd, bytearray(data))
                else:
                    for _ in range(count):
                        write_all(fd, data)
                elapsed = perf_counter() - start
                if os.fstat(fd).st_size != size:
                    fail("raw write size mismatch")
            finally:
                os.close(fd)
                os.unlink(path)
            return elapsed

        return case

    def append_loop(log: Log) -> None:
        data = batch.data
        append = log.append
        for _ in range(count):
            append(bytearray(data), leader_epoch=0, now_ms=NOW_MS)

    def log_case() -> float:
        log = Log(str(log_dir), DefaultLogSettings(), now_ms=NOW_MS)
        try:
            start = perf_counter()
            append_loop(log)
            elapsed = perf_counter() - start
            if log.log_end_offset != count * batch.records or log.size_in_bytes != size:
                fail(f"log holds {log.size_in_bytes} bytes to offset {log.log_end_offset}")
            if len(log.segments) != 1:
                fail("a segment rolled during the append test")
        finally:
            drop(log)
            shutil.rmtree(log_dir)
        return elapsed

    baseline = "os.write of the prebuilt batch (baseline)"
    with_copy = "os.write of a bytearray copy per batch"
    contender = "Log.append(bytearray copy) "
    timings = time_group(
        {baseline: raw(False), with_copy: raw(True), contender: log_case},
        settings.repeats,
    )
    base = timings[baseline].best_s
    copy_base = timings[with_copy].best_s
    result: dict[str, Any] = {
        "title": f"Append: {count:,} x {batch.size:,}-byte batches ({batch.records} records of "
        f"~{RECORD_VALUE} bytes) = {size / MiB:,.0f} MiB per repeat, one segment, no fsync",
        "batch_bytes": batch.size,
        "batches": count,
        "bytes": size,
        "rows": [
            {
                "name": name,
                "best_s": t.best_s,
                "median_s": t.median_s,
                "mb_per_s": mbps(size, t.best_s),
                "median_mb_per_s": mbps(size, t.median_s),
                "us_per_batch": t.best_s / count * 1e6,
                "x_raw": base / t.best_s,
                "x_raw_copy": copy_base / t.best_s,
            }
            for name, t in timings.items()
        ],
        "log_overhead_us_per_batch": (timings[contender].best_s - copy_base) / count * 1e6,
    }
    if profile:

        def profiled() -> None:
            log = Log(str(log_dir), DefaultLogSettings(), now_ms=NOW_MS)
            try:
                append_loop(log)
            finally:
                drop(log)
                shutil.rmtree(log_dir)

        result["profile"] = profile_top(profiled)
    return result


# --- 2: sendfile reads -------------------------------------------------------------------


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
        buffer = memoryview(bytearray(READ_CHUNK))
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
            self.receiver.close()  # unblocks a sender stuck on a full socket buffer

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


def send_region(sock_fd: int, fd: int, position: int, length: int) -> None:
    while length:
        sent = os.sendfile(sock_fd, fd, position, length)
        if sent == 0:
            fail("sendfile sent nothing (file shorter than the region?)")
        position += sent
        length -= sent


def bench_read(
    settings: Settings, log: Log, batch: Batch, drain: Drain, profile: bool
) -> dict[str, Any]:
    size = log.size_in_bytes
    end_offset = log.log_end_offset
    paths = [segment.log_path for segment in log.segments]
    sock_fd = drain.sender.fileno()
    pool = FdPool(capacity=16)  # what a server holds to turn FileRegion paths into fds

    def raw_case() -> float:
        drain.expect(size)
        start = perf_counter()
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                file_size = os.fstat(fd).st_size
                for position in range(0, file_size, READ_CHUNK):
                    send_region(sock_fd, fd, position, min(READ_CHUNK, file_size - position))
            finally:
                os.close(fd)
        got = drain.wait()
        elapsed = perf_counter() - start
        if got != size:
            fail(f"raw sendfile delivered {got} of {size} bytes")
        return elapsed

    def walk(send: bool) -> tuple[int, int]:
        offset = 0
        sent = 0
        read = log.read
        while offset < end_offset:
            region = read(offset, READ_CHUNK).records
            if not isinstance(region, FileRegion) or region.length % batch.size:
                fail(f"read({offset}) returned {region!r}")
            if send:
                send_region(sock_fd, pool.get(region.path), region.position, region.length)
            sent += region.length
            offset += region.length // batch.size * batch.records
        return offset, sent

    def log_case() -> float:
        drain.expect(size)
        start = perf_counter()
        offset, sent = walk(send=True)
        got = drain.wait()
        elapsed = perf_counter() - start
        if offset != end_offset or sent != size or got != size:
            fail(f"log walk ended at offset {offset}, {sent} bytes sent, {got} received")
        return elapsed

    def lookup_case() -> float:
        start = perf_counter()
        offset, sent = walk(send=False)
        elapsed = perf_counter() - start
        if offset != end_offset or sent != size:
            fail("log.read walk does not cover the log")
        return elapsed

    baseline = "os.sendfile of the segment, 1 MiB chunks (baseline)"
    contender = "Log.read(offset, 1 MiB) + os.sendfile(region)"
    lookups = "Log.read walk alone (no send)"
    try:
        timings = time_group(
            {baseline: raw_case, contender: log_case, lookups: lookup_case}, settings.repeats
        )
        reads = len(range(0, size, READ_CHUNK))
        result: dict[str, Any] = {
            "title": f"Sendfile read of a {size / MiB:,.0f} MiB partition of {batch.size:,}-byte "
            f"batches to loopback TCP: {reads:,} reads of {READ_CHUNK // batch.size} batch(es)",
            "batch_bytes": batch.size,
            "bytes": size,
            "reads": reads,
            "rows": [
                {
                    "name": name,
                    "best_s": t.best_s,
                    "median_s": t.median_s,
                    "mb_per_s": mbps(size, t.best_s),
                    "median_mb_per_s": mbps(size, t.median_s),
                    "us_per_read": t.best_s / reads * 1e6,
                    "x_raw": timings[baseline].best_s / t.best_s,
                }
                for name, t in timings.items()
            ],
        }
        if profile:
            result["profile"] = profile_top(log_case)
    finally:
        pool.close_all()
    return result


# --- 3: recovery -------------------------------------------------------------------------


def bench_recovery(
    settings: Settings, directory: Path, batch: Batch, size: int, end_offset: int, profile: bool
) -> dict[str, Any]:
    log_path = directory / f"{0:020d}.log"

    def reopen(clean: bool) -> tuple[float, Log]:
        start = perf_counter()
        log = Log(
            str(directory),
            DefaultLogSettings(),
            now_ms=NOW_MS,
            clean_shutdown=clean,
            recovery_point=end_offset if clean else 0,
        )
        leo = log.log_end_offset  # a clean open derives it lazily: count that too
        elapsed = perf_counter() - start
        truncated = log.recovered_bytes_truncated
        drop(log)
        if leo != end_offset or truncated or log.size_in_bytes != size:
            fail(f"reopen gave end offset {leo} ({truncated} bytes cut), wrote to {end_offset}")
        return elapsed, log

    def recover_case() -> float:
        return reopen(clean=False)[0]

    def clean_case() -> float:
        return reopen(clean=True)[0]

    def raw_case(crc: bool) -> Case:
        def case() -> float:
            fd = os.open(log_path, os.O_RDONLY)
            try:
                start = perf_counter()
                total = 0
                checksum = 0
                while chunk := os.pread(fd, READ_CHUNK, total):
                    if crc:
                        checksum = crc32c.crc32c(chunk, checksum)
                    total += len(chunk)
                elapsed = perf_counter() - start
            finally:
                os.close(fd)
            if total != size:
                fail(f"raw read {total} of {size} bytes")
            return elapsed

        return case

    # The first recovery is the one after the crash: no index files exist yet.
    first_s, _ = reopen(clean=False)
    baseline = "os.pread 1 MiB chunks + crc32c (baseline)"
    contender = "Log(clean_shutdown=False, recovery_point=0)"
    timings = time_group(
        {
            baseline: raw_case(crc=True),
            "os.pread 1 MiB chunks alone": raw_case(crc=False),
            contender: recover_case,
            "Log(clean_shutdown=True) + log_end_offset": clean_case,
        },
        settings.repeats,
    )
    result: dict[str, Any] = {
        "title": f"Recovery of a {size / MiB:,.0f} MiB unflushed partition of {batch.size:,}-byte "
        f"batches ({size // batch.size:,} batches, one segment)",
        "batch_bytes": batch.size,
        "bytes": size,
        "first_recovery_s": first_s,
        "rows": [
            {
                "name": name,
                "best_s": t.best_s,
                "median_s": t.median_s,
                "mb_per_s": mbps(size, t.best_s),
                "us_per_batch": t.best_s / (size // batch.size) * 1e6,
                "x_raw": timings[baseline].best_s / t.best_s,
            }
            for name, t in timings.items()
        ],
    }
    if profile:
        result["profile"] = profile_top(recover_case)
    return result


# --- 4: start-up -------------------------------------------------------------------------


def bench_startup(settings: Settings, data: Path, batch: Batch, profile: bool) -> dict[str, Any]:
    partitions = settings.partitions
    per_partition = settings.batches_per_partition

    def now() -> int:
        return NOW_MS

    setup_start = perf_counter()
    manager = LogManager(data, node_id=1, engine="disk", now_ms=now)
    manager.start()
    manager.create_topic(TOPIC, partitions)
    for p in range(partitions):
        log = manager.get_log(TOPIC, p)
        for _ in range(per_partition):
            log.append(bytearray(batch.data), leader_epoch=0, now_ms=NOW_MS)
    created_s = perf_counter() - setup_start
    shutdown_start = perf_counter()
    manager.shutdown()
    first_shutdown_s = perf_counter() - shutdown_start
    end_offset = per_partition * batch.records
    partition_dirs = [data / partition_dir_name(TOPIC, p) for p in range(partitions)]
    startup = "LogManager(...).start()"
    touch = "log_end_offset of every partition, after start()"

    def start_case(with_leo: bool) -> Case:
        def case() -> float:
            start = perf_counter()
            manager = LogManager(data, node_id=1, engine="disk", now_ms=now)
            manager.start()
            started = perf_counter()
            if with_leo:
                ends = [log.log_end_offset for _, log in manager.logs()]
                elapsed = perf_counter() - started
            else:
                elapsed = started - start
                ends = [log.log_end_offset for _, log in manager.logs()]
            clean = manager.clean_shutdown
            manager.shutdown()  # untimed; writes the clean-shutdown marker for the next start
            if not clean or ends != [end_offset] * partitions:
                fail(f"restart: clean={clean}, end offsets {sorted(set(ends))}")
            return elapsed

        return case

    def listdir_case(stat: bool) -> Case:
        def case() -> float:
            start = perf_counter()
            seen = 0
            for directory in partition_dirs:
                names = os.listdir(directory)
                if stat:
                    for name in names:
                        os.stat(os.path.join(directory, name))
                seen += len(names)
            elapsed = perf_counter() - start
            if seen < partitions:
                fail("listdir found too few files")
            return elapsed

        return case

    baseline = f"os.listdir of the {partitions:,} partition folders (baseline)"
    timings = time_group(
        {
            baseline: listdir_case(stat=False),
            "os.listdir + os.stat of every file": listdir_case(stat=True),
            startup: start_case(with_leo=False),
            touch: start_case(with_leo=True),
        },
        settings.repeats,
    )
    shutdown_start = perf_counter()
    manager = LogManager(data, node_id=1, engine="disk", now_ms=now)
    manager.start()
    for _, log in manager.logs():
        _ = log.log_end_offset
    manager.shutdown()
    shutdown_s = perf_counter() - shutdown_start
    files_per_partition = len(os.listdir(partition_dirs[0]))
    result: dict[str, Any] = {
        "title": f"Start-up after a clean shutdown: {partitions:,} partitions x {per_partition} "
        f"x {batch.size // KiB} KiB batches ({files_per_partition} files per partition folder)",
        "partitions": partitions,
        "bytes_per_partition": per_partition * batch.size,
        "setup_create_and_append_s": created_s,
        "first_shutdown_s": first_shutdown_s,
        "start_leo_shutdown_s": shutdown_s,
        "rows": [
            {
                "name": name,
                "best_s": t.best_s,
                "median_s": t.median_s,
                "us_per_partition": t.best_s / partitions * 1e6,
                "x_baseline": t.best_s / timings[baseline].best_s,
            }
            for name, t in timings.items()
        ],
    }
    if profile:
        manager = LogManager(data, node_id=1, engine="disk", now_ms=now)
        result["profile"] = profile_top(manager.start)  # start() alone, as timed above
        manager.shutdown()
    return result


# --- output ------------------------------------------------------------------------------


def print_profile(section: dict[str, Any]) -> None:
    if "profile" not in section:
        return
    print("   cProfile, one run of the contender, by own time:")
    print(f"     {'function':<58} {'calls':>9} {'own s':>7} {'cum s':>7}")
    for r in section["profile"]:
        print(
            f"     {r['function'][:58]:<58} {r['calls']:>9,} {r['tottime_s']:>7.3f} "
            f"{r['cumtime_s']:>7.3f}"
        )


def print_append(section: dict[str, Any], number: str) -> None:
    print(f"\n{number}. {section['title']}")
    print(
        f"   {'operation':<44} {'best s':>7} {'MB/s':>7} {'med MB/s':>8} {'us/batch':>9} "
        f"{'x raw':>6} {'x raw+copy':>10}"
    )
    for r in section["rows"]:
        print(
            f"   {r['name']:<44} {r['best_s']:>7.3f} {r['mb_per_s']:>7,.0f} "
            f"{r['median_mb_per_s']:>8,.0f} {r['us_per_batch']:>9.1f} {r['x_raw']:>5.2f}x "
            f"{r['x_raw_copy']:>9.2f}x"
        )
    print(
        f"   - Log.append costs {section['log_overhead_us_per_batch']:.1f} us per batch over "
        "os.write of the same copy (x raw = raw time / this time: 1.00x is raw speed)"
    )
    print_profile(section)


def print_read(section: dict[str, Any], number: str) -> None:
    print(f"\n{number}. {section['title']}")
    print(
        f"   {'operation':<52} {'best s':>7} {'MB/s':>7} {'med MB/s':>8} {'us/read':>8} "
        f"{'x raw':>6}"
    )
    for r in section["rows"]:
        print(
            f"   {r['name']:<52} {r['best_s']:>7.3f} {r['mb_per_s']:>7,.0f} "
            f"{r['median_mb_per_s']:>8,.0f} {r['us_per_read']:>8.1f} {r['x_raw']:>5.2f}x"
        )
    print_profile(section)


def print_recovery(section: dict[str, Any], number: str) -> None:
    print(f"\n{number}. {section['title']}")
    print(
        f"   {'operation':<52} {'best ms':>8} {'med ms':>8} {'MB/s':>9} {'us/batch':>9} "
        f"{'x raw':>6}"
    )
    for r in section["rows"]:
        print(
            f"   {r['name']:<52} {r['best_s'] * 1e3:>8.1f} {r['median_s'] * 1e3:>8.1f} "
            f"{r['mb_per_s']:>9,.0f} {r['us_per_batch']:>9.2f} {r['x_raw']:>5.2f}x"
        )
    print(
        f"   - first recovery after the crash (no index files yet, gc on): "
        f"{section['first_recovery_s'] * 1e3:.1f} ms"
    )
    print_profile(section)


def print_startup(section: dict[str, Any], number: str) -> None:
    print(f"\n{number}. {section['title']}")
    print(f"   {'operation':<52} {'best ms':>8} {'med ms':>8} {'us/part':>8} {'x base':>7}")
    for r in section["rows"]:
        print(
            f"   {r['name']:<52} {r['best_s'] * 1e3:>8.1f} {r['median_s'] * 1e3:>8.1f} "
            f"{r['us_per_partition']:>8.1f} {r['x_baseline']:>6.1f}x"
        )
    print(
        f"   - untimed: create topic + append {section['setup_create_and_append_s']:.2f} s, "
        f"first shutdown {section['first_shutdown_s']:.2f} s, start + LEO sweep + shutdown "
        f"{section['start_leo_shutdown_s']:.2f} s"
    )
    print_profile(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 30 s instead of 2-3 min")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--repeats", type=int, help="timed repeats per case (best is reported)")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    parser.add_argument(
        "--profile", action="store_true", help="also run each contender once under cProfile"
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else DEFAULT
    if args.repeats:
        settings = Settings(**{**asdict(settings), "repeats": max(1, args.repeats)})

    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    needed = max(2 * settings.partition_bytes, settings.append_big_bytes) + 256 * MiB
    free = shutil.disk_usage(base).free
    if free < needed:
        fail(f"{base} has {free / GiB:.1f} GiB free, {needed / GiB:.1f} GiB needed")

    big = exact_batch(MiB)
    small = exact_batch(16 * KiB)
    emit = not args.json
    if emit:
        print(
            f"kafkacompat storage benchmark: Python {platform.python_version()} "
            f"({platform.python_implementation()}), {settings.mode} mode, {os.cpu_count()} CPUs"
        )
        print(
            f"best of {settings.repeats} repeats, cases of a group interleaved, gc off while "
            "timing; MB = 10**6 bytes, MiB = 2**20; page cache warm (no caches dropped)."
        )
        print(
            "Absolute figures describe this run on a shared machine; compare the ratios, each "
            "against a baseline timed in the same group."
        )
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "settings": asdict(settings),
    }
    work = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-storage-", dir=base))
    try:
        results["append_1mib"] = bench_append(
            settings, work, big, settings.append_big_bytes, args.profile
        )
        if emit:
            print_append(results["append_1mib"], "1a")
        results["append_16kib"] = bench_append(
            settings, work, small, settings.append_small_bytes, args.profile
        )
        if emit:
            print_append(results["append_16kib"], "1b")

        partitions = {"1mib": big, "16kib": small}
        logs = {
            key: fill_log(work / f"part-{key}-0", batch, settings.partition_bytes)
            for key, batch in partitions.items()
        }
        drain = Drain()
        try:
            for (key, batch), number in zip(partitions.items(), ("2a", "2b"), strict=True):
                results[f"read_{key}"] = bench_read(settings, logs[key], batch, drain, args.profile)
                if emit:
                    print_read(results[f"read_{key}"], number)
        finally:
            drain.close()
        for (key, batch), number in zip(partitions.items(), ("3a", "3b"), strict=True):
            log = logs[key]
            size, end_offset = log.size_in_bytes, log.log_end_offset
            drop(log)  # the crash: nothing flushed, no index written, no clean close
            results[f"recovery_{key}"] = bench_recovery(
                settings, Path(log.directory), batch, size, end_offset, args.profile
            )
            if emit:
                print_recovery(results[f"recovery_{key}"], number)
            shutil.rmtree(log.directory)

        results["startup"] = bench_startup(settings, work / "startup", small, args.profile)
        if emit:
            print_startup(results["startup"], "4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
