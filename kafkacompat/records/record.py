"""Records inside a v2 batch: decode from and encode to the (uncompressed) records section.

A record on the wire::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint | key | valueLength varint | value | headerCount varint |
    headers (keyLength varint | UTF-8 key | valueLength varint | value)

Lengths of -1 mean null (keys, values, header values; never header keys). Every length is checked
against the bytes left in its record before anything is sliced, and each record must consume
exactly the bytes its length claims, as Kafka's ``DefaultRecord.readFrom`` insists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, TypeAlias

from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.records.varint import read_varint, read_varlong, write_varint, write_varlong

Header: TypeAlias = tuple[str, bytes | None]


class Record(NamedTuple):
    """One decoded record, with offset and timestamp already made absolute."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]


def _read_nullable_bytes(data: bytes, position: int, end: int) -> tuple[bytes | None, int]:
    length, position = read_varint(data, position, end)
    if length == -1:
        return None, position
    if length < -1 or length > end - position:
        raise InvalidRecordError(f"field length {length} is out of bounds")
    return data[position : position + length], position + length


def _read_headers(data: bytes, position: int, end: int) -> tuple[list[Header], int]:
    count, position = read_varint(data, position, end)
    if count < 0:
        raise InvalidRecordError(f"negative header count {count}")
    headers: list[Header] = []
    for _ in range(count):
        key_length, position = read_varint(data, position, end)
        if key_length < 0 or key_length > end - position:
            raise InvalidRecordError(f"header key length {key_length} is out of bounds")
        try:
            key = data[position : position + key_length].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecordError("header key is not valid UTF-8") from None
        value, position = _read_nullable_bytes(data, position + key_length, end)
        headers.append((key, value))
    return headers, position


def iter_records(
    data: bytes,
    records_count: int,
    base_offset: int,
    base_timestamp: int,
    last_offset_delta: int,
    log_append_time: int | None,
) -> Iterator[Record]:
    """Decode exactly ``records_count`` records filling all of ``data``.

    ``log_append_time``, when the batch is stamped LogAppendTime, replaces every record's own
    timestamp, as Kafka's reader does. Offset deltas must rise and stay within
    ``last_offset_delta``; gaps are allowed because compaction leaves them.
    """
    if records_count < 0:
        raise InvalidRecordError(f"negative record count {records_count}")
    end = len(data)
    position = 0
    previous_delta = -1
    for index in range(records_count):
        if position >= end:
            raise InvalidRecordError(f"batch declares {records_count} records but holds {index}")
        length, position = read_varint(data, position, end)
        if length <= 0 or length > end - position:
            raise InvalidRecordError(f"record length {length} is out of bounds")
        record_end = position + length
        position += 1  # attributes: no bits are defined for records in magic 2
        timestamp_delta, position = read_varlong(data, position, record_end)
        offset_delta, position = read_varint(data, position, record_end)
        if offset_delta <= previous_delta or offset_delta > last_offset_delta:
            raise InvalidRecordError(
                f"offset delta {offset_delta} after {previous_delta}, last offset delta "
                f"{last_offset_delta}"
            )
        previous_delta = offset_delta
        key, position = _read_nullable_bytes(data, position, record_end)
        value, position = _read_nullable_bytes(data, position, record_end)
        headers, position = _read_headers(data, position, record_end)
        if position != record_end:
            raise InvalidRecordError(
                f"record claims {length} bytes but its fields end {record_end - position} early"
            )
        timestamp = base_timestamp + timestamp_delta if log_append_time is None else log_append_time
        yield Record(base_offset + offset_delta, timestamp, key, value, headers)
    if position != end:
        raise InvalidRecordError(
            f"{end - position} bytes left over after the declared {records_count} records"
        )


def _write_nullable_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(value))
        out += value


def write_record(
    out: bytearray,
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[Header],
) -> None:
    """Append one record, length prefix included."""
    body = bytearray(b"\x00")  # attributes
    write_varlong(body, timestamp_delta)
    write_varint(body, offset_delta)
    _write_nullable_bytes(body, key)
    _write_nullable_bytes(body, value)
    header_list = list(headers)
    write_varint(body, len(header_list))
    for header_key, header_value in header_list:
        encoded_key = header_key.encode("utf-8")
        write_varint(body, len(encoded_key))
        body += encoded_key
        _write_nullable_bytes(body, header_value)
    write_varint(out, len(body))
    out += body
