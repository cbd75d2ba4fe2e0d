"""The batch view and walker: header layout, flags, stamps, truncated tails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.records import (
    CompressionType,
    CorruptRecordError,
    InvalidRecordError,
    RecordBatch,
    RecordBatchBuilder,
    TimestampType,
    iter_batches,
)
from kafkacompat.records import batch as batch_module
from tests.records.helpers import raw_batch


def _batch(count: int = 3, base_offset: int = 0, **kwargs: object) -> bytes:
    builder = RecordBatchBuilder(base_offset=base_offset, **kwargs)  # type: ignore[arg-type]
    for i in range(count):
        builder.append(b"value-%d" % i, key=b"k", timestamp=1_000 + i)
    return builder.build()


def test_header_offsets_are_kafkas() -> None:
    # Offsets from Kafka's DefaultRecordBatch; derived here from the field table.
    assert (
        batch_module.BASE_OFFSET_OFFSET,
        batch_module.LENGTH_OFFSET,
        batch_module.PARTITION_LEADER_EPOCH_OFFSET,
        batch_module.MAGIC_OFFSET,
        batch_module.CRC_OFFSET,
        batch_module.ATTRIBUTES_OFFSET,
        batch_module.LAST_OFFSET_DELTA_OFFSET,
        batch_module.BASE_TIMESTAMP_OFFSET,
        batch_module.MAX_TIMESTAMP_OFFSET,
        batch_module.PRODUCER_ID_OFFSET,
        batch_module.PRODUCER_EPOCH_OFFSET,
        batch_module.BASE_SEQUENCE_OFFSET,
        batch_module.RECORDS_COUNT_OFFSET,
        batch_module.RECORDS_OFFSET,
    ) == (0, 8, 12, 16, 17, 21, 23, 27, 35, 43, 51, 53, 57, 61)
    assert batch_module.LOG_OVERHEAD == 12


def test_header_fields_read_from_the_buffer() -> None:
    data = raw_batch(
        b"",
        records_count=0,
        last_offset_delta=4,
        base_offset=2**40,
        attributes=0x7F & ~0x07 | 4,
        base_timestamp=-5,
        max_timestamp=2**50,
        producer_id=123,
        producer_epoch=-2,
        base_sequence=2**31 - 1,
    )
    batch = RecordBatch(data)
    assert batch.base_offset == 2**40
    assert batch.batch_length == 49 and batch.size_in_bytes == 61
    assert batch.partition_leader_epoch == -1
    assert batch.magic == 2
    assert batch.last_offset_delta == 4 and batch.last_offset == 2**40 + 4
    assert batch.next_offset == 2**40 + 5
    assert (batch.base_timestamp, batch.max_timestamp) == (-5, 2**50)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (123, -2, 2**31 - 1)
    assert batch.has_producer_id
    assert batch.records_count == 0
    assert batch.compression_type == CompressionType.ZSTD
    assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert batch.is_transactional and batch.is_control and batch.has_delete_horizon
    assert batch.delete_horizon_ms == -5
    assert batch.is_valid()
    assert bytes(batch.buffer) == data


@pytest.mark.parametrize(
    ("mask", "flag"),
    [
        (0x08, "timestamp_type"),
        (0x10, "is_transactional"),
        (0x20, "is_control"),
        (0x40, "has_delete_horizon"),
    ],
)
def test_each_attribute_bit_is_independent(mask: int, flag: str) -> None:
    batch = RecordBatch(raw_batch(b"", records_count=0, attributes=mask | 2))
    assert bool(getattr(batch, flag))
    assert batch.compression_type == CompressionType.SNAPPY
    others = {"timestamp_type", "is_transactional", "is_control", "has_delete_horizon"} - {flag}
    assert not any(getattr(batch, other) for other in others)


def test_plain_batch_has_no_flags_and_no_delete_horizon() -> None:
    batch = RecordBatch(_batch())
    assert batch.timestamp_type == TimestampType.CREATE_TIME
    assert not (batch.is_transactional or batch.is_control or batch.has_delete_horizon)
    assert batch.delete_horizon_ms is None
    assert not batch.has_producer_id


def test_stamps_need_a_writable_buffer() -> None:
    batch = RecordBatch(_batch())  # over bytes
    with pytest.raises(TypeError):
        batch.set_base_offset(5)
    with pytest.raises(TypeError):
        batch.set_max_timestamp(TimestampType.LOG_APPEND_TIME, 5)


def test_stamps_write_through_to_the_callers_buffer() -> None:
    data = bytearray(_batch() + _batch(2))
    for index, batch in enumerate(iter_batches(data)):
        batch.set_base_offset(100 * (index + 1))
        batch.set_partition_leader_epoch(index + 7)
    first, second = iter_batches(data)
    assert (first.base_offset, second.base_offset) == (100, 200)
    assert (first.partition_leader_epoch, second.partition_leader_epoch) == (7, 8)
    assert [r.offset for r in second.iter_records()] == [200, 201]


def test_iter_batches_walks_concatenated_batches() -> None:
    parts = [_batch(1), _batch(5, base_offset=1), _batch(2, base_offset=6)]
    batches = list(iter_batches(b"".join(parts)))
    assert [b.size_in_bytes for b in batches] == [len(p) for p in parts]
    assert [r.offset for b in batches for r in b.iter_records()] == list(range(8))


def test_empty_buffer_holds_no_batches() -> None:
    assert list(iter_batches(b"")) == []


def test_every_truncation_stops_cleanly_when_allowed_and_raises_otherwise() -> None:
    first, second = _batch(2), _batch(3, base_offset=2)
    data = first + second
    for cut in range(len(data) + 1):
        prefix = data[:cut]
        complete = [p for p, end in ((first, len(first)), (second, len(data))) if end <= cut]
        tolerant = list(iter_batches(prefix, allow_truncated_tail=True))
        assert [bytes(b.buffer) for b in tolerant] == complete
        if cut in (0, len(first), len(data)):
            assert len(list(iter_batches(prefix))) == len(complete)
        else:
            with pytest.raises(CorruptRecordError):
                list(iter_batches(prefix))


def test_crc_check_can_be_skipped() -> None:
    data = bytearray(_batch())
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        list(iter_batches(data))
    (batch,) = list(iter_batches(data, verify_crc=False))
    assert not batch.is_valid()


def test_record_batch_requires_exactly_one_batch() -> None:
    data = _batch()
    with pytest.raises(CorruptRecordError):
        RecordBatch(data + b"\x00")
    with pytest.raises(CorruptRecordError):
        RecordBatch(data[:-1])
    with pytest.raises(CorruptRecordError):
        RecordBatch(data[:60])


def test_memoryview_of_another_format_is_accepted() -> None:
    data = _batch(4)
    padded = data + b"\x00" * (-len(data) % 4)
    view = memoryview(bytearray(padded)).cast("I")
    (batch,) = list(iter_batches(view, allow_truncated_tail=True))
    assert batch.records_count == 4


# -- ensure_valid_from_client: Kafka's LogValidator rules for produced batches ------------------


def test_client_batch_passes() -> None:
    RecordBatch(
        _batch(3, producer_id=1, producer_epoch=0, base_sequence=0)
    ).ensure_valid_from_client()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"records_count": 0, "last_offset_delta": -1},
        {"records_count": 3, "last_offset_delta": 1},
        {"records_count": 2, "last_offset_delta": 2},
        {"records_count": 1, "attributes": 0x30, "producer_id": 1, "producer_epoch": 0},
        {"records_count": 1, "producer_id": 1, "producer_epoch": 0, "base_sequence": -1},
    ],
)
def test_client_batch_rules(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidRecordError) as info:
        RecordBatch(raw_batch(b"", **kwargs)).ensure_valid_from_client()
    assert info.value.error_code == 87


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4), st.data())
def test_tail_truncation_property(counts: list[int], data: st.DataObject) -> None:
    parts = [_batch(n) for n in counts]
    blob = b"".join(parts)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    got = list(iter_batches(blob[:cut], allow_truncated_tail=True))
    ends = [sum(len(p) for p in parts[: i + 1]) for i in range(len(parts))]
    assert len(got) == sum(1 for end in ends if end <= cut)
