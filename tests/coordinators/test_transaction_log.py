"""__transaction_state records: Kafka's byte formats, partitioning, and the replay of a log."""

from __future__ import annotations

import struct

from kafkacompat.coordinators.group_loader import drain
from kafkacompat.coordinators.transaction_log import (
    key_to_bytes,
    load_transactions_steps,
    partition_for,
    read_txn_record_key,
    read_txn_record_value,
    replay,
    tombstone,
    transaction_topic_configs,
    transit_record,
    value_to_bytes,
)
from kafkacompat.coordinators.transaction_metadata import (
    TransactionState,
    TxnTransitMetadata,
)
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID

S = TransactionState


def _transit(
    state: TransactionState = S.ONGOING,
    partitions: frozenset[tuple[str, int]] = frozenset({("b", 1), ("a", 2), ("a", 0)}),
    **changes: int,
) -> TxnTransitMetadata:
    fields: dict[str, int] = {
        "producer_id": 42,
        "prev_producer_id": 41,
        "next_producer_id": NO_PRODUCER_ID,
        "producer_epoch": 3,
        "last_producer_epoch": 2,
        "txn_timeout_ms": 60_000,
        "txn_start_timestamp": 1_000,
        "txn_last_update_timestamp": 2_000,
        "client_transaction_version": 0,
    }
    fields.update(changes)
    return TxnTransitMetadata(txn_state=state, topic_partitions=partitions, **fields)


def test_key_bytes_are_version_0_and_a_string() -> None:
    assert key_to_bytes("tx") == b"\x00\x00\x00\x02tx"
    assert read_txn_record_key(b"\x00\x00\x00\x02tx") == "tx"
    assert read_txn_record_key(b"\x00\x05\x00\x02tx") is None  # an unknown key version


def test_value_v0_bytes_match_kafkas_layout() -> None:
    data = value_to_bytes(_transit(), 0)
    expected = (
        struct.pack(">hqhib", 0, 42, 3, 60_000, 1)
        + struct.pack(">i", 2)
        + struct.pack(">h", 1)
        + b"a"
        + struct.pack(">iii", 2, 0, 2)
        + struct.pack(">h", 1)
        + b"b"
        + struct.pack(">ii", 1, 1)
        + struct.pack(">qq", 2_000, 1_000)
    )
    assert data == expected


def test_empty_state_writes_null_partitions() -> None:
    data = value_to_bytes(_transit(S.EMPTY, frozenset(), txn_start_timestamp=-1), 0)
    assert data[17:21] == struct.pack(">i", -1)


def test_values_round_trip_in_both_versions_with_tagged_fields_in_v1() -> None:
    transit = _transit(S.PREPARE_COMMIT, next_producer_id=77, client_transaction_version=2)
    v0 = read_txn_record_value("t", value_to_bytes(transit, 0))
    v1 = read_txn_record_value("t", value_to_bytes(transit, 1))
    assert v0 is not None and v1 is not None
    for metadata in (v0, v1):
        assert metadata.state is S.PREPARE_COMMIT
        assert metadata.producer_id == 42 and metadata.producer_epoch == 3
        assert metadata.topic_partitions == {("a", 0), ("a", 2), ("b", 1)}
        assert (metadata.txn_start_timestamp, metadata.txn_last_update_timestamp) == (1000, 2000)
        # Not persisted, as in Kafka.
        assert metadata.last_producer_epoch == NO_PRODUCER_EPOCH
    assert (v0.previous_producer_id, v0.next_producer_id, v0.client_transaction_version) == (
        -1,
        -1,
        0,
    )
    assert (v1.previous_producer_id, v1.next_producer_id, v1.client_transaction_version) == (
        41,
        77,
        2,
    )
    assert read_txn_record_value("t", None) is None


def test_partition_for_is_javas_string_hash_code() -> None:
    # "hello".hashCode() == 99162322; "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("polygenelubricants", 50) == 0
    assert all(0 <= partition_for(f"txn-{i}", 50) < 50 for i in range(200))


def test_replay_keeps_the_latest_state_and_drops_tombstoned_and_broken_records() -> None:
    latest: dict[bytes, bytes | None] = dict(
        [
            transit_record("a", _transit(S.COMPLETE_COMMIT, frozenset()), 0),
            tombstone("gone"),
            (key_to_bytes("broken"), b"\x00\x09garbage"),
            (b"\x00\x07", b""),  # unknown key version
        ]
    )
    loaded = replay(latest)
    assert set(loaded) == {"a"}
    assert loaded["a"].state is S.COMPLETE_COMMIT


class _FakeLog:
    def __init__(self, batches: list[bytes]) -> None:
        blob = bytearray()
        offset = 0
        for batch in batches:
            raw = bytearray(batch)
            struct.pack_into(">q", raw, 0, offset)
            offset += struct.unpack_from(">i", raw, 57)[0]
            blob += raw
        self.blob = bytes(blob)
        self.end = offset

    def log_start_offset(self, partition: int) -> int:
        return 0

    def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]:
        return self.blob if offset == 0 else b"", self.end


def _batch(records: list[tuple[bytes, bytes | None]]) -> bytes:
    builder = RecordBatchBuilder()
    for key, value in records:
        builder.append(value, key=key, timestamp=1)
    return builder.build()


def test_load_reads_a_partition_in_log_order() -> None:
    log = _FakeLog(
        [
            _batch([transit_record("x", _transit(S.ONGOING), 1)]),
            _batch(
                [
                    transit_record("y", _transit(S.EMPTY, frozenset(), txn_start_timestamp=-1), 0),
                    transit_record("x", _transit(S.PREPARE_ABORT), 1),
                ]
            ),
            _batch([tombstone("y")]),
        ]
    )
    loaded = drain(load_transactions_steps(log, 0))
    assert set(loaded) == {"x"}
    assert loaded["x"].state is S.PREPARE_ABORT


def test_topic_configs_are_kafkas() -> None:
    assert transaction_topic_configs(2) == {
        "unclean.leader.election.enable": "false",
        "compression.type": "uncompressed",
        "cleanup.policy": "compact",
        "min.insync.replicas": "2",
        "segment.bytes": "104857600",
    }
