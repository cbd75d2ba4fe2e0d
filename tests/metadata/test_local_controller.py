"""LocalController: decides, commits, publishes; the image survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.metadata.image import MetadataDelta, MetadataImage
from kafkacompat.metadata.local_controller import LocalController
from kafkacompat.storage.topic_records import read_topics


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, MetadataDelta, MetadataImage]]) -> None:
        self.name, self.log = name, log

    def on_metadata_update(self, delta: MetadataDelta, image: MetadataImage) -> None:
        self.log.append((self.name, delta, image))


def controller(path: Path | None) -> LocalController:
    c = LocalController(path, {"num.partitions": "1"})
    c.start("cluster-1", c.load_records())
    return c


def test_changes_are_committed_then_published_in_subscription_order(tmp_path: Path) -> None:
    c = controller(tmp_path)
    seen: list[tuple[str, MetadataDelta, MetadataImage]] = []
    c.subscribe(Recorder("replicas", seen))
    c.subscribe(Recorder("groups", seen))
    created = c.create_topic("orders", 2, {"retention.ms": "1000"})
    assert [name for name, _, _ in seen] == ["replicas", "groups"]
    _, delta, image = seen[0]
    assert delta.created == (created,) and image.topic("orders") == created
    assert image.topic_by_id(created.topic_id) == created
    assert [r.name for r in read_topics(tmp_path)] == ["orders"]  # committed before publishing

    seen.clear()
    c.create_partitions("orders", 3)
    (added,) = seen[0][1].partitions_added
    assert (added.previous_partitions, added.topic.partitions) == (2, 3)
    c.alter_topic_configs("orders", {"retention.ms": None, "cleanup.policy": "compact"})
    assert dict(seen[2][1].configs_altered[0].configs) == {"cleanup.policy": "compact"}
    c.delete_topic("orders")
    assert seen[-1][1].deleted[0].name == "orders" and c.image.topics == {}
    assert read_topics(tmp_path) == []


def test_refusals_and_validate_only_publish_nothing(tmp_path: Path) -> None:
    c = controller(tmp_path)
    seen: list[tuple[str, MetadataDelta, MetadataImage]] = []
    c.subscribe(Recorder("r", seen))
    c.create_topic("t", 1, validate_only=True)
    for call, code in [
        (lambda: c.create_topic("bad name", 1), ErrorCode.INVALID_TOPIC_EXCEPTION),
        (lambda: c.create_topic("t", 0), ErrorCode.INVALID_PARTITIONS),
        (lambda: c.create_topic("t", 1, {"retention.ms": "x"}), ErrorCode.INVALID_CONFIG),
        (lambda: c.delete_topic("t"), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ]:
        with pytest.raises(KafkaProtocolError) as info:
            call()
        assert info.value.error_code == code
    assert seen == [] and read_topics(tmp_path) == []
    c.create_topic("a.b", 1)
    with pytest.raises(KafkaProtocolError) as info:
        c.create_topic("a_b", 1)
    assert info.value.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION  # '.' and '_' collide


def test_the_image_is_rebuilt_from_the_commits(tmp_path: Path) -> None:
    first = controller(tmp_path)
    created = first.create_topic("t", 4, {"segment.bytes": "1048576"})
    first.create_partitions("t", 5)
    again = controller(tmp_path)
    topic = again.image.topic("t")
    assert topic is not None and topic.topic_id == created.topic_id
    assert (topic.partitions, dict(topic.configs)) == (5, {"segment.bytes": "1048576"})


def test_new_broker_defaults_reach_every_topic() -> None:
    c = controller(None)
    c.create_topic("a", 1)
    c.create_topic("b", 1)
    seen: list[tuple[str, MetadataDelta, MetadataImage]] = []
    c.subscribe(Recorder("r", seen))
    c.alter_broker_defaults({"log.retention.ms": "5"})
    assert {t.name for t in seen[0][1].configs_altered} == {"a", "b"}
