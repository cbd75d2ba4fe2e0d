"""A partition's directory: its name, ``<topic>-<partition>``, the ``-delete`` name it is renamed
to before deletion, and ``partition.metadata`` inside it (Kafka's ``PartitionMetadataFile``),
which ties the folder to a topic id, not just a name.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write, read_text
from kafkacompat.storage.kafka_uuid import uuid_from_base64, uuid_to_base64

PARTITION_METADATA: Final = "partition.metadata"
PARTITION_METADATA_VERSION: Final = 0

TopicPartition = tuple[str, int]


def write_partition_metadata(partition_dir: Path, topic_id: uuid.UUID) -> None:
    """Kafka's ``PartitionMetadataFile``: ties the folder to a topic id, not just a name."""
    text = f"version: {PARTITION_METADATA_VERSION}\ntopic_id: {uuid_to_base64(topic_id)}\n"
    atomic_write(partition_dir / PARTITION_METADATA, text.encode("ascii"))


def read_partition_metadata(partition_dir: Path) -> uuid.UUID | None:
    path = partition_dir / PARTITION_METADATA
    if not path.exists():
        return None
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    if len(lines) != 2:
        raise CorruptFileError(path, f"expected 2 lines, found {len(lines)}")
    version_key, _, version = lines[0].partition(":")
    if version_key.strip() != "version" or version.strip() != str(PARTITION_METADATA_VERSION):
        raise CorruptFileError(path, f"unsupported version line {lines[0]!r}")
    id_key, _, topic_id = lines[1].partition(":")
    if id_key.strip() != "topic_id":
        raise CorruptFileError(path, f"expected a topic_id line, got {lines[1]!r}")
    try:
        return uuid_from_base64(topic_id.strip())
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None


DELETE_SUFFIX: Final = "-delete"
_MAX_FILE_NAME: Final = 255


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> TopicPartition | None:
    """``<topic>-<partition>`` back to its parts; None for anything else (e.g. our topic store)."""
    topic, dash, partition = name.rpartition("-")
    if not dash or not topic or not partition.isdigit():
        return None
    return topic, int(partition)


def delete_dir_name(topic: str, partition: int, unique: uuid.UUID) -> str:
    """Kafka's ``<topic>-<partition>.<uuid>-delete``, truncating the topic so it fits 255 bytes."""
    suffix = f"-{partition}.{unique.hex}{DELETE_SUFFIX}"
    return topic[: _MAX_FILE_NAME - len(suffix)] + suffix
