"""Periodic jobs on the running event loop, as Kafka's ``KafkaScheduler`` runs them.

A job is a plain function or a coroutine function; each runs every ``period_s`` seconds,
first one period after it is scheduled.  Runs of one job never overlap (the next period starts
when the last run ends).

A job that raises is retried, never dropped: one failed retention pass must not end retention
for the life of the broker.  While it keeps failing (a full disk, EMFILE) the wait between
tries doubles from its period up to :data:`MAX_BACKOFF_S` (never below the period), and the
log says so twice: once, with the traceback, when it starts failing, and once when it
succeeds again; not at every tick.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

log = logging.getLogger("kafkacompat.scheduler")

MAX_BACKOFF_S = 30.0
"""The longest wait between two tries of a failing job (a job with a longer period keeps it)."""

_SHUTDOWN_WAIT_S = 2.0
"""How long :meth:`KafkaScheduler.shutdown` waits for cancelled jobs to unwind."""


class KafkaScheduler:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def job_names(self) -> list[str]:
        return sorted(self._tasks)

    def schedule(self, name: str, job: Callable[[], object], period_s: float) -> None:
        """Run ``job`` every ``period_s`` seconds on the running loop, until :meth:`shutdown`."""
        if name in self._tasks:
            raise ValueError(f"a job named {name!r} is already scheduled")
        loop = asyncio.get_running_loop()
        self._tasks[name] = loop.create_task(self._every(name, job, period_s), name=name)

    @staticmethod
    async def _every(name: str, job: Callable[[], object], period_s: float) -> None:
        delay = period_s
        failures = 0
        while True:
            await asyncio.sleep(delay)
            try:
                result = job()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                failures += 1
                delay = min(period_s * 2**failures, max(period_s, MAX_BACKOFF_S))
                if failures == 1:
                    log.exception(
                        "scheduled task %s failed (%s); retrying with back-off up to %.0f s, "
                        "and logging again when it succeeds",
                        name,
                        exc,
                        max(period_s, MAX_BACKOFF_S),
                    )
                else:
                    log.debug("scheduled task %s failed again (%d): %s", name, failures, exc)
                continue
            if failures:
                log.warning("scheduled task %s succeeds again after %d failures", name, failures)
                failures = 0
                delay = period_s

    async def shutdown(self) -> None:
        """Cancel every job and wait (briefly) for them to unwind.  A job running in a worker
        thread is not interrupted; its owner's shutdown tells it to stop."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_WAIT_S)
