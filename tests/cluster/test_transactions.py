"""Transactions at the partition and replica manager: markers from the coordinator's path, the
last stable offset, read_committed fetches with their aborted transactions, ListOffsets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from kafkacompat.cluster.partition import FetchIsolation, Partition
from kafkacompat.cluster.replica_manager import TransactionResult, TxnMarker
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
)
from kafkacompat.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kafkacompat.records import iter_batches
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.transaction_index import AbortedTxn
from kafkacompat.storage.unified_log import UnifiedLog
from tests.handlers.helpers import call, running_broker
from tests.storage.test_transactions import ABORT, COMMIT, NOW, marker, txn_batch

HW = FetchIsolation.HIGH_WATERMARK
COMMITTED = FetchIsolation.TXN_COMMITTED


def partition() -> Partition:
    config = LogConfig()
    log = UnifiedLog(("t", 0), MemoryLog(config), config)
    return Partition("t", 0, uuid.uuid4(), log, local_broker_id=1)


def offsets_of(records: bytes | memoryview) -> list[int]:
    return [b.base_offset for b in iter_batches(bytes(records))]


def test_the_lso_is_the_first_open_transaction_capped_by_the_high_watermark() -> None:
    p = partition()
    p.append_records_to_leader(txn_batch(1, 0, 0), now_ms=NOW)  # 0-1
    assert p.high_watermark == 2 and p.last_stable_offset == 0
    p.append_records_to_leader(txn_batch(2, 0, 0), now_ms=NOW)  # 2-3
    p.append_records_to_leader(marker(1, 0, COMMIT), now_ms=NOW, from_client=False)  # 4
    assert p.last_stable_offset == 2
    p.append_records_to_leader(marker(2, 0, ABORT), now_ms=NOW, from_client=False)  # 5
    assert p.last_stable_offset == p.high_watermark == 6
    p._high_watermark = 3  # a lagging follower would hold it: the LSO never passes it
    assert p.last_stable_offset == 3


def test_read_committed_stops_at_the_lso_and_lists_aborted_transactions() -> None:
    p = partition()
    p.append_records_to_leader(txn_batch(1, 0, 0), now_ms=NOW)  # 0-1
    p.append_records_to_leader(marker(1, 0, ABORT), now_ms=NOW, from_client=False)  # 2
    p.append_records_to_leader(txn_batch(2, 0, 0), now_ms=NOW)  # 3-4, open
    p.append_records_to_leader(txn_batch(3, 0, 0), now_ms=NOW)  # 5-6
    p.append_records_to_leader(marker(3, 0, COMMIT), now_ms=NOW, from_client=False)  # 7
    committed = p.read_records(0, 1 << 20, COMMITTED)
    assert committed.last_stable_offset == 3
    assert offsets_of(committed.records) == [0, 2]  # nothing at or past the LSO
    assert committed.aborted_transactions == [AbortedTxn(1, 0, 2, 3)]
    uncommitted = p.read_records(0, 1 << 20, HW)
    assert offsets_of(uncommitted.records) == [0, 2, 3, 5, 7]
    assert uncommitted.aborted_transactions is None and uncommitted.last_stable_offset == 3
    # At the LSO a read_committed fetch reads nothing, and lists nothing.
    at_lso = p.read_records(3, 1 << 20, COMMITTED)
    assert at_lso.records == b"" and at_lso.aborted_transactions == []
    p.append_records_to_leader(marker(2, 0, ABORT), now_ms=NOW, from_client=False)  # 8
    later = p.read_records(3, 1 << 20, COMMITTED)
    assert offsets_of(later.records) == [3, 5, 7, 8]
    # Txn 1 ended before offset 3: only txn 2 overlaps this read.
    assert later.aborted_transactions == [AbortedTxn(2, 3, 8, 9)]


def test_list_offsets_latest_under_read_committed_is_the_lso() -> None:
    p = partition()
    p.append_records_to_leader(txn_batch(1, 0, 0), now_ms=NOW)
    assert p.fetch_offset_for_timestamp(-1, COMMITTED)[1] == 0
    assert p.fetch_offset_for_timestamp(-1, HW)[1] == 2


def test_append_txn_markers_reports_each_partition() -> None:
    with running_broker() as broker:
        broker.controller.create_topic("t", 2)
        replicas = broker.replica_manager
        for index in (0, 1):
            replicas.append_records(
                replicas.get_partition_or_error("t", index), txn_batch(7, 3, 0), now_ms=NOW
            )
        results = replicas.append_txn_markers(
            [
                TxnMarker(7, 3, 5, TransactionResult.ABORT, (("t", 0), ("t", 1), ("gone", 0))),
                TxnMarker(8, 0, 5, TransactionResult.COMMIT, (("t", 0),)),
            ],
            now_ms=NOW,
        )
        assert results == {
            7: {
                ("t", 0): ErrorCode.NONE,
                ("t", 1): ErrorCode.NONE,
                ("gone", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            },
            8: {("t", 0): ErrorCode.NONE},
        }
        p0 = replicas.get_partition_or_error("t", 0)
        assert p0.last_stable_offset == p0.high_watermark == 4
        assert p0.log.collect_aborted_txns(0, 4) == [AbortedTxn(7, 0, 2, 3)]
        # A stale producer epoch, then a deposed coordinator.
        replicas.append_records(p0, txn_batch(7, 3, 2), now_ms=NOW)
        stale = replicas.append_txn_markers(
            [TxnMarker(7, 2, 5, TransactionResult.COMMIT, (("t", 0),))], now_ms=NOW
        )
        fenced = replicas.append_txn_markers(
            [TxnMarker(7, 3, 4, TransactionResult.COMMIT, (("t", 0),))], now_ms=NOW
        )
        assert stale == {7: {("t", 0): ErrorCode.INVALID_PRODUCER_EPOCH}}
        assert fenced == {7: {("t", 0): ErrorCode.TRANSACTION_COORDINATOR_FENCED}}


@pytest.mark.parametrize("engine", ["memory", "disk"])
def test_fetch_and_list_offsets_handlers_under_read_committed(tmp_path: Path, engine: str) -> None:
    with running_broker(tmp_path, engine=engine) as broker:
        broker.controller.create_topic("t", 1)
        replicas = broker.replica_manager
        p = replicas.get_partition_or_error("t", 0)
        now = int(time.time() * 1000)
        replicas.append_records(p, txn_batch(1, 0, 0), now_ms=now)  # 0-1
        replicas.append_txn_markers(
            [TxnMarker(1, 0, 0, TransactionResult.ABORT, (("t", 0),))], now_ms=now
        )  # 2
        replicas.append_records(p, txn_batch(2, 0, 0), now_ms=now)  # 3-4 open

        def fetch(isolation_level: int) -> object:
            request = FetchRequest(
                max_wait_ms=0,
                min_bytes=1,
                isolation_level=isolation_level,
                topics=[
                    FetchTopic(
                        topic="t",
                        topic_id=broker.logs.topics()["t"].topic_id,
                        partitions=[
                            FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
                        ],
                    )
                ],
            )
            return call(broker, request, 12).responses[0].partitions[0]

        committed = fetch(1)
        assert (committed.high_watermark, committed.last_stable_offset) == (5, 3)
        assert [(a.producer_id, a.first_offset) for a in committed.aborted_transactions] == [(1, 0)]
        assert offsets_of(committed.records) == [0, 2]
        uncommitted = fetch(0)
        assert uncommitted.aborted_transactions is None
        assert offsets_of(uncommitted.records) == [0, 2, 3]

        def latest(isolation_level: int) -> int:
            request = ListOffsetsRequest(
                replica_id=-1,
                isolation_level=isolation_level,
                topics=[
                    ListOffsetsTopic(
                        name="t", partitions=[ListOffsetsPartition(partition_index=0, timestamp=-1)]
                    )
                ],
            )
            return call(broker, request, 7).topics[0].partitions[0].offset

        assert (latest(1), latest(0)) == (3, 5)
