"""Compaction of a topic written by a transactional producer through the handlers: the
coordinator's markers, the broker's cleaner task, and read_committed fetches afterwards."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode as E
from kafkacompat.records.batch import iter_batches
from kafkacompat.records.control import ControlRecordType, decode_control_record_key
from kafkacompat.storage.log import Log
from tests.handlers.test_transactions import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    Clock,
    Txn,
    fetch,
    run_with_broker,
)

RETENTION_MS = 1000


def committed_values(answer: Any) -> list[bytes | None]:
    """The values a read_committed consumer takes from a fetch answer: a producer's batches
    are dropped from an aborted transaction's first offset to its ABORT marker (Kafka's
    consumer; ``data_values`` drops everything after the first offset)."""
    pending = [(a.first_offset, a.producer_id) for a in answer.aborted_transactions or ()]
    heapq.heapify(pending)
    aborting: set[int] = set()
    values: list[bytes | None] = []
    for batch in iter_batches(memoryview(bytes(answer.records or b""))):
        while pending and pending[0][0] <= batch.last_offset:
            aborting.add(heapq.heappop(pending)[1])
        records = list(batch.iter_records())
        if batch.is_control:
            if records and decode_control_record_key(records[0].key) == ControlRecordType.ABORT:
                aborting.discard(batch.producer_id)
        elif not (batch.is_transactional and batch.producer_id in aborting):
            values += [record.value for record in records]
    return values


async def transaction(txn: Txn, values: list[bytes], commit: bool) -> None:
    assert await txn.add(("t", 0)) == {("t", 0): E.NONE}
    assert (await txn.produce("t", 0, values)).error_code == E.NONE
    assert await txn.end(commit=commit) == E.NONE
    await txn.broker.txn_coordinator.wait_for_markers()


def test_the_cleaner_drops_aborted_data_then_markers_after_delete_retention(
    tmp_path: Path,
) -> None:
    async def scenario(broker: Broker, clock: Clock) -> None:
        broker.controller.create_topic(
            "t",
            1,
            {
                "cleanup.policy": "compact",
                "min.cleanable.dirty.ratio": "0.01",
                "delete.retention.ms": str(RETENTION_MS),
            },
        )
        local = broker.replica_manager.get_partition_or_error("t", 0).log.local
        assert isinstance(local, Log)

        async def roll_and_clean() -> int:
            local.roll()
            local.flush()
            return await broker.clean_logs()

        async def layout() -> list[tuple[int, bool, int]]:
            """(offset, is a marker, records) of every batch, as read_uncommitted reads them."""
            answer = await fetch(broker, "t", READ_UNCOMMITTED)
            return [
                (b.base_offset, b.is_control, b.records_count)
                for b in iter_batches(memoryview(bytes(answer.records)))
            ]

        txn = Txn(broker, "compacting")
        other = Txn(broker, "aborting")
        assert (await txn.init()).error_code == E.NONE
        assert (await other.init()).error_code == E.NONE
        # Every record has the key b"k" (Txn.produce): the latest committed value wins.
        await transaction(txn, [b"c1", b"c2"], commit=True)  # 0-1, marker 2
        await transaction(txn, [b"c3"], commit=True)  # 3, marker 4
        await transaction(other, [b"a1"], commit=False)  # 5, marker 6
        assert committed_values(await fetch(broker, "t", READ_COMMITTED)) == [b"c1", b"c2", b"c3"]

        assert await roll_and_clean() == 1
        # The aborted a1 is gone and did not shadow c3 (it was never mapped); its batch
        # keeps an empty header, the last of its producer. Every marker stays: each
        # transaction had data this round met.
        assert await layout() == [
            (2, True, 1),
            (3, False, 1),
            (4, True, 1),
            (5, False, 0),
            (6, True, 1),
        ]
        assert committed_values(await fetch(broker, "t", READ_COMMITTED)) == [b"c3"]

        await transaction(txn, [b"c4"], commit=True)  # 7, marker 8
        assert await roll_and_clean() == 1
        # Marker 2 has no data left: stamped, kept until delete.retention.ms has passed.
        assert [o for o, control, _ in await layout() if control] == [2, 4, 6, 8]

        clock.now += RETENTION_MS
        await transaction(txn, [b"c5"], commit=True)  # 9, marker 10
        assert await roll_and_clean() == 1
        assert [o for o, control, _ in await layout() if control] == [4, 6, 8, 10]
        assert committed_values(await fetch(broker, "t", READ_COMMITTED)) == [b"c5"]

    run_with_broker(tmp_path, scenario)
