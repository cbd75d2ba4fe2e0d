"""Partition: one topic partition as its replica sees it (Kafka's ``kafka.cluster.Partition``).

Theory of operation.  A partition has a leader, a leader epoch, a replica set and an in-sync
replica set (ISR); the leader's log holds the records.  The *high watermark* is the offset
below which every ISR member has the records: consumers read below it, and it is kept apart
from the *log end offset* (LEO), the offset the next append gets.  The leader advances it
after every append and every follower fetch to the lowest LEO in the ISR
(:meth:`Partition.maybe_increment_high_watermark`).  The *last stable offset* (LSO) bounds
read_committed consumers: the first offset of the earliest open transaction, or the high
watermark if that is lower or none is open (Kafka's ``UnifiedLog.lastStableOffset``).  A
read_committed fetch returns no batch at or past it, and with its records the aborted
transactions that overlap them, from the aborted-transaction index, so the consumer can drop
their records.  Without open transactions the LSO is the high watermark, and a
read_uncommitted fetch reads exactly as before: nothing is scanned.

Today every partition has one replica, this broker, so the ISR is ``[self]``, the high
watermark reaches the LEO at each append, and the leader epoch is the one the log last
recorded (0 for a partition created here).  Replication changes the numbers, not this class's
interface: followers' LEOs join the ISR minimum, and a leader change bumps the epoch.

KIP-320 fencing: a request naming a leader epoch older than ours is FENCED_LEADER_EPOCH, a
newer one UNKNOWN_LEADER_EPOCH; -1 skips the check.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records.batch import LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD
from kafkacompat.storage.base import AppendInfo, OffsetOutOfRangeError
from kafkacompat.storage.transaction_index import AbortedTxn
from kafkacompat.storage.unified_log import UnifiedLog

NO_EPOCH = -1


class FetchIsolation(IntEnum):
    """How far a fetch may read (Kafka's ``FetchIsolation``)."""

    LOG_END = 0  # followers
    HIGH_WATERMARK = 1  # read_uncommitted consumers
    TXN_COMMITTED = 2  # read_committed consumers: the last stable offset


@dataclass(frozen=True, slots=True)
class LogReadResult:
    """One partition's answer to a fetch: records and the offsets the response reports."""

    records: bytes | memoryview
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted_transactions: list[AbortedTxn] | None = None
    """READ_COMMITTED only: the aborted transactions overlapping ``records``."""


class Partition:
    def __init__(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        log: UnifiedLog,
        *,
        local_broker_id: int,
        high_watermark: int | None = None,
    ) -> None:
        self.topic = topic
        self.index = index
        self.topic_id = topic_id
        self.log = log
        self.local_broker_id = local_broker_id
        latest = log.latest_epoch()
        self.leader_epoch = max(latest, 0)
        """The epoch this broker leads in; a new leader would bump it."""
        self.leader_id = local_broker_id
        self.replicas: tuple[int, ...] = (local_broker_id,)
        self.isr: tuple[int, ...] = (local_broker_id,)
        # The checkpointed high watermark, kept inside the log; the leader then moves it on.
        start, end = log.log_start_offset, log.log_end_offset
        hw = end if high_watermark is None else high_watermark
        self._high_watermark = min(max(hw, start), end)
        self.maybe_increment_high_watermark()

    def __repr__(self) -> str:
        return (
            f"Partition({self.topic}-{self.index}, epoch={self.leader_epoch}, "
            f"hw={self._high_watermark}, leo={self.log_end_offset})"
        )

    # -- offsets ---------------------------------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def last_stable_offset(self) -> int:
        first_unstable = self.log.first_unstable_offset
        hw = self._high_watermark
        return hw if first_unstable is None or first_unstable >= hw else first_unstable

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def is_offline(self) -> bool:
        """Its log went offline after a disk failure: no leader until restart (Kafka's
        ``HostedPartition.Offline``)."""
        return self.log.offline

    def maybe_increment_high_watermark(self) -> bool:
        """Move the high watermark to the lowest LEO in the ISR (only this replica today)."""
        new = self.log.log_end_offset
        if new > self._high_watermark:
            self._high_watermark = new
            return True
        return False

    def check_leader_epoch(self, current_leader_epoch: int) -> ErrorCode:
        if self.log.offline:  # before the epoch, as Kafka's getPartitionOrException
            return ErrorCode.KAFKA_STORAGE_ERROR
        if current_leader_epoch == NO_EPOCH or current_leader_epoch == self.leader_epoch:
            return ErrorCode.NONE
        if current_leader_epoch > self.leader_epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
        return ErrorCode.FENCED_LEADER_EPOCH

    def _max_offset(self, isolation: FetchIsolation) -> int:
        if isolation == FetchIsolation.LOG_END:
            return self.log.log_end_offset
        if isolation == FetchIsolation.TXN_COMMITTED:
            return self.last_stable_offset
        return self._high_watermark

    # -- produce ---------------------------------------------------------------------------------

    def append_records_to_leader(
        self, records: bytearray | memoryview, *, now_ms: int, from_client: bool = True
    ) -> AppendInfo:
        """Append through the log's one leader path, then move the high watermark."""
        info = self.log.append_as_leader(
            records, leader_epoch=self.leader_epoch, now_ms=now_ms, from_client=from_client
        )
        self.maybe_increment_high_watermark()
        return info

    # -- fetch -----------------------------------------------------------------------------------

    def read_records(
        self, fetch_offset: int, max_bytes: int, isolation: FetchIsolation
    ) -> LogReadResult:
        """Whole batches from ``fetch_offset`` (at least one, KIP-74), none at or past the
        isolation's bound.  OFFSET_OUT_OF_RANGE outside [log start, LEO]."""
        self.log.check_online()  # a caught-up fetch reads nothing, yet must hear of it
        hw = self._high_watermark
        first_unstable = self.log.first_unstable_offset
        last_stable_offset = (
            hw if first_unstable is None or first_unstable >= hw else first_unstable
        )
        if isolation == FetchIsolation.HIGH_WATERMARK:
            bound = hw
        elif isolation == FetchIsolation.TXN_COMMITTED:
            bound = last_stable_offset
        else:
            bound = self.log.log_end_offset
        start = self.log.log_start_offset
        if not start <= fetch_offset <= self.log.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {fetch_offset} is outside [{start}, {self.log.log_end_offset}] of "
                f"{self.topic}-{self.index}"
            )
        records: bytes | memoryview = b""
        if fetch_offset < bound:
            records = self.log.read_records(fetch_offset, max_bytes)
            # With one replica the high watermark is the LEO after every append, so only
            # an open transaction's LSO cuts a read; replication adds the cut at the HW.
            if isolation == FetchIsolation.TXN_COMMITTED and bound < self.log.log_end_offset:
                records = _cut_at(records, bound)
        if isolation != FetchIsolation.TXN_COMMITTED:
            return LogReadResult(records, hw, last_stable_offset, start)
        aborted: list[AbortedTxn] = []
        if records and self.log.has_aborted_txns_from(fetch_offset):
            aborted = self.log.collect_aborted_txns(fetch_offset, _next_offset(records))
        return LogReadResult(records, hw, last_stable_offset, start, aborted)

    def offset_snapshot(self) -> LogReadResult:
        """The offsets a fetch reports, without reading (a partition past the size limit)."""
        return LogReadResult(
            b"", self._high_watermark, self.last_stable_offset, self.log.log_start_offset
        )

    # -- offsets by time and epoch ---------------------------------------------------------------

    def fetch_offset_for_timestamp(
        self, timestamp: int, isolation: FetchIsolation
    ) -> tuple[int, int, int]:
        """ListOffsets: (timestamp, offset, leader epoch), offset -1 when there is none.
        Special timestamps as Kafka's: -2 earliest, -1 latest (the isolation's bound), -3 the
        largest timestamp (KIP-734), -4 earliest local (KIP-405), -5 earliest tiered."""
        self.log.check_online()
        if timestamp in (-2, -4):
            start = self.log.log_start_offset
            return -1, start, self._epoch_at(start)
        if timestamp == -1:
            bound = self._max_offset(isolation)
            return -1, bound, self._epoch_at(bound)
        if timestamp == -5:
            return -1, -1, -1  # nothing is tiered
        if timestamp == -3:
            found = self.log.max_timestamp_offset()
        elif timestamp < 0:
            raise KafkaProtocolError(f"invalid timestamp {timestamp}", ErrorCode.INVALID_REQUEST)
        else:
            found = self.log.offset_for_timestamp(timestamp)
        if found is None or found.offset >= self._max_offset(isolation):
            return -1, -1, -1
        return found.timestamp, found.offset, self._epoch_at(found.offset)

    def _epoch_at(self, offset: int) -> int:
        """The epoch that wrote ``offset``; past the last batch, or in a log that has none,
        the current leader's (Kafka assigns the leader's epoch at the log end when it becomes
        leader, so its cache always has it)."""
        epoch = self.log.epoch_for_offset(offset)
        return self.leader_epoch if epoch == -1 or offset >= self.log.log_end_offset else epoch

    def last_offset_for_leader_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (the largest epoch <= ``leader_epoch`` we know, its end)."""
        self.log.check_online()
        return self.log.end_offset_for_epoch(leader_epoch)

    # -- deletion --------------------------------------------------------------------------------

    def delete_records_on_leader(self, offset: int) -> int:
        """DeleteRecords: move the log start to ``offset`` (-1: the high watermark); an
        offset past the high watermark is OFFSET_OUT_OF_RANGE, as Kafka answers."""
        target = self._high_watermark if offset == -1 else offset
        if target < 0 or target > self._high_watermark:
            raise OffsetOutOfRangeError(
                f"Cannot increment the log start offset to {offset} of {self.topic}-{self.index} "
                f"since it is larger than the high watermark {self._high_watermark}"
            )
        return self.log.delete_records_before(target)


_BASE_OFFSET: Final = struct.Struct(">qi")  # base offset, batch length: a batch's first 12 bytes
_LAST_OFFSET_DELTA: Final = struct.Struct(">i")


def _cut_at(records: bytes | memoryview, bound: int) -> bytes | memoryview:
    """``records`` without the batches at or past ``bound`` (whole batches, as Kafka cuts a
    read at its max offset)."""
    position = 0
    end = len(records)
    while position + LOG_OVERHEAD <= end:
        base_offset, length = _BASE_OFFSET.unpack_from(records, position)
        if base_offset >= bound:
            break
        position += LOG_OVERHEAD + length
    return records[: min(position, end)]


def _next_offset(records: bytes | memoryview) -> int:
    """The offset after the last batch of ``records`` (whole batches): only the lengths are
    read on the way to the last batch, whose header then gives its last offset."""
    position = 0
    last = -1
    end = len(records) - LAST_OFFSET_DELTA_OFFSET - 4
    length_at = LOG_OVERHEAD - 4
    unpack_length = _LAST_OFFSET_DELTA.unpack_from  # both are one big-endian int32
    while position <= end:
        last = position
        position += LOG_OVERHEAD + unpack_length(records, position + length_at)[0]
    if last < 0:
        return 0
    base_offset, _ = _BASE_OFFSET.unpack_from(records, last)
    (delta,) = _LAST_OFFSET_DELTA.unpack_from(records, last + LAST_OFFSET_DELTA_OFFSET)
    return int(base_offset) + int(delta) + 1
