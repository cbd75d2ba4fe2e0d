"""Data-directory files: atomic writes, checkpoints, meta.properties, partition.metadata, topics."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write
from kafkacompat.storage.checkpoint_file import (
    RECOVERY_POINT_CHECKPOINT,
    read_checkpoint,
    write_checkpoint,
)
from kafkacompat.storage.data_dir import (
    CLEAN_SHUTDOWN_FILE,
    consume_clean_shutdown,
    write_clean_shutdown,
)
from kafkacompat.storage.kafka_uuid import random_kafka_uuid, uuid_from_base64, uuid_to_base64
from kafkacompat.storage.meta_properties import (
    META_PROPERTIES,
    NodeIdMismatchError,
    ensure_meta_properties,
)
from kafkacompat.storage.partition_dir import (
    PARTITION_METADATA,
    delete_dir_name,
    parse_partition_dir_name,
    read_partition_metadata,
    write_partition_metadata,
)
from kafkacompat.storage.properties_file import read_properties
from kafkacompat.storage.topic_records import (
    TOPICS_DIR,
    TopicRecord,
    delete_topic_file,
    read_topics,
    write_topic,
)


def test_atomic_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_keeps_old_content_when_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"], "the temp file is cleaned up"


def test_checkpoint_round_trip_and_kafka_format(tmp_path: Path) -> None:
    path = tmp_path / RECOVERY_POINT_CHECKPOINT
    offsets = {("orders", 0): 10, ("orders", 1): 0, ("a.b_c-d", 7): 123456789012}
    write_checkpoint(path, offsets)
    assert path.read_text().splitlines()[:3] == ["0", "3", "orders 0 10"]
    assert read_checkpoint(path) == offsets
    write_checkpoint(path, {})
    assert read_checkpoint(path) == {}
    assert read_checkpoint(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1\n0\n",
        "0\nmany\n",
        "0\n2\nt 0 1\n",
        "0\n1\nt zero 1\n",
        "0\n1\nt 0\n",
        "0\n1\nt 0 1 extra\n",
        "0\n1\nt -1 5\n",
        b"0\n1\n\xff 0 1\n",
    ],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "cp"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CorruptFileError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_meta_properties_created_once_and_kept(tmp_path: Path) -> None:
    first = ensure_meta_properties(tmp_path, 1)
    assert len(first.cluster_id) == 22 and len(first.directory_id) == 22
    props = read_properties(tmp_path / META_PROPERTIES)
    assert props == {
        "version": "1",
        "node.id": "1",
        "cluster.id": first.cluster_id,
        "directory.id": first.directory_id,
    }
    assert ensure_meta_properties(tmp_path, 1) == first
    with pytest.raises(NodeIdMismatchError, match=r"node\.id=1"):
        ensure_meta_properties(tmp_path, 2)
    with pytest.raises(NodeIdMismatchError, match=r"cluster\.id"):
        ensure_meta_properties(tmp_path, 1, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")


def test_meta_properties_written_by_kafka_is_read(tmp_path: Path) -> None:
    (tmp_path / META_PROPERTIES).write_text(
        "#\n#Tue Mar 05 10:00:00 UTC 2024\nnode.id=3\nversion=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qg\n"
    )
    meta = ensure_meta_properties(tmp_path, 3)
    assert meta.cluster_id == "MkU3OEVBNTcwNTJENDM2Qg"
    assert "directory.id" in read_properties(tmp_path / META_PROPERTIES)


@pytest.mark.parametrize(
    "text",
    [
        "version=0\nnode.id=1\ncluster.id=x\n",
        "version=1\ncluster.id=x\n",
        "garbage\n",
        "version=1\nnode.id=one\ncluster.id=x\n",
    ],
)
def test_corrupt_meta_properties(tmp_path: Path, text: str) -> None:
    (tmp_path / META_PROPERTIES).write_text(text)
    with pytest.raises(CorruptFileError):
        ensure_meta_properties(tmp_path, 1)


def test_kafka_uuid_strings() -> None:
    for _ in range(200):
        value = random_kafka_uuid()
        text = uuid_to_base64(value)
        assert len(text) == 22 and not text.startswith("-")
        assert uuid_from_base64(text) == value
    for bad in ["", "short", "!" * 22, "AAAAAAAAAAAAAAAAAAAAAB"]:
        with pytest.raises(ValueError):
            uuid_from_base64(bad)


def test_partition_metadata_round_trip(tmp_path: Path) -> None:
    topic_id = random_kafka_uuid()
    write_partition_metadata(tmp_path, topic_id)
    text = (tmp_path / PARTITION_METADATA).read_text()
    assert text == f"version: 0\ntopic_id: {uuid_to_base64(topic_id)}\n"
    assert read_partition_metadata(tmp_path) == topic_id
    assert read_partition_metadata(tmp_path / "nope") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "version: 1\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA\n",
        "version: 0\nid: x\n",
        "version: 0\ntopic_id: nope\n",
    ],
)
def test_corrupt_partition_metadata(tmp_path: Path, text: str) -> None:
    (tmp_path / PARTITION_METADATA).write_text(text)
    with pytest.raises(CorruptFileError):
        read_partition_metadata(tmp_path)


def test_topic_record_round_trip(tmp_path: Path) -> None:
    record = TopicRecord("x" * 249, uuid.uuid4(), 12, {"retention.ms": "5", "odd": "a=b\\c\nd"})
    write_topic(tmp_path, record)
    assert read_topics(tmp_path) == [record]
    delete_topic_file(tmp_path, record.topic_id)
    assert read_topics(tmp_path) == []


def test_corrupt_topic_record(tmp_path: Path) -> None:
    folder = tmp_path / TOPICS_DIR
    folder.mkdir()
    (folder / "x.properties").write_text("version=0\ntopic.name=t\npartitions=1\n")
    with pytest.raises(CorruptFileError, match=r"topic\.id"):
        read_topics(tmp_path)


def test_clean_shutdown_marker(tmp_path: Path) -> None:
    assert not consume_clean_shutdown(tmp_path)
    write_clean_shutdown(tmp_path)
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert consume_clean_shutdown(tmp_path)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def test_partition_dir_names() -> None:
    assert parse_partition_dir_name("a-b-12") == ("a-b", 12)
    assert parse_partition_dir_name(TOPICS_DIR) is None
    assert parse_partition_dir_name("-3") is None
    name = delete_dir_name("t" * 249, 99, uuid.uuid4())
    assert len(name) <= 255 and name.endswith("-delete")


# -- fd pool -----------------------------------------------------------------------------------


def test_fd_pool_never_exceeds_capacity_and_reopens(tmp_path: Path) -> None:
    from kafkacompat.storage.fdpool import FdPool

    paths = [tmp_path / f"{i:05d}.log" for i in range(10_000)]
    for i, path in enumerate(paths):
        path.write_bytes(i.to_bytes(4, "big"))
    pool = FdPool(capacity=64)
    for i, path in enumerate(paths):
        fd = pool.get(path)
        assert os.pread(fd, 4, 0) == i.to_bytes(4, "big")
        assert len(pool) <= 64
    assert pool.opens == 10_000
    fd = pool.get(paths[0])  # evicted long ago: reopened
    assert os.pread(fd, 4, 0) == (0).to_bytes(4, "big")
    assert pool.opens == 10_001
    pool.get(paths[0])
    assert pool.opens == 10_001, "a hit does not reopen"
    pool.invalidate(paths[0])
    assert paths[0] not in pool
    pool.close_all()
    assert len(pool) == 0


def test_fd_pool_lru_order_and_prefix_invalidation(tmp_path: Path) -> None:
    from kafkacompat.storage.fdpool import FdPool, default_capacity

    assert default_capacity() >= 16
    (tmp_path / "d").mkdir()
    a, b, c = tmp_path / "a", tmp_path / "d" / "b", tmp_path / "d" / "c"
    for p in (a, b, c):
        p.write_bytes(b"x")
    pool = FdPool(capacity=2)
    pool.get(a)
    pool.get(b)
    pool.get(a)  # a is now the most recent; b is evicted next
    pool.get(c)
    assert a in pool and c in pool and b not in pool
    pool.invalidate_prefix(tmp_path / "d")
    assert len(pool) == 1 and a in pool
    writer = pool.get(a, os.O_WRONLY | os.O_APPEND)
    os.write(writer, b"y")
    assert a.read_bytes() == b"xy"
    pool.close_all()
