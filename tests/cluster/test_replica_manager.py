"""ReplicaManager: partitions follow the metadata image; KIP-74 fetch sizes; the long poll."""

from __future__ import annotations

import asyncio

from kafkacompat.broker import Broker
from kafkacompat.cluster.partition import FetchIsolation
from kafkacompat.cluster.replica_manager import FetchRead
from kafkacompat.errors import ErrorCode
from tests.coordinators.helpers import batch_bytes
from tests.handlers.helpers import running_broker

NOW = 1_700_000_000_000
HW = FetchIsolation.HIGH_WATERMARK


def append(broker: Broker, topic: str, index: int, count: int = 1, size: int = 0) -> None:
    replicas = broker.replica_manager
    blob = bytearray(batch_bytes(count=count))
    if size:
        from kafkacompat.records import RecordBatchBuilder

        builder = RecordBatchBuilder()
        builder.append(b"x" * size, timestamp=NOW)
        blob = bytearray(builder.build())
    replicas.append_records(replicas.get_partition_or_error(topic, index), blob, now_ms=NOW)


def reads(broker: Broker, topic: str, partitions: int, max_bytes: int) -> list[FetchRead]:
    replicas = broker.replica_manager
    return [
        FetchRead(replicas.get_partition(topic, i), ErrorCode.NONE, 0, max_bytes)
        for i in range(partitions)
    ]


def test_partitions_follow_the_metadata_image() -> None:
    with running_broker() as broker:
        replicas = broker.replica_manager
        broker.controller.create_topic("t", 2)
        assert [replicas.get_partition("t", i) is not None for i in range(3)] == [
            True,
            True,
            False,
        ]
        broker.controller.create_partitions("t", 3)
        assert replicas.get_partition("t", 2) is not None
        broker.controller.alter_topic_configs("t", {"message.timestamp.type": "LogAppendTime"})
        assert all(replicas.get_partition("t", i).log.config.log_append_time for i in range(3))  # type: ignore[union-attr]
        broker.controller.delete_topic("t")
        assert all(replicas.get_partition("t", i) is None for i in range(3))
        assert "t" not in broker.logs.topics()


def test_kip74_the_first_batch_whole_then_only_what_fits() -> None:
    with running_broker() as broker:
        broker.controller.create_topic("t", 3)
        for index in range(3):
            append(broker, "t", index, size=1000)
        replicas = broker.replica_manager
        # A response limit below one batch: the first partition's batch still goes whole, the
        # others wait for the next fetch.
        results, total, failed = replicas.read_from_local_log(
            reads(broker, "t", 3, 1 << 20), 500, HW
        )
        sizes = [len(r.read.records) for r in results]  # type: ignore[union-attr]
        assert sizes[0] > 1000 and sizes[1:] == [0, 0] and total == sizes[0] and not failed
        # Room for two: the third does not fit the bytes left and is not sent.
        results, total, _ = replicas.read_from_local_log(
            reads(broker, "t", 3, 1 << 20), 2 * sizes[0] + 10, HW
        )
        assert [len(r.read.records) for r in results] == [sizes[0], sizes[0], 0]  # type: ignore[union-attr]
        # partition_max_bytes bounds each partition but not the first batch.
        results, _, _ = replicas.read_from_local_log(reads(broker, "t", 3, 10), 1 << 20, HW)
        assert [len(r.read.records) for r in results] == [sizes[0], 0, 0]  # type: ignore[union-attr]


def test_a_parked_fetch_wakes_on_an_append() -> None:
    with running_broker() as broker:
        broker.controller.create_topic("t", 1)

        async def scenario() -> tuple[int, float]:
            loop = asyncio.get_running_loop()
            started = loop.time()
            fetch = asyncio.ensure_future(
                broker.replica_manager.fetch_messages(
                    reads(broker, "t", 1, 1 << 20),
                    max_bytes=1 << 20,
                    min_bytes=1,
                    max_wait_ms=5_000,
                    isolation=HW,
                )
            )
            await asyncio.sleep(0.05)
            assert not fetch.done()
            append(broker, "t", 0)
            results = await asyncio.wait_for(fetch, 5)
            return len(results[0].read.records), loop.time() - started  # type: ignore[union-attr]

        size, waited = asyncio.run(scenario())
        assert size > 0 and waited < 4  # woken by the append, not by max_wait_ms


def test_high_watermarks_are_checkpointed_from_the_partitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kafkacompat.storage.checkpoint_file import REPLICATION_OFFSET_CHECKPOINT, read_checkpoint

    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 2)
        append(broker, "t", 1, count=3)
        broker.checkpoint()
        assert read_checkpoint(tmp_path / REPLICATION_OFFSET_CHECKPOINT) == {
            ("t", 0): 0,
            ("t", 1): 3,
        }


def test_retention_expires_idle_producers_in_every_partition() -> None:
    with running_broker(producer_id_expiration_ms="100") as broker:
        broker.controller.create_topic("t", 3)
        replicas = broker.replica_manager
        for index in range(3):
            replicas.append_records(
                replicas.get_partition_or_error("t", index),
                bytearray(batch_bytes(7, 0, 0, timestamp=NOW)),
                now_ms=NOW,
            )
        logs = [replicas.get_partition_or_error("t", i).log for i in range(3)]
        replicas.run_retention(NOW + 99)
        assert all(log.producer_last_offsets() == {7: 0} for log in logs)
        replicas.run_retention(NOW + 100)
        assert all(log.producer_last_offsets() == {} for log in logs)
