"""The group coordinator's log: ``__consumer_offsets``, in Kafka's own record formats.

Writes.  Every committed offset, every group generation and every deletion is a record,
keyed so that the latest record per key is the state: ``OffsetCommitKey`` (key version 1:
group, topic, partition) -> ``OffsetCommitValue`` (v3; v1 when the commit carried its own
retention, OffsetCommit v2-4), and ``GroupMetadataKey`` (key version 2: group) ->
``GroupMetadataValue`` (v3, as Kafka 2.3 and later write it); a null value is a tombstone.
Keys and values each start with their int16 version.  A group's records go to partition
``abs(hashCode(group)) % partitions`` (Kafka's ``partitionFor``), one CreateTime batch per
request, appended before the request is answered.

Reads.  Only at start-up: every partition is replayed front to back, keeping the raw bytes of
the latest value per key (no decoding on the way, since most keys are overwritten many times),
then the survivors are decoded.  Transactional offset commits, which a data directory written
by Kafka may hold, count once their COMMIT marker is read.  Records with key versions this
code does not know (the KIP-848 consumer-group records) are skipped, as Kafka's loader
skips them.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from kafkacompat.coordinators.group_metadata import OffsetAndMetadata
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.protocol.internal_topics.group_metadata_key import GroupMetadataKey
from kafkacompat.protocol.internal_topics.group_metadata_value import (
    GroupMetadataValue,
    MemberMetadata,
)
from kafkacompat.protocol.internal_topics.offset_commit_key import OffsetCommitKey
from kafkacompat.protocol.internal_topics.offset_commit_value import OffsetCommitValue
from kafkacompat.protocol.primitives import DecodeError
from kafkacompat.records import (
    DEFAULT_MAX_UNCOMPRESSED_SIZE,
    CompressionType,
    InvalidRecordError,
    RecordBatchBuilder,
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
from kafkacompat.storage.base import FileRegion, PartitionLog
from kafkacompat.storage.kafka_uuid import random_kafka_uuid
from kafkacompat.storage.manager import LogManager, Topic
from kafkacompat.storage.topic_records import TopicRecord

log = logging.getLogger(__name__)

OFFSETS_TOPIC: Final = "__consumer_offsets"
OFFSET_COMMIT_KEY_VERSION: Final = 1
GROUP_METADATA_KEY_VERSION: Final = 2
OFFSET_COMMIT_VALUE_VERSION: Final = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: Final = 1
GROUP_METADATA_VALUE_VERSION: Final = 3

_VERSION = struct.Struct(">h")
_READ_CHUNK = 16 * 1024 * 1024
_BATCHES_PER_STEP = 2048  # a few milliseconds of replay between two turns of the event loop
_R = TypeVar("_R")

Record = tuple[bytes, bytes | None]
"""One record to append: key, and value or None for a tombstone."""


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, in signed 32-bit arithmetic."""
    h = 0
    encoded = text.encode("utf-16-be")
    for i in range(0, len(encoded), 2):
        h = (31 * h + ((encoded[i] << 8) | encoded[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group_id: str, partitions: int) -> int:
    # Kafka's Utils.abs is ``x & 0x7fffffff``, so Integer.MIN_VALUE maps to 0, not overflow.
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partitions


# -- record formats ---------------------------------------------------------------------------------


def offset_commit_key(group_id: str, topic: str, partition: int) -> bytes:
    body = OffsetCommitKey(group=group_id, topic=topic, partition=partition)
    return _VERSION.pack(OFFSET_COMMIT_KEY_VERSION) + body.encode(OFFSET_COMMIT_KEY_VERSION)


def offset_commit_value(committed: OffsetAndMetadata) -> bytes:
    version = (
        OFFSET_COMMIT_VALUE_VERSION
        if committed.expire_timestamp is None
        else OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY
    )
    body = OffsetCommitValue(
        offset=committed.offset,
        leader_epoch=committed.leader_epoch,
        metadata=committed.metadata,
        commit_timestamp=committed.commit_timestamp,
        expire_timestamp=-1 if committed.expire_timestamp is None else committed.expire_timestamp,
    )
    return _VERSION.pack(version) + body.encode(version)


def group_metadata_key(group_id: str) -> bytes:
    body = GroupMetadataKey(group=group_id)
    return _VERSION.pack(GROUP_METADATA_KEY_VERSION) + body.encode(GROUP_METADATA_KEY_VERSION)


def group_metadata_value(value: GroupMetadataValue) -> bytes:
    return _VERSION.pack(GROUP_METADATA_VALUE_VERSION) + value.encode(GROUP_METADATA_VALUE_VERSION)


def decode_offset_commit_value(data: bytes) -> OffsetAndMetadata:
    view = memoryview(data)
    (version,) = _VERSION.unpack_from(view, 0)
    value, _ = OffsetCommitValue.read(view, 2, version)
    return OffsetAndMetadata(
        offset=value.offset,
        leader_epoch=value.leader_epoch,
        metadata=value.metadata,
        commit_timestamp=value.commit_timestamp,
        expire_timestamp=None
        if version != 1 or value.expire_timestamp < 0
        else value.expire_timestamp,
    )


def decode_group_metadata_value(data: bytes) -> GroupMetadataValue:
    view = memoryview(data)
    (version,) = _VERSION.unpack_from(view, 0)
    value, _ = GroupMetadataValue.read(view, 2, version)
    if version == 0:
        for member in value.members:
            # v0 had no rebalance timeout: the session timeout served as both.
            member.rebalance_timeout = member.session_timeout
    return value


# -- loading ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadedGroups:
    """What replaying the log found: the latest group records and committed offsets."""

    groups: dict[str, GroupMetadataValue] = field(default_factory=dict)
    offsets: dict[str, dict[tuple[str, int], OffsetAndMetadata]] = field(default_factory=dict)
    records: int = 0
    """Records read, for the start-up log line."""


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


def replay(partition_log: PartitionLog) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value bytes per key bytes in one partition, and how many records it holds."""
    return drain(replay_steps(partition_log))


def replay_steps(
    partition_log: PartitionLog,
) -> Generator[None, None, tuple[dict[bytes, bytes | None], int]]:
    """:func:`replay`, yielding every few thousand batches so that a broker can replay on its
    event loop while it already serves other requests (COORDINATOR_LOAD_IN_PROGRESS to
    group requests meanwhile, as Kafka).

    Batch headers are unpacked here in one struct call each rather than through
    :class:`RecordBatch` views: with one commit per batch, the views cost more than the
    records.  The log checked every CRC when it appended or recovered these batches."""
    latest: dict[bytes, bytes | None] = {}
    batches = 0
    pending: dict[int, dict[bytes, bytes | None]] = {}  # transactional, by producer id
    count = 0
    offset = partition_log.log_start_offset
    end_offset = partition_log.log_end_offset
    header = RECORD_BATCH_HEADER
    header_size = header.size
    while offset < end_offset:
        result = partition_log.read(offset, _READ_CHUNK)
        records = result.records
        data = records.read() if isinstance(records, FileRegion) else bytes(records)
        if not data:
            break
        position, end = 0, len(data)
        while position + header_size <= end:
            fields = header.unpack_from(data, position)
            size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
            if fields[FIELD_MAGIC] != CURRENT_MAGIC or size < header_size or position + size > end:
                log.warning("stopping the replay of %s at a malformed batch", OFFSETS_TOPIC)
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


def decode_latest(latest: dict[bytes, bytes | None], into: LoadedGroups) -> None:
    """Decode the surviving records of one partition into ``into``; later calls (later
    partitions) never share a group with earlier ones."""
    for key, value in latest.items():
        view = memoryview(key)
        try:
            (version,) = _VERSION.unpack_from(view, 0)
            if version in (0, 1):
                offset_key, _ = OffsetCommitKey.read(view, 2, version)
                group_offsets = into.offsets.setdefault(offset_key.group, {})
                tp = (offset_key.topic, offset_key.partition)
                if value is None:
                    group_offsets.pop(tp, None)
                else:
                    group_offsets[tp] = decode_offset_commit_value(value)
            elif version == GROUP_METADATA_KEY_VERSION:
                group_key, _ = GroupMetadataKey.read(view, 2, version)
                if value is None:
                    into.groups.pop(group_key.group, None)
                else:
                    into.groups[group_key.group] = decode_group_metadata_value(value)
        except (DecodeError, struct.error) as exc:
            log.warning("skipping an undecodable record in %s: %s", OFFSETS_TOPIC, exc)
    for group_id in [g for g, offsets in into.offsets.items() if not offsets]:
        del into.offsets[group_id]


# -- the store --------------------------------------------------------------------------------------


class StoreError(Exception):
    """An append to ``__consumer_offsets`` failed; ``error_code`` is the storage's answer."""

    def __init__(self, message: str, error_code: ErrorCode) -> None:
        super().__init__(message)
        self.error_code = error_code


class GroupStore:
    """Appends to and replays ``__consumer_offsets`` through the broker's LogManager."""

    def __init__(
        self,
        logs: LogManager,
        *,
        num_partitions: int,
        segment_bytes: int,
        now_ms: Callable[[], int],
        leader_epoch: int = 0,
        create_topic: Callable[[str, int, dict[str, str]], Topic] | None = None,
    ) -> None:
        self.logs = logs
        # Through the controller in a broker (the topic is then in the metadata image too).
        self.create_topic = create_topic or (
            lambda name, partitions, configs: logs.create_logs(
                TopicRecord(name, random_kafka_uuid(), partitions, configs)
            )
        )
        self.configured_partitions = num_partitions
        self.segment_bytes = segment_bytes
        self.now_ms = now_ms
        self.leader_epoch = leader_epoch

    def topic(self) -> Topic | None:
        return self.logs.topics().get(OFFSETS_TOPIC)

    @property
    def num_partitions(self) -> int:
        # An existing topic's count wins over the config: its records are where they are.
        topic = self.topic()
        return topic.partitions if topic is not None else self.configured_partitions

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def ensure_topic(self) -> Topic:
        """Create the topic at first need, as Kafka's FindCoordinator does: compacted, one
        replica whatever offsets.topic.replication.factor says (there is one broker)."""
        topic = self.topic()
        if topic is None:
            topic = self.create_topic(
                OFFSETS_TOPIC,
                self.configured_partitions,
                {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(self.segment_bytes),
                    "compression.type": "producer",
                },
            )
            log.info("created %s with %d partitions", OFFSETS_TOPIC, self.configured_partitions)
        return topic

    def append(self, group_id: str, records: Iterable[Record]) -> None:
        """Append one batch to the group's partition; returns once the log has it (written
        to the segment file, so it survives the process being killed).  StoreError if not."""
        try:
            topic = self.ensure_topic()
        except KafkaProtocolError as exc:
            raise StoreError(str(exc), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) from exc
        partition_log = topic.logs[partition_for(group_id, topic.partitions)]
        now = self.now_ms()
        builder = RecordBatchBuilder()
        for key, value in records:
            builder.append(value, timestamp=now, key=key)
        if not len(builder):
            return
        try:
            partition_log.append(
                bytearray(builder.build()), leader_epoch=self.leader_epoch, now_ms=now
            )
        except KafkaProtocolError as exc:
            raise StoreError(str(exc), exc.error_code) from exc
        except OSError as exc:
            log.error("cannot append to %s: %s", OFFSETS_TOPIC, exc)
            raise StoreError(str(exc), ErrorCode.KAFKA_STORAGE_ERROR) from exc

    def load(self) -> LoadedGroups:
        return drain(self.load_steps())

    def load_steps(self) -> Generator[None, None, LoadedGroups]:
        loaded = LoadedGroups()
        topic = self.topic()
        if topic is None:
            return loaded
        for partition_log in topic.logs:
            latest, count = yield from replay_steps(partition_log)
            loaded.records += count
            decode_latest(latest, loaded)
        return loaded


def member_record(
    member_id: str,
    group_instance_id: str | None,
    client_id: str,
    client_host: str,
    rebalance_timeout_ms: int,
    session_timeout_ms: int,
    subscription: bytes,
    assignment: bytes,
) -> MemberMetadata:
    return MemberMetadata(
        member_id=member_id,
        group_instance_id=group_instance_id,
        client_id=client_id,
        client_host=client_host,
        rebalance_timeout=rebalance_timeout_ms,
        session_timeout=session_timeout_ms,
        subscription=subscription,
        assignment=assignment,
    )
