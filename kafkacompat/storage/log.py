"""One partition's log on disk: a directory ``<topic>-<partition>/`` of segments (Kafka's
``UnifiedLog`` + ``LocalLog`` + ``LogLoader``, single replica).

Theory of operation.

*Append.* A producer's blob is walked batch by batch (frame + CRC via the records layer, then
Kafka's client-batch checks), offsets are assigned from the log end offset and the leader epoch
stamped in place (both outside the CRC), LogAppendTime re-stamps the max timestamp (inside the
CRC, so it is recomputed), and the whole blob reaches the active segment with one ``write``.
No record is decoded. A ``write`` puts the bytes in the page cache, so a killed process loses
nothing acknowledged; ``fsync`` happens on roll, flush, close, and optionally every
``flush.messages`` messages / ``flush.ms`` milliseconds, as in Kafka.

*Read.* Binary search the segment by base offset, then the segment's sparse index, then walk
batch headers; the answer is a :class:`FileRegion` of whole batches inside one segment.

*Recovery.* Everything below the *recovery point* was fsync'd and is trusted. After an unclean
shutdown the segments from the one holding the recovery point on are revalidated batch by batch
and cut at the first bad byte, so recovery time depends on the unflushed tail, not on the size
of the log. The passes are numbered in :meth:`Log._load`.

*Leader epochs.* ``leader-epoch-checkpoint`` (Kafka's format) summarises which leader epoch
wrote which offsets (:mod:`kafkacompat.storage.epoch`). Changes are written (atomically, with
fsync) whenever the recovery point moves (flush, roll, close) and by :meth:`Log.maybe_flush`,
never on the append path: recovery re-derives every entry of the unflushed tail from the
batches, so the file only has to be complete below the recovery point. Kafka instead fsyncs it
inside the append that starts an epoch, which here would put two fsyncs on the first produce
to every partition. A missing or unreadable file is rebuilt from the batch headers.

*Deletion.* Retention and DeleteRecords rename whole segments to ``*.deleted`` and unlink them
``file.delete.delay.ms`` later (:meth:`Log.delete_expired_files`, also run by
:meth:`Log.apply_retention`), so a fetch holding a :class:`FileRegion` can still read it.

*Time* is always passed in (``now_ms``); nothing here reads the wall clock.

*Descriptors.* Index files are opened only for the moment of a flush or a load. A segment's
``.log`` descriptor comes either from a shared ``fd_pool`` (``kafkacompat.storage.fdpool.FdPool``:
borrowed per system call, so the pool bounds open files across all partitions), or, without
one, is opened lazily through ``opener`` and kept until :meth:`Log.close_handles` (which closes
every inactive segment's descriptor) or :meth:`Log.close`.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from kafkacompat.records.batch import (
    FIELD_BATCH_LENGTH,
    FIELD_LAST_OFFSET_DELTA,
    FIELD_MAX_TIMESTAMP,
    LOG_OVERHEAD,
    OFFSET_LENGTH_EPOCH,
    RecordBatch,
    TimestampType,
)
from kafkacompat.storage.atomic_file import CorruptFileError, fsync_dir
from kafkacompat.storage.base import (
    AppendInfo,
    FileRegion,
    KafkaStorageError,
    OffsetOutOfRangeError,
    ReadResult,
    TimestampOffset,
)
from kafkacompat.storage.checkpoint_file import (
    LEADER_EPOCH_CHECKPOINT,
    read_leader_epoch_checkpoint,
    write_leader_epoch_checkpoint,
)
from kafkacompat.storage.cleaned_segment import (
    CLEANED_SUFFIX,
    SWAP_SUFFIX,
    CleanedSegment,
    swap_file_next_offset,
)
from kafkacompat.storage.disk_io import LogDirFailure, describe
from kafkacompat.storage.epoch import LeaderEpochCache
from kafkacompat.storage.index import CorruptIndexError
from kafkacompat.storage.log_validator import (
    ValidatedRecords,
    ValidatorSettings,
    validate_records,
)
from kafkacompat.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    MAX_RELATIVE_OFFSET,
    NO_TIMESTAMP,
    TIME_INDEX_SUFFIX,
    BatchSpan,
    FdSource,
    LogSegment,
    Opener,
)
from kafkacompat.storage.transaction_index import (
    TXN_INDEX_SUFFIX,
    TransactionIndex,
)

log = logging.getLogger(__name__)

LOG_APPEND_TIME: Final = "LogAppendTime"
# Leftovers of interrupted renames, cleanings and deletions; Kafka deletes these on load.
_STRAY_SUFFIXES: Final = (".tmp", ".deleted", ".cleaned", ".swap")
_LOG_SWAP: Final = LOG_SUFFIX + ".swap"
_SEGMENT_FILE: Final = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex|\.txnindex)$")


class LogSettings(ValidatorSettings, Protocol):
    """The topic configs a log obeys (the validator's among them);
    ``kafkacompat.storage.config.LogConfig`` fits."""

    @property
    def segment_ms(self) -> int: ...
    @property
    def segment_index_bytes(self) -> int: ...
    @property
    def index_interval_bytes(self) -> int: ...
    @property
    def retention_ms(self) -> int: ...
    @property
    def retention_bytes(self) -> int: ...
    @property
    def flush_messages(self) -> int | None: ...
    @property
    def flush_ms(self) -> int | None: ...
    @property
    def file_delete_delay_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DefaultLogSettings:
    """Kafka's defaults, for tests and for callers without a config object."""

    segment_bytes: int = 1 << 30
    segment_ms: int = 604_800_000
    segment_index_bytes: int = 10_485_760
    index_interval_bytes: int = 4096
    retention_ms: int = 604_800_000
    retention_bytes: int = -1
    message_timestamp_type: str = "CreateTime"
    flush_messages: int | None = None
    flush_ms: int | None = None
    max_message_bytes: int = 1_048_588
    file_delete_delay_ms: int = 60_000
    # Unbounded here (Kafka 4.0 bounds ``after`` by an hour): a bare Log in a test appends
    # whatever timestamps it is given.
    message_timestamp_before_max_ms: int = 2**63 - 1
    message_timestamp_after_max_ms: int = 2**63 - 1
    message_timestamp_difference_max_ms: int = 2**63 - 1
    compression_type: str = "producer"
    compact: bool = False


@dataclass(slots=True)
class _PendingDeletion:
    """Files renamed to ``*.deleted``, waiting out file.delete.delay.ms."""

    paths: list[str]
    renamed_at_ms: int | None
    """None until the next sweep: DeleteRecords is not told the time, so the delay counts from
    the first sweep after it, never less than the delay from the rename."""


@dataclass(slots=True)
class RollFlush:
    """A rolled segment whose fsync the broker runs off the event loop."""

    segment: LogSegment
    new_base: int
    """The recovery point once this segment (and every one before it) is durable."""
    fd: int | None = None


class Log:
    """A partition's segments on disk; implements :class:`kafkacompat.storage.base.PartitionLog`.

    ``recovery_point`` and ``log_start_offset`` come from the manager's checkpoint files;
    ``clean_shutdown`` from its clean-shutdown marker. Read :attr:`recovery_point` and
    :attr:`log_start_offset` back to checkpoint them.
    """

    def __init__(
        self,
        directory: str,
        settings: LogSettings | None = None,
        *,
        now_ms: int,
        log_start_offset: int = 0,
        recovery_point: int = 0,
        clean_shutdown: bool = True,
        opener: Opener = os.open,
        fd_pool: FdSource | None = None,
        deferred_roll_flush: bool = False,
    ) -> None:
        self.directory = directory
        self.settings: LogSettings = settings if settings is not None else DefaultLogSettings()
        self._opener = opener
        self._fd_pool = fd_pool
        self._segments: list[LogSegment] = []
        self._base_offsets: list[int] = []
        self._log_start_offset = log_start_offset
        self._recovery_point = recovery_point
        self._unflushed_messages = 0
        self._last_flush_ms = now_ms
        self.recovered_bytes_truncated = 0
        self.deferred_roll_flush = deferred_roll_flush
        self.on_roll: Callable[[int], None] | None = None
        """Called with the new segment's base offset before a roll starts it: the unified log
        snapshots producer state there, as Kafka's roll does."""
        self._roll_flushes: list[RollFlush] = []
        self._epochs = LeaderEpochCache()
        self._epochs_dirty = False  # changed in memory since the checkpoint was written
        self._pending_deletions: list[_PendingDeletion] = []
        self.offline_reason: str | None = None
        """Why the log went offline (a failed fsync), None while it serves."""
        self._failing: set[str] = set()  # operations whose failure was logged, until they succeed
        os.makedirs(directory, exist_ok=True)
        self._load(clean_shutdown)

    # -- loading and recovery (Kafka's LogLoader) ------------------------------------------------

    def _new_segment(self, base_offset: int) -> LogSegment:
        return LogSegment(
            self.directory,
            base_offset,
            index_interval_bytes=self.settings.index_interval_bytes,
            max_index_size=self.settings.segment_index_bytes,
            opener=self._opener,
            fd_pool=self._fd_pool,
        )

    def _load(self, clean_shutdown: bool) -> None:
        # Pass 1: list the directory; delete leftovers of interrupted operations and index
        # files whose log is gone, and collect the segments' base offsets.
        names = os.listdir(self.directory)
        if any(name.endswith(_LOG_SWAP) for name in names):
            self._complete_swaps(names)
            names = os.listdir(self.directory)
        base_offsets: set[int] = set()
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(_STRAY_SUFFIXES):
                os.unlink(path)
                continue
            match = _SEGMENT_FILE.match(name)
            if match and match.group(2) == LOG_SUFFIX:
                base_offsets.add(int(match.group(1)))
        for name in names:
            match = _SEGMENT_FILE.match(name)
            if match and match.group(2) != LOG_SUFFIX and int(match.group(1)) not in base_offsets:
                os.unlink(os.path.join(self.directory, name))
        self._segments = [self._new_segment(base) for base in sorted(base_offsets)]
        self._base_offsets = [segment.base_offset for segment in self._segments]

        # Pass 2: indexes that are missing or fail the O(1) sanity check are rebuilt from the
        # log. Deeper checks (ordering, entries past the log end) run when a segment's indexes
        # are first loaded, with the same remedy.
        unflushed_from = self._first_unflushed_index(clean_shutdown)
        for i, segment in enumerate(self._segments):
            try:
                segment.check_indexes()
            except CorruptIndexError:
                if i < unflushed_from:  # the rest are rebuilt by pass 4 anyway
                    segment.rebuild_indexes()

        # Pass 3: the leader epoch cache, as far as the flushed segments go. Entries from the
        # first unflushed segment on are dropped: pass 4 re-derives them from the batches that
        # survive. Without a (readable) checkpoint, the flushed segments' headers say it all.
        on_disk = self._read_epoch_checkpoint()
        if on_disk is None:
            for segment in self._segments[:unflushed_from]:
                segment.scan_leader_epochs(self._epochs)
        elif unflushed_from < len(self._segments):
            self._epochs.truncate_from_end(self._segments[unflushed_from].base_offset)

        # Pass 4: after an unclean shutdown, revalidate every batch written since the recovery
        # point, truncate at the first invalid byte, and drop any later segment: the log must
        # stay contiguous, and nothing after a hole can have been acknowledged as durable.
        for i in range(unflushed_from, len(self._segments)):
            segment = self._segments[i]
            truncated = segment.recover(self._epochs)
            self.recovered_bytes_truncated += truncated
            if truncated:
                for later in self._segments[i + 1 :]:
                    self.recovered_bytes_truncated += later.size
                    later.delete()
                del self._segments[i + 1 :]
                break
        # An empty segment between others holds nothing; drop it. The first one stays: it is
        # what a compaction that emptied the oldest segments left, and it keeps the log start.
        if len(self._segments) > 2:
            middle = self._segments[1:-1]
            for segment in middle:
                if segment.is_empty:
                    segment.delete()
            kept = [segment for segment in middle if not segment.is_empty]
            self._segments = [self._segments[0], *kept, self._segments[-1]]
        self._base_offsets = [segment.base_offset for segment in self._segments]

        # Pass 5: the log end offset comes from the last valid batch, and never sits below the
        # log start offset (DeleteRecords may have moved it past everything on disk); in that
        # case the log restarts empty at the log start offset, as Kafka's does.
        if self._segments:
            self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        if not self._segments or self._segments[-1].next_offset < self._log_start_offset:
            for segment in self._segments:
                segment.delete()
            self._segments = [self._new_segment(self._log_start_offset)]
            self._base_offsets = [self._log_start_offset]
        if not clean_shutdown:
            # Recovered bytes may still be only in the page cache; make them durable before
            # claiming them below the recovery point.
            for segment in self._segments[unflushed_from:]:
                segment.flush()
            self._recovery_point = self.log_end_offset
        self._recovery_point = min(
            max(self._recovery_point, self._log_start_offset), self.log_end_offset
        )

        # Pass 6: the epoch cache follows the final log bounds (Kafka's truncateFromEnd and
        # truncateFromStart after loading); persisted if that changed it, or if it was rebuilt
        # from a non-empty log (so the rebuild is not repeated at every start).
        self._epochs.truncate_from_end(self.log_end_offset)
        self._epochs.truncate_from_start(self._log_start_offset)
        if (on_disk is None and self.log_end_offset > self._log_start_offset) or (
            on_disk is not None and self._epochs.entries != on_disk
        ):
            self._write_epoch_checkpoint()

    def _complete_swaps(self, names: list[str]) -> None:
        """Finish a compaction swap a crash interrupted (Kafka's LogLoader): ``.swap`` files
        were complete and fsync'd before the first was named so, so each replaces every
        segment whose base offset falls in its range and takes its final name. A ``.swap``
        of a newer base than some ``.cleaned`` file belongs to a round that never got that
        far and is dropped with it (pass 1 deletes the ``.cleaned`` files)."""
        swap_logs = sorted(
            int(name[:20])
            for name in names
            if name.endswith(LOG_SUFFIX + SWAP_SUFFIX)
            and _SEGMENT_FILE.match(name[: -len(SWAP_SUFFIX)])
        )
        if not swap_logs:
            return
        cleaned = [int(n[:20]) for n in names if n.endswith(CLEANED_SUFFIX) and n[:20].isdigit()]
        if cleaned:
            swap_logs = [base for base in swap_logs if base < min(cleaned)]
            if not swap_logs:
                return
        ranges: list[tuple[int, int]] = []
        for base in swap_logs:
            path = os.path.join(self.directory, f"{base:020d}{LOG_SUFFIX}{SWAP_SUFFIX}")
            next_offset = swap_file_next_offset(path)
            ranges.append((base, base + 1 if next_offset is None else next_offset))
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        for name in names:
            match = _SEGMENT_FILE.match(name)
            if match and low <= int(match.group(1)) < high:
                os.unlink(os.path.join(self.directory, name))
        for base in swap_logs:
            for name in names:
                if name.startswith(f"{base:020d}.") and name.endswith(SWAP_SUFFIX):
                    source = os.path.join(self.directory, name)
                    os.replace(source, source[: -len(SWAP_SUFFIX)])
        fsync_dir(self.directory)

    @property
    def _epoch_checkpoint_path(self) -> str:
        return os.path.join(self.directory, LEADER_EPOCH_CHECKPOINT)

    def _read_epoch_checkpoint(self) -> list[tuple[int, int]] | None:
        """Load the checkpoint into the cache; returns its entries, or None when it is missing
        or unreadable (it holds nothing the log's batches cannot tell again)."""
        try:
            entries = read_leader_epoch_checkpoint(self._epoch_checkpoint_path)
            if entries is not None:
                self._epochs = LeaderEpochCache(entries)
            return entries
        except (CorruptFileError, ValueError):
            self._epochs = LeaderEpochCache()
            return None

    def _write_epoch_checkpoint(self) -> None:
        write_leader_epoch_checkpoint(self._epoch_checkpoint_path, self._epochs.entries)
        self._epochs_dirty = False

    def _first_unflushed_index(self, clean_shutdown: bool) -> int:
        """Index of the segment holding the recovery point (len(segments) after a clean stop)."""
        if clean_shutdown or not self._segments:
            return len(self._segments)
        return max(bisect.bisect_right(self._base_offsets, self._recovery_point) - 1, 0)

    # -- offsets ---------------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        # A single replica: everything appended is committed.
        return self.log_end_offset

    @property
    def recovery_point(self) -> int:
        """Offsets below this are fsync'd; checkpoint it (recovery-point-offset-checkpoint)."""
        return self._recovery_point

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        return tuple(self._segments)

    @property
    def size_in_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    # -- append ----------------------------------------------------------------------------------

    def append(
        self, records: bytearray | memoryview, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        """Validate (the one LogValidator, as for records that are not a client's) and
        append: the broker's own writes and tests; clients' go through ``UnifiedLog``."""
        return self.append_validated(
            validate_records(records, self.settings, now_ms, from_client=False),
            leader_epoch=leader_epoch,
            now_ms=now_ms,
        )

    def append_validated(
        self, validated: ValidatedRecords, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo:
        if self.offline_reason is not None:
            raise self._offline_error()
        view, batches, message_count = validated.records, validated.batches, validated.message_count
        size = len(view)
        settings = self.settings
        segment = self._segments[-1]
        base_offset = segment.next_offset
        log_append_time = now_ms if settings.message_timestamp_type == LOG_APPEND_TIME else -1
        offset = base_offset
        max_timestamp = NO_TIMESTAMP
        spans: list[BatchSpan] = []
        stamp = OFFSET_LENGTH_EPOCH.pack_into
        for position, fields in batches:
            batch_length = fields[FIELD_BATCH_LENGTH]
            stamp(view, position, offset, batch_length, leader_epoch)
            batch_max_timestamp = fields[FIELD_MAX_TIMESTAMP]
            if log_append_time != -1:
                batch = RecordBatch(view[position : position + batch_length + LOG_OVERHEAD])
                batch.set_max_timestamp(TimestampType.LOG_APPEND_TIME, log_append_time)
                batch_max_timestamp = log_append_time
            if batch_max_timestamp > max_timestamp:
                max_timestamp = batch_max_timestamp
            offset += fields[FIELD_LAST_OFFSET_DELTA] + 1
            spans.append((batch_length + LOG_OVERHEAD, offset - 1, batch_max_timestamp))
        last_offset = offset - 1

        try:
            if segment.size and self._should_roll(segment, size, last_offset, now_ms):
                segment = self.roll()
            segment.append(view, spans, now_ms)
        except OSError as exc:
            # The segment cut its file back: the log is as before this append (a roll that
            # failed half way left the old segment active), and the same append may succeed
            # once space is freed.
            raise self._storage_error("append to", exc) from exc
        if self._failing:
            self._recovered("append to")
        if leader_epoch > self._epochs.latest_epoch:
            self._epochs.assign(leader_epoch, base_offset)
            self._epochs_dirty = True  # persisted before the recovery point passes it
        self._unflushed_messages += message_count
        if settings.flush_messages is not None or settings.flush_ms is not None:
            try:
                self._maybe_flush_after_append(now_ms)
            except LogDirFailure as exc:
                # Written, but the fsync that was to make it durable failed: never acknowledged.
                raise self._storage_error("flush", exc) from exc
            except OSError as exc:
                # Every .log fsync succeeded (Log.flush syncs them before anything else); only
                # an index or the epoch checkpoint could not be written. The data is durable,
                # so the append stands; the recovery point stays and the flusher tries again.
                self._warn_once("flush", exc)
        return AppendInfo(
            base_offset, last_offset, max_timestamp, log_append_time, self._log_start_offset
        )

    def _should_roll(self, segment: LogSegment, size: int, last_offset: int, now_ms: int) -> bool:
        """Kafka's shouldRoll for a non-empty active segment: full by bytes, old by segment.ms,
        full indexes, or relative offsets that would no longer fit an int32."""
        settings = self.settings
        rolling_base = segment.rolling_base_ms
        return (
            segment.size > settings.segment_bytes - size
            or (rolling_base is not None and now_ms - rolling_base >= settings.segment_ms)
            or segment.indexes_full
            or last_offset - segment.base_offset > MAX_RELATIVE_OFFSET
        )

    def roll(self) -> LogSegment:
        """Close the active segment for appends and start one at the log end offset."""
        old = self.active_segment
        if old.is_empty:
            return old
        old.on_become_inactive()
        new_base = old.next_offset
        if self.on_roll is not None:
            self.on_roll(new_base)
        if self.deferred_roll_flush:
            # Kafka flushes a rolled segment asynchronously (its "flush-log" task): a 1 GiB
            # fsync here would stall every connection of the broker. The recovery point stays
            # put until the broker reports the fsync done (complete_roll_flush).
            self._roll_flushes.append(RollFlush(old, new_base))
        else:
            old.flush()
            if self._epochs_dirty:
                self._write_epoch_checkpoint()
        new = self._new_segment(new_base)
        for stale in (new.log_path, new.offset_index.path, new.time_index.path):
            if os.path.exists(stale):  # cannot happen in a consistent directory; be safe
                os.unlink(stale)
        new.size = 0
        self._segments.append(new)
        self._base_offsets.append(new_base)
        if not self.deferred_roll_flush:
            self._recovery_point = max(self._recovery_point, new_base)
        return new

    def take_roll_flushes(self) -> list[RollFlush]:
        """Rolled segments waiting for their fsync, each with a descriptor of its own (a
        ``dup``, so the pool may close the segment's) for another thread to fsync; hand each
        back to :meth:`complete_roll_flush` on this thread, in order, then close the fd."""
        if self.offline_reason is not None:
            return []
        pending, self._roll_flushes = self._roll_flushes, []
        for flush in pending:
            flush.fd = os.dup(flush.segment.fd) if flush.segment.dirty else None
        return pending

    def complete_roll_flush(self, flush: RollFlush) -> None:
        """After ``os.fsync(flush.fd)``: persist the segment's indexes and move the recovery
        point past it. A segment deleted meanwhile (retention) needs nothing more."""
        segment = flush.segment
        if segment not in self._segments:
            return
        segment.dirty = False
        segment.offset_index.flush()
        segment.time_index.flush()
        if self._epochs_dirty:
            self._write_epoch_checkpoint()
        # Only past segments that are all durable: an older roll still in flight holds it back.
        if not any(f.new_base <= flush.new_base for f in self._roll_flushes):
            self._recovery_point = max(self._recovery_point, flush.new_base)

    # -- disk failures ---------------------------------------------------------------------------

    def go_offline(self, exc: BaseException) -> None:
        """Stop serving after a failure that leaves the disk's content unknown (Kafka halts the
        log dir): every append and read answers KAFKA_STORAGE_ERROR until a restart, whose
        recovery revalidates everything above the recovery point. Logged once, loudly."""
        if self.offline_reason is not None:
            return
        self.offline_reason = describe(exc)
        log.error(
            "partition log %s is OFFLINE after a disk failure: %s; its producers and "
            "consumers get KAFKA_STORAGE_ERROR until the broker is restarted (recovery then "
            "revalidates its unflushed tail)",
            self.directory,
            self.offline_reason,
        )

    def _offline_error(self) -> KafkaStorageError:
        return KafkaStorageError(
            f"the log of {os.path.basename(self.directory)} is offline: {self.offline_reason}"
        )

    def _storage_error(self, what: str, exc: OSError) -> KafkaStorageError:
        if isinstance(exc, LogDirFailure):
            self.go_offline(exc)
            return self._offline_error()
        self._warn_once(what, exc)
        return KafkaStorageError(
            f"cannot {what} {os.path.basename(self.directory)}: {describe(exc)}"
        )

    def _warn_once(self, what: str, exc: OSError) -> None:
        # A full disk fails every append until space is freed: one line when it starts, one
        # when it ends (see _recovered), not one per produce request.
        if what not in self._failing:
            self._failing.add(what)
            log.warning("cannot %s %s: %s", what, self.directory, describe(exc))

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.warning("%s %s succeeds again", what, self.directory)

    # -- durability ------------------------------------------------------------------------------

    def _maybe_flush_after_append(self, now_ms: int) -> None:
        settings = self.settings
        if (
            settings.flush_messages is not None
            and self._unflushed_messages >= settings.flush_messages
        ) or (settings.flush_ms is not None and now_ms - self._last_flush_ms >= settings.flush_ms):
            self.flush(now_ms)

    def maybe_flush(self, now_ms: int) -> bool:
        """For the broker's periodic task: flush if ``flush.ms`` has elapsed, and persist a
        changed leader epoch cache. A few attribute reads when there is nothing to do."""
        if self.offline_reason is not None:
            return False
        flush_ms = self.settings.flush_ms
        if (
            flush_ms is not None
            and self._unflushed_messages
            and now_ms - self._last_flush_ms >= flush_ms
        ):
            self.flush(now_ms)
            return True
        if self._epochs_dirty:
            self._write_epoch_checkpoint()
        return False

    def flush(self, now_ms: int | None = None) -> None:
        """fsync everything above the recovery point and move it to the log end offset.

        The ``.log`` files first, then indexes and the epoch checkpoint: a failure after the
        first pass (a full disk refusing an index write) leaves no data undurable. A failed
        fsync takes the log offline (:class:`LogDirFailure` propagates); nothing is flushed
        on an offline log, so its recovery point never passes data that fsync covered."""
        if self.offline_reason is not None:
            return
        first = max(bisect.bisect_right(self._base_offsets, self._recovery_point) - 1, 0)
        segments = self._segments[first:]
        try:
            for segment in segments:
                segment.flush_data()
        except LogDirFailure as exc:
            self.go_offline(exc)
            raise
        for segment in segments:
            segment.flush()
        if self._epochs_dirty:  # before the recovery point vouches for the epochs' batches
            self._write_epoch_checkpoint()
        self._recovery_point = self.log_end_offset
        self._roll_flushes.clear()  # covered by the fsyncs above
        self._unflushed_messages = 0
        if now_ms is not None:
            self._last_flush_ms = now_ms
        if self._failing:
            self._recovered("flush")

    def close_handles(self) -> None:
        """Close every inactive segment's ``.log`` descriptor and drop its cached index
        entries; both come back on next use."""
        for segment in self._segments[:-1]:
            segment.close_handles()
            segment.offset_index.unload()
            segment.time_index.unload()

    def close(self) -> None:
        """Flush, unlink every file still waiting for deletion (nothing reads it once the log
        is gone; a crash before this leaves them to the next load), close descriptors."""
        self.flush()  # nothing on an offline log: the next start recovers it
        self._unlink_pending(self._pending_deletions)
        self._pending_deletions = []
        for segment in self._segments:
            segment.close_handles()

    # -- read ------------------------------------------------------------------------------------

    def _check_range(self, offset: int) -> None:
        if offset < self._log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start_offset}, {self.log_end_offset}]"
            )

    def txn_index_for(self, offset: int) -> TransactionIndex | None:
        """The aborted-transaction index of the segment holding ``offset``."""
        i = bisect.bisect_right(self._base_offsets, offset) - 1
        return self._segments[max(i, 0)].txn_index

    def txn_indexes_from(self, offset: int) -> list[TransactionIndex]:
        """The indexes of the segment holding ``offset`` and every later one."""
        i = bisect.bisect_right(self._base_offsets, offset) - 1
        return [segment.txn_index for segment in self._segments[max(i, 0) :]]

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        if self.offline_reason is not None:
            raise self._offline_error()
        self._check_range(offset)
        i = bisect.bisect_right(self._base_offsets, offset) - 1
        for segment in self._segments[max(i, 0) :]:
            found = segment.read(offset, max_bytes)
            if found is not None:
                position, length = found
                region: FileRegion | bytes = FileRegion(segment.log_path, position, length)
                break
        else:
            region = b""
        return ReadResult(region, self.high_watermark, self._log_start_offset)

    def _first_record_at_or_after(
        self, segment: LogSegment, position: int, size: int, timestamp: int, start_offset: int
    ) -> TimestampOffset | None:
        """Kafka returns the first *record*, not batch, at or after the timestamp: decode the
        one batch found (the only per-record work ListOffsets needs)."""
        batch = segment.read_batch(position, size)
        for record in batch.iter_records():
            if record.timestamp >= timestamp and record.offset >= start_offset:
                return TimestampOffset(record.timestamp, record.offset)
        return None

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """The first record at or after the log start with timestamp >= ``timestamp``.
        The special ListOffsets timestamps (-1 latest, -2 earliest, -3 max) are the caller's."""
        if self.offline_reason is not None:
            raise self._offline_error()
        start = self._log_start_offset
        for segment in self._segments:
            if segment.next_offset <= start or segment.max_timestamp < timestamp:
                continue
            header = segment.find_batch_by_timestamp(timestamp, start)
            if header is None:
                continue
            found = self._first_record_at_or_after(
                segment, header.position, header.size, timestamp, start
            )
            if found is not None:
                return found
        return None

    def max_timestamp_offset(self) -> TimestampOffset | None:
        if self.offline_reason is not None:
            raise self._offline_error()
        best: LogSegment | None = None
        for segment in self._segments:
            if segment.next_offset <= self._log_start_offset or segment.is_empty:
                continue
            if best is None or segment.max_timestamp > best.max_timestamp:
                best = segment
        if best is None:
            return None
        header = best.find_batch(best.offset_of_max_timestamp)
        if header is None:
            return None
        found = self._first_record_at_or_after(
            best, header.position, header.size, best.max_timestamp, self._log_start_offset
        )
        # The record itself may sit just below the log start inside its batch (as MemoryLog).
        return found or TimestampOffset(
            best.max_timestamp, max(header.base_offset, self._log_start_offset)
        )

    # -- leader epochs ---------------------------------------------------------------------------

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self._epochs.end_offset_for(leader_epoch, self.log_end_offset)

    @property
    def leader_epoch_entries(self) -> list[tuple[int, int]]:
        """(epoch, start offset) pairs, oldest first, as in leader-epoch-checkpoint."""
        return self._epochs.entries

    # -- deletion --------------------------------------------------------------------------------

    def _delete_oldest(self, count: int, now_ms: int | None) -> int:
        """Delete the ``count`` oldest segments (never the active one), deferred by
        file.delete.delay.ms; move the log start."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return 0
        renamed: list[str] = []
        for segment in self._segments[:count]:
            renamed += segment.rename_for_deletion()
        self._pending_deletions.append(_PendingDeletion(renamed, now_ms))
        del self._segments[:count]
        del self._base_offsets[:count]
        self._move_log_start(max(self._log_start_offset, self._segments[0].base_offset))
        return count

    def _move_log_start(self, offset: int) -> None:
        self._log_start_offset = offset
        self._recovery_point = max(self._recovery_point, offset)
        if self._epochs.truncate_from_start(offset):
            self._epochs_dirty = True

    def delete_expired_files(self, now_ms: int) -> int:
        """Unlink segment files renamed for deletion at least file.delete.delay.ms ago;
        returns how many. For the broker's periodic task: nothing but a list check when idle."""
        if not self._pending_deletions:
            return 0
        delay = self.settings.file_delete_delay_ms
        expired: list[_PendingDeletion] = []
        waiting: list[_PendingDeletion] = []
        for pending in self._pending_deletions:
            if pending.renamed_at_ms is None:
                pending.renamed_at_ms = now_ms
            (expired if now_ms - pending.renamed_at_ms >= delay else waiting).append(pending)
        self._pending_deletions = waiting
        return self._unlink_pending(expired)

    @staticmethod
    def _unlink_pending(pending: list[_PendingDeletion]) -> int:
        unlinked = 0
        for deletion in pending:
            for path in deletion.paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    unlinked += 1
        return unlinked

    def delete_records_before(self, offset: int) -> int:
        if offset == -1:  # DeleteRecords' "up to the high watermark", as in Kafka
            offset = self.high_watermark
        if offset > self.high_watermark or offset < 0:
            raise OffsetOutOfRangeError(
                f"cannot delete records before {offset}: high watermark is {self.high_watermark}"
            )
        if offset > self._log_start_offset:
            self._move_log_start(offset)
            # Segments whose successor starts at or before the new log start hold nothing
            # readable (Kafka's deleteLogStartOffsetBreachedSegments).
            whole = bisect.bisect_right(self._base_offsets, offset) - 1
            self._delete_oldest(whole, None)
        return self._log_start_offset

    def _delete_oldest_rolling(self, count: int, now_ms: int) -> int:
        if count and count == len(self._segments):
            self.roll()
        return self._delete_oldest(count, now_ms) if count else 0

    def apply_retention(self, now_ms: int) -> int:
        """Kafka's deleteRetentionMsBreachedSegments, then deleteRetentionSizeBreachedSegments:
        whole segments from the oldest, stopping at the first that must stay; returns how many.
        Also unlinks files whose file.delete.delay.ms has passed. Cheap on a one-segment log,
        so the broker may call it for every partition every few seconds."""
        if self.offline_reason is not None:
            return 0  # an offline log is left as it is for the recovery at the next start
        deleted = 0
        settings = self.settings
        if not getattr(settings, "delete", True):
            # cleanup.policy=compact alone: retention never applies; the cleaner keeps it small.
            if self._pending_deletions:
                self.delete_expired_files(now_ms)
            return 0
        # The active segment counts too once it holds data: as Kafka does, when every segment
        # is past retention the log rolls and then deletes them all, so an expired topic empties
        # instead of keeping its newest segment forever.
        # An empty segment stops the walk only if it is the active one: compaction may leave
        # empty ones before it, and they expire like any other.
        active = self._segments[-1]
        if settings.retention_ms >= 0:
            count = 0
            for segment in self._segments:
                if (segment.is_empty and segment is active) or (
                    now_ms - segment.max_timestamp <= settings.retention_ms
                ):
                    break
                count += 1
            deleted += self._delete_oldest_rolling(count, now_ms)
        if settings.retention_bytes >= 0:
            active = self._segments[-1]  # a roll above may have made a new one
            excess = self.size_in_bytes - settings.retention_bytes
            count = 0
            for segment in self._segments:
                if (segment.is_empty and segment is active) or excess - segment.size < 0:
                    break
                excess -= segment.size
                count += 1
            deleted += self._delete_oldest_rolling(count, now_ms)
        if self._pending_deletions:
            self.delete_expired_files(now_ms)
        return deleted

    # -- compaction ------------------------------------------------------------------------------

    def replace_segments(self, cleaned: CleanedSegment, now_ms: int) -> bool:
        """Swap a cleaned segment in for the segments it was made from (Kafka's
        ``replaceSegments``); False, with the cleaned files removed, if any of those segments
        is gone meanwhile (retention, DeleteRecords, topic deletion). Runs on the thread that
        serves reads: a read copies its bytes out before anything else runs, so no reader
        ever sees the old segment's name pointing at the new file."""
        old = [snapshot.segment for snapshot in cleaned.replaces]
        try:
            first = self._segments.index(old[0])
        except ValueError:
            cleaned.discard()
            return False
        if self._segments[first : first + len(old)] != old or first + len(old) >= len(
            self._segments
        ):
            cleaned.discard()
            return False
        # The log file goes last: its .swap name is what a reload takes as "swap complete".
        suffixes: tuple[str, ...] = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX)
        # The cleaner wrote the index of the aborted transactions whose markers it kept (the
        # others' data is gone); it moves with the other files.
        if cleaned.aborted_txns:
            suffixes = (TXN_INDEX_SUFFIX, *suffixes)
        for suffix in suffixes:
            os.replace(cleaned.path(suffix, CLEANED_SUFFIX), cleaned.path(suffix, SWAP_SUFFIX))
        renamed: list[str] = []
        for segment in old:
            renamed += segment.rename_for_deletion()
        self._pending_deletions.append(_PendingDeletion(renamed, now_ms))
        for suffix in reversed(suffixes):
            os.replace(cleaned.path(suffix, SWAP_SUFFIX), cleaned.path(suffix, ""))
        fsync_dir(self.directory)
        new = self._new_segment(cleaned.base_offset)
        self._segments[first : first + len(old)] = [new]
        self._base_offsets = [segment.base_offset for segment in self._segments]
        return True

    def __repr__(self) -> str:
        return (
            f"Log({self.directory!r}, log_start_offset={self._log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, segments={len(self._segments)})"
        )


__all__ = [
    "DefaultLogSettings",
    "Log",
    "LogSettings",
]
