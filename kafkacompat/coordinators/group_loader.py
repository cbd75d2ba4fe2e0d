"""Start-up scan of ``__consumer_offsets``: the latest record per key, stepwise.

Every partition is read front to back through the :class:`~kafkacompat.coordinators.
group_store.GroupStore` seam, keeping the raw bytes of the latest value per key (no decoding
on the way, since most keys are overwritten many times).  The survivors are then replayed
into the partition's shard by the runtime (``CoordinatorRuntime.load_steps``), through the
same ``replay`` that applies a write's records: replaying only each key's latest record gives
the state replaying every record would, as each key's state is its latest value.
Transactional offset commits, which a data directory written by Kafka may hold, count once
their COMMIT marker is read.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Protocol, TypeVar

from kafkacompat.coordinators.group_records import OFFSETS_TOPIC
from kafkacompat.errors import KafkaProtocolError
from kafkacompat.records import (
    DEFAULT_MAX_UNCOMPRESSED_SIZE,
    CompressionType,
    InvalidRecordError,
    decompress,
)
from kafkacompat.records.batch import (
    COMPRESSION_CODEC_MASK,
    CONTROL_FLAG_MASK,
    CURRENT_MAGIC,
    FIELD_ATTRIBUTES,
    FIELD_BASE_OFFSET,
    FIELD_BATCH_LENGTH,
    FIELD_LAST_OFFSET_DELTA,
    FIELD_MAGIC,
    FIELD_PRODUCER_ID,
    LOG_OVERHEAD,
    RECORD_BATCH_HEADER,
    TRANSACTIONAL_FLAG_MASK,
)
from kafkacompat.records.control import ControlRecordType, decode_control_record_key
from kafkacompat.records.varint import read_varint

log = logging.getLogger(__name__)

_READ_CHUNK = 16 * 1024 * 1024
_BATCHES_PER_STEP = 2048  # a few milliseconds of replay between two turns of the event loop
_R = TypeVar("_R")


class BatchSource(Protocol):
    """What the scan reads: one partition's batches (the store's read side)."""

    def log_start_offset(self, partition: int) -> int: ...

    def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]: ...


def _latest_values(payload: bytes, latest: dict[bytes, bytes | None]) -> int:
    """Walk a records section, keeping each record's key and value bytes (latest wins).

    The hot loop of start-up: only the varints that locate the key and value are decoded;
    the timestamp and offset deltas are skipped byte by byte and headers not read at all."""
    position = 0
    end = len(payload)
    count = 0
    while position < end:
        byte = payload[position]
        if byte < 0x80:
            length = (byte >> 1) ^ -(byte & 1)
            position += 1
        else:
            length, position = read_varint(payload, position, end)
        record_end = position + length
        if length <= 0 or record_end > end:
            raise InvalidRecordError(f"record length {length} is out of bounds")
        p = position + 1  # attributes
        while payload[p] >= 0x80:  # timestamp delta
            p += 1
        p += 1
        while payload[p] >= 0x80:  # offset delta
            p += 1
        p += 1
        byte = payload[p]
        if byte < 0x80:
            key_length = (byte >> 1) ^ -(byte & 1)
            p += 1
        else:
            key_length, p = read_varint(payload, p, record_end)
        key = payload[p : p + key_length] if key_length >= 0 else None
        p += max(key_length, 0)
        byte = payload[p]
        if byte < 0x80:
            value_length = (byte >> 1) ^ -(byte & 1)
            p += 1
        else:
            value_length, p = read_varint(payload, p, record_end)
        if p + value_length > record_end:
            raise InvalidRecordError(f"value length {value_length} is out of bounds")
        if key is not None:
            latest[key] = payload[p : p + value_length] if value_length >= 0 else None
        position = record_end
        count += 1
    return count


def drain(steps: Generator[None, None, _R]) -> _R:
    """Run a stepwise load to its end at once (tests, and brokers that load before serving)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: _R = done.value
            return result


def latest_records(source: BatchSource, partition: int) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value bytes per key bytes in one partition, and how many records it holds."""
    return drain(latest_records_steps(source, partition))


def latest_records_steps(
    source: BatchSource, partition: int
) -> Generator[None, None, tuple[dict[bytes, bytes | None], int]]:
    """:func:`latest_records`, yielding every few thousand batches so that a broker can load
    on its event loop while it already serves other requests (COORDINATOR_LOAD_IN_PROGRESS
    to group requests meanwhile, as Kafka).

    Batch headers are unpacked here in one struct call each rather than through
    :class:`RecordBatch` views: with one commit per batch, the views cost more than the
    records.  The log checked every CRC when it appended or recovered these batches."""
    latest: dict[bytes, bytes | None] = {}
    batches = 0
    pending: dict[int, dict[bytes, bytes | None]] = {}  # transactional, by producer id
    count = 0
    offset = source.log_start_offset(partition)
    header = RECORD_BATCH_HEADER
    header_size = header.size
    while True:
        data, end_offset = source.read(partition, offset, _READ_CHUNK)
        if not data or offset >= end_offset:
            break
        position, end = 0, len(data)
        while position + header_size <= end:
            fields = header.unpack_from(data, position)
            size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
            if fields[FIELD_MAGIC] != CURRENT_MAGIC or size < header_size or position + size > end:
                log.warning("stopping the load of %s at a malformed batch", OFFSETS_TOPIC)
                return latest, count
            attributes = fields[FIELD_ATTRIBUTES]
            section = data[position + header_size : position + size]
            codec = attributes & COMPRESSION_CODEC_MASK
            offset = fields[FIELD_BASE_OFFSET] + fields[FIELD_LAST_OFFSET_DELTA] + 1
            position += size
            batches += 1
            if batches % _BATCHES_PER_STEP == 0:
                yield
            try:
                payload = (
                    section
                    if codec == 0
                    else bytes(
                        decompress(CompressionType(codec), section, DEFAULT_MAX_UNCOMPRESSED_SIZE)
                    )
                )
                producer_id = fields[FIELD_PRODUCER_ID]
                if attributes & CONTROL_FLAG_MASK:
                    _apply_marker(payload, producer_id, pending, latest)
                elif attributes & TRANSACTIONAL_FLAG_MASK:
                    count += _latest_values(payload, pending.setdefault(producer_id, {}))
                else:
                    count += _latest_values(payload, latest)
            except (KafkaProtocolError, IndexError, ValueError) as exc:
                log.warning(
                    "skipping a malformed batch before offset %d of %s: %s",
                    offset,
                    OFFSETS_TOPIC,
                    exc,
                )
    return latest, count


def _apply_marker(
    payload: bytes,
    producer_id: int,
    pending: dict[int, dict[bytes, bytes | None]],
    latest: dict[bytes, bytes | None],
) -> None:
    marker: dict[bytes, bytes | None] = {}
    _latest_values(payload, marker)
    for key in marker:
        kind = decode_control_record_key(key)
        values = pending.pop(producer_id, {})
        if kind is ControlRecordType.COMMIT:
            latest.update(values)
