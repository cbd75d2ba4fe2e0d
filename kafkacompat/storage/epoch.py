"""The leader epoch cache: for each leader epoch, the first offset written in it (Kafka's
``LeaderEpochFileCache``; persisted by the disk log as ``leader-epoch-checkpoint``).

Theory of operation. Every batch a leader appends is stamped with its leader epoch, so the log
itself says which epoch wrote which offsets; the cache is a summary of that, one entry per
epoch change, so OffsetForLeaderEpoch (KIP-101, KIP-320: consumers and followers detecting
truncation) is answered without reading the log. The cache only ever follows the log:

* an append or a recovered batch whose epoch is larger than the latest known adds
  (epoch, its base offset), the rule of Kafka's ``LogSegment.recover``; so the cache always
  equals what a rebuild from the batches' ``partitionLeaderEpoch`` would produce;
* cutting the log's tail (recovery) drops entries that start at or past the new end
  (``truncateFromEnd``); moving the log start (retention, DeleteRecords) drops entries before
  it and moves the last of them up to the new start (``truncateFromStart``).

Pure data: no I/O and no clock; the engines decide when to persist it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1

EpochEntry = tuple[int, int]
"""(leader epoch, start offset): the first offset the epoch's leader appended."""


class LeaderEpochCache:
    """Epoch entries with strictly increasing epochs and start offsets."""

    __slots__ = ("_epochs", "_start_offsets", "latest_epoch")

    def __init__(self, entries: Iterable[EpochEntry] = ()) -> None:
        self._epochs: list[int] = []
        self._start_offsets: list[int] = []
        self.latest_epoch = UNDEFINED_EPOCH
        """The newest epoch, or UNDEFINED_EPOCH when empty; read on every append."""
        for epoch, start_offset in entries:
            self.assign(epoch, start_offset)

    @property
    def entries(self) -> list[EpochEntry]:
        return list(zip(self._epochs, self._start_offsets, strict=True))

    def __len__(self) -> int:
        return len(self._epochs)

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.entries!r})"

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Kafka's ``assign``: record that ``epoch`` starts at ``start_offset``; returns whether
        anything changed. Entries that would break monotonicity (an epoch or start offset at or
        above the new one) are dropped first, as Kafka does when loading a damaged file."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        epochs, starts = self._epochs, self._start_offsets
        if epochs and epoch == epochs[-1] and start_offset >= starts[-1]:
            return False
        while epochs and (epochs[-1] >= epoch or starts[-1] >= start_offset):
            epochs.pop()
            starts.pop()
        epochs.append(epoch)
        starts.append(start_offset)
        self.latest_epoch = epoch
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """Drop entries starting at or after ``end_offset`` (the log was cut there)."""
        starts = self._start_offsets
        if end_offset < 0 or not starts or starts[-1] < end_offset:
            return False
        keep = bisect.bisect_left(starts, end_offset)
        del self._epochs[keep:]
        del starts[keep:]
        self.latest_epoch = self._epochs[-1] if self._epochs else UNDEFINED_EPOCH
        return True

    def truncate_from_start(self, start_offset: int) -> bool:
        """Drop entries starting at or before ``start_offset`` except the last of them, which
        now starts at ``start_offset``: the epoch of the first readable offset stays known."""
        starts = self._start_offsets
        if not starts or starts[0] > start_offset:
            return False
        last_removed = bisect.bisect_right(starts, start_offset) - 1
        if last_removed == 0 and starts[0] == start_offset:
            return False
        del self._epochs[:last_removed]
        del starts[:last_removed]
        starts[0] = start_offset
        return True

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's ``endOffsetFor`` (OffsetForLeaderEpoch): the largest epoch <= the requested
        one and the start offset of the next larger epoch, or the log end offset when the
        requested epoch is the latest. (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) when the
        requested epoch is undefined or newer than any known.

        A requested epoch older than every entry (its data deleted) answers the requested epoch
        with the first entry's start offset, so a follower truncates to where this log starts.
        """
        if requested_epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if self._epochs and requested_epoch == self.latest_epoch:
            return requested_epoch, log_end_offset
        higher = bisect.bisect_right(self._epochs, requested_epoch)
        if higher == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested_epoch, self._start_offsets[0]
        return self._epochs[higher - 1], self._start_offsets[higher]


__all__ = [
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "EpochEntry",
    "LeaderEpochCache",
]
