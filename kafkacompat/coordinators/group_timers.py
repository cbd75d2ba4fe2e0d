"""Time for the group coordinator: a clock and delayed callbacks, injected.

The coordinator never reads the wall clock or sleeps: it asks a :class:`Scheduler` for the
time and for callbacks after a delay (Kafka's purgatories: DelayedJoin, DelayedSync,
DelayedHeartbeat; and the offsets retention check).  :class:`TimerQueue` is the one
implementation: a heap of deadlines that something outside runs with :meth:`run_due`.  Tests
drive it with a :class:`ManualClock`; the broker arms one event-loop timer at the earliest
deadline (``on_schedule`` tells it when that moves earlier).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def now_ms(self) -> int: ...

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle: ...


class Timer:
    """One pending callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("_queue", "callback", "cancelled", "deadline", "seq")

    def __init__(
        self, deadline: int, seq: int, callback: Callable[[], None], queue: TimerQueue | None
    ) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.cancelled = False
        self._queue = queue

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._queue is not None:
                self._queue._cancelled += 1

    def __lt__(self, other: Timer) -> bool:
        # Equal deadlines run in the order they were scheduled, as purgatory expirations do.
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class TimerQueue:
    """Callbacks by deadline, run by whoever owns the clock.  Single-threaded."""

    _COMPACT_AT = 4096
    """Cancelled timers stay in the heap until popped; past this many, and over half the
    heap, it is rebuilt (session timers are replaced at every heartbeat)."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self.on_schedule: Callable[[int], None] | None = None
        """Told a new timer's deadline, so an event loop can wake up in time for it."""

    def now_ms(self) -> int:
        return self._now_ms()

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> Timer:
        timer = Timer(self._now_ms() + max(delay_ms, 0), next(self._seq), callback, self)
        heapq.heappush(self._heap, timer)
        if self.on_schedule is not None:
            self.on_schedule(timer.deadline)
        return timer

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)._queue = None
            self._cancelled -= 1
        return heap[0].deadline if heap else None

    def run_due(self) -> int:
        """Run every callback whose deadline has passed, earliest first (callbacks may
        schedule more, which run too if already due).  Returns how many ran."""
        heap = self._heap
        ran = 0
        while heap:
            timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)._queue = None
                self._cancelled -= 1
                continue
            if timer.deadline > self._now_ms():
                break
            heapq.heappop(heap)
            timer._queue = None  # popped: a late cancel() must not count it
            timer.cancelled = True
            timer.callback()
            ran += 1
        self._maybe_compact()
        return ran

    def cancel_all(self) -> None:
        for timer in self._heap:
            timer._queue = None
            timer.cancelled = True
        self._heap.clear()
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def _maybe_compact(self) -> None:
        if self._cancelled > self._COMPACT_AT and self._cancelled > len(self._heap) // 2:
            live = []
            for timer in self._heap:
                if timer.cancelled:
                    timer._queue = None
                else:
                    live.append(timer)
            heapq.heapify(live)
            self._heap = live
            self._cancelled = 0


class ManualClock:
    """A clock that moves only when told to, running the queue's due timers as it goes."""

    def __init__(self, start_ms: int = 1_000_000) -> None:
        self.now = start_ms
        self.timers = TimerQueue(self.now_ms)

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Move time forward, stopping at each deadline on the way so that callbacks see
        the time they were due at."""
        target = self.now + ms
        while True:
            deadline = self.timers.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.timers.run_due()
        self.now = target
        self.timers.run_due()
