"""Our reader against kafka-python's builder, and kafka-python's reader against our builder."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords

from kafkacompat.records import (
    CompressionType,
    ControlRecordType,
    RecordBatchBuilder,
    TimestampType,
    build_end_transaction_marker_batch,
    decode_end_transaction_marker,
    iter_batches,
)
from kafkacompat.records.record import Header
from tests.records.helpers import CODEC_IDS, kafka_python_batch

BASE_TS = 1_700_000_000_000

# Null keys, null values, empty bytes, duplicate and non-ASCII header keys, null header values,
# timestamps going backwards (negative deltas) and a value big enough for several codec blocks.
SAMPLE: list[tuple[bytes | None, bytes | None, list[Header], int]] = [
    (b"key-0", b"value-0", [], BASE_TS),
    (None, b"no key", [("trace", b"abc")], BASE_TS + 5),
    (b"tombstone", None, [], BASE_TS + 3),
    (None, None, [("dup", b"1"), ("dup", b"2"), ("dup", None)], BASE_TS - 10),
    (b"", b"", [("", b""), ("\u00e9t\u00e9 \U0001f600", b"\x00\xff")], BASE_TS + 1),
    (b"big", b"0123456789abcdef" * 20_000, [("n", None)], BASE_TS + 1000),
]


def _kafka_python_records(
    data: bytes,
) -> list[tuple[int, int, bytes | None, bytes | None, list[Header]]]:
    records = MemoryRecords(data)
    out: list[tuple[int, int, bytes | None, bytes | None, list[Header]]] = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        out.extend(
            (r.offset, r.timestamp, r.key, r.value, [(k, v) for k, v in r.headers]) for r in batch
        )
    return out


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_kafka_python_batches_decode_exactly(codec: int) -> None:
    data = kafka_python_batch(codec, SAMPLE)
    (batch,) = list(iter_batches(data))
    assert batch.compression_type == codec
    assert batch.records_count == len(SAMPLE)
    assert batch.last_offset_delta == len(SAMPLE) - 1
    assert batch.base_timestamp == BASE_TS
    assert batch.max_timestamp == BASE_TS + 1000
    records = list(batch.iter_records())
    assert [(r.key, r.value, r.headers, r.timestamp) for r in records] == SAMPLE
    assert [r.offset for r in records] == list(range(len(SAMPLE)))


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_kafka_python_header_fields_match_ours(codec: int) -> None:
    data = kafka_python_batch(
        codec, SAMPLE, is_transactional=True, producer_id=4242, producer_epoch=7, base_sequence=99
    )
    (ours,) = list(iter_batches(data))
    theirs = DefaultRecordBatch(data)
    assert ours.is_transactional and theirs.is_transactional
    assert not ours.is_control
    for field in (
        "base_offset",
        "magic",
        "crc",
        "attributes",
        "last_offset_delta",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "records_count",
        "max_timestamp",
        "size_in_bytes",
        "last_offset",
        "next_offset",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.partition_leader_epoch == theirs.leader_epoch
    assert ours.base_timestamp == theirs.first_timestamp
    assert ours.timestamp_type == theirs.timestamp_type == TimestampType.CREATE_TIME
    assert ours.size_in_bytes == len(data)


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_our_batches_decode_with_kafka_python(codec: int) -> None:
    builder = RecordBatchBuilder(
        compression_type=CompressionType(codec),
        base_offset=1000,
        producer_id=77,
        producer_epoch=3,
        base_sequence=12,
        is_transactional=True,
        partition_leader_epoch=5,
    )
    for key, value, headers, timestamp in SAMPLE:
        builder.append(value, key=key, headers=headers, timestamp=timestamp)
    data = builder.build()

    theirs = DefaultRecordBatch(data)
    assert theirs.validate_crc()
    assert theirs.compression_type == codec
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (77, 3, 12)
    assert theirs.is_transactional and theirs.leader_epoch == 5
    assert theirs.first_timestamp == BASE_TS and theirs.max_timestamp == BASE_TS + 1000
    assert _kafka_python_records(data) == [
        (1000 + i, ts, key, value, headers) for i, (key, value, headers, ts) in enumerate(SAMPLE)
    ]


def test_concatenated_batches_of_every_codec_both_ways() -> None:
    ours = b""
    for codec in CODEC_IDS:
        builder = RecordBatchBuilder(
            compression_type=CompressionType(codec), base_offset=codec * 10
        )
        builder.append(f"codec {codec}".encode(), timestamp=BASE_TS + codec)
        ours += builder.build()
    assert [r[3] for r in _kafka_python_records(ours)] == [f"codec {c}".encode() for c in CODEC_IDS]

    theirs = b"".join(kafka_python_batch(codec, SAMPLE) for codec in CODEC_IDS)
    batches = list(iter_batches(theirs))
    assert [b.compression_type for b in batches] == list(CODEC_IDS)
    assert all(len(list(b.iter_records())) == len(SAMPLE) for b in batches)


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_in_place_stamps_keep_crc_and_show_in_kafka_python(codec: int) -> None:
    data = bytearray(kafka_python_batch(codec, SAMPLE))
    (batch,) = list(iter_batches(data))
    crc_before = batch.crc
    batch.set_base_offset(123_456_789_000)
    batch.set_partition_leader_epoch(42)

    assert batch.crc == crc_before and batch.is_valid()
    (reread,) = iter_batches(data)
    assert reread.base_offset == 123_456_789_000
    theirs = DefaultRecordBatch(bytes(data))
    assert theirs.validate_crc()
    assert theirs.base_offset == 123_456_789_000 and theirs.leader_epoch == 42
    assert [r.offset for r in theirs] == [123_456_789_000 + i for i in range(len(SAMPLE))]


@pytest.mark.parametrize("codec", CODEC_IDS)
def test_log_append_time_stamp_recomputes_crc_and_overrides_timestamps(codec: int) -> None:
    data = bytearray(kafka_python_batch(codec, SAMPLE))
    (batch,) = list(iter_batches(data))
    batch.set_max_timestamp(TimestampType.LOG_APPEND_TIME, 1_800_000_000_000)

    assert batch.is_valid()
    assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert batch.compression_type == codec  # the other attribute bits survive
    assert {r.timestamp for r in batch.iter_records()} == {1_800_000_000_000}
    theirs = DefaultRecordBatch(bytes(data))
    assert theirs.validate_crc() and theirs.timestamp_type == 1
    assert {r.timestamp for r in theirs} == {1_800_000_000_000}

    batch.set_max_timestamp(TimestampType.CREATE_TIME, BASE_TS + 1000)
    (restored,) = iter_batches(data)
    assert restored.timestamp_type == TimestampType.CREATE_TIME
    assert [r.timestamp for r in restored.iter_records()] == [s[3] for s in SAMPLE]


@pytest.mark.parametrize("control_type", [ControlRecordType.COMMIT, ControlRecordType.ABORT])
def test_transaction_marker_batches_read_as_control_records_by_kafka_python(
    control_type: ControlRecordType,
) -> None:
    data = build_end_transaction_marker_batch(
        control_type=control_type,
        producer_id=9001,
        producer_epoch=4,
        coordinator_epoch=17,
        timestamp=BASE_TS,
        base_offset=55,
    )
    theirs = DefaultRecordBatch(data)
    assert theirs.validate_crc() and theirs.is_control_batch and theirs.is_transactional
    (record,) = list(theirs)
    assert record.commit is (control_type == ControlRecordType.COMMIT)
    assert record.offset == 55

    (ours,) = list(iter_batches(data))
    assert ours.is_control and ours.is_transactional and ours.base_sequence == -1
    marker = decode_end_transaction_marker(next(ours.iter_records()))
    assert (marker.control_type, marker.coordinator_epoch) == (control_type, 17)
