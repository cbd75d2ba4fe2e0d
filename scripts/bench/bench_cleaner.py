#!/usr/bin/env python3
"""Log compaction: one cleaner round over a compacted log, against reading the same bytes.

    python scripts/bench/bench_cleaner.py [--quick] [--json] [--dir D]

A ``cleanup.policy=compact`` log of 100-byte values under 10,000 keys (``--quick``: fewer
records), written as 10-record batches (uncompressed, and lz4) into 8 MiB segments and
flushed. Timed: one round of :func:`kafkacompat.storage.log_cleaner.clean` over every rolled
segment (offset map, filtering, writing the cleaned segments and their indexes, fsync) and the
swap. Baseline, in the same run on the same files: ``os.pread`` of every segment plus CRC-32C
of every batch (what a recovery of the same log costs). Best of 3, each on a fresh copy.

Absolute figures describe this machine only; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import crc32c

from kafkacompat.records.batch import ATTRIBUTES_OFFSET
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.records.compression import CompressionType
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.file_records import iter_file_batches
from kafkacompat.storage.log import Log
from kafkacompat.storage.log_cleaner import clean
from kafkacompat.storage.log_cleaner_manager import cleanable_range

KEYS = 10_000
PER_BATCH = 10
# Half random, half repeated bytes: lz4 has something to do, and segments still roll.
VALUES = [os.urandom(50) + b"v" * 50 for _ in range(1024)]
NOW = 1_800_000_000_000


def build(directory: Path, records: int, codec: CompressionType) -> LogConfig:
    config = LogConfig.from_props({"cleanup.policy": "compact", "segment.bytes": str(8 << 20)})
    log = Log(str(directory), config, now_ms=NOW)
    for start in range(0, records, PER_BATCH):
        builder = RecordBatchBuilder(compression_type=codec)
        for i in range(start, start + PER_BATCH):
            value = VALUES[i % len(VALUES)]
            builder.append(value, timestamp=NOW + i, key=b"key-%05d" % (i % KEYS))
        log.append(bytearray(builder.build()), leader_epoch=0, now_ms=NOW)
    log.close()
    return config


def read_baseline(directory: Path) -> float:
    started = time.perf_counter()
    for path in sorted(directory.glob("*.log")):
        fd = os.open(path, os.O_RDONLY)
        try:
            for batch, _ in iter_file_batches(fd, os.fstat(fd).st_size):
                crc32c.crc32c(batch[ATTRIBUTES_OFFSET:])
        finally:
            os.close(fd)
    return time.perf_counter() - started


def one_round(directory: Path, config: LogConfig) -> dict[str, float]:
    # Everything was flushed at close; the manager would pass this from its checkpoint.
    log = Log(str(directory), config, now_ms=NOW, recovery_point=1 << 62)
    started = time.perf_counter()
    plan = cleanable_range(log, None, NOW)
    assert plan is not None and plan.should_clean()
    plan.open_files()
    result = clean(plan, now_ms=NOW, map_budget_bytes=128 << 20)
    for cleaned in result.cleaned:
        assert log.replace_segments(cleaned, NOW)
    seconds = time.perf_counter() - started
    log.close()
    stats = result.stats
    return {
        "seconds": seconds,
        "bytes_read": stats.bytes_read,
        "bytes_written": stats.bytes_written,
        "records_read": stats.records_read,
        "records_retained": stats.records_retained,
    }


def run_case(work: Path, records: int, codec: CompressionType) -> dict[str, Any]:
    source = work / f"source-{codec.name.lower()}"
    config = build(source, records, codec)
    rounds: list[dict[str, float]] = []
    baselines: list[float] = []
    for n in range(3):
        copy = work / f"copy-{n}"
        shutil.copytree(source, copy)
        baselines.append(read_baseline(copy))
        rounds.append(one_round(copy, config))
        shutil.rmtree(copy)
    shutil.rmtree(source)
    best = min(rounds, key=lambda r: r["seconds"])
    baseline = min(baselines)
    return {
        "codec": codec.name.lower(),
        **best,
        "baseline_seconds": baseline,
        "mb_per_s": best["bytes_read"] / best["seconds"] / 1e6,
        "records_per_s": best["records_read"] / best["seconds"],
        "x_read": baseline / best["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 records instead of 1 M")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    args = parser.parse_args()
    records = 200_000 if args.quick else 1_000_000
    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-cleaner-", dir=base))
    try:
        results = [
            run_case(work, records, codec) for codec in (CompressionType.NONE, CompressionType.LZ4)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"kafkacompat cleaner benchmark: Python {platform.python_version()}, {os.cpu_count()} "
        f"CPUs; {records:,} records of 100 B under {KEYS:,} keys, {PER_BATCH} per "
        "batch, 8 MiB segments; best of 3; baseline: pread + CRC-32C of the same segments"
    )
    print(
        f"   {'codec':<6} {'MB read':>8} {'MB kept':>8} {'records kept':>13} {'round':>9} "
        f"{'MB/s':>7} {'records/s':>11} {'baseline':>9} {'x read':>7}"
    )
    for r in results:
        print(
            f"   {r['codec']:<6} {r['bytes_read'] / 1e6:>8.1f} {r['bytes_written'] / 1e6:>8.2f} "
            f"{r['records_retained']:>13,} {r['seconds']:>7.2f} s {r['mb_per_s']:>7.1f} "
            f"{r['records_per_s']:>11,.0f} {r['baseline_seconds'] * 1e3:>6.0f} ms "
            f"{r['x_read']:>6.3f}x"
        )


if __name__ == "__main__":
    main()
