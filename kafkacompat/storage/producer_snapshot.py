"""Producer state snapshot files: ``<20-digit offset>.snapshot`` in the partition directory.

Kafka's file name and place; the format is ours. Snapshot file layout (all integers big-endian)::

    magic            4 bytes  b"kcps" (so Kafka's reader rejects it and rebuilds from the log)
    version          uint16   2 (version 1, without the two transaction fields, is still read)
    crc              uint32   CRC-32C of every byte after this field
    offset           int64    the offset the snapshot describes the state at; = the file name
    producer count   int32
    per producer:
      producer id      int64
      producer epoch   int16
      last timestamp   int64
      coordinator epoch         int32   (v2) the epoch of the coordinator of its last marker
      current txn first offset  int64   (v2) its open transaction's first offset, -1 if none
      batch count      int8     0..5, oldest first
      per batch:
        first sequence     int32
        last sequence      int32
        first offset       int64
        last offset delta  int32
        max timestamp      int64

Kafka's own snapshot keeps only the last batch per producer, so after a restart it detects a
duplicate of that batch only; this one keeps all five. Like Kafka's it carries each producer's
coordinator epoch and open transaction, so a restart knows the transactions still undecided.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import crc32c

from kafkacompat.storage.producer_entry import (
    NO_COORDINATOR_EPOCH,
    NUM_BATCHES_TO_RETAIN,
    BatchMetadata,
    ProducerStateEntry,
)

SNAPSHOT_SUFFIX: Final = ".snapshot"

_SNAPSHOT_FILE: Final = re.compile(r"^(\d{20})\.snapshot$")
_SNAPSHOT_MAGIC: Final = b"kcps"
_SNAPSHOT_VERSION: Final = 2
_SNAPSHOT_VERSIONS_READ: Final = (1, 2)
_SNAPSHOT_HEADER: Final = struct.Struct(">4sHIqi")
_SNAPSHOT_CRC_END: Final = 10  # magic + version + crc: the CRC covers everything after
_SNAPSHOT_PRODUCER_V1: Final = struct.Struct(">qhqb")
_SNAPSHOT_PRODUCER: Final = struct.Struct(">qhqiqb")
_NO_TXN: Final = -1
_SNAPSHOT_BATCH: Final = struct.Struct(">iiqiq")


class CorruptSnapshotError(Exception):
    """A producer snapshot that cannot be trusted; it is deleted and the log scanned instead."""


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """The directory's producer snapshots as (offset, path), oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _SNAPSHOT_FILE.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


def encode_snapshot(offset: int, producers: Iterable[ProducerStateEntry]) -> bytes:
    entries = sorted(producers, key=lambda entry: entry.producer_id)
    body = bytearray(_SNAPSHOT_HEADER.size)
    for entry in entries:
        txn_first = entry.current_txn_first_offset
        body += _SNAPSHOT_PRODUCER.pack(
            entry.producer_id,
            entry.producer_epoch,
            entry.last_timestamp,
            entry.coordinator_epoch,
            _NO_TXN if txn_first is None else txn_first,
            len(entry.batches),
        )
        for b in entry.batches:
            body += _SNAPSHOT_BATCH.pack(
                b.first_seq, b.last_seq, b.first_offset, b.last_offset_delta, b.max_timestamp
            )
    _SNAPSHOT_HEADER.pack_into(body, 0, _SNAPSHOT_MAGIC, _SNAPSHOT_VERSION, 0, offset, len(entries))
    crc = crc32c.crc32c(memoryview(body)[_SNAPSHOT_CRC_END:])
    struct.pack_into(">I", body, _SNAPSHOT_CRC_END - 4, crc)
    return bytes(body)


def decode_snapshot(data: bytes) -> tuple[int, list[ProducerStateEntry]]:
    """(offset, producers) from a snapshot file's bytes; CorruptSnapshotError if anything is off."""
    if len(data) < _SNAPSHOT_HEADER.size:
        raise CorruptSnapshotError(f"{len(data)} bytes is shorter than the snapshot header")
    magic, version, crc, offset, count = _SNAPSHOT_HEADER.unpack_from(data, 0)
    if magic != _SNAPSHOT_MAGIC:
        raise CorruptSnapshotError(f"bad magic {magic!r}")
    if version not in _SNAPSHOT_VERSIONS_READ:
        raise CorruptSnapshotError(f"unknown snapshot version {version}")
    computed = crc32c.crc32c(memoryview(data)[_SNAPSHOT_CRC_END:])
    if computed != crc:
        raise CorruptSnapshotError(f"stored crc {crc:#010x}, computed {computed:#010x}")
    if count < 0 or offset < 0:
        raise CorruptSnapshotError(f"impossible offset {offset} or producer count {count}")
    producers = []
    position = _SNAPSHOT_HEADER.size
    try:
        for _ in range(count):
            coordinator_epoch, txn_first = NO_COORDINATOR_EPOCH, _NO_TXN
            if version == 1:
                producer_id, epoch, last_timestamp, batch_count = _SNAPSHOT_PRODUCER_V1.unpack_from(
                    data, position
                )
                position += _SNAPSHOT_PRODUCER_V1.size
            else:
                producer_id, epoch, last_timestamp, coordinator_epoch, txn_first, batch_count = (
                    _SNAPSHOT_PRODUCER.unpack_from(data, position)
                )
                position += _SNAPSHOT_PRODUCER.size
            if txn_first < _NO_TXN:
                raise CorruptSnapshotError(f"producer {producer_id} has txn offset {txn_first}")
            if not 0 <= batch_count <= NUM_BATCHES_TO_RETAIN:
                raise CorruptSnapshotError(f"producer {producer_id} has {batch_count} batches")
            batches = []
            for _ in range(batch_count):
                batches.append(BatchMetadata(*_SNAPSHOT_BATCH.unpack_from(data, position)))
                position += _SNAPSHOT_BATCH.size
            producers.append(
                ProducerStateEntry(
                    producer_id,
                    epoch,
                    last_timestamp,
                    batches,
                    coordinator_epoch,
                    None if txn_first == _NO_TXN else txn_first,
                )
            )
    except struct.error:
        raise CorruptSnapshotError("snapshot ends in the middle of an entry") from None
    if position != len(data):
        raise CorruptSnapshotError(f"{len(data) - position} trailing bytes")
    return offset, producers
