"""Stream-processing apps, unchanged, exactly-once on this broker (issue 11): a Quix Streams
app (tumbling-window sums, RocksDB state with a changelog topic) and a faust-streaming app
(a Table of running totals), each SIGKILLed with a transaction open and restarted.  What
they wrote, read with read_committed, is exactly what the input makes: no duplicates, no
gaps.  The killed run's open transaction left records on the broker that read_committed
never shows (checked: read_uncommitted sees more).

faust under an app SIGKILL is xfail (not strict): faust itself can split one event's
writes over two transactions (``FAUST_SPLIT_EVENT``).

The apps run in ``.venv-streams`` (see ``interop/streams.py``); without it these tests are
skipped, and pytest -ra prints why.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from interop.conftest import BrokerFactory
from interop.streams import (
    AppProcess,
    Input,
    Output,
    app_topics,
    create_topic,
    group_has_read,
    kill_in_transaction,
    produce,
    read_all,
    streams_python,
    wait_for,
)

BASE_MS = 1_700_000_000_000
"""Event time of the first input record."""
STEP_MS = 50
KEYS = 8
PARTITIONS = 2
WINDOW_MS = 1000
TOTAL = 3000
"""Input records: 150 s of event time, 20 a window, 2 or 3 of each key."""
APP_WAIT_S = 60.0


@pytest.fixture(scope="module")
def python() -> str:
    found, why_not = streams_python()
    if found is None:
        pytest.skip(why_not)
    return found


def inputs(start: int, stop: int) -> Iterator[Input]:
    """Records ``start`` to ``stop`` of the input: keys round-robin, values 1-7, event time
    advancing ``STEP_MS`` a record."""
    for i in range(start, stop):
        yield Input(f"k{i % KEYS}", i % 7 + 1, BASE_MS + i * STEP_MS)


def window_sums(total: int) -> list[tuple[str, int, int, int]]:
    sums: dict[tuple[str, int], int] = defaultdict(int)
    for record in inputs(0, total):
        start = record.timestamp - record.timestamp % WINDOW_MS
        sums[record.key, start] += record.value
    return sorted((key, start, start + WINDOW_MS, value) for (key, start), value in sums.items())


def running_totals(total: int) -> dict[str, list[int]]:
    totals: dict[str, list[int]] = defaultdict(list)
    for record in inputs(0, total):
        previous = totals[record.key][-1] if totals[record.key] else 0
        totals[record.key].append(previous + record.value)
    return dict(totals)


def closing_records(total: int) -> list[Input]:
    """One record per key a minute of event time after the input: it closes every window
    of the input (Quix's "key" closing strategy), its own stays open and is not expected."""
    at = BASE_MS + total * STEP_MS + 60_000
    return [Input(f"k{k}", 0, at) for k in range(KEYS)]


@dataclass
class Scenario:
    """One app on one broker: what it is given, and what it must have written."""

    app: AppProcess
    source: str
    sink: str
    closing: list[Input]
    """Records after the input that make the app write its last expected output."""
    expected_count: int
    expected: object
    outcome: Callable[[list[Output]], object]
    """What the expectation is compared with, from the output read with read_committed."""
    settled: Callable[[], bool] = lambda: True
    """Whether the app has nothing left in hand, so that SIGTERM stops it cleanly."""


def quix_windows(python: str, bootstrap: str, topic: str, folder: Path) -> Scenario:
    source, sink, group = f"{topic}-in", f"{topic}-out", f"{topic}-app"
    create_topic(bootstrap, source, PARTITIONS)
    app = AppProcess(
        [
            *(python, "-m", "interop.apps.quix_windows", "--broker", bootstrap),
            *("--input", source, "--output", sink, "--group", group),
            *("--state-dir", str(folder / "state"), "--window-ms", str(WINDOW_MS)),
            *("--transactional-id", f"{group}-producer"),
        ],
        folder / "quix.log",
        {},
    )

    def outcome(written: list[Output]) -> object:
        return sorted(
            (o.key, o.value["start"], o.value["end"], o.value["value"])  # type: ignore[index]
            for o in written
        )

    expected = window_sums(TOTAL)
    return Scenario(app, source, sink, closing_records(TOTAL), len(expected), expected, outcome)


def faust_totals(python: str, bootstrap: str, topic: str, folder: Path) -> Scenario:
    source, sink, app_id = f"{topic}-in", f"{topic}-out", f"{topic}-app"
    # Faust's transactions are per partition written to: output co-partitioned with input.
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    app = AppProcess(
        [python, "-m", "interop.apps.faust_totals", "worker", "-l", "info"],
        folder / "faust.log",
        {
            "FAUST_BROKER": bootstrap,
            "FAUST_INPUT": source,
            "FAUST_OUTPUT": sink,
            "FAUST_APP_ID": app_id,
            "FAUST_DATADIR": str(folder / "faust-data"),
        },
    )

    def outcome(written: list[Output]) -> object:
        got: dict[str, list[int]] = defaultdict(list)
        for output in written:  # in offset order, and a key's totals share a partition
            got[output.key].append(output.value["total"])  # type: ignore[index]
        return dict(got)

    # faust's stop commits twice without a new transaction between (Consumer.wait_empty,
    # then stop): offsets moved on in between, by the output's reader still catching up,
    # fail the second with aiokafka's IllegalOperation("Not in the middle of a
    # transaction"), and the worker never exits.  So it is stopped once its reader is done.
    def settled() -> bool:
        return group_has_read(bootstrap, app_id, sink)

    return Scenario(app, source, sink, [], TOTAL, running_totals(TOTAL), outcome, settled)


SCENARIOS = {"quix": quix_windows, "faust": faust_totals}


def run_until_written(scenario: Scenario, bootstrap: str, *, restarts: int = 0) -> None:
    """Wait for the expected count of committed output, starting the app again when it
    exits (as its supervisor would) at most ``restarts`` times; then stop it cleanly."""
    app = scenario.app
    deadline = time.monotonic() + APP_WAIT_S
    while len(read_all(bootstrap, scenario.sink)) < scenario.expected_count:
        assert time.monotonic() < deadline, (
            f"not {scenario.expected_count} records written after {APP_WAIT_S:.0f}s:\n"
            + app.log_tail()
        )
        if not app.running:
            assert app.runs <= restarts + 1, "the app exited:\n" + app.log_tail()
            app.start()
        time.sleep(0.5)
    wait_for(scenario.settled, "settled", app, APP_WAIT_S)
    assert app.stop() == 0, app.log_tail()


def differences(got: object, expected: object) -> str:
    """Where ``got`` first departs from ``expected``, per key for a dict of lists."""
    if not (isinstance(got, dict) and isinstance(expected, dict)):
        return f"got {got}\nexpected {expected}"
    lines = []
    for key in sorted(set(got) | set(expected)):
        a, b = got.get(key, []), expected.get(key, [])
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            at = min(len(a), len(b)) if at is None else at
            lines.append(
                f"{key}: {len(a)} written, {len(b)} expected; from index {at}: "
                f"written {a[max(0, at - 2) : at + 5]}, expected {b[max(0, at - 2) : at + 5]}"
            )
    return "\n".join(lines)


def check_output(scenario: Scenario, bootstrap: str, held: list[TopicPartition]) -> None:
    got = scenario.outcome(read_all(bootstrap, scenario.sink))
    assert got == scenario.expected, differences(got, scenario.expected)
    # The kill left records of an open transaction: aborted, never read committed.
    assert any(
        len(read_all(bootstrap, topic, committed=False)) > len(read_all(bootstrap, topic))
        for topic in {tp.topic for tp in held}
    ), held


FAUST_SPLIT_EVENT = (
    "faust-streaming 0.15.3 can commit between one event's table write and its output "
    "write (its commit runs at the agent's `await sink.send`): the changelog record lands "
    "in the committed transaction, the output in the next one, which the kill aborts, so "
    "the restarted worker's totals are off by that event.  Seen in 2 runs of 8 here; the "
    "aiokafka debug log shows every broker answer error 0 and OffsetFetch after the "
    "restart returning exactly the offsets of the last committed TxnOffsetCommit."
)


@pytest.mark.parametrize(
    "name",
    [
        "quix",
        pytest.param("faust", marks=pytest.mark.xfail(reason=FAUST_SPLIT_EVENT, strict=False)),
    ],
)
def test_app_sigkill_exactly_once(
    broker_factory: BrokerFactory, python: str, name: str, topic: str, tmp_path: Path
) -> None:
    """The app is SIGKILLed with a transaction open, and started again."""
    bootstrap = broker_factory(storage="disk").bootstrap
    scenario = SCENARIOS[name](python, bootstrap, topic, tmp_path)
    app = scenario.app
    try:
        produce(bootstrap, scenario.source, inputs(0, TOTAL * 2 // 5))
        app.start()
        wait_for(lambda: bool(read_all(bootstrap, scenario.sink)), "output", app, APP_WAIT_S)
        produce(bootstrap, scenario.source, inputs(TOTAL * 2 // 5, TOTAL * 3 // 5))
        held = kill_in_transaction(app, bootstrap, lambda: app_topics(bootstrap, [scenario.source]))
        produce(bootstrap, scenario.source, inputs(TOTAL * 3 // 5, TOTAL))
        produce(bootstrap, scenario.source, scenario.closing)
        app.start()
        run_until_written(scenario, bootstrap)
    finally:
        app.stop()
    check_output(scenario, bootstrap, held)


@pytest.mark.parametrize("name", SCENARIOS)
def test_broker_sigkill_exactly_once(
    broker_factory: BrokerFactory, python: str, name: str, topic: str, tmp_path: Path
) -> None:
    """The broker is SIGKILLed while the app has a transaction open, and started again on
    its data and port; the app, started again if it gave up, goes on."""
    broker = broker_factory(storage="disk")
    bootstrap = broker.bootstrap
    scenario = SCENARIOS[name](python, bootstrap, topic, tmp_path)
    app = scenario.app
    try:
        produce(bootstrap, scenario.source, inputs(0, TOTAL * 2 // 5))
        app.start()
        wait_for(lambda: bool(read_all(bootstrap, scenario.sink)), "output", app, APP_WAIT_S)
        produce(bootstrap, scenario.source, inputs(TOTAL * 2 // 5, TOTAL * 3 // 5))
        kill_in_transaction(
            app, bootstrap, lambda: app_topics(bootstrap, [scenario.source]), broker.kill
        )
        broker.start(broker.port)
        produce(bootstrap, scenario.source, inputs(TOTAL * 3 // 5, TOTAL))
        produce(bootstrap, scenario.source, scenario.closing)
        run_until_written(scenario, bootstrap, restarts=2)
    finally:
        app.stop()
    got = scenario.outcome(read_all(bootstrap, scenario.sink))
    assert got == scenario.expected, differences(got, scenario.expected)
