#!/usr/bin/env python3
"""Two builds of kafkacompat side by side: one benchmark script run under each build's Python,
alternately, and every figure given as a ratio of the two medians.

    python scripts/bench/compare_builds.py --baseline OLD/.venv/bin/python \\
        [--candidate NEW/.venv/bin/python] [--rounds 3] [--only KEY,...] -- SCRIPT [ARGS...]

SCRIPT must accept ``--json`` and print one JSON object (``bench_broker.py``,
``bench_storage.py``...); it is run as ``PYTHON SCRIPT --json ARGS``, so each build's
``kafkacompat serve`` is the one its venv installs, and the script itself is the same for
both.  A build of an older commit is a ``git worktree`` with a venv of its own; copy the
script into that tree and name the copy for the baseline with ``--baseline-script`` when the
script imports the package from its own tree (``bench_broker.py`` runs ``python -c`` there).  Rounds
alternate baseline, candidate, baseline, ... so that the shared machine's noise falls on both.

Figures are the JSON's numeric leaves, named by path; list entries are named by their
``engine``/``acks``/``topic`` fields when they have them.  ``ratio`` is candidate / baseline:
for rates (``*_per_s``) above 1 is better, for times, CPU and memory below 1 is better.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

_LABELS = ("engine", "acks", "topic")
_SKIP = ("settings.", "count", "size", "end_offset", "repeats", "queue_full_waits")


def _label(entry: dict[str, Any], index: int) -> str:
    parts = [str(entry[key]) for key in _LABELS if key in entry]
    return "[" + ",".join(parts) + "]" if parts else f"[{index}]"


def figures(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from figures(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            label = _label(item, index) if isinstance(item, dict) else f"[{index}]"
            yield from figures(item, path + label)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


def _better(path: str, ratio: float) -> str:
    if "per_s" in path:
        return "better" if ratio > 1.05 else "worse" if ratio < 0.95 else "same"
    return "better" if ratio < 0.95 else "worse" if ratio > 1.05 else "same"


def run(python: str, script: list[str]) -> dict[str, float]:
    done = subprocess.run(
        [python, script[0], "--json", *script[1:]], capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        sys.exit(f"{python} {' '.join(script)} failed:\n{done.stderr[-2000:]}")
    return dict(figures(json.loads(done.stdout)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the older build's python")
    parser.add_argument("--candidate", default=sys.executable, help="the newer build's python")
    parser.add_argument("--baseline-script", help="the script's copy in the baseline's tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated substrings: keep matching figures")
    parser.add_argument("script", nargs="+", help="the benchmark script and its arguments")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "candidate": []}
    for round_ in range(args.rounds):
        for name in ("baseline", "candidate"):
            print(f"round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            script = list(args.script)
            if name == "baseline" and args.baseline_script:
                script[0] = args.baseline_script
            runs[name].append(run(getattr(args, name), script))
    wanted = args.only.split(",") if args.only else None
    paths = [p for p in runs["candidate"][0] if p in runs["baseline"][0]]
    print(f"{'figure':<60} {'baseline':>12} {'candidate':>12} {'ratio':>7}")
    for path in paths:
        if any(skip in path for skip in _SKIP) or (wanted and not any(w in path for w in wanted)):
            continue
        old = statistics.median(r[path] for r in runs["baseline"] if path in r)
        new = statistics.median(r[path] for r in runs["candidate"] if path in r)
        ratio = new / old if old else float("nan")
        print(f"{path[-60:]:<60} {old:>12.4g} {new:>12.4g} {ratio:>7.2f} {_better(path, ratio)}")
    print(
        f"\nmedians of {args.rounds} alternating rounds; ratio = candidate / baseline",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
