"""Zig-zag varints: agreement with kafka-python's encoder, and every malformed shape refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.util import encode_varint

from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.records.varint import read_varint, read_varlong, write_varint, write_varlong

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(INT32)
def test_varint_round_trip_and_matches_kafka_python(value: int) -> None:
    out = bytearray()
    write_varint(out, value)
    theirs = bytearray()
    encode_varint(value, theirs.append)
    assert out == theirs
    assert len(out) <= 5
    assert read_varint(bytes(out) + b"\xff", 0, len(out)) == (value, len(out))


@given(INT64)
def test_varlong_round_trip(value: int) -> None:
    out = bytearray()
    write_varlong(out, value)
    assert len(out) <= 10
    assert read_varlong(b"\x00" + bytes(out), 1, 1 + len(out)) == (value, 1 + len(out))


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\x00", 0),
        (b"\x01", -1),
        (b"\x02", 1),
        (b"\x7f", -64),
        (b"\x80\x01", 64),
        (b"\xfe\xff\xff\xff\x0f", 2**31 - 1),
        (b"\xff\xff\xff\xff\x0f", -(2**31)),
    ],
)
def test_known_varint_encodings(encoded: bytes, value: int) -> None:
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x80\x80\x80\x80\x80\x00",  # six bytes: longer than an int32 may take
        b"\xff\xff\xff\xff\x1f",  # five bytes, but 33 bits
        b"\x80",  # truncated
        b"\xff\xff\xff",  # truncated
        b"",
    ],
)
def test_malformed_varints_are_invalid_records(encoded: bytes) -> None:
    with pytest.raises(InvalidRecordError) as info:
        read_varint(encoded, 0, len(encoded))
    assert info.value.error_code == 87


@pytest.mark.parametrize(
    "encoded",
    [b"\x80" * 10 + b"\x00", b"\xff" * 9 + b"\x02", b"\xff" * 9, b""],
)
def test_malformed_varlongs_are_invalid_records(encoded: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        read_varlong(encoded, 0, len(encoded))


def test_readers_never_look_past_end() -> None:
    # The terminating byte exists in the buffer but lies beyond the record's end.
    with pytest.raises(InvalidRecordError):
        read_varint(b"\x80\x01", 0, 1)
    with pytest.raises(InvalidRecordError):
        read_varlong(b"\x80\x01", 0, 1)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_writing_out_of_range_int32_is_refused(value: int) -> None:
    with pytest.raises(ValueError):
        write_varint(bytearray(), value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_writing_out_of_range_int64_is_refused(value: int) -> None:
    with pytest.raises(ValueError):
        write_varlong(bytearray(), value)
