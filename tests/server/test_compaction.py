"""Compaction as a client sees it, against a real broker process: the log cleaner runs on its
own schedule, a consumer reading from the start finds the latest value of every key at its
original offset, and a restart keeps exactly that. Keyless records are refused up front."""

from __future__ import annotations

import time
from pathlib import Path

from kafkacompat.protocol.messages.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from kafkacompat.records.batch import iter_batches
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.storage.checkpoint_file import CLEANER_OFFSET_CHECKPOINT, read_checkpoint
from tests.server.helpers import (
    FETCH_VERSION,
    BrokerProcess,
    Client,
    fetch_request,
    produce,
)

INVALID_RECORD = 87
KEYS = 8


def _create_compacted(client: Client, topic: str) -> None:
    configs = {
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    }
    request = CreateTopicsRequest(
        topics=[
            CreatableTopic(
                name=topic,
                num_partitions=1,
                replication_factor=1,
                configs=[CreatableTopicConfig(name=k, value=v) for k, v in configs.items()],
            )
        ],
        timeout_ms=5_000,
    )
    assert [t.error_code for t in client.request(request, 7).topics] == [0]


def _keyed(key: bytes, value: bytes | None) -> bytes:
    builder = RecordBatchBuilder()
    builder.append(value, timestamp=int(time.time() * 1000), key=key)
    return builder.build()


def _records(client: Client, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record from offset 0 to the high watermark."""
    found: list[tuple[int, bytes | None, bytes | None]] = []
    offset = 0
    while True:
        response = client.request(fetch_request(topic, offset), FETCH_VERSION)
        [partition] = response.responses[0].partitions
        assert partition.error_code == 0
        batches = list(iter_batches(bytes(partition.records)))
        if not batches:
            return found
        for batch in batches:
            found += [(r.offset, r.key, r.value) for r in batch.iter_records()]
            offset = batch.last_offset + 1
        if offset >= partition.high_watermark:
            return found


def _check_latest(
    records: list[tuple[int, bytes | None, bytes | None]],
    latest: dict[bytes, tuple[int, bytes | None]],
) -> None:
    """Offsets in order, and the last record of each key is the one last written for it (the
    deleted key-0 may be gone altogether once its tombstone's horizon passed)."""
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(set(offsets))
    final: dict[bytes | None, tuple[int, bytes | None]] = {}
    for offset, key, value in records:
        final[key] = (offset, value)
    assert final == {k: v for k, v in latest.items() if k in final}
    assert set(latest) - set(final) <= {b"key-0"}


def test_the_cleaner_compacts_a_topic_and_a_restart_keeps_the_result(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path, storage="disk", settings={"log.cleaner.backoff.ms": "50"}
    ).start()
    try:
        with Client(broker.address) as client:
            _create_compacted(client, "table")
            latest: dict[bytes, tuple[int, bytes | None]] = {}
            for i in range(400):
                key = b"key-%d" % (i % KEYS)
                # Key 0 ends deleted: its tombstone goes too (delete.retention.ms is 0).
                value = None if key == b"key-0" and i >= 392 else b"value-%d" % i
                response = produce(client, "table", _keyed(key, value))
                assert response.error_code == 0
                latest[key] = (response.base_offset, value)
            # Without a key, a compacted topic cannot keep a record: refused, nothing written.
            keyless = RecordBatchBuilder()
            keyless.append(b"no key", timestamp=int(time.time() * 1000))
            refused = produce(client, "table", keyless.build())
            assert refused.error_code == INVALID_RECORD
            assert "key" in (refused.error_message or "")

            deadline = time.monotonic() + 30
            while len(_records(client, "table")) > 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            records = _records(client, "table")
            # Every segment but the active one is compacted: at most one record per key
            # there, and the active segment (2 KiB, some 30 records) holds the rest.
            assert len(records) < 100
            _check_latest(records, latest)
        checkpoint = read_checkpoint(broker.data_dir / CLEANER_OFFSET_CHECKPOINT)
        assert checkpoint[("table", 0)] > 0
        broker.assert_healthy()
    finally:
        broker.signal()
        assert broker.wait() == 0

    restarted = BrokerProcess(tmp_path, storage="disk").start()
    try:
        with Client(restarted.address) as client:
            # The cleaner may have run once more before the SIGTERM: it only ever removes.
            reread = _records(client, "table")
            assert set(reread) <= set(records)
            _check_latest(reread, latest)
        restarted.assert_healthy()
    finally:
        restarted.signal()
        assert restarted.wait() == 0
