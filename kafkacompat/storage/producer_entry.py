"""One producer's state in one partition, and the sequence arithmetic it relies on.

Kafka's ``ProducerStateEntry`` and ``BatchMetadata``; sequences follow
``DefaultRecordBatch.incrementSequence``: int32 values that wrap from 2^31-1 to 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_SEQUENCE, RecordBatch

NUM_BATCHES_TO_RETAIN: Final = 5
MAX_SEQUENCE: Final = (1 << 31) - 1  # Integer.MAX_VALUE: sequences wrap to 0 after it
NO_TIMESTAMP: Final = -1
NO_COORDINATOR_EPOCH: Final = -1  # Kafka's RecordBatch.NO_PARTITION_LEADER_EPOCH, as it uses


def increment_sequence(sequence: int, increment: int) -> int:
    """Kafka's ``DefaultRecordBatch.incrementSequence``: sequences live in [0, 2^31-1]."""
    return (sequence + increment) % (MAX_SEQUENCE + 1)


def decrement_sequence(sequence: int, decrement: int) -> int:
    return (sequence - decrement) % (MAX_SEQUENCE + 1)


def in_sequence(last_sequence: int, next_sequence: int) -> bool:
    """Whether ``next_sequence`` may follow ``last_sequence`` (NO_SEQUENCE is followed by 0)."""
    return next_sequence == last_sequence + 1 or (
        next_sequence == 0 and last_sequence == MAX_SEQUENCE
    )


def last_sequence_of(batch: RecordBatch) -> int:
    """Kafka's ``RecordBatch.lastSequence``: derived from the last offset delta, not the count."""
    return increment_sequence(batch.base_sequence, batch.last_offset_delta)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """What is remembered of one appended batch: enough to answer its retry."""

    first_seq: int
    last_seq: int
    first_offset: int
    last_offset_delta: int
    max_timestamp: int

    @property
    def last_offset(self) -> int:
        return self.first_offset + self.last_offset_delta


class ProducerStateEntry:
    """One producer's state in one partition (Kafka's ``ProducerStateEntry``)."""

    __slots__ = (
        "batches",
        "coordinator_epoch",
        "current_txn_first_offset",
        "last_timestamp",
        "producer_epoch",
        "producer_id",
    )

    def __init__(
        self,
        producer_id: int,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        last_timestamp: int = NO_TIMESTAMP,
        batches: Iterable[BatchMetadata] = (),
        coordinator_epoch: int = NO_COORDINATOR_EPOCH,
        current_txn_first_offset: int | None = None,
    ) -> None:
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.last_timestamp = last_timestamp
        self.batches: deque[BatchMetadata] = deque(batches, maxlen=NUM_BATCHES_TO_RETAIN)
        self.coordinator_epoch = coordinator_epoch
        """The epoch of the transaction coordinator that wrote this producer's last marker."""
        self.current_txn_first_offset = current_txn_first_offset
        """The first offset of the producer's open transaction here, None outside one."""

    @property
    def is_empty(self) -> bool:
        return not self.batches

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq if self.batches else NO_SEQUENCE

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    def maybe_update_producer_epoch(self, producer_epoch: int) -> None:
        # Sequences restart with each epoch, so the old epoch's batches cannot match retries.
        if producer_epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = producer_epoch

    def add_batch(self, producer_epoch: int, metadata: BatchMetadata) -> None:
        self.maybe_update_producer_epoch(producer_epoch)
        self.batches.append(metadata)  # the deque's maxlen drops the oldest
        self.last_timestamp = metadata.max_timestamp

    def find_duplicate_batch(self, batch: RecordBatch) -> BatchMetadata | None:
        """The retained batch with the same epoch and sequence range, if ``batch`` is a retry."""
        return self.find_duplicate(
            batch.producer_epoch, batch.base_sequence, last_sequence_of(batch)
        )

    def find_duplicate(
        self, producer_epoch: int, first_seq: int, last_seq: int
    ) -> BatchMetadata | None:
        if producer_epoch != self.producer_epoch:
            return None
        for metadata in self.batches:
            if metadata.first_seq == first_seq and metadata.last_seq == last_seq:
                return metadata
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProducerStateEntry):
            return NotImplemented
        return (
            self.producer_id == other.producer_id
            and self.producer_epoch == other.producer_epoch
            and self.last_timestamp == other.last_timestamp
            and list(self.batches) == list(other.batches)
            and self.coordinator_epoch == other.coordinator_epoch
            and self.current_txn_first_offset == other.current_txn_first_offset
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"ProducerStateEntry(producer_id={self.producer_id}, producer_epoch="
            f"{self.producer_epoch}, last_timestamp={self.last_timestamp}, "
            f"batches={list(self.batches)}, coordinator_epoch={self.coordinator_epoch}, "
            f"current_txn_first_offset={self.current_txn_first_offset})"
        )


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction a marker just closed in this partition (Kafka's ``CompletedTxn``): its
    data spans [first_offset, last_offset), last_offset being the marker's own offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool
