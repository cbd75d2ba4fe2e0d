"""Malformed input: each kind raises its own exception with Kafka's error code, nothing else.

Fuzz invariant: any bytes either decode or raise a KafkaProtocolError subclass, never anything else.
"""

from __future__ import annotations

import struct

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import (
    CompressionType,
    CorruptRecordError,
    InvalidRecordError,
    Record,
    RecordBatch,
    RecordBatchBuilder,
    RecordTooLargeError,
    UnsupportedCompressionTypeError,
    UnsupportedForMessageFormatError,
    compress,
    iter_batches,
)
from kafkacompat.records.batch import CRC_OFFSET, LENGTH_OFFSET
from kafkacompat.records.varint import write_varint, write_varlong
from tests.records.helpers import CODEC_IDS, fix_crc, legacy_message, raw_batch


def _valid(codec: int = 0, count: int = 3) -> bytes:
    builder = RecordBatchBuilder(compression_type=CompressionType(codec))
    for i in range(count):
        builder.append(b"v" * (i * 50), key=b"k%d" % i, headers=[("h", b"x")], timestamp=i)
    return builder.build()


def _records(data: bytes, **kwargs: bool) -> list[Record]:
    """Walk and fully decode, the way every test here exercises the reader."""
    return [r for batch in iter_batches(data, **kwargs) for r in batch.iter_records()]


def _record(body: bytes) -> bytes:
    """A record with a correct length prefix around an arbitrary body."""
    out = bytearray()
    write_varint(out, len(body))
    return bytes(out) + body


def _body(
    *,
    timestamp_delta: bytes = b"\x00",
    offset_delta: bytes = b"\x00",
    key: bytes = b"\x01",  # null
    value: bytes = b"\x02a",
    headers: bytes = b"\x00",
) -> bytes:
    return b"\x00" + timestamp_delta + offset_delta + key + value + headers


GOOD_RECORD = _record(_body())


def test_hand_built_record_is_good() -> None:
    (record,) = _records(raw_batch(GOOD_RECORD, records_count=1))
    assert record == Record(0, 1_700_000_000_000, None, b"a", [])


# -- frame-level damage: CORRUPT_MESSAGE ----------------------------------------------------


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_flipped_bit_anywhere_in_the_crc_range_is_corrupt(codec: int) -> None:
    data = _valid(codec)
    for position in (CRC_OFFSET, CRC_OFFSET + 3, 21, 40, 60, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(CorruptRecordError) as info:
            _records(bytes(damaged))
        assert info.value.error_code == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_every_prefix_of_a_batch_is_corrupt(codec: int) -> None:
    data = _valid(codec)
    for cut in range(1, len(data)):
        with pytest.raises(CorruptRecordError):
            _records(data[:cut])


@pytest.mark.parametrize("batch_length", [-1, -(2**31), 0, 13, 14, 48])
def test_impossible_batch_lengths_are_corrupt_even_in_tolerant_mode(batch_length: int) -> None:
    data = raw_batch(GOOD_RECORD, records_count=1, batch_length=batch_length)
    for tolerant in (False, True):
        with pytest.raises(CorruptRecordError):
            _records(data, allow_truncated_tail=tolerant)


@pytest.mark.parametrize("extra", [1, 1000, 2**31 - 100])
def test_batch_length_beyond_the_buffer_is_corrupt(extra: int) -> None:
    data = raw_batch(GOOD_RECORD, records_count=1, batch_length=49 + len(GOOD_RECORD) + extra)
    with pytest.raises(CorruptRecordError):
        _records(data)
    assert _records(data, allow_truncated_tail=True) == []


def test_batch_length_short_of_the_records_leaves_trailing_garbage() -> None:
    data = raw_batch(GOOD_RECORD, records_count=1, batch_length=49 + len(GOOD_RECORD) - 2)
    with pytest.raises(CorruptRecordError):  # the CRC covers the bytes the length names
        _records(data)
    with pytest.raises(CorruptRecordError):  # and the 2 bytes left over are no batch
        list(iter_batches(data, verify_crc=False))


@pytest.mark.parametrize("magic", [3, 127, -1, -128])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    with pytest.raises(CorruptRecordError):
        _records(raw_batch(GOOD_RECORD, records_count=1, magic=magic))


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_undecodable_compressed_payload_is_corrupt(codec: int) -> None:
    data = raw_batch(b"\x13\x37" * 40, records_count=1, attributes=codec)
    with pytest.raises(CorruptRecordError):
        _records(data)


def test_zip_bomb_batch_is_too_large() -> None:
    bomb = bytes(cramjam.zstd.compress(bytes(8 * 1024 * 1024)))
    (batch,) = iter_batches(raw_batch(bomb, records_count=1, attributes=CompressionType.ZSTD))
    with pytest.raises(RecordTooLargeError) as info:
        list(batch.iter_records(max_uncompressed_size=1024 * 1024))
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE


# -- legacy message sets: UNSUPPORTED_FOR_MESSAGE_FORMAT ------------------------------------


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize(
    ("key", "value"), [(None, b"hello"), (b"k", None), (None, None), (b"key", b"v" * 100)]
)
def test_legacy_messages_are_unsupported(
    magic: int, key: bytes | None, value: bytes | None
) -> None:
    message = legacy_message(magic, key, value)
    assert message[16] == magic  # where a v2 batch keeps its magic too
    for data in (message, message + legacy_message(magic, b"x", b"y", offset=1)):
        for tolerant in (False, True):
            with pytest.raises(UnsupportedForMessageFormatError) as info:
                _records(data, allow_truncated_tail=tolerant)
            assert info.value.error_code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT
    with pytest.raises(UnsupportedForMessageFormatError):
        RecordBatch(message + bytes(61))


def test_legacy_message_after_a_v2_batch_is_unsupported() -> None:
    data = _valid() + legacy_message(1, None, b"old")
    walker = iter_batches(data)
    assert next(walker).records_count == 3
    with pytest.raises(UnsupportedForMessageFormatError):
        next(walker)


# -- codec ids: UNSUPPORTED_COMPRESSION_TYPE -------------------------------------------------


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_unassigned_codec_ids_are_unsupported(codec_id: int) -> None:
    data = raw_batch(GOOD_RECORD, records_count=1, attributes=codec_id)
    with pytest.raises(UnsupportedCompressionTypeError) as info:
        _records(data)
    assert info.value.error_code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    batch = RecordBatch(data)
    assert batch.compression_id == codec_id
    with pytest.raises(UnsupportedCompressionTypeError):
        _ = batch.compression_type


# -- record-level damage inside an intact batch: INVALID_RECORD ------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def _varlong(value: int) -> bytes:
    out = bytearray()
    write_varlong(out, value)
    return bytes(out)


BAD_RECORDS = {
    "over-long record length": b"\x80\x80\x80\x80\x80\x00" + _body(),
    "truncated record length": b"\x80",
    "negative record length": _varint(-3) + _body(),
    "zero record length": b"\x00",
    "record length past the end": _varint(len(_body()) + 5) + _body(),
    "over-long timestamp delta": _record(_body(timestamp_delta=b"\xff" * 10 + b"\x01")),
    "truncated timestamp delta": _record(b"\x00\xff\xff"),
    "over-long offset delta": _record(_body(offset_delta=b"\x80\x80\x80\x80\x80\x00")),
    "negative offset delta": _record(_body(offset_delta=_varint(-1))),
    "offset delta past last offset delta": _record(_body(offset_delta=_varint(1))),
    "key length below -1": _record(_body(key=_varint(-2))),
    "key longer than the record": _record(_body(key=_varint(50) + b"abc")),
    "value longer than the record": _record(_body(value=_varint(50))),
    "negative header count": _record(_body(headers=_varint(-1))),
    "header count with no headers": _record(_body(headers=_varint(3))),
    "null header key": _record(_body(headers=b"\x02" + _varint(-1) + b"\x00")),
    "header key not UTF-8": _record(_body(headers=b"\x02\x04\xff\xfe\x00")),
    "header key too long": _record(_body(headers=b"\x02\x40ab\x00")),
    "record longer than its fields": _record(_body() + b"\x00\x00"),
    "fields longer than the record": _varint(len(_body()) - 1) + _body(),
}


@pytest.mark.parametrize("codec", [0, 4])
@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_malformed_records_are_invalid(name: str, codec: int) -> None:
    payload = BAD_RECORDS[name]
    if codec:
        payload = compress(codec, payload)
    data = raw_batch(payload, records_count=1, last_offset_delta=0, attributes=codec)
    with pytest.raises(InvalidRecordError) as info:
        _records(data)
    assert info.value.error_code == ErrorCode.INVALID_RECORD


def test_time_delta_accepts_full_varlong_range() -> None:
    # A control for the table above: a ten-byte varlong in range is fine.
    body = _body(timestamp_delta=_varlong(-(2**62)))
    (record,) = _records(raw_batch(_record(body), records_count=1))
    assert record.timestamp == 1_700_000_000_000 - 2**62


@pytest.mark.parametrize("codec", CODEC_IDS)
@pytest.mark.parametrize(("declared", "actual"), [(3, 2), (1, 2), (0, 1), (2**31 - 1, 2), (-1, 1)])
def test_record_count_mismatch_is_invalid(codec: int, declared: int, actual: int) -> None:
    records = bytearray()
    for i in range(actual):
        records += _record(_body(offset_delta=_varint(i)))
    payload = compress(codec, records) if codec else bytes(records)
    data = raw_batch(payload, records_count=declared, last_offset_delta=5, attributes=codec)
    with pytest.raises(InvalidRecordError):
        _records(data)


def test_offset_deltas_must_rise_but_may_skip() -> None:
    gaps = _record(_body(offset_delta=_varint(0))) + _record(_body(offset_delta=_varint(4)))
    offsets = [r.offset for r in _records(raw_batch(gaps, records_count=2, last_offset_delta=4))]
    assert offsets == [0, 4]
    repeat = _record(_body(offset_delta=_varint(1))) + _record(_body(offset_delta=_varint(1)))
    with pytest.raises(InvalidRecordError):
        _records(raw_batch(repeat, records_count=2, last_offset_delta=4))


# -- fuzz -----------------------------------------------------------------------------------


def _consume(data: bytes, **kwargs: bool) -> None:
    try:
        for batch in iter_batches(data, **kwargs):
            for _ in batch.iter_records(max_uncompressed_size=256 * 1024):
                pass
    except KafkaProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_fuzz_random_bytes(data: bytes, tolerant: bool, verify_crc: bool) -> None:
    _consume(data, allow_truncated_tail=tolerant, verify_crc=verify_crc)


SEEDS = [_valid(codec, count) for codec in CODEC_IDS for count in (1, 4)]


@st.composite
def mutated_batches(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "length"]))
        position = draw(st.integers(min_value=0, max_value=len(data) - 1)) if data else 0
        if kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "length" and len(data) >= 12:
            struct.pack_into(">i", data, LENGTH_OFFSET, draw(st.integers(-(2**31), 2**31 - 1)))
    # Re-checksum half the time so mutations reach the record parser and the codecs.
    if draw(st.booleans()) and len(data) >= 61:
        data = bytearray(fix_crc(data))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_batches(), st.booleans())
def test_fuzz_mutated_batches(data: bytes, tolerant: bool) -> None:
    _consume(data, allow_truncated_tail=tolerant)
    _consume(data, allow_truncated_tail=tolerant, verify_crc=False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(-2, 6), st.integers(-2, 6), st.sampled_from([0, 4]))
def test_fuzz_random_records_section(payload: bytes, count: int, last: int, codec: int) -> None:
    section = compress(codec, payload) if codec else payload
    _consume(raw_batch(section, records_count=count, last_offset_delta=last, attributes=codec))
