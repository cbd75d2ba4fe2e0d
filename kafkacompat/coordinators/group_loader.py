"""Start-up scan of ``__consumer_offsets``: the latest record per key, stepwise.

Every partition is read front to back through the :class:`~kafkacompat.coordinators.
group_store.GroupStore` seam, keeping the raw bytes of the latest value per key (no decoding
on the way, since most keys are overwritten many times).  The survivors are then replayed
into the partition's shard by the runtime (``CoordinatorRuntime.load_steps``), through the
same ``replay`` that applies a write's records: replaying only each key's latest record gives
the state replaying every record would, as each key's state is its latest value.
Transactional offset commits (TxnOffsetCommit) count once their COMMIT marker is read;
those of a transaction still open at the log's end come back apart, to stay pending in the
shard until a marker written after the load decides them (:class:`LoadedRecords`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import NamedTuple, Protocol, TypeVar

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


class LoadedRecords(NamedTuple):
    """One partition's scan: what replaying it leaves, one record per key."""

    latest: dict[bytes, bytes | None]
    """The latest committed value per key (plain records, and transactions committed)."""
    records_read: int
    """Records read (markers not counted)."""
    pending: dict[int, dict[bytes, tuple[int, bytes | None]]]
    """Transactions still open at the log's end: by producer id, each key's record offset and
    value.  They stay undecided: a marker written after the load decides them."""
    record_offsets: dict[bytes, int]
    """Where the latest value of a key written while such a transaction was open lies (for
    the marker's "the later record wins"); unknown for the other keys, all older."""


def latest_records(source: BatchSource, partition: int) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value bytes per key bytes in one partition, and how many records it holds."""
    return drain(latest_records_steps(source, partition))


def latest_records_steps(
    source: BatchSource, partition: int
) -> Generator[None, None, tuple[dict[bytes, bytes | None], int]]:
    """:func:`load_records_steps` without the open transactions (``__transaction_state``
    holds none)."""
    loaded = yield from load_records_steps(source, partition)
    return loaded.latest, loaded.records_read


def load_records(source: BatchSource, partition: int) -> LoadedRecords:
    return drain(load_records_steps(source, partition))


def load_records_steps(source: BatchSource, partition: int) -> Generator[None, None, LoadedRecords]:
    """One partition's scan, yielding every few thousand batches so that a broker can load
    on its event loop while it already serves other requests (COORDINATOR_LOAD_IN_PROGRESS
    to group requests meanwhile, as Kafka).

    Batch headers are unpacked here in one struct call each rather than through
    :class:`RecordBatch` views: with one commit per batch, the views cost more than the
    records.  The log checked every CRC when it appended or recovered these batches.

    Transactional batches (TxnOffsetCommit) are held by producer id until their marker: a
    COMMIT applies each of their records unless a plain record of the same key came later
    (Kafka keeps the most recent commit), an ABORT drops them.  While any is open, plain
    batches are walked into a batch of their own first, so that the keys they touch get a
    record offset (the batch's base offset: every record of it is later than any pending
    one) and their tombstones remove the pending records of their keys, as Kafka's replay
    does.  With no transaction open the hot loop is as before."""
    latest: dict[bytes, bytes | None] = {}
    batches = 0
    pending: dict[int, dict[bytes, tuple[int, bytes | None]]] = {}
    record_offsets: dict[bytes, int] = {}
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
                return _finish(latest, count, pending, record_offsets)
            attributes = fields[FIELD_ATTRIBUTES]
            section = data[position + header_size : position + size]
            codec = attributes & COMPRESSION_CODEC_MASK
            base_offset = fields[FIELD_BASE_OFFSET]
            offset = base_offset + fields[FIELD_LAST_OFFSET_DELTA] + 1
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
                    _apply_marker(payload, producer_id, pending, latest, record_offsets)
                elif attributes & TRANSACTIONAL_FLAG_MASK:
                    records = pending.setdefault(producer_id, {})
                    for record_offset, key, value in _keyed_records(payload, base_offset):
                        records[key] = (record_offset, value)
                        count += 1
                elif pending:
                    written: dict[bytes, bytes | None] = {}
                    count += _latest_values(payload, written)
                    _apply_plain(written, base_offset, pending, latest, record_offsets)
                else:
                    count += _latest_values(payload, latest)
            except (KafkaProtocolError, IndexError, ValueError) as exc:
                log.warning(
                    "skipping a malformed batch before offset %d of %s: %s",
                    offset,
                    OFFSETS_TOPIC,
                    exc,
                )
    return _finish(latest, count, pending, record_offsets)


def _finish(
    latest: dict[bytes, bytes | None],
    count: int,
    pending: dict[int, dict[bytes, tuple[int, bytes | None]]],
    record_offsets: dict[bytes, int],
) -> LoadedRecords:
    """A tombstone still in ``latest`` for a key an open transaction holds came before that
    transaction's record (a later one would have removed it): it deletes nothing from a
    fresh shard, and replayed after the pending records it would wrongly remove them."""
    for records in pending.values():
        for key in records:
            if key in latest and latest[key] is None:
                del latest[key]
    return LoadedRecords(latest, count, pending, record_offsets if pending else {})


def _keyed_records(payload: bytes, base_offset: int) -> list[tuple[int, bytes, bytes | None]]:
    """Every keyed record of a records section with its offset (transactional batches only:
    rare, so every varint is decoded)."""
    found: list[tuple[int, bytes, bytes | None]] = []
    position, end = 0, len(payload)
    while position < end:
        length, position = read_varint(payload, position, end)
        record_end = position + length
        if length <= 0 or record_end > end:
            raise InvalidRecordError(f"record length {length} is out of bounds")
        p = position + 1  # attributes
        _, p = read_varint(payload, p, record_end)  # timestamp delta
        offset_delta, p = read_varint(payload, p, record_end)
        key_length, p = read_varint(payload, p, record_end)
        key = payload[p : p + key_length] if key_length >= 0 else None
        p += max(key_length, 0)
        value_length, p = read_varint(payload, p, record_end)
        if p + value_length > record_end:
            raise InvalidRecordError(f"value length {value_length} is out of bounds")
        if key is not None:
            value = payload[p : p + value_length] if value_length >= 0 else None
            found.append((base_offset + offset_delta, key, value))
        position = record_end
    return found


def _apply_plain(
    written: dict[bytes, bytes | None],
    base_offset: int,
    pending: dict[int, dict[bytes, tuple[int, bytes | None]]],
    latest: dict[bytes, bytes | None],
    record_offsets: dict[bytes, int],
) -> None:
    """A plain batch read while a transaction is open."""
    latest.update(written)
    for key, value in written.items():
        record_offsets[key] = base_offset
        if value is None:
            for records in pending.values():
                records.pop(key, None)


def _apply_marker(
    payload: bytes,
    producer_id: int,
    pending: dict[int, dict[bytes, tuple[int, bytes | None]]],
    latest: dict[bytes, bytes | None],
    record_offsets: dict[bytes, int],
) -> None:
    marker: dict[bytes, bytes | None] = {}
    _latest_values(payload, marker)
    for key in marker:
        kind = decode_control_record_key(key)
        records = pending.pop(producer_id, {})
        if kind is ControlRecordType.COMMIT:
            for record_key, (record_offset, value) in records.items():
                if record_offsets.get(record_key, -1) < record_offset:
                    latest[record_key] = value
                    record_offsets[record_key] = record_offset
    if not pending:
        # Every pending record from here on is later than every record read so far.
        record_offsets.clear()
