#!/usr/bin/env python3
"""Codec throughput: cramjam (what kafkacompat ships) against the single-codec packages.

    python scripts/bench/bench_codecs.py [--size BYTES] [--seconds S]

The input is a real v2 records section (varint framing, keys, headers) around JSON-ish event
values, built with kafkacompat's own RecordBatchBuilder from a seeded generator, so runs are
comparable. Each library is timed on the same wire format as its rival (raw snappy against raw
snappy, lz4 frames against lz4 frames, ...), at the level Kafka's Java client uses (gzip 6, zstd 3,
lz4 fast). Throughput is uncompressed MB (10**6 bytes) per
second in both directions, best of several rounds. The ``kafkacompat`` rows time the codec table
itself: xerial framing for snappy, Java-style lz4 frames, and bounded decompression.

zstandard, lz4 and python-snappy are bench-only: installed in the dev venv, never dependencies.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cramjam
import lz4.frame
import snappy
import zstandard

from kafkacompat.records import compression
from kafkacompat.records.batch import RECORDS_OFFSET
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.records.compression import CompressionType

Compress = Callable[[Any], Any]
Decompress = Callable[[Any], Any]


@dataclass(frozen=True)
class Contender:
    codec: str
    name: str
    compress: Compress
    decompress: Decompress


def records_section(size: int, seed: int = 7) -> bytes:
    """About ``size`` bytes of uncompressed records: clickstream-like JSON values."""
    rng = random.Random(seed)
    pages = [f"/products/{rng.randrange(10_000)}" for _ in range(300)]
    agents = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"]
    builder = RecordBatchBuilder()
    timestamp = 1_700_000_000_000
    while True:
        timestamp += rng.randrange(0, 50)
        value = {
            "event_id": f"{rng.getrandbits(64):016x}",
            "user_id": rng.randrange(1_000_000),
            "type": rng.choice(["page_view", "click", "add_to_cart", "purchase"]),
            "page": rng.choice(pages),
            "referrer": rng.choice(
                [None, "https://www.google.com/", "https://news.ycombinator.com/"]
            ),
            "user_agent": rng.choice(agents),
            "price_cents": rng.randrange(100, 50_000),
            "session_ms": rng.randrange(600_000),
        }
        builder.append(
            json.dumps(value).encode(),
            key=str(value["user_id"]).encode(),
            headers=[("trace-id", rng.getrandbits(128).to_bytes(16, "big"))],
            timestamp=timestamp,
        )
        if len(builder) % 256 == 0:
            section = builder.build()[RECORDS_OFFSET:]
            if len(section) >= size:
                return section


def contenders(limit: int) -> list[Contender]:
    def ours(codec: CompressionType) -> tuple[Compress, Decompress]:
        return (
            lambda d: compression.compress(codec, d),
            lambda d: compression.decompress(codec, d, limit),
        )

    zstd_c = zstandard.ZstdCompressor(level=3)
    zstd_d = zstandard.ZstdDecompressor()
    return [
        Contender(
            "gzip", "cramjam", lambda d: cramjam.gzip.compress(d, level=6), cramjam.gzip.decompress
        ),
        Contender(
            "gzip", "stdlib gzip", lambda d: gzip.compress(d, compresslevel=6), gzip.decompress
        ),
        Contender("gzip", "kafkacompat", *ours(CompressionType.GZIP)),
        Contender("snappy", "cramjam", cramjam.snappy.compress_raw, cramjam.snappy.decompress_raw),
        Contender("snappy", "python-snappy", snappy.compress, snappy.uncompress),
        Contender("snappy", "kafkacompat", *ours(CompressionType.SNAPPY)),
        # cramjam's frame encoder defaults to an HC level (~8x slower); level 0 is lz4's fast mode.
        Contender(
            "lz4", "cramjam", lambda d: cramjam.lz4.compress(d, level=0), cramjam.lz4.decompress
        ),
        Contender(
            "lz4", "lz4", lambda d: lz4.frame.compress(d, block_linked=False), lz4.frame.decompress
        ),
        Contender("lz4", "kafkacompat", *ours(CompressionType.LZ4)),
        Contender(
            "zstd", "cramjam", lambda d: cramjam.zstd.compress(d, level=3), cramjam.zstd.decompress
        ),
        Contender("zstd", "zstandard", zstd_c.compress, zstd_d.decompress),
        Contender("zstd", "kafkacompat", *ours(CompressionType.ZSTD)),
    ]


def throughput(function: Callable[[Any], Any], argument: Any, nbytes: int, seconds: float) -> float:
    """Best-of-rounds MB/s, each round long enough to swamp timer noise."""
    calls = 1
    while True:  # calibrate to ~seconds/5 per round
        start = time.perf_counter()
        for _ in range(calls):
            function(argument)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 5:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(calls):
            function(argument)
        best = min(best, (time.perf_counter() - start) / calls)
    return nbytes / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20, help="input bytes (default 1 MiB)")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    args = parser.parse_args()

    data = records_section(args.size)
    print(
        f"input: {len(data):,} bytes of v2 records with JSON values (cramjam {cramjam.__version__})"
    )
    print()
    print(
        f"{'codec':<7} {'library':<14} {'ratio':>6} {'compress MB/s':>14} {'decompress MB/s':>16}"
    )
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for contender in contenders(limit=len(data)):
        packed = contender.compress(data)
        restored = contender.decompress(packed)
        assert bytes(restored) == data, f"{contender.codec}/{contender.name} does not round-trip"
        comp = throughput(contender.compress, data, len(data), args.seconds)
        decomp = throughput(contender.decompress, packed, len(data), args.seconds)
        results[(contender.codec, contender.name)] = (comp, decomp)
        ratio = len(data) / len(packed)
        print(
            f"{contender.codec:<7} {contender.name:<14} {ratio:>6.2f} {comp:>14,.0f} {decomp:>16,.0f}"
        )

    print()
    print("cramjam / other (above 1 means cramjam is faster)")
    print(f"{'codec':<7} {'other':<14} {'compress':>9} {'decompress':>11}")
    for (codec, name), (comp, decomp) in results.items():
        if name in ("cramjam", "kafkacompat"):
            continue
        base_comp, base_decomp = results[(codec, "cramjam")]
        print(f"{codec:<7} {name:<14} {base_comp / comp:>8.2f}x {base_decomp / decomp:>10.2f}x")


if __name__ == "__main__":
    main()
