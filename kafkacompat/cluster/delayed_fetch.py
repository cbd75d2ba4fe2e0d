"""The fetch purgatory: long-polling fetches wait here for appends to the partitions they read
(Kafka's ``DelayedOperationPurgatory[DelayedFetch]``, keyed by partition).

A fetch that found fewer than ``min_bytes`` watches its partitions; every append to a
partition (a produce, a coordinator's write, later a follower's fetch moving the high
watermark) calls :meth:`DelayedFetchPurgatory.check_and_complete` for it, which wakes the
watchers to read again.  Each watcher's wait is bounded by its own ``max_wait_ms``.  The same
shape will hold delayed produce (acks=all waiting for the ISR) when there are followers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

TopicPartition = tuple[str, int]


class DelayedFetchPurgatory:
    def __init__(self) -> None:
        self._watchers: dict[TopicPartition, set[asyncio.Event]] = {}

    def watch(self, partitions: Iterable[TopicPartition]) -> asyncio.Event:
        event = asyncio.Event()
        for tp in partitions:
            self._watchers.setdefault(tp, set()).add(event)
        return event

    def unwatch(self, partitions: Iterable[TopicPartition], event: asyncio.Event) -> None:
        for tp in partitions:
            waiting = self._watchers.get(tp)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._watchers[tp]

    def check_and_complete(self, tp: TopicPartition) -> None:
        waiting = self._watchers.get(tp)
        if waiting:
            for event in waiting:
                event.set()

    def wake_all(self) -> None:
        """At shutdown: every parked fetch answers now with what it has."""
        for waiting in self._watchers.values():
            for event in waiting:
                event.set()

    def __len__(self) -> int:
        return len(self._watchers)
