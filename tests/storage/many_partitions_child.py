"""Run under ``ulimit -n 1024``: 10,000 disk partitions created, appended to, read back,
reopened after a clean shutdown and read again.  Prints one line of figures."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.kafka_uuid import random_kafka_uuid
from kafkacompat.storage.manager import LogManager
from kafkacompat.storage.topic_records import TopicRecord

PARTITIONS = 10_000


def batch(value: bytes) -> bytearray:
    builder = RecordBatchBuilder()
    builder.append(value, timestamp=1_700_000_000_000)
    return bytearray(builder.build())


def check_reads(manager: LogManager) -> None:
    for p in range(PARTITIONS):
        result = manager.get_log("many", p).read(0, 1 << 20)
        data = result.records.read() if isinstance(result.records, FileRegion) else result.records
        assert str(p).encode() in data, p


def main(data_dir: str) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft <= 1024, soft
    now = lambda: 1_700_000_000_000  # noqa: E731
    started = time.perf_counter()
    manager = LogManager(Path(data_dir), 1, engine="disk", now_ms=now)
    manager.start()
    # The topic as the controller would have committed it (this test is the storage alone).
    record = TopicRecord("many", random_kafka_uuid(), PARTITIONS)
    manager.create_logs(record)
    created = time.perf_counter()
    for p in range(PARTITIONS):
        info = manager.get_log("many", p).append(
            batch(str(p).encode()), leader_epoch=0, now_ms=now()
        )
        assert info.base_offset == 0
    appended = time.perf_counter()
    check_reads(manager)
    manager.shutdown()
    reopened_at = time.perf_counter()
    again = LogManager(Path(data_dir), 1, engine="disk", now_ms=now)
    again.start([record])
    reopened = time.perf_counter()
    check_reads(again)
    assert all(again.get_log("many", p).log_end_offset == 1 for p in range(PARTITIONS))
    again.shutdown()
    print(
        f"ulimit -n {soft}: create {created - started:.2f}s, append {appended - created:.2f}s, "
        f"clean reopen {reopened - reopened_at:.2f}s for {PARTITIONS} partitions"
    )


if __name__ == "__main__":
    main(sys.argv[1])
