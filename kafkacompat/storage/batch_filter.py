"""Batches rebuilt with only the records the log cleaner keeps (Kafka's ``MemoryRecords.filterTo``:
``buildRetainedRecordsInto``, and ``writeEmptyHeader`` for a batch left with none).
"""

from __future__ import annotations

from typing import Final

import crc32c

from kafkacompat.records.batch import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_CODEC_MASK,
    CRC_OFFSET,
    DELETE_HORIZON_FLAG_MASK,
    FIELD_ATTRIBUTES,
    FIELD_BASE_TIMESTAMP,
    FIELD_BATCH_LENGTH,
    FIELD_MAX_TIMESTAMP,
    FIELD_RECORDS_COUNT,
    LOG_OVERHEAD,
    RECORD_BATCH_HEADER,
    TIMESTAMP_TYPE_MASK,
)
from kafkacompat.records.compression import CompressionType, compress
from kafkacompat.records.varint import write_varint, write_varlong
from kafkacompat.storage.file_records import BatchFields, RawRecord
from kafkacompat.storage.segment import NO_TIMESTAMP

_HEADER = RECORD_BATCH_HEADER
_HEADER_SIZE: Final = RECORD_BATCH_HEADER.size


def empty_batch(batch: memoryview, fields: BatchFields) -> bytes:
    """The header alone (Kafka's ``writeEmptyHeader``): zero records, no codec, the same
    offsets and producer fields, so the producer's last sequence survives the cleaning."""
    out = bytearray(batch[:_HEADER_SIZE])
    attributes = fields[FIELD_ATTRIBUTES] & ~COMPRESSION_CODEC_MASK & ~DELETE_HORIZON_FLAG_MASK
    header = list(fields)
    header[FIELD_BATCH_LENGTH] = _HEADER_SIZE - LOG_OVERHEAD
    header[FIELD_ATTRIBUTES] = attributes
    header[FIELD_BASE_TIMESTAMP] = NO_TIMESTAMP
    header[FIELD_RECORDS_COUNT] = 0
    _HEADER.pack_into(out, 0, *header)
    out[CRC_OFFSET : CRC_OFFSET + 4] = crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]).to_bytes(
        4, "big"
    )
    return bytes(out)


def rebuilt_batch(
    fields: BatchFields,
    payload: bytes | memoryview,
    retained: list[RawRecord],
    delete_horizon_ms: int | None,
) -> tuple[bytes, int]:
    """A batch holding only ``retained`` (Kafka's ``buildRetainedRecordsInto``): the same base
    and last offset, producer fields, epoch, codec and timestamp type. Records keep their bytes
    unless a new delete horizon moves the base timestamp their deltas are relative to.
    Returns the batch and its max timestamp."""
    data = payload if isinstance(payload, bytes) else bytes(payload)
    attributes = fields[FIELD_ATTRIBUTES]
    base_timestamp = fields[FIELD_BASE_TIMESTAMP]
    records = bytearray()
    new_base = base_timestamp
    if delete_horizon_ms is not None:
        new_base = delete_horizon_ms
        attributes |= DELETE_HORIZON_FLAG_MASK
    if attributes & TIMESTAMP_TYPE_MASK:  # LogAppendTime: the batch's max timestamp rules
        max_timestamp = fields[FIELD_MAX_TIMESTAMP]
    else:
        max_timestamp = max(base_timestamp + r.timestamp_delta for r in retained)
    if new_base == base_timestamp:
        for record in retained:
            records += data[record.start : record.end]
    else:
        shift = base_timestamp - new_base
        for record in retained:
            body = bytearray()
            body.append(record.attributes)
            write_varlong(body, record.timestamp_delta + shift)
            body += data[record.body : record.end]
            write_varint(records, len(body))
            records += body
    codec = attributes & COMPRESSION_CODEC_MASK
    section = bytes(records) if codec == 0 else compress(CompressionType(codec), records)
    out = bytearray(_HEADER_SIZE + len(section))
    header = list(fields)
    header[FIELD_BATCH_LENGTH] = len(out) - LOG_OVERHEAD
    header[FIELD_ATTRIBUTES] = attributes
    header[FIELD_BASE_TIMESTAMP] = new_base
    header[FIELD_MAX_TIMESTAMP] = max_timestamp
    header[FIELD_RECORDS_COUNT] = len(retained)
    _HEADER.pack_into(out, 0, *header)
    out[_HEADER_SIZE:] = section
    out[CRC_OFFSET : CRC_OFFSET + 4] = crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]).to_bytes(
        4, "big"
    )
    return bytes(out), max_timestamp
