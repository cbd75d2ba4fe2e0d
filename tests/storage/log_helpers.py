"""Shared helpers for the disk log tests: batch builders and a whole-log reader."""

from __future__ import annotations

import random
from dataclasses import replace

from kafkacompat.records import RecordBatchBuilder, iter_batches
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.log import DefaultLogSettings, Log

SMALL = DefaultLogSettings(segment_bytes=8192, index_interval_bytes=256)


def settings(**overrides: object) -> DefaultLogSettings:
    return replace(SMALL, **overrides)  # type: ignore[arg-type]


def make_batch(values: list[bytes], timestamp: int = 1_000, step: int = 1) -> bytes:
    builder = RecordBatchBuilder()
    for i, value in enumerate(values):
        builder.append(value, timestamp=timestamp + i * step, key=b"k%d" % i)
    return builder.build()


def random_blob(
    rng: random.Random, tag: int, timestamp: int = 1_000
) -> tuple[bytearray, list[bytes]]:
    """One to three batches of random sizes; returns the blob and its values in order."""
    blob = bytearray()
    values: list[bytes] = []
    for b in range(rng.randint(1, 3)):
        batch_values = [
            b"%d-%d-%d-" % (tag, b, i) + rng.randbytes(rng.randint(0, 300))
            for i in range(rng.randint(1, 8))
        ]
        blob += make_batch(batch_values, timestamp)
        values += batch_values
    return blob, values


def region_bytes(log: Log, offset: int, max_bytes: int) -> bytes:
    result = log.read(offset, max_bytes)
    records = result.records
    return records.read() if isinstance(records, FileRegion) else bytes(records)


def read_all_values(log: Log, max_bytes: int = 1 << 20) -> list[tuple[int, bytes]]:
    """Every (offset, value) from the log start to the end, via read()."""
    out: list[tuple[int, bytes]] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = region_bytes(log, offset, max_bytes)
        assert data, f"empty read at {offset} below LEO {log.log_end_offset}"
        for batch in iter_batches(data):
            for record in batch.iter_records():
                if record.offset >= offset:
                    assert record.value is not None
                    out.append((record.offset, record.value))
            offset = batch.next_offset
    return out


def epochs_from_batches(log: Log) -> list[tuple[int, int]]:
    """The leader epoch entries a log's readable batches imply: an entry wherever a batch's
    leader epoch exceeds every earlier one, the first moved up to the log start."""
    entries: list[tuple[int, int]] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        for batch in iter_batches(region_bytes(log, offset, 1 << 20)):
            epoch = batch.partition_leader_epoch
            if epoch >= 0 and (not entries or epoch > entries[-1][0]):
                entries.append((epoch, max(batch.base_offset, log.log_start_offset)))
            offset = batch.next_offset
    return entries
