"""A compacted topic read by every client: after the log cleaner ran, offsets have gaps and
the oldest segments may be empty, and each client must still read the latest record of
every key at its original offset, from the start or from an offset that was cleaned away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.admin_clients import admin_client
from interop.clients import CLIENTS, Consumed, Record, consume, produce, require
from interop.conftest import BrokerProcess, new_broker, unique_topic
from kafkacompat.storage.checkpoint_file import CLEANER_OFFSET_CHECKPOINT, read_checkpoint

KEYS = 12
RECORDS = 600
WAIT_S = 30.0


class Compacted:
    def __init__(self, broker: BrokerProcess, topic: str, expected: list[Consumed]) -> None:
        self.broker = broker
        self.topic = topic
        self.expected = expected


def _active_base(partition_dir: Path) -> int:
    return max(int(path.name[:20]) for path in partition_dir.glob("*.log"))


def _survivors(written: list[Consumed], first_dirty: int) -> list[Consumed]:
    """What Kafka's cleaner leaves once everything below ``first_dirty`` was cleaned: there,
    the last record of each key (tombstones included: delete.retention.ms has not passed);
    from it on, everything."""
    last_below: dict[bytes | None, int] = {}
    for consumed in written:
        if consumed.offset < first_dirty:
            last_below[consumed.record.key] = consumed.offset
    kept = set(last_below.values())
    return [c for c in written if c.offset >= first_dirty or c.offset in kept]


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compacted]:
    require("confluent")
    broker = new_broker(
        tmp_path_factory.mktemp("compaction"), settings={"log.cleaner.backoff.ms": "50"}
    )
    broker.start()
    try:
        topic = unique_topic("compacted")
        with admin_client("confluent", broker.bootstrap) as admin:
            admin.create_topic(
                topic,
                1,
                {
                    "cleanup.policy": "compact",
                    "segment.bytes": "4096",
                    "min.cleanable.dirty.ratio": "0.01",
                },
            )
        records = [
            # Every 50th record of key 3 is a tombstone; the last word on key 3 is one. Keys
            # written once, early, survive with gaps around them.
            Record(b"key-%d" % (i % KEYS), None if i % KEYS == 3 and i % 50 == 27 else b"v%d" % i)
            if i >= 100 or i % 10
            else Record(b"once-%d" % i, b"v%d" % i)
            for i in range(RECORDS)
        ]
        records.append(Record(b"key-3", None))
        # Small produces: one batch may not exceed a (4 KiB) segment.
        offsets: list[int | None] = []
        for start in range(0, len(records), 50):
            offsets += produce("confluent", broker.bootstrap, topic, records[start : start + 50])
        written = [Consumed(o, r) for o, r in zip(offsets, records, strict=True) if o is not None]
        assert [c.offset for c in written] == list(range(len(records)))

        partition_dir = broker.data_dir / f"{topic}-0"
        checkpoint_path = broker.data_dir / CLEANER_OFFSET_CHECKPOINT
        deadline = time.monotonic() + WAIT_S
        first_dirty = -1
        while time.monotonic() < deadline:
            if checkpoint_path.exists():
                first_dirty = read_checkpoint(checkpoint_path).get((topic, 0), -1)
                if first_dirty == _active_base(partition_dir):
                    break
            time.sleep(0.05)
        assert first_dirty == _active_base(partition_dir) > 0, "the cleaner did not catch up"
        expected = _survivors(written, first_dirty)
        assert len(expected) < len(written) // 2
        yield Compacted(broker, topic, expected)
    finally:
        broker.stop()


def _shape(consumed: list[Consumed]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(c.offset, c.record.key, c.record.value) for c in consumed]


@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_reads_the_compacted_log(compacted: Compacted, client: str) -> None:
    require(client)
    expected = compacted.expected
    read = consume(client, compacted.broker.bootstrap, compacted.topic, 0, 0, len(expected))
    assert _shape(read) == _shape(expected)
    # From an offset that compaction removed: the next surviving record comes first.
    gap = expected[1].offset + 1
    assert expected[2].offset > gap  # records once-0 and once-10 survive, not what follows
    tail = [c for c in expected if c.offset >= gap]
    read = consume(client, compacted.broker.bootstrap, compacted.topic, 0, gap, len(tail))
    assert _shape(read) == _shape(tail)
