"""Control records: transaction marker keys and values, and their batches."""

from __future__ import annotations

import pytest

from kafkacompat.records import (
    ControlRecordType,
    InvalidRecordError,
    Record,
    build_end_transaction_marker_batch,
    decode_control_record_key,
    decode_end_transaction_marker,
    iter_batches,
)
from kafkacompat.records.control import (
    encode_control_record_key,
    encode_end_transaction_marker_value,
)


def test_wire_layout_of_key_and_value() -> None:
    assert encode_control_record_key(ControlRecordType.ABORT) == b"\x00\x00\x00\x00"
    assert encode_control_record_key(ControlRecordType.COMMIT) == b"\x00\x00\x00\x01"
    assert encode_end_transaction_marker_value(258) == b"\x00\x00\x00\x00\x01\x02"


def test_marker_batch_header() -> None:
    data = build_end_transaction_marker_batch(
        control_type=ControlRecordType.ABORT,
        producer_id=5,
        producer_epoch=9,
        coordinator_epoch=3,
        timestamp=1234,
        base_offset=10,
        partition_leader_epoch=2,
    )
    (batch,) = list(iter_batches(data))
    assert batch.is_control and batch.is_transactional
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (5, 9, -1)
    assert (batch.base_offset, batch.partition_leader_epoch, batch.records_count) == (10, 2, 1)
    (record,) = list(batch.iter_records())
    assert record.timestamp == 1234
    marker = decode_end_transaction_marker(record)
    assert (marker.control_type, marker.coordinator_epoch) == (ControlRecordType.ABORT, 3)


def test_marker_batch_refuses_other_types() -> None:
    with pytest.raises(ValueError):
        build_end_transaction_marker_batch(
            control_type=ControlRecordType.LEADER_CHANGE,
            producer_id=5,
            producer_epoch=9,
            coordinator_epoch=3,
            timestamp=0,
        )


def test_newer_versions_are_read_and_unknown_types_are_unknown() -> None:
    assert decode_control_record_key(b"\x00\x01\x00\x01extra") == ControlRecordType.COMMIT
    assert decode_control_record_key(b"\x00\x00\x00\x63") == ControlRecordType.UNKNOWN
    marker = decode_end_transaction_marker(
        Record(0, 0, b"\x00\x00\x00\x01", b"\x00\x01\x00\x00\x00\x07more", [])
    )
    assert marker.coordinator_epoch == 7


@pytest.mark.parametrize("key", [None, b"", b"\x00\x00\x00", b"\xff\xff\x00\x01"])
def test_bad_control_keys(key: bytes | None) -> None:
    with pytest.raises(InvalidRecordError):
        decode_control_record_key(key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"\x00\x00\x00\x02", b"\x00\x00\x00\x00\x00\x01"),  # LEADER_CHANGE is no marker
        (b"\x00\x00\x00\x01", None),
        (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00"),
        (b"\x00\x00\x00\x01", b"\xff\xff\x00\x00\x00\x01"),
    ],
)
def test_bad_end_transaction_markers(key: bytes, value: bytes | None) -> None:
    with pytest.raises(InvalidRecordError):
        decode_end_transaction_marker(Record(0, 0, key, value, []))
