"""Request memory: Kafka's ``MemoryPool`` (KIP-72), sized by ``queued.max.request.bytes``.

Sans-I/O bookkeeping only: the pool counts bytes, it does not hand out buffers (the frame
reader allocates its own as bytes arrive).  Like Kafka's broker pool it is non-strict: an
allocation succeeds while any memory is left, so one request bigger than what remains (or
than the whole pool) still gets through, alone, and the pool may go below zero until it is
released.  A refused caller registers a waiter and is called back, oldest first, as soon as
a release leaves memory available again.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

Waiter = Callable[[], object]


class SimpleMemoryPool:
    """``size`` bytes shared by every connection's large requests."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a memory pool needs a positive size, not {size}")
        self.size = size
        self.available = size
        """May go below zero: the pool is non-strict."""
        self._waiters: collections.OrderedDict[Waiter, None] = collections.OrderedDict()
        self.peak_used = 0
        """The most ever taken at once: what a test or benchmark compares with ``size``."""

    @property
    def used(self) -> int:
        return self.size - self.available

    def is_out_of_memory(self) -> bool:
        return self.available <= 0

    def try_allocate(self, nbytes: int) -> bool:
        """Take ``nbytes`` if any memory is available; ``False`` (nothing taken) if not.

        Waiters queued earlier go first: a newcomer is refused while anyone waits, so a
        stream of small-enough allocations cannot starve a large one forever."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate {nbytes} bytes")
        if self.available <= 0 or self._waiters:
            return False
        self._take(nbytes)
        return True

    def _take(self, nbytes: int) -> None:
        self.available -= nbytes
        self.peak_used = max(self.peak_used, self.size - self.available)

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` taken earlier, and wake waiters while memory is available."""
        self.available += nbytes
        if self.available > self.size:
            # A double release would let the pool hand out more than it has, for ever.
            self.available -= nbytes
            raise ValueError(f"released {nbytes} bytes that were never allocated")
        waiters = self._waiters
        while waiters and self.available > 0:
            waiter, _ = waiters.popitem(last=False)
            waiter()

    def wait(self, waiter: Waiter) -> None:
        """Call ``waiter`` once memory is available (its turn, oldest first); it then calls
        :meth:`allocate_waited` or :meth:`try_allocate` itself."""
        self._waiters[waiter] = None

    def cancel_wait(self, waiter: Waiter) -> None:
        self._waiters.pop(waiter, None)

    def allocate_waited(self, nbytes: int) -> bool:
        """:meth:`try_allocate` for a waiter being called back: its turn has come, so the
        waiters still queued behind it do not hold it back."""
        if self.available <= 0:
            return False
        self._take(nbytes)
        return True

    def force_allocate(self, nbytes: int) -> None:
        """Take ``nbytes`` whatever is left: for the rare caller that cannot wait."""
        self._take(nbytes)

    @property
    def waiting(self) -> int:
        return len(self._waiters)
