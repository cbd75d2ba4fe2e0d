"""The records of ``__transaction_state``, in Kafka's formats, and where an id's go.

One record per transactional id and change: key ``TransactionLogKey`` (version 0: the id),
value ``TransactionLogValue`` (version 0, or 1 with the flexible tagged fields of KIP-890 once
``transaction.version`` is 1 or more); a null value is the tombstone written when an id
expires.  Both start with their int16 version.  The latest record per key is the id's state,
so the topic is compacted and a load keeps only each key's last value.  An id's records go to
partition ``abs(hashCode(id)) % transaction.state.log.num.partitions`` (Kafka's
``TransactionStateManager.partitionFor``).

What a record does not hold, as in Kafka: the last producer epoch (a load sets it to -1) and
the partitions of an Empty id (written as null).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Generator
from typing import Final

from kafkacompat.coordinators.group_loader import BatchSource, latest_records_steps
from kafkacompat.coordinators.group_records import java_string_hash
from kafkacompat.coordinators.transaction_metadata import (
    TopicPartition,
    TransactionMetadata,
    TransactionState,
    TxnTransitMetadata,
)
from kafkacompat.protocol.internal_topics.transaction_log_key import TransactionLogKey
from kafkacompat.protocol.internal_topics.transaction_log_value import (
    PartitionsSchema,
    TransactionLogValue,
)
from kafkacompat.protocol.primitives import DecodeError
from kafkacompat.records.batch import NO_PRODUCER_EPOCH

log = logging.getLogger(__name__)

TRANSACTION_STATE_TOPIC: Final = "__transaction_state"
TRANSACTION_LOG_KEY_VERSION: Final = 0
_VERSION = struct.Struct(">h")

Record = tuple[bytes, bytes | None]


def partition_for(transactional_id: str, partitions: int) -> int:
    # Utils.abs masks the sign bit, so Integer.MIN_VALUE lands on 0 rather than overflowing.
    return (java_string_hash(transactional_id) & 0x7FFFFFFF) % partitions


def value_version(transaction_version_level: int) -> int:
    """The value version Kafka writes at a ``transaction.version`` feature level."""
    return 0 if transaction_version_level < 1 else 1


def key_to_bytes(transactional_id: str) -> bytes:
    body = TransactionLogKey(transactional_id=transactional_id)
    return _VERSION.pack(TRANSACTION_LOG_KEY_VERSION) + body.encode(TRANSACTION_LOG_KEY_VERSION)


def value_to_bytes(transit: TxnTransitMetadata, version: int) -> bytes:
    if transit.txn_state == TransactionState.EMPTY and transit.topic_partitions:
        raise ValueError(f"an Empty transaction holds no partitions: {transit}")
    partitions: list[PartitionsSchema] | None = None
    if transit.txn_state != TransactionState.EMPTY:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(transit.topic_partitions):
            by_topic.setdefault(topic, []).append(partition)
        partitions = [PartitionsSchema(topic=t, partition_ids=ids) for t, ids in by_topic.items()]
    body = TransactionLogValue(
        producer_id=transit.producer_id,
        previous_producer_id=transit.prev_producer_id,
        next_producer_id=transit.next_producer_id,
        producer_epoch=transit.producer_epoch,
        transaction_timeout_ms=transit.txn_timeout_ms,
        transaction_status=int(transit.txn_state),
        transaction_partitions=partitions,
        transaction_last_update_timestamp_ms=transit.txn_last_update_timestamp,
        transaction_start_timestamp_ms=transit.txn_start_timestamp,
        client_transaction_version=transit.client_transaction_version,
    )
    return _VERSION.pack(version) + body.encode(version)


def transit_record(transactional_id: str, transit: TxnTransitMetadata, version: int) -> Record:
    return key_to_bytes(transactional_id), value_to_bytes(transit, version)


def tombstone(transactional_id: str) -> Record:
    return key_to_bytes(transactional_id), None


class TransactionLogDecodeError(ValueError):
    """A record of ``__transaction_state`` that this code cannot read."""


def read_txn_record_key(data: bytes) -> str | None:
    """The transactional id of a key; None for a key version this code does not know (Kafka
    skips those: leftovers of an aborted upgrade)."""
    view = memoryview(data)
    try:
        (version,) = _VERSION.unpack_from(view, 0)
        if version != TRANSACTION_LOG_KEY_VERSION:
            return None
        key, _ = TransactionLogKey.read(view, 2, version)
    except (DecodeError, struct.error, UnicodeDecodeError) as exc:
        raise TransactionLogDecodeError(f"undecodable key: {exc}") from exc
    return key.transactional_id


def read_txn_record_value(transactional_id: str, data: bytes | None) -> TransactionMetadata | None:
    """The metadata a value holds; None for a tombstone."""
    if data is None:
        return None
    view = memoryview(data)
    try:
        (version,) = _VERSION.unpack_from(view, 0)
        if not 0 <= version <= 1:
            raise TransactionLogDecodeError(f"unknown value version {version}")
        value, _ = TransactionLogValue.read(view, 2, version)
        state = TransactionState(value.transaction_status)
    except (DecodeError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise TransactionLogDecodeError(
            f"undecodable value of {transactional_id!r}: {exc}"
        ) from exc
    partitions: set[TopicPartition] = set()
    if state != TransactionState.EMPTY:
        for schema in value.transaction_partitions or ():
            partitions.update((schema.topic, p) for p in schema.partition_ids)
    return TransactionMetadata(
        transactional_id=transactional_id,
        producer_id=value.producer_id,
        previous_producer_id=value.previous_producer_id,
        next_producer_id=value.next_producer_id,
        producer_epoch=value.producer_epoch,
        last_producer_epoch=NO_PRODUCER_EPOCH,
        txn_timeout_ms=value.transaction_timeout_ms,
        state=state,
        topic_partitions=partitions,
        txn_start_timestamp=value.transaction_start_timestamp_ms,
        txn_last_update_timestamp=value.transaction_last_update_timestamp_ms,
        client_transaction_version=value.client_transaction_version,
    )


def replay(latest: dict[bytes, bytes | None]) -> dict[str, TransactionMetadata]:
    """The ids a partition's latest record per key describes (tombstoned ids left out).

    A record that does not decode is logged and skipped: one broken record must not keep a
    whole partition's transactions from loading."""
    loaded: dict[str, TransactionMetadata] = {}
    for key, value in latest.items():
        try:
            transactional_id = read_txn_record_key(key)
            if transactional_id is None:
                log.warning(
                    "skipping a record of unknown key version in %s", TRANSACTION_STATE_TOPIC
                )
                continue
            metadata = read_txn_record_value(transactional_id, value)
        except TransactionLogDecodeError as exc:
            log.warning("skipping a record of %s: %s", TRANSACTION_STATE_TOPIC, exc)
            continue
        if metadata is None:
            loaded.pop(transactional_id, None)
        else:
            loaded[transactional_id] = metadata
    return loaded


def load_transactions_steps(
    source: BatchSource, partition: int
) -> Generator[None, None, dict[str, TransactionMetadata]]:
    """Load one partition of ``__transaction_state``, yielding now and then so that a broker
    can load on its event loop while it serves (COORDINATOR_LOAD_IN_PROGRESS meanwhile)."""
    latest, _ = yield from latest_records_steps(source, partition)
    return replay(latest)


DEFAULT_SEGMENT_BYTES: Final = 104_857_600  # transaction.state.log.segment.bytes


def transaction_topic_configs(
    min_insync_replicas: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES
) -> dict[str, str]:
    """The topic configs ``__transaction_state`` is created with, as Kafka enforces them:
    compacted (the latest record per id is the state), uncompressed, no unclean election."""
    return {
        "unclean.leader.election.enable": "false",
        "compression.type": "uncompressed",
        "cleanup.policy": "compact",
        "min.insync.replicas": str(min_insync_replicas),
        "segment.bytes": str(segment_bytes),
    }
