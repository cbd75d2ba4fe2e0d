"""The broker's cleaner task never compacts past a partition's last stable offset."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kafkacompat.records import RecordBatchBuilder, iter_batches
from kafkacompat.storage.log import Log
from tests.handlers.helpers import running_broker
from tests.storage.log_helpers import region_bytes
from tests.storage.test_transactions import COMMIT, NOW, marker


def keyed(key: bytes, value: bytes, pid: int | None = None) -> bytearray:
    if pid is None:
        builder = RecordBatchBuilder()
    else:
        builder = RecordBatchBuilder(
            producer_id=pid, producer_epoch=0, base_sequence=0, is_transactional=True
        )
    builder.append(value, key=key, timestamp=NOW)
    return bytearray(builder.build())


def test_clean_logs_stops_at_the_first_open_transaction(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic(
            "t", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
        )
        partition = broker.replica_manager.get_partition_or_error("t", 0)
        local = partition.log.local
        assert isinstance(local, Log)

        def write(blob: bytearray, from_client: bool = True) -> None:
            partition.append_records_to_leader(blob, now_ms=NOW, from_client=from_client)

        write(keyed(b"k1", b"a"))  # 0
        write(keyed(b"k1", b"b"))  # 1
        local.roll()
        write(keyed(b"k1", b"c"))  # 2
        write(keyed(b"k2", b"t", pid=9))  # 3, open
        write(keyed(b"k1", b"d"))  # 4
        local.roll()
        write(keyed(b"k1", b"e"))  # 5
        local.roll()
        write(keyed(b"z", b"z"))  # 6
        local.flush()

        def offsets() -> list[int]:
            found: list[int] = []
            offset = local.log_start_offset
            while offset < local.log_end_offset:
                batches = list(iter_batches(region_bytes(local, offset, 1 << 20)))
                found += [batch.base_offset for batch in batches]
                offset = batches[-1].next_offset
            return found

        # Only the segment below the one holding the LSO (3) is cleaned.
        assert asyncio.run(broker.clean_logs()) == 1
        assert offsets() == [1, 2, 3, 4, 5, 6]

        write(marker(9, 0, COMMIT), from_client=False)  # 7
        local.roll()
        local.flush()
        assert asyncio.run(broker.clean_logs()) == 1
        assert offsets() == [3, 5, 6, 7]
