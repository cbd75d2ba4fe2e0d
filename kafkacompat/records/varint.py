"""Zig-zag varints as used inside RecordBatch v2 records (protobuf's encoding).

Readers take the buffer, a position and an ``end`` past which they must not read, and return
``(value, next_position)``. They never read more than 5 bytes for a varint (int32) or 10 for a
varlong (int64), and refuse encodings whose value does not fit the type: Kafka's own reader
silently drops the overflowing bits, but accepting them here would let two different byte strings
mean the same record.
"""

from __future__ import annotations

from typing import Final

from kafkacompat.records.errors import InvalidRecordError

VARINT_MAX_BYTES: Final = 5
VARLONG_MAX_BYTES: Final = 10

_U32_MAX: Final = (1 << 32) - 1
_U64_MAX: Final = (1 << 64) - 1


def _read_unsigned(
    buf: bytes | bytearray, position: int, end: int, max_bytes: int, limit: int
) -> tuple[int, int]:
    start = position
    result = 0
    shift = 0
    stop = min(end, position + max_bytes)
    while position < stop:
        byte = buf[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > limit:
                raise InvalidRecordError("varint value does not fit its type")
            return result, position
        shift += 7
    if position - start < max_bytes:
        raise InvalidRecordError("truncated varint")
    raise InvalidRecordError(f"varint longer than {max_bytes} bytes")


def read_varint(buf: bytes | bytearray, position: int, end: int) -> tuple[int, int]:
    """A zig-zag int32 at ``position``, reading nothing at or beyond ``end``."""
    if position < end:
        byte = buf[position]
        if byte < 0x80:  # one-byte values dominate: small deltas and lengths
            return (byte >> 1) ^ -(byte & 1), position + 1
    raw, position = _read_unsigned(buf, position, end, VARINT_MAX_BYTES, _U32_MAX)
    return (raw >> 1) ^ -(raw & 1), position


def read_varlong(buf: bytes | bytearray, position: int, end: int) -> tuple[int, int]:
    """A zig-zag int64 at ``position``, reading nothing at or beyond ``end``."""
    if position < end:
        byte = buf[position]
        if byte < 0x80:
            return (byte >> 1) ^ -(byte & 1), position + 1
    raw, position = _read_unsigned(buf, position, end, VARLONG_MAX_BYTES, _U64_MAX)
    return (raw >> 1) ^ -(raw & 1), position


def _write_unsigned(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (an int32) zig-zag encoded."""
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"{value} does not fit a varint (int32)")
    _write_unsigned(out, ((value << 1) ^ (value >> 31)) & _U32_MAX)


def write_varlong(out: bytearray, value: int) -> None:
    """Append ``value`` (an int64) zig-zag encoded."""
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"{value} does not fit a varlong (int64)")
    _write_unsigned(out, ((value << 1) ^ (value >> 63)) & _U64_MAX)
