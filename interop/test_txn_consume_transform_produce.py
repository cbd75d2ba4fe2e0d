"""Consume-transform-produce with ``send_offsets_to_transaction`` (KIP-98, KIP-447):
offsets sent to a transaction commit with it, for every client; and an application
(``apps/ctp_app.py``, confluent-kafka) produces each input exactly once and commits its
offsets atomically, run clean, SIGKILLed mid-transaction and restarted, and with the broker
SIGKILLed under it and restarted on the same data directory and port.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.clients import require
from interop.conftest import BrokerFactory, BrokerProcess
from interop.group_clients import (
    committed_offsets,
    create_topic,
    produce_batch,
)
from interop.txn_clients import (
    TXN_CLIENTS,
    Txn,
    read_to_end,
    transact,
    values_to_end,
    wait_for,
    wait_stable,
)

# -- consume-transform-produce --------------------------------------------------------------


APP = [sys.executable, "-m", "interop.apps.ctp_app"]
INPUTS_PER_PARTITION = 100
PARTITIONS = 2


class App:
    """One ctp_app instance: its stdout events, read from a file."""

    def __init__(self, spec: dict[str, Any], folder: Path, index: int) -> None:
        self.out_path = folder / f"app-{index}.out"
        self.err_path = folder / f"app-{index}.err"
        root = Path(__file__).resolve().parent.parent
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*APP, json.dumps(spec)], stdout=out, stderr=err, cwd=root,
                start_new_session=True,
            )  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.out_path.read_text().splitlines():
            # A line still being written (the last one) is not an event yet.
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def committed(self) -> int:
        done = [e["inputs"] for e in self.events() if e["event"] == "committed"]
        return max(done, default=0)

    def has(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events())

    def describe(self) -> str:
        err = self.err_path.read_text()[-3000:]
        return f"exit {self.process.poll()}; stdout {self.events()[-5:]}; stderr {err}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.kill()


def _ctp_setup(bootstrap: str, topic: str) -> dict[str, Any]:
    create_topic(bootstrap, f"{topic}-in", PARTITIONS)
    create_topic(bootstrap, f"{topic}-out", PARTITIONS)
    produce_batch(bootstrap, f"{topic}-in", range(PARTITIONS), INPUTS_PER_PARTITION, "in")
    return {
        "bootstrap": bootstrap,
        "input": f"{topic}-in",
        "output": f"{topic}-out",
        "partitions": PARTITIONS,
        "group": f"{topic}-group",
        "transactional_id": f"{topic}-app",
        "expected": PARTITIONS * INPUTS_PER_PARTITION,
        "batch": 10,
        "pause_ms": 0,
        "hold_after": None,
    }


def _start(apps: list[App], spec: dict[str, Any], tmp_path: Path) -> App:
    app = App(spec, tmp_path, len(apps))
    apps.append(app)
    return app


def _supervise(apps: list[App], spec: dict[str, Any], tmp_path: Path, limit: int = 3) -> None:
    """Wait for the latest instance to finish; start a new one after a fatal exit (a
    supervisor's job), at most ``limit`` times."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code = apps[-1].process.poll()
        if code == 0:
            return
        if code is not None:
            assert limit > 0, "the application kept failing:\n" + apps[-1].describe()
            limit -= 1
            _start(apps, spec, tmp_path)
        time.sleep(0.05)
    raise AssertionError("the application did not finish in 60s:\n" + apps[-1].describe())


def _assert_exactly_once(spec: dict[str, Any]) -> dict[str, int]:
    """Each input appears exactly once in the output, read_committed, and the group's
    committed offsets are the ends of the input partitions.  What read_uncommitted sees
    besides (aborted duplicates), for the report."""
    bootstrap = spec["bootstrap"]
    seen: Counter[bytes | None] = Counter()
    uncommitted = 0
    wait_stable(bootstrap, spec["output"], range(PARTITIONS))
    for partition in range(PARTITIONS):
        read, _ = read_to_end(bootstrap, spec["output"], partition, "read_committed")
        seen.update(value for _, value in read)
        uncommitted += len(read_to_end(bootstrap, spec["output"], partition, "read_uncommitted")[0])
    inputs: Counter[bytes | None] = Counter()
    for partition in range(PARTITIONS):
        read, end = read_to_end(bootstrap, spec["input"], partition, "read_uncommitted")
        assert end == INPUTS_PER_PARTITION
        inputs.update(b"out:" + (value or b"") for _, value in read)
    duplicates = {v: n for v, n in seen.items() if n > 1}
    missing = set(inputs) - set(seen)
    extra = set(seen) - set(inputs)
    assert (duplicates, missing, extra) == ({}, set(), set())
    tps = [(spec["input"], p) for p in range(PARTITIONS)]
    expected = {tp: INPUTS_PER_PARTITION for tp in tps}
    # The offsets become committed when the marker reaches __consumer_offsets, after EndTxn.
    wait_for(lambda: committed_offsets(bootstrap, spec["group"], tps) == expected, "offsets")
    return {"outputs": sum(seen.values()), "read_uncommitted": uncommitted}


@pytest.mark.parametrize("membership", ["assign", "subscribe"])
def test_consume_transform_produce_exactly_once(
    broker: BrokerProcess, topic: str, apps: list[App], tmp_path: Path, membership: str
) -> None:
    """Assigned partitions send offsets with generation -1 (no member); a subscribed group
    member sends its generation and member id."""
    spec = {**_ctp_setup(broker.bootstrap, topic), "subscribe": membership == "subscribe"}
    _start(apps, spec, tmp_path)
    _supervise(apps, spec, tmp_path, limit=0)
    counts = _assert_exactly_once(spec)
    assert counts["read_uncommitted"] == spec["expected"]  # nothing aborted without kills


def test_consume_transform_produce_survives_application_sigkill(
    broker: BrokerProcess, topic: str, apps: list[App], tmp_path: Path
) -> None:
    """The application is SIGKILLed with a transaction open and its records flushed; the
    next instance fences it, the open transaction is aborted, and processing resumes at
    the committed offsets."""
    spec = _ctp_setup(broker.bootstrap, topic)
    first = _start(apps, {**spec, "hold_after": 5}, tmp_path)
    wait_for(lambda: first.has("holding") or first.process.poll() is not None, "holding")
    assert first.has("holding"), first.describe()
    assert first.committed() > 0
    (held,) = [e["records"] for e in first.events() if e["event"] == "holding"]
    first.kill()
    # Atomic so far: with the held transaction still open (nothing has fenced it yet), the
    # outputs read_committed sees and the group's committed offsets both count exactly the
    # inputs of the committed transactions (OFFSET_INVALID, -1001, where none is committed).
    done = first.committed()
    tps = [(spec["input"], p) for p in range(PARTITIONS)]
    wait_for(
        lambda: (
            sum(max(0, o) for o in committed_offsets(broker.bootstrap, spec["group"], tps).values())
            == done
        ),
        f"{done} inputs committed",
    )
    visible = sum(
        len(read_to_end(broker.bootstrap, spec["output"], p, "read_committed")[0])
        for p in range(PARTITIONS)
    )
    assert visible == done
    _start(apps, spec, tmp_path)
    _supervise(apps, spec, tmp_path, limit=0)
    counts = _assert_exactly_once(spec)
    # The held transaction's records are in the log, aborted.
    assert counts["read_uncommitted"] == spec["expected"] + held


def test_consume_transform_produce_survives_broker_sigkill(
    broker_factory: BrokerFactory, topic: str, apps: list[App], tmp_path: Path
) -> None:
    """The broker is SIGKILLed mid-run (most likely with a transaction open: the app
    pauses inside each) and restarted on the same data directory and port."""
    broker = broker_factory()
    spec = _ctp_setup(broker.bootstrap, topic)
    # librdkafka 2.16.0 re-bootstraps (KIP-899) once every broker is down, and a
    # send_offsets_to_transaction under way then never sends its TxnOffsetCommit: it waits
    # on the group coordinator's decommissioned broker handle, past its own timeout, while
    # AddOffsetsToTxn and FindCoordinator are answered normally.  A client matter: with
    # re-bootstrap off the same run recovers.
    librdkafka = {"metadata.recovery.strategy": "none"}
    spec = {**spec, "librdkafka": librdkafka}
    app = _start(apps, {**spec, "pause_ms": 50}, tmp_path)
    wait_for(lambda: app.committed() >= 60 or app.process.poll() is not None, "60 inputs committed")
    assert app.process.poll() is None, app.describe()
    assert broker.restart(signal.SIGKILL) == -signal.SIGKILL
    _supervise(apps, spec, tmp_path)
    counts = _assert_exactly_once(spec)
    assert counts["outputs"] == spec["expected"]


@pytest.mark.parametrize("client", TXN_CLIENTS)
def test_send_offsets_commit_with_the_transaction(
    broker: BrokerProcess, client: str, topic: str
) -> None:
    """Offsets sent to a transaction become the group's committed offsets when it commits,
    and are dropped when it aborts."""
    require(client)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, 1)
    create_topic(bootstrap, f"{topic}-in", 1)
    group = f"{topic}-group"
    inputs = (f"{topic}-in", 0)
    transact(
        client,
        bootstrap,
        f"{topic}-txn",
        topic,
        [
            Txn([b"out-1"], "commit", send_offsets=(group, {0: 5})),
            Txn([b"out-2"], "abort", send_offsets=(group, {0: 9})),
        ],
        offsets_topic=inputs[0],
    )
    assert values_to_end(bootstrap, topic, "read_committed") == [b"out-1"]
    wait_for(lambda: committed_offsets(bootstrap, group, [inputs]) == {inputs: 5}, "offset 5")
    transact(
        client,
        bootstrap,
        f"{topic}-txn",
        topic,
        [Txn([b"out-3"], "commit", send_offsets=(group, {0: 7}))],
        offsets_topic=inputs[0],
    )
    wait_for(lambda: committed_offsets(bootstrap, group, [inputs]) == {inputs: 7}, "offset 7")
    assert values_to_end(bootstrap, topic, "read_committed") == [b"out-1", b"out-3"]
