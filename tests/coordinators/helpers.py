"""Batch builders and a produce path (state check, log append, state update) for the tests."""

from __future__ import annotations

from kafkacompat.records import RecordBatch, RecordBatchBuilder
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE
from kafkacompat.storage.base import PartitionLog
from kafkacompat.storage.producer_entry import BatchMetadata
from kafkacompat.storage.producer_state import ProducerStateManager


def batch_bytes(
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    count: int = 1,
    timestamp: int = 1_000,
) -> bytes:
    builder = RecordBatchBuilder(
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence
    )
    for i in range(count):
        builder.append(b"v%d" % i, timestamp=timestamp + i)
    return builder.build()


def batch(
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    count: int = 1,
    timestamp: int = 1_000,
) -> RecordBatch:
    return RecordBatch(
        bytearray(batch_bytes(producer_id, producer_epoch, base_sequence, count, timestamp))
    )


def produce(
    state: ProducerStateManager, log: PartitionLog, blob: bytes, now_ms: int = 1_000
) -> tuple[int, bool]:
    """What the produce handler does; returns (base offset answered, whether it was a duplicate)."""
    plan = state.prepare_append(blob)
    if plan.duplicate is not None:
        return plan.duplicate.first_offset, True
    info = log.append(bytearray(blob), leader_epoch=0, now_ms=now_ms)
    state.complete_append(plan, info.base_offset, info.log_append_time)
    return info.base_offset, False


def entry_batches(state: ProducerStateManager, producer_id: int) -> list[BatchMetadata]:
    entry = state.last_entry(producer_id)
    assert entry is not None
    return list(entry.batches)
