"""Control records: the transaction markers a coordinator writes into partitions (KIP-98).

A control batch (attributes bit 5) holds one record. Its key is ``version int16 | type int16``;
for COMMIT and ABORT the value is an end-transaction marker, ``version int16 |
coordinatorEpoch int32``. Readers accept newer versions of both, ignoring bytes they do not
know, as Kafka's ``ControlRecordType.parse`` and ``EndTransactionMarker.deserialize`` do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from kafkacompat.records.batch import NO_PARTITION_LEADER_EPOCH
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.records.record import Record

CONTROL_RECORD_KEY: Final = struct.Struct(">hh")  # version, type
END_TRANSACTION_MARKER_VALUE: Final = struct.Struct(">hi")  # version, coordinator epoch
CURRENT_CONTROL_RECORD_KEY_VERSION: Final = 0
CURRENT_END_TRANSACTION_MARKER_VERSION: Final = 0


class ControlRecordType(IntEnum):
    """Kafka's ``ControlRecordType``; types above COMMIT are KRaft's own metadata records."""

    UNKNOWN = -1
    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


@dataclass(frozen=True, slots=True)
class EndTransactionMarker:
    control_type: ControlRecordType  # ABORT or COMMIT
    coordinator_epoch: int


def encode_control_record_key(control_type: ControlRecordType) -> bytes:
    return CONTROL_RECORD_KEY.pack(CURRENT_CONTROL_RECORD_KEY_VERSION, control_type)


def decode_control_record_key(key: bytes | None) -> ControlRecordType:
    """The type in a control record's key; UNKNOWN for types newer than this code."""
    if key is None or len(key) < CONTROL_RECORD_KEY.size:
        raise InvalidRecordError("control record key is missing or shorter than 4 bytes")
    version, control_type = CONTROL_RECORD_KEY.unpack_from(key)
    if version < 0:
        raise InvalidRecordError(f"invalid control record key version {version}")
    try:
        return ControlRecordType(control_type)
    except ValueError:
        return ControlRecordType.UNKNOWN


def encode_end_transaction_marker_value(coordinator_epoch: int) -> bytes:
    return END_TRANSACTION_MARKER_VALUE.pack(
        CURRENT_END_TRANSACTION_MARKER_VERSION, coordinator_epoch
    )


def decode_end_transaction_marker(record: Record) -> EndTransactionMarker:
    """The marker in a COMMIT or ABORT control record."""
    control_type = decode_control_record_key(record.key)
    if control_type not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise InvalidRecordError(
            f"control record type {control_type.name} is not a transaction marker"
        )
    value = record.value
    if value is None or len(value) < END_TRANSACTION_MARKER_VALUE.size:
        raise InvalidRecordError("end transaction marker value is missing or shorter than 6 bytes")
    version, coordinator_epoch = END_TRANSACTION_MARKER_VALUE.unpack_from(value)
    if version < 0:
        raise InvalidRecordError(f"invalid end transaction marker version {version}")
    return EndTransactionMarker(control_type, coordinator_epoch)


def build_end_transaction_marker_batch(
    *,
    control_type: ControlRecordType,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A transactional control batch holding one COMMIT or ABORT marker, as WriteTxnMarkers appends."""
    if control_type not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise ValueError(f"{control_type.name} is not a transaction marker type")
    builder = RecordBatchBuilder(
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
    )
    builder.append(
        encode_end_transaction_marker_value(coordinator_epoch),
        key=encode_control_record_key(control_type),
        timestamp=timestamp,
    )
    return builder.build()
