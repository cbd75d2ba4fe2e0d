"""Which log to clean next, and from where (Kafka's ``LogCleanerManager``); it owns
``cleaner-offset-checkpoint``. One round itself is :func:`kafkacompat.storage.log_cleaner.clean`.

*Which log, which range.* Each compacted log has a *first dirty offset*: where the previous
round stopped (``cleaner-offset-checkpoint`` in the data directory), or the log start offset.
Everything from the log start up to it is the *clean* part; from it up to the *first uncleanable
offset* (the active segment's base, the last stable offset: never past an open transaction,
the first segment younger than ``min.compaction.lag.ms``, and, here, the recovery point: only
fsync'd segments are rewritten) is the *cleanable* part,
rounded down to whole segments. The log whose dirty ratio, cleanable / (clean + cleanable), is
highest and above ``min.cleanable.dirty.ratio`` is cleaned next; ``max.compaction.lag.ms``
forces a log whose oldest dirty segment is too old.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kafkacompat.storage.atomic_file import CorruptFileError
from kafkacompat.storage.checkpoint_file import (
    CLEANER_OFFSET_CHECKPOINT,
    read_checkpoint,
    write_checkpoint,
)
from kafkacompat.storage.cleaned_segment import SegmentSnapshot
from kafkacompat.storage.log_cleaner import CleanerStats, CleanResult, LogToClean, cleaner_settings

if TYPE_CHECKING:
    from kafkacompat.storage.log import Log

log = logging.getLogger(__name__)

LONG_MAX: Final = (1 << 63) - 1


def cleanable_range(
    log: Log,
    first_dirty_offset: int | None,
    now_ms: int,
    first_unstable_offset: int | None = None,
) -> LogToClean | None:
    """The log's cleanable range, or None when it is not compacted or has one segment
    (Kafka's ``LogCleanerManager.cleanableOffsets`` and ``calculateCleanableBytes``).
    ``first_unstable_offset`` is the first offset of the earliest open transaction (the
    partition's producer state knows it; None with none open)."""
    if not getattr(log.settings, "compact", False):
        return None
    settings = cleaner_settings(log)
    segments = log.segments
    if len(segments) < 2:
        return None
    start = log.log_start_offset
    if first_dirty_offset is None or not start <= first_dirty_offset <= log.log_end_offset:
        first_dirty_offset = start
    active_base = segments[-1].base_offset
    # Kafka's lastStableOffset: the first unstable offset, else the high watermark. What lies
    # past it may yet be aborted, and its markers are not written yet.
    first_uncleanable = min(active_base, log.recovery_point, log.high_watermark)
    if first_unstable_offset is not None:
        first_uncleanable = min(first_uncleanable, first_unstable_offset)
    lag = settings.min_compaction_lag_ms
    inactive = segments[:-1]
    if lag > 0:
        for segment in inactive:
            if segment.next_offset > first_dirty_offset and segment.max_timestamp > now_ms - lag:
                first_uncleanable = min(first_uncleanable, segment.base_offset)
                break
    # Only whole segments: round down to the base of the segment holding the bound.
    bases = [segment.base_offset for segment in segments]
    holder = bisect.bisect_right(bases, first_uncleanable) - 1
    first_uncleanable = bases[holder] if holder >= 0 else start
    snapshots: list[SegmentSnapshot] = []
    clean_bytes = cleanable_bytes = 0
    forced = False
    max_lag = settings.max_compaction_lag_ms
    for segment in inactive:
        if segment.base_offset >= first_uncleanable:
            break
        first_timestamp = segment.rolling_base_ms
        snapshots.append(
            SegmentSnapshot(
                segment, segment.base_offset, segment.next_offset, segment.size, first_timestamp
            )
        )
        if segment.next_offset <= first_dirty_offset:
            clean_bytes += segment.size
        else:
            cleanable_bytes += segment.size
            if (
                max_lag < LONG_MAX
                and first_timestamp is not None
                and first_timestamp >= 0
                and first_timestamp < now_ms - max_lag
            ):
                forced = True
    if first_dirty_offset > first_uncleanable:
        first_dirty_offset = first_uncleanable
    return LogToClean(
        log, first_dirty_offset, first_uncleanable, snapshots, clean_bytes, cleanable_bytes, forced
    )


class CleanerCheckpoint:
    """``cleaner-offset-checkpoint``: each compacted partition's first dirty offset, keyed by
    the log object as well, so a topic deleted and created again starts from its log start."""

    def __init__(self, data_dir: Path | None) -> None:
        self.path = None if data_dir is None else data_dir / CLEANER_OFFSET_CHECKPOINT
        self._on_disk: dict[tuple[str, int], int] = {}
        if self.path is not None:
            try:
                self._on_disk = read_checkpoint(self.path)
            except (CorruptFileError, ValueError) as exc:
                log.warning("ignoring %s: %s", self.path, exc)
        self._offsets: dict[tuple[str, int], tuple[Log, int]] = {}

    def first_dirty_offset(self, tp: tuple[str, int], partition_log: Log) -> int | None:
        known = self._offsets.get(tp)
        if known is not None:
            return known[1] if known[0] is partition_log else None
        on_disk = self._on_disk.pop(tp, None)
        if on_disk is not None:
            self._offsets[tp] = (partition_log, on_disk)
        return on_disk

    def update(
        self, tp: tuple[str, int], partition_log: Log, offset: int, live: set[tuple[str, int]]
    ) -> None:
        self._offsets[tp] = (partition_log, offset)
        for stale in [key for key in self._offsets if key not in live]:
            del self._offsets[stale]
        if self.path is not None:
            entries = {key: value for key, (_, value) in self._offsets.items()}
            entries.update({k: v for k, v in self._on_disk.items() if k in live})
            write_checkpoint(self.path, entries)


class LogCleanerManager:
    """Which log to clean next, and what follows a round (Kafka's ``LogCleanerManager``): the
    broker runs :func:`~kafkacompat.storage.log_cleaner.clean` in a worker thread between
    :meth:`grab_filthiest` and :meth:`swap_in`, both on its event loop."""

    def __init__(
        self, data_dir: Path | None, *, dedupe_buffer_size: int, load_factor: float = 0.9
    ) -> None:
        self.checkpoint = CleanerCheckpoint(data_dir)
        self.map_budget_bytes = max(int(dedupe_buffer_size * load_factor), 1)
        self.cancelled = threading.Event()
        """Set at shutdown: a running round stops at its next batch."""
        self.rounds = 0
        self.last_stats: CleanerStats | None = None

    def grab_filthiest(
        self,
        logs: Iterable[tuple[tuple[str, int], object]],
        now_ms: int,
        first_unstable_offset: Callable[[tuple[str, int]], int | None] | None = None,
    ) -> tuple[tuple[str, int], LogToClean] | None:
        """The compacted log most in need of cleaning, if any: forced ones first (max
        compaction lag), then the highest dirty ratio above min.cleanable.dirty.ratio.
        ``first_unstable_offset`` gives a partition's (its producer state's); without it no
        transaction is taken to be open."""
        from kafkacompat.storage.log import Log

        best: tuple[tuple[str, int], LogToClean] | None = None
        for tp, partition_log in logs:
            if (
                not isinstance(partition_log, Log)
                or not getattr(partition_log.settings, "compact", False)
                or partition_log.offline_reason is not None  # left as is for recovery
            ):
                continue
            first_dirty = self.checkpoint.first_dirty_offset(tp, partition_log)
            plan = cleanable_range(partition_log, first_dirty, now_ms)
            if plan is None or not plan.should_clean():
                continue
            if first_unstable_offset is not None:
                # Asked only of a log dirty enough without it (the bound only narrows the
                # range, so it never makes a log dirtier): it may load the producer state.
                plan = cleanable_range(
                    partition_log, first_dirty, now_ms, first_unstable_offset(tp)
                )
                if plan is None or not plan.should_clean():
                    continue
            if best is None or (plan.forced, plan.dirty_ratio) > (
                best[1].forced,
                best[1].dirty_ratio,
            ):
                best = (tp, plan)
        return best

    def swap_in(
        self, tp: tuple[str, int], result: CleanResult, now_ms: int, live: set[tuple[str, int]]
    ) -> bool:
        """Swap every cleaned segment in and move the first dirty offset; False (and the rest
        discarded, the checkpoint unchanged) as soon as one cannot be."""
        for i, cleaned in enumerate(result.cleaned):
            if not result.log.replace_segments(cleaned, now_ms):
                for rest in result.cleaned[i + 1 :]:
                    rest.discard()
                return False
        self.checkpoint.update(tp, result.log, result.end_offset, live)
        self.rounds += 1
        self.last_stats = result.stats
        return True
