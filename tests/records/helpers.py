"""Hand-assembled batches and legacy messages, for inputs no well-behaved builder would produce."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

import crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder

from kafkacompat.records.batch import ATTRIBUTES_OFFSET, CRC_OFFSET, RECORD_BATCH_HEADER
from kafkacompat.records.record import Header

CODEC_IDS = (0, 1, 2, 3, 4)


def raw_batch(
    payload: bytes,
    *,
    records_count: int,
    last_offset_delta: int | None = None,
    attributes: int = 0,
    base_offset: int = 0,
    batch_length: int | None = None,
    magic: int = 2,
    base_timestamp: int = 1_700_000_000_000,
    max_timestamp: int = 1_700_000_000_000,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A batch around an arbitrary records section, with a correct CRC unless told otherwise."""
    if last_offset_delta is None:
        last_offset_delta = records_count - 1
    if batch_length is None:
        batch_length = RECORD_BATCH_HEADER.size - 12 + len(payload)
    out = bytearray(
        RECORD_BATCH_HEADER.pack(
            base_offset,
            batch_length,
            -1,
            magic,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            records_count,
        )
    )
    out += payload
    struct.pack_into(">I", out, CRC_OFFSET, crc32c.crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


def fix_crc(batch: bytes | bytearray) -> bytes:
    out = bytearray(batch)
    struct.pack_into(">I", out, CRC_OFFSET, crc32c.crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


def _legacy_bytes(value: bytes | None) -> bytes:
    return struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value


def legacy_message(
    magic: int, key: bytes | None, value: bytes | None, *, offset: int = 0, timestamp: int = 0
) -> bytes:
    """A MessageSet entry: offset int64 | size int32 | crc int32 | magic int8 | attributes int8 |
    (v1: timestamp int64) | key | value, CRC-32 (not -32C) over magic onwards."""
    body = struct.pack(">bb", magic, 0)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    body += _legacy_bytes(key) + _legacy_bytes(value)
    message = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", offset, len(message)) + message


def kafka_python_batch(
    codec: int,
    records: Iterable[tuple[bytes | None, bytes | None, list[Header], int]],
    *,
    is_transactional: bool = False,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A batch from kafka-python's builder: records are (key, value, headers, timestamp)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=is_transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for offset, (key, value, headers, timestamp) in enumerate(records):
        builder.append(offset, timestamp=timestamp, key=key, value=value, headers=headers)
    return bytes(builder.build())
