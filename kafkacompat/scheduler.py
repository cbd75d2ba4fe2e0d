"""Periodic jobs on the running event loop, as Kafka's ``KafkaScheduler`` runs them.

A job is a plain function or a coroutine function; each runs every ``period_s`` seconds,
first one period after it is scheduled.  A job that raises runs again: one failed retention
pass must not end retention for the life of the broker.  While it keeps failing (descriptors
or disk space run out), its waits double up to :data:`_MAX_BACKOFF_S` so that it does not
hammer what is short, and it is reported once with its traceback, then every
:data:`_REMINDER_S` with the count, and once more when it succeeds again: never silently
skipped, never a traceback a second.  Runs of one job never overlap (the next period starts
when the last run ends).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

log = logging.getLogger("kafkacompat.scheduler")

_MAX_BACKOFF_S = 60.0
"""The longest wait between runs of a job that keeps failing (unless its period is longer)."""
_REMINDER_S = 600.0
"""How often a job that still fails is reported again."""
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
        loop = asyncio.get_running_loop()
        wait_s = period_s
        failures = 0
        reported_at = 0.0
        while True:
            await asyncio.sleep(wait_s)
            try:
                result = job()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                failures += 1
                now = loop.time()
                if failures == 1:
                    log.exception("scheduled task %s failed; retrying with back-off", name)
                    reported_at = now
                elif now - reported_at >= _REMINDER_S:
                    log.warning(
                        "scheduled task %s still failing (%d times): %s", name, failures, exc
                    )
                    reported_at = now
                wait_s = max(period_s, min(wait_s * 2, _MAX_BACKOFF_S))
                continue
            if failures:
                log.info("scheduled task %s succeeded again after %d failures", name, failures)
                failures = 0
            wait_s = period_s

    async def shutdown(self) -> None:
        """Cancel every job and wait (briefly) for them to unwind.  A job running in a worker
        thread is not interrupted; its owner's shutdown tells it to stop."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_WAIT_S)
