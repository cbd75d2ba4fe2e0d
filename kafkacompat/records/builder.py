"""Encode a v2 batch: append records, then build header, (compressed) records and CRC at once."""

from __future__ import annotations

from collections.abc import Iterable

import crc32c

from kafkacompat.records.batch import (
    ATTRIBUTES_OFFSET,
    CONTROL_FLAG_MASK,
    CRC_OFFSET,
    CURRENT_MAGIC,
    LOG_OVERHEAD,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    RECORD_BATCH_HEADER,
    TRANSACTIONAL_FLAG_MASK,
)
from kafkacompat.records.compression import CompressionType, compress
from kafkacompat.records.record import Header, write_record


class RecordBatchBuilder:
    """Collects records for one batch; offsets are consecutive from ``base_offset``.

    The first record's timestamp becomes the batch's base timestamp, as in Kafka's
    MemoryRecordsBuilder, so later records may carry negative deltas. The batch is written with
    CREATE_TIME; a broker applying LogAppendTime stamps it afterwards with
    ``RecordBatch.set_max_timestamp``.
    """

    def __init__(
        self,
        *,
        compression_type: CompressionType = CompressionType.NONE,
        base_offset: int = 0,
        partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        is_transactional: bool = False,
        is_control: bool = False,
    ) -> None:
        # The same preconditions Kafka's MemoryRecordsBuilder enforces.
        if is_transactional and producer_id == NO_PRODUCER_ID:
            raise ValueError("a transactional batch needs a producer id")
        if producer_id != NO_PRODUCER_ID:
            if producer_epoch < 0:
                raise ValueError(f"invalid producer epoch {producer_epoch} for a producer id")
            if base_sequence < 0 and not is_control:
                raise ValueError(f"invalid base sequence {base_sequence} for a producer id")
        self.compression_type = CompressionType(compression_type)
        self.base_offset = base_offset
        self.partition_leader_epoch = partition_leader_epoch
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.is_transactional = is_transactional
        self.is_control = is_control
        self._records = bytearray()
        self._count = 0
        self._base_timestamp = 0
        self._max_timestamp = 0

    def __len__(self) -> int:
        return self._count

    def append(
        self,
        value: bytes | None,
        *,
        timestamp: int,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
    ) -> int:
        """Add a record; returns its offset delta. Time is passed in, never read here."""
        if self._count == 0:
            self._base_timestamp = timestamp
            self._max_timestamp = timestamp
        elif timestamp > self._max_timestamp:
            self._max_timestamp = timestamp
        offset_delta = self._count
        write_record(
            self._records, offset_delta, timestamp - self._base_timestamp, key, value, headers
        )
        self._count += 1
        return offset_delta

    def _attributes(self) -> int:
        attributes = int(self.compression_type)
        if self.is_transactional:
            attributes |= TRANSACTIONAL_FLAG_MASK
        if self.is_control:
            attributes |= CONTROL_FLAG_MASK
        return attributes

    def build(self) -> bytes:
        """The finished batch: header, records (compressed if a codec is set), CRC filled in."""
        if self._count == 0:
            raise ValueError("a batch needs at least one record")
        payload = (
            self._records
            if self.compression_type == CompressionType.NONE
            else compress(self.compression_type, self._records)
        )
        batch_length = RECORD_BATCH_HEADER.size - LOG_OVERHEAD + len(payload)
        out = bytearray(RECORD_BATCH_HEADER.size + len(payload))
        RECORD_BATCH_HEADER.pack_into(
            out,
            0,
            self.base_offset,
            batch_length,
            self.partition_leader_epoch,
            CURRENT_MAGIC,
            0,  # crc, filled in below once everything it covers is in place
            self._attributes(),
            self._count - 1,
            self._base_timestamp,
            self._max_timestamp,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self._count,
        )
        out[RECORD_BATCH_HEADER.size :] = payload
        crc = crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:])
        out[CRC_OFFSET : CRC_OFFSET + 4] = crc.to_bytes(4, "big")
        return bytes(out)
