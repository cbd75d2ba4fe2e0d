"""LogManager behind the local controller, composed as a broker composes them: topics
persisted across restarts, naming rules, checkpoints, shutdown marker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.metadata.local_controller import LocalController
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.base import PartitionLog
from kafkacompat.storage.checkpoint_file import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    read_checkpoint,
)
from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE
from kafkacompat.storage.kafka_uuid import random_kafka_uuid
from kafkacompat.storage.manager import Engine, LogManager, LogSpec
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.meta_properties import NodeIdMismatchError
from kafkacompat.storage.null import NullLog
from kafkacompat.storage.partition_dir import read_partition_metadata, write_partition_metadata
from kafkacompat.storage.topic_records import TOPICS_DIR
from tests.storage.stack import Stack

NOW = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


class FakeDiskFactory:
    """Stands in for the disk Log: records what it was asked to open, keeps data in memory."""

    def __init__(self) -> None:
        self.specs: list[LogSpec] = []

    def __call__(self, spec: LogSpec) -> PartitionLog:
        self.specs.append(spec)
        assert spec.directory is not None and spec.directory.is_dir()
        return MemoryLog(spec.config, log_start_offset=spec.log_start_offset)


def manager(
    path: Path | None,
    factory: FakeDiskFactory | None = None,
    *,
    engine: Engine = "disk",
    node_id: int = 1,
    broker: dict[str, str] | None = None,
) -> Any:
    m = LogManager(
        path,
        node_id,
        broker,
        engine=engine,
        now_ms=Clock(),
        log_factory=factory
        if factory is not None
        else (FakeDiskFactory() if engine == "disk" else None),
    )
    return Stack(m, LocalController(path, broker))


def one_batch(n: int = 1) -> bytearray:
    builder = RecordBatchBuilder()
    for _ in range(n):
        builder.append(b"v", timestamp=NOW)
    return bytearray(builder.build())


def test_topics_survive_restart(tmp_path: Path) -> None:
    m = manager(tmp_path)
    created = m.create_topic("orders", 3, {"retention.ms": "1000"})
    m.create_topic("gone", 1)
    m.create_topic("grows", 1)
    m.add_partitions("grows", 4)
    m.alter_topic_config("orders", {"segment.bytes": "4096"})
    m.alter_topic_config("orders", {"retention.ms": None})
    m.delete_topic("gone")
    cluster_id = m.cluster_id
    m.shutdown()

    factory = FakeDiskFactory()
    again = manager(tmp_path, factory)
    assert again.cluster_id == cluster_id
    assert sorted(again.topics()) == ["grows", "orders"]
    orders = again.topic("orders")
    assert orders.topic_id == created.topic_id and orders.partitions == 3
    assert orders.config.to_props() == {"segment.bytes": "4096"}
    assert orders.config.segment_bytes == 4096 and orders.config.retention_ms == 604800000
    assert again.topic("grows").partitions == 4
    assert again.topic_by_id(created.topic_id) is orders
    assert all(spec.clean_shutdown for spec in factory.specs)
    assert not (tmp_path / "gone-0").exists()
    assert read_partition_metadata(tmp_path / "orders-2") == created.topic_id


def test_alter_config_reaches_the_logs(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("t", 2)
    m.alter_topic_config("t", {"message.timestamp.type": "LogAppendTime"})
    log = m.get_log("t", 1)
    assert isinstance(log, MemoryLog) and log.config.log_append_time
    m.alter_topic_config("t", {"retention.ms": "5"}, replace_all=True)
    assert m.topic("t").config.to_props() == {"retention.ms": "5"}
    with pytest.raises(KafkaProtocolError) as info:
        m.alter_topic_config("t", {"retention.ms": "forever"})
    assert info.value.error_code == ErrorCode.INVALID_CONFIG
    assert m.topic("t").config.retention_ms == 5


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a" * 250, "has space", "slash/y", "ünïcode", "a:b"]
)
def test_invalid_topic_names(tmp_path: Path, name: str) -> None:
    m = manager(tmp_path)
    with pytest.raises(KafkaProtocolError) as info:
        m.create_topic(name, 1)
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_topic_create_errors(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("a" * 249, 1)
    m.create_topic("metrics.cpu", 1)
    cases = [
        (("metrics.cpu", 1), ErrorCode.TOPIC_ALREADY_EXISTS),
        (("metrics_cpu", 1), ErrorCode.INVALID_TOPIC_EXCEPTION),  # collides with metrics.cpu
        (("zero", 0), ErrorCode.INVALID_PARTITIONS),
    ]
    for (name, partitions), code in cases:
        with pytest.raises(KafkaProtocolError) as info:
            m.create_topic(name, partitions)
        assert info.value.error_code == code, name
    with pytest.raises(KafkaProtocolError) as info:
        m.create_topic("bad-config", 1, {"retention.ms": "x"})
    assert info.value.error_code == ErrorCode.INVALID_CONFIG
    with pytest.raises(KafkaProtocolError) as info:
        m.add_partitions("metrics.cpu", 1)
    assert info.value.error_code == ErrorCode.INVALID_PARTITIONS
    for call in (
        lambda: m.get_log("nope", 0),
        lambda: m.get_log("metrics.cpu", 1),
        lambda: m.delete_topic("nope"),
    ):
        with pytest.raises(KafkaProtocolError) as info:
            call()
        assert info.value.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert "bad-config" not in m.topics() and not (tmp_path / "bad-config-0").exists()
    m.delete_topic("metrics.cpu")
    m.create_topic("metrics_cpu", 1)  # no collision once the other is gone


def test_validate_only_changes_nothing(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("t", 1, validate_only=True)
    assert "t" not in m.topics() and not (tmp_path / "t-0").exists()


def test_meta_properties_stable_and_node_id_checked(tmp_path: Path) -> None:
    m = manager(tmp_path)
    meta = m.meta
    m.shutdown()
    assert manager(tmp_path).meta == meta
    with pytest.raises(NodeIdMismatchError):
        manager(tmp_path, node_id=2)


def test_clean_shutdown_marker_lifecycle(tmp_path: Path) -> None:
    marker = tmp_path / CLEAN_SHUTDOWN_FILE
    m = manager(tmp_path)
    assert not m.clean_shutdown and not marker.exists()
    m.create_topic("t", 1)
    m.shutdown()
    assert marker.exists()

    factory = FakeDiskFactory()
    crashed = manager(tmp_path, factory)
    assert crashed.clean_shutdown and factory.specs[0].clean_shutdown
    assert not marker.exists(), "removed at start, so a crash leaves none"
    # no shutdown(): the process "crashes"
    factory = FakeDiskFactory()
    after_crash = manager(tmp_path, factory)
    assert not after_crash.clean_shutdown and not factory.specs[0].clean_shutdown


def test_checkpoints_written_and_fed_back(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("t", 2)
    log = m.get_log("t", 0)
    log.append(one_batch(3), leader_epoch=0, now_ms=NOW)
    log.append(one_batch(2), leader_epoch=0, now_ms=NOW)
    log.delete_records_before(3)
    m.checkpoint()
    assert read_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT) == {
        ("t", 0): 3,
        ("t", 1): 0,
    }
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)[("t", 0)] == 5
    assert read_checkpoint(tmp_path / REPLICATION_OFFSET_CHECKPOINT)[("t", 0)] == 5
    m.shutdown()
    factory = FakeDiskFactory()
    manager(tmp_path, factory)
    spec = next(s for s in factory.specs if s.partition == 0)
    assert (spec.log_start_offset, spec.recovery_point) == (3, 5)


def test_strays_from_a_crash_are_removed(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("kept", 1)
    m.shutdown()
    (tmp_path / "orphan-0").mkdir()  # a create that crashed before its topic file
    (tmp_path / "kept-0.0123-delete").mkdir()  # an interrupted delete
    write_partition_metadata(tmp_path / "orphan-0", random_kafka_uuid())
    (tmp_path / "kept-1").mkdir()  # beyond the persisted partition count
    manager(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        TOPICS_DIR,
        "kept-0",
    ]


def test_retention_runs_over_every_log(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create_topic("short", 2, {"retention.ms": "1000"})
    m.create_topic("long", 1)
    for tp in [("short", 0), ("short", 1), ("long", 0)]:
        m.get_log(*tp).append(one_batch(), leader_epoch=0, now_ms=NOW)
    assert m.run_retention(NOW + 2000) == 2
    assert m.get_log("short", 0).log_start_offset == 1
    assert m.get_log("long", 0).log_start_offset == 0


@pytest.mark.parametrize("engine", ["memory", "null"])
def test_memory_and_null_engines_keep_topics_not_folders(tmp_path: Path, engine: Engine) -> None:
    m = manager(tmp_path, engine=engine)
    m.create_topic("t", 3)
    expected = MemoryLog if engine == "memory" else NullLog
    assert isinstance(m.get_log("t", 2), expected)
    m.get_log("t", 0).append(one_batch(), leader_epoch=0, now_ms=NOW)
    m.shutdown()
    assert not (tmp_path / "t-0").exists()
    assert not (tmp_path / RECOVERY_POINT_CHECKPOINT).exists()
    again = manager(tmp_path, engine=engine)
    assert again.topic("t").partitions == 3
    assert again.get_log("t", 0).log_end_offset == 0


def test_nothing_persisted_without_a_data_dir() -> None:
    m = manager(None, engine="memory")
    m.create_topic("t", 1)
    assert len(m.cluster_id) == 22
    m.shutdown()
    with pytest.raises(ValueError):
        LogManager(None, 1, engine="disk", now_ms=Clock())


def test_ten_thousand_partitions_memory_engine(tmp_path: Path) -> None:
    m = manager(tmp_path, engine="memory")
    started = time.perf_counter()
    m.create_topic("big", 10_000)
    for i in range(0, 10_000, 997):
        m.get_log("big", i).append(one_batch(), leader_epoch=0, now_ms=NOW)
    m.shutdown()
    again = manager(tmp_path, engine="memory")
    elapsed = time.perf_counter() - started
    assert again.topic("big").partitions == 10_000
    assert elapsed < 5, f"{elapsed:.2f}s"


def test_real_disk_log_through_the_default_factory(tmp_path: Path) -> None:
    pytest.importorskip("kafkacompat.storage.log")
    m = Stack(LogManager(tmp_path, 1, engine="disk", now_ms=Clock()), LocalController(tmp_path))
    m.create_topic("t", 2, {"segment.bytes": "200"})
    for _ in range(10):
        m.get_log("t", 0).append(one_batch(), leader_epoch=0, now_ms=NOW)
    m.alter_topic_config("t", {"retention.bytes": "300"})
    assert m.run_retention(NOW) > 0
    start = m.get_log("t", 0).log_start_offset
    m.shutdown()
    again = Stack(LogManager(tmp_path, 1, engine="disk", now_ms=Clock()), LocalController(tmp_path))
    assert again.clean_shutdown
    log = again.get_log("t", 0)
    assert (log.log_start_offset, log.log_end_offset) == (start, 10)
    again.delete_topic("t")
    assert not (tmp_path / "t-0").exists()
    again.shutdown()
