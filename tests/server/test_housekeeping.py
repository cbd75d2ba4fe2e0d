"""The broker's scheduled tasks run on their own: retention deletes expired data, and
checkpoints are written, with no client asking."""

from __future__ import annotations

import time
from pathlib import Path

from kafkacompat.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kafkacompat.records.builder import RecordBatchBuilder
from tests.server.helpers import BrokerProcess, Client, create_topic, produce

EARLIEST = -2


def _earliest(client: Client, topic: str) -> int:
    request = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(
                name=topic,
                partitions=[ListOffsetsPartition(partition_index=0, timestamp=EARLIEST)],
            )
        ],
    )
    return int(client.request(request, 7).topics[0].partitions[0].offset)


def test_retention_runs_on_schedule(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path,
        storage="disk",
        settings={
            "log.retention.check.interval.ms": "100",
            "log.retention.ms": "2000",
            "log.segment.delete.delay.ms": "0",
        },
    ).start()
    try:
        with Client(broker.address) as client:
            create_topic(client, "expiring")
            # One batch holding an old and a fresh record: retention goes by the batch's
            # newest timestamp, so nothing may go until the fresh record is past retention.ms.
            now = int(time.time() * 1000)
            mixed = RecordBatchBuilder()
            mixed.append(b"old", timestamp=now - 60_000)
            mixed.append(b"fresh", timestamp=now)
            assert produce(client, "expiring", mixed.build()).error_code == 0
            assert _earliest(client, "expiring") == 0
            deadline = time.monotonic() + 20
            while _earliest(client, "expiring") != 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _earliest(client, "expiring") == 2
            # file.delete.delay.ms is 0 here: the next pass unlinks the renamed files.
            deadline = time.monotonic() + 20
            folder = broker.data_dir / "expiring-0"
            while list(folder.glob("00000000000000000000.*")) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not list(folder.glob("00000000000000000000.*"))
        broker.assert_healthy()
    finally:
        broker.signal()
        assert broker.wait() == 0
