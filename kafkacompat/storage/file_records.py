"""Reading a segment file for the log cleaner: every batch of it, in large reads, and the
records of a batch located without building record objects (Kafka's ``FileRecords.batches``
and the record iteration ``MemoryRecords.filterTo`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from kafkacompat.records.batch import (
    COMPRESSION_CODEC_MASK,
    DEFAULT_MAX_UNCOMPRESSED_SIZE,
    FIELD_ATTRIBUTES,
    FIELD_BATCH_LENGTH,
    FIELD_MAGIC,
    LOG_OVERHEAD,
    RECORD_BATCH_HEADER,
)
from kafkacompat.records.compression import CompressionType, decompress
from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.records.varint import read_varint, read_varlong
from kafkacompat.storage import disk_io

READ_CHUNK_BYTES: Final = 1 << 20

_HEADER = RECORD_BATCH_HEADER
_HEADER_SIZE: Final = RECORD_BATCH_HEADER.size
BatchFields = tuple[int, ...]
"""A batch header unpacked by ``RECORD_BATCH_HEADER``, indexed by its ``FIELD_*``."""


def iter_file_batches(fd: int, size: int) -> Iterator[tuple[memoryview, BatchFields]]:
    """Every whole batch of a segment file, as a view of a ~1 MiB read buffer (valid until the
    next iteration) and its unpacked header. The segment was validated when it was written or
    recovered; a torn tail ends the walk."""
    position = 0
    while position + _HEADER_SIZE <= size:
        chunk = disk_io.os_pread(
            fd, min(max(READ_CHUNK_BYTES, _HEADER_SIZE), size - position), position
        )
        view = memoryview(chunk)
        offset = 0
        advanced = False
        while offset + _HEADER_SIZE <= len(view):
            fields = _HEADER.unpack_from(view, offset)
            batch_size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
            if fields[FIELD_MAGIC] != 2 or batch_size < _HEADER_SIZE:
                return
            if offset + batch_size > len(view):
                if offset == 0:  # one batch larger than the chunk: read it whole
                    if position + batch_size > size:
                        return
                    whole = memoryview(disk_io.os_pread(fd, batch_size, position))
                    if len(whole) < batch_size:
                        return
                    yield whole, fields
                    position += batch_size
                    advanced = True
                break
            yield view[offset : offset + batch_size], fields
            offset += batch_size
            advanced = True
        position += offset
        if not advanced:
            return


def batch_payload(batch: memoryview, fields: BatchFields) -> bytes | memoryview:
    codec = fields[FIELD_ATTRIBUTES] & COMPRESSION_CODEC_MASK
    section = batch[_HEADER_SIZE:]
    if codec == 0:
        return section
    return bytes(decompress(CompressionType(codec), section, DEFAULT_MAX_UNCOMPRESSED_SIZE))


class RawRecord(NamedTuple):
    """A record located in its batch's records section, with just the fields compaction needs."""

    start: int
    end: int
    body: int
    """Where the offset delta starts (after length, attributes and timestamp delta)."""
    attributes: int
    timestamp_delta: int
    offset_delta: int
    key: bytes | None
    tombstone: bool


def scan_records(payload: bytes | memoryview, count: int) -> list[RawRecord]:
    """Locate ``count`` records; InvalidRecordError if the section does not hold them.

    The cleaner's hot loop (every record, twice per round): one-byte varints, which most
    deltas and lengths are, are decoded inline; longer ones go through the varint module."""
    records: list[RawRecord] = []
    append = records.append
    make = tuple.__new__
    data = payload if isinstance(payload, bytes) else bytes(payload)
    end = len(data)
    position = 0
    try:
        for _ in range(count):
            byte = data[position]
            if byte < 0x80:
                length, p = (byte >> 1) ^ -(byte & 1), position + 1
            else:
                length, p = read_varint(data, position, end)
            record_end = p + length
            if length <= 0 or record_end > end:
                raise InvalidRecordError(f"record length {length} is out of bounds")
            attributes = data[p]
            byte = data[p + 1]
            if byte < 0x80:
                timestamp_delta, p = (byte >> 1) ^ -(byte & 1), p + 2
            else:
                timestamp_delta, p = read_varlong(data, p + 1, record_end)
            body = p
            byte = data[p]
            if byte < 0x80:
                offset_delta, p = (byte >> 1) ^ -(byte & 1), p + 1
            else:
                offset_delta, p = read_varint(data, p, record_end)
            byte = data[p]
            if byte < 0x80:
                key_length, p = (byte >> 1) ^ -(byte & 1), p + 1
            else:
                key_length, p = read_varint(data, p, record_end)
            key: bytes | None = None
            if key_length >= 0:
                if p + key_length > record_end:
                    raise InvalidRecordError(f"key length {key_length} is out of bounds")
                key = data[p : p + key_length]
                p += key_length
            # A null value is the one-byte varint -1 (0x01); anything else is a value.
            tombstone = data[p] == 0x01
            append(
                make(
                    RawRecord,
                    (
                        position,
                        record_end,
                        body,
                        attributes,
                        timestamp_delta,
                        offset_delta,
                        key,
                        tombstone,
                    ),
                )
            )
            position = record_end
    except IndexError:
        raise InvalidRecordError("a record runs past the end of its batch") from None
    return records
