"""Stream-processing apps, unchanged, exactly-once on this broker (issue 11): a Quix Streams
app (tumbling-window sums, RocksDB state with a changelog topic) and a faust-streaming app
(a Table of running totals), each SIGKILLed with a transaction open and restarted.  What
they wrote, read with read_committed, is exactly what the input makes: no duplicates, no
gaps.  The killed run's open transaction left records on the broker that read_committed
never shows (checked: read_uncommitted sees more).

The apps run in ``.venv-streams`` (see ``interop/streams.py``); without it these tests are
skipped, and pytest -ra prints why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.conftest import BrokerFactory
from interop.streams import (
    AppProcess,
    Input,
    app_topics,
    create_topic,
    kill_in_transaction,
    produce,
    read_all,
    streams_python,
    wait_for,
)

BASE_MS = 1_700_000_000_000
"""Event time of the first input record."""
STEP_MS = 50
KEYS = 4
PARTITIONS = 2
WINDOW_MS = 1000
TOTAL = 3000
"""Input records: 150 s of event time, 20 a window, 5 of each key."""
APP_WAIT_S = 60.0


@pytest.fixture(scope="module")
def python() -> str:
    found, why_not = streams_python()
    if found is None:
        pytest.skip(why_not)
    return found


def inputs(start: int, stop: int) -> Iterator[Input]:
    """Records ``start`` to ``stop`` of the input: keys round-robin, each key always on
    the same partition, values 1-7, event time advancing ``STEP_MS`` a record."""
    for i in range(start, stop):
        k = i % KEYS
        yield Input(k % PARTITIONS, f"k{k}", i % 7 + 1, BASE_MS + i * STEP_MS)


def window_sums(total: int) -> list[tuple[str, int, int, int]]:
    sums: dict[tuple[str, int], int] = defaultdict(int)
    for record in inputs(0, total):
        start = record.timestamp - record.timestamp % WINDOW_MS
        sums[record.key, start] += record.value
    return sorted((key, start, start + WINDOW_MS, value) for (key, start), value in sums.items())


def closing_records(total: int) -> list[Input]:
    """One record per key a minute of event time after the input: it closes every window
    of the input (Quix's "key" closing strategy), its own stays open and is not expected."""
    at = BASE_MS + total * STEP_MS + 60_000
    return [Input(k % PARTITIONS, f"k{k}", 0, at) for k in range(KEYS)]


def aborted_records_exist(bootstrap: str, topics: set[str]) -> bool:
    return any(
        len(read_all(bootstrap, topic, committed=False)) > len(read_all(bootstrap, topic))
        for topic in topics
    )


def test_quix_windows_exactly_once_across_sigkill(
    broker_factory: BrokerFactory, python: str, topic: str, tmp_path: Path
) -> None:
    broker = broker_factory(storage="disk")
    bootstrap = broker.bootstrap
    source, sink, group = f"{topic}-in", f"{topic}-out", f"{topic}-app"
    create_topic(bootstrap, source, PARTITIONS)
    app = AppProcess(
        [
            *(python, "-m", "interop.apps.quix_windows", "--broker", bootstrap),
            *("--input", source, "--output", sink, "--group", group),
            *("--state-dir", str(tmp_path / "state"), "--window-ms", str(WINDOW_MS)),
            *("--transactional-id", f"{group}-producer"),
        ],
        tmp_path / "quix.log",
        {},
    )
    expected = window_sums(TOTAL)
    try:
        produce(bootstrap, source, inputs(0, TOTAL * 2 // 5))
        app.start()
        wait_for(lambda: len(read_all(bootstrap, sink)) > 0, "committed output", app, APP_WAIT_S)
        produce(bootstrap, source, inputs(TOTAL * 2 // 5, TOTAL * 3 // 5))
        held = kill_in_transaction(app, bootstrap, lambda: app_topics(bootstrap, [source]))

        produce(bootstrap, source, inputs(TOTAL * 3 // 5, TOTAL))
        produce(bootstrap, source, closing_records(TOTAL))
        app.start()
        wait_for(
            lambda: len(read_all(bootstrap, sink)) >= len(expected),
            f"{len(expected)} windows written",
            app,
            APP_WAIT_S,
        )
        assert app.stop() == 0, app.log_tail()
    finally:
        app.stop()

    written = read_all(bootstrap, sink)
    got = sorted((o.key, o.value["start"], o.value["end"], o.value["value"]) for o in written)  # type: ignore[index]
    assert got == expected
    assert aborted_records_exist(bootstrap, {tp.topic for tp in held}), held


def running_totals(total: int) -> dict[str, list[int]]:
    totals: dict[str, list[int]] = defaultdict(list)
    for record in inputs(0, total):
        previous = totals[record.key][-1] if totals[record.key] else 0
        totals[record.key].append(previous + record.value)
    return dict(totals)


def test_faust_table_exactly_once_across_sigkill(
    broker_factory: BrokerFactory, python: str, topic: str, tmp_path: Path
) -> None:
    broker = broker_factory(storage="disk")
    bootstrap = broker.bootstrap
    source, sink, app_id = f"{topic}-in", f"{topic}-out", f"{topic}-app"
    create_topic(bootstrap, source, PARTITIONS)
    app = AppProcess(
        [python, "-m", "interop.apps.faust_totals", "worker", "-l", "info"],
        tmp_path / "faust.log",
        {
            "FAUST_BROKER": bootstrap,
            "FAUST_INPUT": source,
            "FAUST_OUTPUT": sink,
            "FAUST_APP_ID": app_id,
            "FAUST_DATADIR": str(tmp_path / "faust-data"),
        },
    )
    expected = running_totals(TOTAL)
    try:
        produce(bootstrap, source, inputs(0, TOTAL * 2 // 5))
        app.start()
        wait_for(lambda: len(read_all(bootstrap, sink)) > 0, "committed output", app, APP_WAIT_S)
        produce(bootstrap, source, inputs(TOTAL * 2 // 5, TOTAL * 3 // 5))
        held = kill_in_transaction(app, bootstrap, lambda: app_topics(bootstrap, [source]))

        produce(bootstrap, source, inputs(TOTAL * 3 // 5, TOTAL))
        app.start()
        wait_for(
            lambda: len(read_all(bootstrap, sink)) >= TOTAL,
            f"{TOTAL} totals written",
            app,
            APP_WAIT_S,
        )
        assert app.stop() == 0, app.log_tail()
    finally:
        app.stop()

    got: dict[str, list[int]] = defaultdict(list)
    for output in read_all(bootstrap, sink):
        got[output.key].append(output.value["total"])  # type: ignore[index]
    assert dict(got) == expected
    assert aborted_records_exist(bootstrap, {tp.topic for tp in held}), held
