"""Wire primitives shared by every generated message codec.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; ``buf`` is always a
``memoryview`` so that slicing ``bytes``/``records`` fields costs nothing.  Writers append
to a list of byte chunks that the caller joins once (or hands to ``writelines``), which
keeps large ``records`` payloads out of any intermediate copy.

Every length or count read off the wire is checked against the bytes that remain before
anything is allocated for it: a frame that claims a 2 GiB string fails at once with
:class:`DecodeError` instead of asking for 2 GiB.  Fixed-width fields rely on
``struct.unpack_from``, whose ``struct.error`` on a short buffer the message-level entry
points turn into :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeAlias, TypeVar
from uuid import UUID

Chunks: TypeAlias = list[bytes | bytearray | memoryview]
"""Encoded output, in order; ``b"".join(chunks)`` is the message."""

Records: TypeAlias = bytes | bytearray | memoryview
"""A ``records`` field: RecordBatch bytes, kept as a view of the frame that carried them."""

T = TypeVar("T")

ZERO_UUID = UUID(int=0)
_ZERO_UUID_BYTES = bytes(16)

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
FLOAT64 = struct.Struct(">d")
BOOL = struct.Struct(">?")

_EMPTY_TAGS = b"\x00"


class DecodeError(ValueError):
    """The peer sent bytes that do not form a valid message of the expected version.

    The one exception any decoder raises for bad input; the server answers it by closing
    the connection (Kafka does the same when it cannot parse a request).
    """


# --- unsigned varints (flexible versions: lengths, counts, tags) -------------------------


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 varint of at most 5 bytes (Kafka's ``readUnsignedVarint``)."""
    if pos < len(buf) and buf[pos] < 0x80:
        return buf[pos], pos + 1  # lengths, counts and tags are nearly always one byte
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift >= 35:
            raise DecodeError("varint longer than 5 bytes")


_ONE_BYTE_UVARINTS = [bytes((i,)) for i in range(0x80)]


def uvarint_bytes(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE_UVARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --- lengths ----------------------------------------------------------------------------


def _take(buf: memoryview, pos: int, length: int) -> tuple[memoryview, int]:
    end = pos + length
    if end > len(buf):
        raise DecodeError(f"length {length} runs past the end of the buffer")
    return buf[pos:end], end


def read_array_length(buf: memoryview, pos: int, nullable: bool) -> tuple[int, int]:
    """An int32 element count; -1 is null.  Returns -1 for null, else the count."""
    (n,) = INT32.unpack_from(buf, pos)
    return _check_count(buf, pos + 4, n, nullable), pos + 4


def read_compact_array_length(buf: memoryview, pos: int, nullable: bool) -> tuple[int, int]:
    n, pos = read_uvarint(buf, pos)
    return _check_count(buf, pos, n - 1, nullable), pos


def _check_count(buf: memoryview, pos: int, n: int, nullable: bool) -> int:
    if n < 0:
        if n == -1 and nullable:
            return -1
        raise DecodeError(f"invalid array length {n}")
    # Every element takes at least one byte on the wire (Kafka checks the same), so a
    # count beyond the remaining bytes is a lie, whatever the element type.
    if n > len(buf) - pos:
        raise DecodeError(f"array of {n} elements but only {len(buf) - pos} bytes remain")
    return n


def write_array_length(out: Chunks, n: int | None) -> None:
    out.append(INT32.pack(-1 if n is None else n))


def write_compact_array_length(out: Chunks, n: int | None) -> None:
    out.append(uvarint_bytes(0 if n is None else n + 1))


# --- strings ----------------------------------------------------------------------------


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = INT16.unpack_from(buf, pos)
    if n < 0:
        raise DecodeError("null or negative length for a non-nullable string")
    raw, pos = _take(buf, pos + 2, n)
    return str(raw, "utf-8"), pos


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = INT16.unpack_from(buf, pos)
    if n == -1:
        return None, pos + 2
    if n < 0:
        raise DecodeError(f"invalid string length {n}")
    raw, pos = _take(buf, pos + 2, n)
    return str(raw, "utf-8"), pos


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("null for a non-nullable compact string")
    raw, pos = _take(buf, pos, n - 1)
    return str(raw, "utf-8"), pos


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    raw, pos = _take(buf, pos, n - 1)
    return str(raw, "utf-8"), pos


def write_string(out: Chunks, value: str | None) -> None:
    if value is None:
        out.append(b"\xff\xff")
        return
    raw = value.encode()
    out.append(INT16.pack(len(raw)))
    out.append(raw)


def write_compact_string(out: Chunks, value: str | None) -> None:
    if value is None:
        out.append(b"\x00")
        return
    raw = value.encode()
    out.append(uvarint_bytes(len(raw) + 1))
    out.append(raw)


# --- bytes and records ------------------------------------------------------------------
# ``bytes`` fields are copied out (they are small and outlive the frame, e.g. group
# metadata); ``records`` and zero-copy ``bytes`` stay views into the frame.


def read_bytes_view(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    (n,) = INT32.unpack_from(buf, pos)
    if n < 0:
        raise DecodeError("null or negative length for non-nullable bytes")
    return _take(buf, pos + 4, n)


def read_nullable_bytes_view(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    (n,) = INT32.unpack_from(buf, pos)
    if n == -1:
        return None, pos + 4
    if n < 0:
        raise DecodeError(f"invalid bytes length {n}")
    return _take(buf, pos + 4, n)


def read_compact_bytes_view(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("null for non-nullable compact bytes")
    return _take(buf, pos, n - 1)


def read_compact_nullable_bytes_view(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    return _take(buf, pos, n - 1)


def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    view, pos = read_bytes_view(buf, pos)
    return view.tobytes(), pos


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    view, pos = read_nullable_bytes_view(buf, pos)
    return (None if view is None else view.tobytes()), pos


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    view, pos = read_compact_bytes_view(buf, pos)
    return view.tobytes(), pos


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    view, pos = read_compact_nullable_bytes_view(buf, pos)
    return (None if view is None else view.tobytes()), pos


def write_bytes(out: Chunks, value: Records | None) -> None:
    if value is None:
        out.append(b"\xff\xff\xff\xff")
        return
    out.append(INT32.pack(len(value)))
    out.append(value)


def write_compact_bytes(out: Chunks, value: Records | None) -> None:
    if value is None:
        out.append(b"\x00")
        return
    out.append(uvarint_bytes(len(value) + 1))
    out.append(value)


# --- uuid -------------------------------------------------------------------------------


def read_uuid(buf: memoryview, pos: int) -> tuple[UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise DecodeError("truncated uuid")
    raw = buf[pos:end].tobytes()
    # Requests that name topics rather than ids carry the zero uuid; skip UUID() for it.
    return (ZERO_UUID if raw == _ZERO_UUID_BYTES else UUID(bytes=raw)), end


def write_uuid(out: Chunks, value: UUID) -> None:
    out.append(value.bytes)


# --- nullable structs (int8 marker: -1 null, 1 present) ---------------------------------


def read_struct_marker(buf: memoryview, pos: int) -> tuple[bool, int]:
    (marker,) = INT8.unpack_from(buf, pos)
    if marker < 0:
        return False, pos + 1
    return True, pos + 1


# --- arrays of primitives ---------------------------------------------------------------


def read_fixed_array(
    buf: memoryview, pos: int, n: int, code: str, size: int
) -> tuple[list[int], int]:
    """``n`` fixed-width integers in one ``unpack_from`` call."""
    values = struct.unpack_from(f">{n}{code}", buf, pos)
    return list(values), pos + n * size


def write_fixed_array(out: Chunks, values: list[int], code: str) -> None:
    out.append(struct.pack(f">{len(values)}{code}", *values))


def read_elements(
    buf: memoryview, pos: int, n: int, read: Callable[[memoryview, int], tuple[T, int]]
) -> tuple[list[T], int]:
    items: list[T] = []
    append = items.append
    for _ in range(n):
        item, pos = read(buf, pos)
        append(item)
    return items, pos


# --- tagged fields (flexible versions) --------------------------------------------------


def skip_tagged_fields(buf: memoryview, pos: int) -> int:
    """Reads a tagged-field section that the version defines no tags for."""
    if pos < len(buf) and buf[pos] == 0:
        return pos + 1  # the usual case: no tagged fields at all
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        _, pos = _take(buf, pos, size)
    return pos


def read_tag_header(buf: memoryview, pos: int) -> tuple[int, int, int]:
    """One tagged field's tag and the end of its value; ``pos`` is where the value starts."""
    tag, pos = read_uvarint(buf, pos)
    size, pos = read_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise DecodeError(f"tagged field {tag} runs past the end of the buffer")
    return tag, pos, end


def write_no_tagged_fields(out: Chunks) -> None:
    out.append(_EMPTY_TAGS)


def write_tagged_fields(out: Chunks, fields: list[tuple[int, Chunks]]) -> None:
    """``fields`` in ascending tag order, each the chunks of one encoded value."""
    if not fields:
        out.append(_EMPTY_TAGS)
        return
    out.append(uvarint_bytes(len(fields)))
    for tag, chunks in fields:
        out.append(uvarint_bytes(tag))
        out.append(uvarint_bytes(sum(len(c) for c in chunks)))
        out.extend(chunks)


def non_null(value: T | None, name: str) -> T:
    """``value``, or an error when a version that cannot encode null is asked to."""
    if value is None:
        raise ValueError(f"{name} cannot be null in this version")
    return value


def check_consumed(buf: memoryview, pos: int, what: str) -> None:
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} unexpected bytes after {what}")
