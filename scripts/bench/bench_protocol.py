#!/usr/bin/env python3
"""Protocol codec cost: the generated message classes, framing, and the package import.

    python scripts/bench/bench_protocol.py [--quick] [--json] [--repeats N]

Four measurements, each reported as a ratio to a baseline timed in the same run (the
machine is shared and noisy, so absolute figures only describe this run):

1. Produce request v9, 1 topic x 10 partitions, each ``records`` a real 64 KiB RecordBatch v2:
   ``framing.decode_request``, ``framing.encode_request`` (one joined ``bytes``) and the same
   encode left as a chunk list (no join: what a server hands to ``writelines``/writev),
   against a plain ``bytes`` copy of a buffer the size of the frame.
2. Fetch response v11 (last non-flexible) and v16 (flexible, topic ids, tagged fields), same
   shape: ``framing.encode_response`` (chunks, and chunks joined) and
   ``framing.decode_response``, against the same kind of copy.
3. Small requests (Metadata v12 for one topic, ApiVersions v3): header parse plus dispatch
   (``read_request_header``, a handler-table dict lookup, ``request_class``) and the full
   ``decode_request``, in ns, against a bare ``struct.unpack_from(">hhi", frame)``.
4. ``import kafkacompat.protocol`` in a fresh interpreter against ``python -c pass``, with
   and without cached bytecode, ``-X importtime`` totals, and how many generated message
   modules the import loads.

Every timing is the best of several repeats (median also kept in ``--json``), with the cases
of one group run round-robin so a baseline and its contenders see the same noise, and the
garbage collector off while timing (as ``timeit`` does). Nothing here asserts on time; the
only checks are that the codec round-trips the frames it is timed on.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import repeat
from pathlib import Path
from time import perf_counter_ns
from typing import Any, NoReturn
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kafkacompat.protocol import APIS, ApiKey, framing, request_class
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.fetch_response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.records.builder import RecordBatchBuilder

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 10
RECORDS_SIZE = 64 * 1024
TOPIC = "bench-events"
TOPIC_ID = UUID("5f0c3a4e-1b2d-4c6e-8f90-a1b2c3d4e5f6")
MB = 10**6

Loop = Callable[[int], object]
"""Runs the operation under test ``n`` times."""


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    target_ns: int
    """Wall time aimed at for one repeat of one case."""
    process_runs: int
    """Fresh interpreters started per import variant."""
    importtime_runs: int


DEFAULT = Settings("default", repeats=7, target_ns=300_000_000, process_runs=12, importtime_runs=5)
QUICK = Settings("quick", repeats=3, target_ns=100_000_000, process_runs=4, importtime_runs=2)


@dataclass(frozen=True)
class Timing:
    best_ns: float
    median_ns: float
    iterations: int


# --- timing ------------------------------------------------------------------------------


def call_loop(fn: Callable[[], object]) -> Loop:
    """A loop around ``fn``: fine for microsecond operations, too coarse for ns ones."""

    def loop(n: int) -> None:
        for _ in repeat(None, n):
            fn()

    return loop


def calibrate(loop: Loop, target_ns: int) -> int:
    n = 1
    while True:
        start = perf_counter_ns()
        loop(n)
        elapsed = perf_counter_ns() - start
        if elapsed >= target_ns // 10:
            return max(1, round(n * target_ns / elapsed))
        n *= 2


def time_group(cases: dict[str, Loop], settings: Settings) -> dict[str, Timing]:
    """Best and median ns per operation; the cases take turns within every repeat."""
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        counts = {name: calibrate(loop, settings.target_ns) for name, loop in cases.items()}
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(settings.repeats):
            for name, loop in cases.items():
                n = counts[name]
                start = perf_counter_ns()
                loop(n)
                samples[name].append((perf_counter_ns() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(min(s), statistics.median(s), counts[name]) for name, s in samples.items()}


# --- payloads ----------------------------------------------------------------------------


def _build_batch(values: list[bytes], base_offset: int) -> bytes:
    builder = RecordBatchBuilder(base_offset=base_offset)
    timestamp = 1_700_000_000_000
    for i, value in enumerate(values):
        builder.append(value, key=b"user-%06d" % i, timestamp=timestamp + i)
    return builder.build()


def record_batches(count: int, size: int, seed: int = 7) -> list[bytes]:
    """``count`` uncompressed RecordBatch v2, each exactly ``size`` bytes, distinct offsets."""
    rng = random.Random(seed)
    values: list[bytes] = []
    while len(_build_batch([*values, rng.randbytes(1000)], 0)) <= size:
        values.append(rng.randbytes(1000))
    while True:
        gap = size - len(_build_batch(values, 0))
        for length in range(gap, max(gap - 64, -1), -1):
            last = rng.randbytes(length)
            if len(_build_batch([*values, last], 0)) == size:
                values.append(last)
                return [_build_batch(values, i * len(values)) for i in range(count)]
        values.pop()  # the gap is smaller than one record's framing: make room


def produce_request(batches: list[bytes]) -> ProduceRequest:
    partitions = [PartitionProduceData(index=i, records=b) for i, b in enumerate(batches)]
    return ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[TopicProduceData(name=TOPIC, partition_data=partitions)],
    )


def fetch_response(batches: list[bytes]) -> FetchResponse:
    partitions = [
        PartitionData(
            partition_index=i,
            error_code=0,
            high_watermark=1_000_000 + i,
            last_stable_offset=1_000_000 + i,
            log_start_offset=0,
            aborted_transactions=[],
            preferred_read_replica=-1,
            records=b,
        )
        for i, b in enumerate(batches)
    ]
    return FetchResponse(
        throttle_time_ms=0,
        error_code=0,
        session_id=1234,
        responses=[FetchableTopicResponse(topic=TOPIC, topic_id=TOPIC_ID, partitions=partitions)],
    )


def request_frame(api_key: int, version: int, body: Message) -> bytes:
    """A request frame without its length prefix, as ``FrameReader.next_frame`` returns it."""
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=42,
        client_id="bench-client",
    )
    return framing.encode_request(header, body)[4:]


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench_protocol: {message}")


def check_records_views(message: Any, frame: bytes, partitions: list[Any]) -> None:
    for partition in partitions:
        records = partition.records
        if not isinstance(records, memoryview) or records.obj is not frame:
            fail(f"{type(message).__name__}: records is not a view of the frame")


# --- 1 and 2: large messages -------------------------------------------------------------


def row(name: str, timing: Timing, size: int, copy: Timing) -> dict[str, Any]:
    return {
        "name": name,
        "us_per_op": timing.best_ns / 1000,
        "median_us_per_op": timing.median_ns / 1000,
        "ops_per_s": 1e9 / timing.best_ns,
        "mb_per_s": size / MB / (timing.best_ns / 1e9),
        "x_copy": timing.best_ns / copy.best_ns,
        "iterations": timing.iterations,
    }


def bench_produce(settings: Settings, batches: list[bytes]) -> dict[str, Any]:
    version = 9
    request = produce_request(batches)
    header = RequestHeader(
        request_api_key=ApiKey.PRODUCE,
        request_api_version=version,
        correlation_id=42,
        client_id="bench-producer",
    )
    wire = framing.encode_request(header, request)
    frame = wire[4:]
    decoded_header, decoded = framing.decode_request(frame)
    if not isinstance(decoded, ProduceRequest) or decoded != request:
        fail("produce request does not round-trip")
    check_records_views(decoded, frame, decoded.topic_data[0].partition_data)
    if framing.encode_request(decoded_header, decoded) != wire:
        fail("produce request re-encodes differently")

    header_version = framing.request_header_version(ApiKey.PRODUCE, version)
    size_prefix = struct.Struct(">i")

    def encode_chunks() -> list[Any]:
        # encode_request without its final join (framing has no chunked request encoder).
        out: list[Any] = [b""]
        header.write(out, header_version)
        request.write(out, version)
        out[0] = size_prefix.pack(sum(len(c) for c in out))
        return out

    chunk_count = len(encode_chunks())
    source = bytearray(len(wire))
    timings = time_group(
        {
            "bytes copy of a frame-sized buffer (baseline)": call_loop(lambda: bytes(source)),
            "decode_request": call_loop(lambda: framing.decode_request(frame)),
            "encode_request (one joined bytes)": call_loop(
                lambda: framing.encode_request(header, request)
            ),
            "encode as chunks (no join)": call_loop(encode_chunks),
        },
        settings,
    )
    copy = timings["bytes copy of a frame-sized buffer (baseline)"]
    return {
        "title": f"Produce request v{version}: 1 topic x {PARTITIONS} partitions x "
        f"{RECORDS_SIZE:,}-byte RecordBatch v2, frame {len(wire):,} bytes with length prefix",
        "frame_bytes": len(wire),
        "chunks": chunk_count,
        "rows": [row(name, t, len(wire), copy) for name, t in timings.items()],
        "notes": [
            "decode keeps each records field as a memoryview into the frame "
            "(zero-copy, checked: records.obj is the frame)",
            "encode_request joins every chunk into one bytes object: one full copy of the payload",
            f"chunks: {chunk_count} pieces, the records still the caller's objects; "
            "a server can writev them",
        ],
    }


def bench_fetch(settings: Settings, batches: list[bytes], version: int) -> dict[str, Any]:
    response = fetch_response(batches)
    api_key = ApiKey.FETCH
    chunks = framing.encode_response(api_key, version, 7, response)
    wire = b"".join(chunks)
    frame = wire[4:]
    correlation_id, decoded = framing.decode_response(api_key, version, frame)
    if correlation_id != 7 or not isinstance(decoded, FetchResponse):
        fail(f"fetch response v{version} does not round-trip")
    check_records_views(decoded, frame, decoded.responses[0].partitions)
    if b"".join(framing.encode_response(api_key, version, 7, decoded)) != wire:
        fail(f"fetch response v{version} re-encodes differently")

    source = bytearray(len(wire))
    timings = time_group(
        {
            "bytes copy of a frame-sized buffer (baseline)": call_loop(lambda: bytes(source)),
            "encode_response (chunks)": call_loop(
                lambda: framing.encode_response(api_key, version, 7, response)
            ),
            "encode_response + b''.join": call_loop(
                lambda: b"".join(framing.encode_response(api_key, version, 7, response))
            ),
            "decode_response": call_loop(lambda: framing.decode_response(api_key, version, frame)),
        },
        settings,
    )
    copy = timings["bytes copy of a frame-sized buffer (baseline)"]
    flexible = "flexible" if FetchResponse.is_flexible(version) else "non-flexible"
    return {
        "title": f"Fetch response v{version} ({flexible}): 1 topic x {PARTITIONS} partitions x "
        f"{RECORDS_SIZE:,}-byte RecordBatch v2, frame {len(wire):,} bytes with length prefix",
        "frame_bytes": len(wire),
        "chunks": len(chunks),
        "rows": [row(name, t, len(wire), copy) for name, t in timings.items()],
        "notes": [
            f"encode_response returns {len(chunks)} chunks; decode keeps records as views",
        ],
    }


# --- 3: small requests -------------------------------------------------------------------


def _handler(*_args: object) -> None:
    return None


def bench_small(settings: Settings) -> dict[str, Any]:
    frames = {
        "Metadata v12, 1 topic": request_frame(
            ApiKey.METADATA,
            12,
            MetadataRequest(
                topics=[MetadataRequestTopic(name=TOPIC)],
                allow_auto_topic_creation=False,
            ),
        ),
        "ApiVersions v3": request_frame(
            ApiKey.API_VERSIONS,
            3,
            ApiVersionsRequest(
                client_software_name="kafkacompat-bench", client_software_version="1.0"
            ),
        ),
    }
    for what, frame in frames.items():
        framing.decode_request(frame)  # check it decodes; also imports the module
        if framing.encode_request(*framing.decode_request(frame))[4:] != frame:
            fail(f"{what} does not round-trip")

    handlers: dict[int, Callable[..., None]] = dict.fromkeys(APIS, _handler)
    unpack_from = struct.unpack_from
    read_request_header = framing.read_request_header
    decode_request = framing.decode_request
    baseline_frame = frames["Metadata v12, 1 topic"]

    def empty(n: int) -> None:
        for _ in repeat(None, n):
            pass

    def bare_unpack(n: int) -> None:
        frame = baseline_frame
        for _ in repeat(None, n):
            unpack_from(">hhi", frame)

    def header_dispatch(frame: bytes) -> Loop:
        def loop(n: int) -> None:
            for _ in repeat(None, n):
                header, _pos = read_request_header(memoryview(frame))
                _handler_fn = handlers[header.request_api_key]
                _cls = request_class(header.request_api_key)

        return loop

    def full_decode(frame: bytes) -> Loop:
        def loop(n: int) -> None:
            for _ in repeat(None, n):
                decode_request(frame)

        return loop

    baseline_name = "struct.unpack_from('>hhi', frame) (baseline)"
    cases: dict[str, Loop] = {"empty loop (in every row)": empty, baseline_name: bare_unpack}
    for what, frame in frames.items():
        cases[f"{what}: header + dispatch"] = header_dispatch(frame)
        cases[f"{what}: decode_request"] = full_decode(frame)
    timings = time_group(cases, settings)
    base = timings[baseline_name].best_ns
    return {
        "title": "Small requests: header parse + dispatch, full decode (ns per request)",
        "frame_bytes": {what: len(frame) for what, frame in frames.items()},
        "rows": [
            {
                "name": name,
                "ns_per_op": t.best_ns,
                "median_ns_per_op": t.median_ns,
                "ops_per_s": 1e9 / t.best_ns,
                "x_baseline": t.best_ns / base,
                "iterations": t.iterations,
            }
            for name, t in timings.items()
        ],
        "notes": [
            "header + dispatch = read_request_header(memoryview(frame)), "
            "handlers[api_key] (dict of api key -> function), request_class(api_key)",
        ],
    }


# --- 4: import cost ----------------------------------------------------------------------

IMPORT_VARIANTS = {
    "python -c pass": "pass",
    "import kafkacompat.protocol": "import kafkacompat.protocol",
    "import kafkacompat.protocol.framing": "import kafkacompat.protocol.framing",
}

MODULE_PROBE = """
import sys, {module}
names = sorted(sys.modules)
print(sum(n.startswith("kafkacompat.protocol.messages.") for n in names))
print(",".join(n.rsplit(".", 1)[1] for n in names if n.startswith("kafkacompat.protocol.messages.")))
print(sum(n == "kafkacompat" or n.startswith("kafkacompat.") for n in names))
"""


def _env(pycache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )


def _importtime(env: dict[str, str], module: str) -> dict[str, tuple[int, int]]:
    """module -> (self us, cumulative us) from one ``-X importtime`` run."""
    result = _run(["-X", "importtime", "-c", f"import {module}"], env)
    times: dict[str, tuple[int, int]] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            times[parts[2].strip()] = (int(parts[0]), int(parts[1]))
    return times


def bench_import(settings: Settings) -> dict[str, Any]:
    pycache = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-pycache-"))
    try:
        envs = {"no .pyc (compiled from source)": _env(None), "cached .pyc": _env(pycache)}
        # Fill the private bytecode cache (stdlib included: a prefix replaces __pycache__).
        _run(["-c", "import kafkacompat.protocol.framing"], envs["cached .pyc"])
        walls: dict[str, dict[str, list[int]]] = {
            env_name: {v: [] for v in IMPORT_VARIANTS} for env_name in envs
        }
        for _ in range(settings.process_runs):
            for env_name, env in envs.items():
                for variant, code in IMPORT_VARIANTS.items():
                    start = perf_counter_ns()
                    _run(["-c", code], env)
                    walls[env_name][variant].append(perf_counter_ns() - start)
        importtimes: dict[str, dict[str, tuple[int, int]]] = {}
        for env_name, env in envs.items():
            runs = [
                _importtime(env, "kafkacompat.protocol") for _ in range(settings.importtime_runs)
            ]
            importtimes[env_name] = min(
                runs, key=lambda t: t.get("kafkacompat.protocol", (0, 0))[1]
            )
        probes = {}
        for module in ("kafkacompat.protocol", "kafkacompat.protocol.framing"):
            out = _run(["-c", MODULE_PROBE.format(module=module)], envs["cached .pyc"]).stdout
            count, names, total = out.splitlines()
            probes[module] = {
                "message_modules": int(count),
                "names": [n for n in names.split(",") if n],
                "kafkacompat_modules": int(total),
            }
    finally:
        shutil.rmtree(pycache, ignore_errors=True)

    generated = sum(
        1
        for p in (ROOT / "kafkacompat" / "protocol" / "messages").glob("*.py")
        if p.name != "__init__.py"
    )
    result: dict[str, Any] = {"process_runs": settings.process_runs, "envs": {}}
    for env_name in envs:
        best = {v: min(w) for v, w in walls[env_name].items()}
        base = best["python -c pass"]
        times = importtimes[env_name]
        own = sorted(
            ((name, t[0]) for name, t in times.items() if name.startswith("kafkacompat")),
            key=lambda item: -item[1],
        )
        others = sorted(
            ((name, t[0]) for name, t in times.items() if not name.startswith("kafkacompat")),
            key=lambda item: -item[1],
        )
        result["envs"][env_name] = {
            "wall_ms": {v: ns / 1e6 for v, ns in best.items()},
            "median_wall_ms": {v: statistics.median(w) / 1e6 for v, w in walls[env_name].items()},
            "x_pass": {v: ns / base for v, ns in best.items()},
            "importtime_cumulative_ms": times.get("kafkacompat.protocol", (0, 0))[1] / 1000,
            "importtime_self_ms_kafkacompat": {name: us / 1000 for name, us in own[:4]},
            "importtime_self_ms_other": {name: us / 1000 for name, us in others[:4]},
        }
    result["modules"] = probes
    result["generated_message_modules"] = generated
    return result


# --- output ------------------------------------------------------------------------------


def print_large(section: dict[str, Any], number: str) -> None:
    print(f"\n{number}. {section['title']}")
    print(f"   {'operation':<46} {'us/op':>9} {'req/s':>9} {'MB/s':>8} {'x copy':>7}")
    for r in section["rows"]:
        print(
            f"   {r['name']:<46} {r['us_per_op']:>9.1f} {r['ops_per_s']:>9,.0f} "
            f"{r['mb_per_s']:>8,.0f} {r['x_copy']:>6.2f}x"
        )
    for note in section["notes"]:
        print(f"   - {note}")


def print_small(section: dict[str, Any]) -> None:
    print(f"\n3. {section['title']}")
    sizes = ", ".join(f"{what} {size} bytes" for what, size in section["frame_bytes"].items())
    print(f"   frames without length prefix: {sizes}")
    print(f"   {'operation':<50} {'ns/op':>8} {'req/s':>11} {'x base':>7}")
    for r in section["rows"]:
        print(
            f"   {r['name']:<50} {r['ns_per_op']:>8,.0f} {r['ops_per_s']:>11,.0f} "
            f"{r['x_baseline']:>6.1f}x"
        )
    for note in section["notes"]:
        print(f"   - {note}")


def print_import(section: dict[str, Any]) -> None:
    print(
        f"\n4. Import cost: fresh interpreter wall time, best of {section['process_runs']} "
        "(ratio to python -c pass)"
    )
    env_names = list(section["envs"])
    print(f"   {'':<38}" + "".join(f"{name:>34}" for name in env_names))
    for variant in IMPORT_VARIANTS:
        cells = []
        for env_name in env_names:
            env = section["envs"][env_name]
            ms = env["wall_ms"][variant]
            extra = ms - env["wall_ms"]["python -c pass"]
            cells.append(f"{ms:7.1f} ms (+{extra:5.1f}) {env['x_pass'][variant]:5.2f}x")
        print(f"   {variant:<38}" + "".join(f"{c:>34}" for c in cells))
    for env_name in env_names:
        env = section["envs"][env_name]
        own = ", ".join(f"{n} {ms:.1f}" for n, ms in env["importtime_self_ms_kafkacompat"].items())
        other = ", ".join(f"{n} {ms:.1f}" for n, ms in env["importtime_self_ms_other"].items())
        print(
            f"   -X importtime, {env_name}: kafkacompat.protocol cumulative "
            f"{env['importtime_cumulative_ms']:.1f} ms"
        )
        print(f"       largest self times (ms), ours: {own}")
        print(f"       largest self times (ms), stdlib/deps: {other}")
    total = section["generated_message_modules"]
    for module, probe in section["modules"].items():
        names = ", ".join(probe["names"]) or "none"
        print(
            f"   after `import {module}`: {probe['message_modules']} of {total} generated "
            f"message modules loaded ({names}); {probe['kafkacompat_modules']} kafkacompat "
            "modules in all"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10 s instead of about 60 s")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--repeats", type=int, help="timed repeats per case (best is reported)")
    args = parser.parse_args()
    settings = QUICK if args.quick else DEFAULT
    if args.repeats:
        settings = Settings(**{**asdict(settings), "repeats": args.repeats})

    batches = record_batches(PARTITIONS, RECORDS_SIZE)
    if not args.json:
        print(
            f"kafkacompat protocol codec benchmark: Python {platform.python_version()} "
            f"({platform.python_implementation()}), {settings.mode} mode"
        )
        print(
            f"best of {settings.repeats} repeats of ~{settings.target_ns / 1e6:.0f} ms per case, "
            "cases of a group interleaved, gc off while timing; MB = 10**6 bytes."
        )
        print(
            "Absolute figures describe this run on a shared machine; compare the ratios "
            "(x copy, x base), each against a baseline timed in the same group."
        )
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "settings": asdict(settings),
    }
    results["produce_v9"] = bench_produce(settings, batches)
    if not args.json:
        print_large(results["produce_v9"], "1")
    for version, number in ((11, "2a"), (16, "2b")):
        results[f"fetch_v{version}"] = bench_fetch(settings, batches, version)
        if not args.json:
            print_large(results[f"fetch_v{version}"], number)
    results["small"] = bench_small(settings)
    if not args.json:
        print_small(results["small"])
    results["import"] = bench_import(settings)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_import(results["import"])


if __name__ == "__main__":
    main()
