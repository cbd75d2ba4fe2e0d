"""A one-minute soak run (``scripts/bench/soak``) survives, and gives back what it took.

The script starts its own broker and drives it with confluent-kafka and raw sockets; this test
runs it as a user would, in a child process, and reads the summary it writes. The growth goals
are not asserted: a minute is too short for a slope to mean anything (the 30-minute figures
are in scripts/bench/RESULTS.md). What a minute does show: the broker is alive with no
traceback, every kind of load ran, client errors stayed rare, and once the load stopped the
broker's sockets and other descriptors came back to the baseline, with none left open on a
deleted file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "soak"
RUN_TIMEOUT_S = 120.0
"""One minute of load, its start-up, the clients' closing and up to 15 s of settling."""


def test_one_minute_soak(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    argv = [sys.executable, str(SOAK), "--minutes", "1", "--report-every", "15"]
    argv += ["--settle", "15", "--dir", str(tmp_path / "work"), "--json", str(summary_path)]
    run = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    summary = json.loads(summary_path.read_text())
    verdict = summary["verdict"]
    assert not verdict["broker_died"], output
    assert verdict["broker_tracebacks"] == 0, output
    assert summary["broker_exit_code"] == 0, output
    assert len(summary["rows"]) == 4, output

    totals = summary["totals"]
    assert totals.get("produced", 0) > 10_000, output
    assert totals.get("consumed", 0) > 10_000, output
    # The churners' joins and the vanishers' (joined, synced, then reset without LeaveGroup).
    assert totals.get("joins", 0) - totals.get("vanished", 0) > 20, output
    assert totals.get("vanished", 0) > 5, output
    assert totals.get("topics_created", 0) > 5, output
    assert totals.get("topics_deleted", 0) > 5, output
    assert totals.get("dropped", 0) > 100, output
    assert all(rate <= 0.01 for rate in summary["error_rates"].values()), output

    baseline, final = summary["baseline"], summary["final"]
    assert verdict["descriptors_back_to_baseline"], output
    assert final["sockets"] <= baseline["sockets"], output
    assert final["other"] <= baseline["other"], output
    assert final["deleted_files"] == 0, output
    # Segment files may stay open in the storage's descriptor pool, but only files that
    # still exist (beside them: the data directory's lock).
    assert final["data_files"] <= summary["segment_files"] + 2, output
