"""Our topic metadata: one small properties file per topic, ``__kafkacompat_topics/<id>.properties``.

Kafka keeps topic configs in its KRaft metadata log; a single broker does not need a Raft log,
so each topic is one small properties file, named by topic id because a 249-character topic
name plus a suffix would exceed the 255-byte file name limit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write, fsync_dir
from kafkacompat.storage.kafka_uuid import uuid_from_base64, uuid_to_base64
from kafkacompat.storage.properties_file import format_properties, read_properties

TOPICS_DIR: Final = "__kafkacompat_topics"
TOPIC_FILE_SUFFIX: Final = ".properties"
TOPIC_FILE_VERSION: Final = 0


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """What is persisted per topic: identity, partition count and config overrides."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


_CONFIG_PREFIX: Final = "config."


def topic_file(directory: Path, topic_id: uuid.UUID) -> Path:
    return directory / TOPICS_DIR / (uuid_to_base64(topic_id) + TOPIC_FILE_SUFFIX)


def write_topic(directory: Path, record: TopicRecord) -> None:
    props = {
        "version": str(TOPIC_FILE_VERSION),
        "topic.name": record.name,
        "topic.id": uuid_to_base64(record.topic_id),
        "partitions": str(record.partitions),
    }
    props.update({_CONFIG_PREFIX + k: v for k, v in sorted(record.configs.items())})
    (directory / TOPICS_DIR).mkdir(exist_ok=True)
    atomic_write(topic_file(directory, record.topic_id), format_properties(props))


def read_topic(path: Path) -> TopicRecord:
    props = read_properties(path)
    if props.get("version") != str(TOPIC_FILE_VERSION):
        raise CorruptFileError(path, f"unsupported version {props.get('version')!r}")
    try:
        name = props["topic.name"]
        topic_id = uuid_from_base64(props["topic.id"])
        partitions = int(props["partitions"])
    except KeyError as exc:
        raise CorruptFileError(path, f"missing {exc.args[0]}") from None
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None
    if partitions <= 0:
        raise CorruptFileError(path, f"partition count {partitions} must be positive")
    configs = {
        k[len(_CONFIG_PREFIX) :]: v for k, v in props.items() if k.startswith(_CONFIG_PREFIX)
    }
    return TopicRecord(name, topic_id, partitions, configs)


def read_topics(directory: Path) -> list[TopicRecord]:
    folder = directory / TOPICS_DIR
    if not folder.is_dir():
        return []
    return [
        read_topic(path)
        for path in sorted(folder.iterdir())
        if path.name.endswith(TOPIC_FILE_SUFFIX)
    ]


def delete_topic_file(directory: Path, topic_id: uuid.UUID) -> None:
    path = topic_file(directory, topic_id)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)
