"""Periodic jobs on the running event loop, as Kafka's ``KafkaScheduler`` runs them.

A job is a plain function or a coroutine function; each runs every ``period_s`` seconds,
first one period after it is scheduled.  A job that raises is logged and runs again at its
next period: one failed retention pass must not end retention for the life of the broker.
Runs of one job never overlap (the next period starts when the last run ends).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

log = logging.getLogger("kafkacompat.scheduler")

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
        while True:
            await asyncio.sleep(period_s)
            try:
                result = job()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("scheduled task %s failed", name)

    async def shutdown(self) -> None:
        """Cancel every job and wait (briefly) for them to unwind.  A job running in a worker
        thread is not interrupted; its owner's shutdown tells it to stop."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_WAIT_S)
