"""A scheduled job that keeps failing: retried with back-off, reported once, never dropped."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from kafkacompat.scheduler import KafkaScheduler


def test_a_failing_job_backs_off_is_reported_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    period = 0.01
    failures = 5
    calls: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def job() -> None:
            calls.append(loop.time())
            if len(calls) <= failures:
                raise OSError(24, "Too many open files")
            done.set()

        scheduler = KafkaScheduler()
        scheduler.schedule("kafka-log-flusher", job, period)
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await scheduler.shutdown()

    with caplog.at_level(logging.DEBUG, logger="kafkacompat.scheduler"):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None, caplog.text
    assert "kafka-log-flusher failed" in errors[0].getMessage()
    assert "succeeds again after 5 failures" in caplog.text
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    # Each wait after a failure is at least twice the one before (a sleep never ends early,
    # beyond the loop clock's resolution).
    for i, gap in enumerate(gaps[:failures]):
        assert gap >= period * 2 ** (i + 1) * 0.9, gaps
