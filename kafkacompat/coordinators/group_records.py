"""The records of ``__consumer_offsets``, in Kafka's own formats, and where a group's go.

Every committed offset, every group generation and every deletion is a record, keyed so that
the latest record per key is the state: ``OffsetCommitKey`` (key version 1: group, topic,
partition) -> ``OffsetCommitValue`` (v3; v1 when the commit carried its own retention,
OffsetCommit v2-4), and ``GroupMetadataKey`` (key version 2: group) -> ``GroupMetadataValue``
(v3, as Kafka 2.3 and later write it); a null value is a tombstone.  Keys and values each
start with their int16 version.  A group's records go to partition
``abs(hashCode(group)) % partitions`` (Kafka's ``partitionFor``).

:func:`encode_record` and :func:`decode_record` convert between those bytes and typed
records: operations return typed records, which the runtime encodes to append and replays
as they are (no decoding on the write path); the load decodes what it reads, for the same
``replay`` (:mod:`kafkacompat.coordinators.group_coordinator_shard`).  Keys of kinds
this code does not know (the KIP-848 consumer-group records) decode to None and are skipped,
as Kafka's loader skips them.
"""

from __future__ import annotations

import logging
import struct
from typing import Final, NamedTuple

from kafkacompat.coordinators.group_metadata import OffsetAndMetadata
from kafkacompat.protocol.internal_topics.group_metadata_key import GroupMetadataKey
from kafkacompat.protocol.internal_topics.group_metadata_value import (
    GroupMetadataValue,
    MemberMetadata,
)
from kafkacompat.protocol.internal_topics.offset_commit_key import OffsetCommitKey
from kafkacompat.protocol.internal_topics.offset_commit_value import OffsetCommitValue
from kafkacompat.protocol.primitives import DecodeError

log = logging.getLogger(__name__)

OFFSETS_TOPIC: Final = "__consumer_offsets"
OFFSET_COMMIT_KEY_VERSION: Final = 1
GROUP_METADATA_KEY_VERSION: Final = 2
OFFSET_COMMIT_VALUE_VERSION: Final = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: Final = 1
GROUP_METADATA_VALUE_VERSION: Final = 3

_VERSION = struct.Struct(">h")

Record = tuple[bytes, bytes | None]
"""One record as the log holds it: key bytes, and value bytes or None for a tombstone."""


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


# -- typed records, for replay ----------------------------------------------------------------------


class OffsetCommitRecord(NamedTuple):
    """A committed offset (None: its tombstone).  A named tuple: a commit makes one per
    partition, and these build in a third of a frozen dataclass's time."""

    group_id: str
    topic: str
    partition: int
    value: OffsetAndMetadata | None


class GroupMetadataRecord(NamedTuple):
    """A classic group's generation and members (None: the group's tombstone)."""

    group_id: str
    value: GroupMetadataValue | None


CoordinatorRecord = OffsetCommitRecord | GroupMetadataRecord


def encode_record(record: CoordinatorRecord) -> Record:
    if isinstance(record, OffsetCommitRecord):
        key = offset_commit_key(record.group_id, record.topic, record.partition)
        return key, None if record.value is None else offset_commit_value(record.value)
    value = None if record.value is None else group_metadata_value(record.value)
    return group_metadata_key(record.group_id), value


def decode_record(key: bytes, value: bytes | None) -> CoordinatorRecord | None:
    """The record ``key`` and ``value`` hold; None for a kind this code does not know or
    bytes that do not decode (logged: a broken record must not stop a load)."""
    view = memoryview(key)
    try:
        (version,) = _VERSION.unpack_from(view, 0)
        if version in (0, 1):
            offset_key, _ = OffsetCommitKey.read(view, 2, version)
            return OffsetCommitRecord(
                offset_key.group,
                offset_key.topic,
                offset_key.partition,
                None if value is None else decode_offset_commit_value(value),
            )
        if version == GROUP_METADATA_KEY_VERSION:
            group_key, _ = GroupMetadataKey.read(view, 2, version)
            return GroupMetadataRecord(
                group_key.group, None if value is None else decode_group_metadata_value(value)
            )
    except (DecodeError, struct.error) as exc:
        log.warning("skipping an undecodable record in %s: %s", OFFSETS_TOPIC, exc)
    return None
