"""``meta.properties``: a data directory's identity (Kafka's ``MetaProperties``, KRaft version 1):
node.id, cluster.id and directory.id. A broker refuses a directory that belongs to another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write
from kafkacompat.storage.kafka_uuid import random_kafka_uuid, uuid_to_base64
from kafkacompat.storage.properties_file import format_properties, read_properties

META_PROPERTIES: Final = "meta.properties"
META_PROPERTIES_VERSION: Final = 1  # KRaft-mode meta.properties


class NodeIdMismatchError(Exception):
    """meta.properties belongs to another broker; Kafka refuses to start in this case too."""


@dataclass(frozen=True, slots=True)
class MetaProperties:
    """Identity of a data directory (KRaft ``meta.properties`` version 1)."""

    node_id: int
    cluster_id: str
    directory_id: str

    def to_props(self) -> dict[str, str]:
        return {
            "version": str(META_PROPERTIES_VERSION),
            "node.id": str(self.node_id),
            "cluster.id": self.cluster_id,
            "directory.id": self.directory_id,
        }


def write_meta_properties(directory: Path, meta: MetaProperties) -> None:
    atomic_write(directory / META_PROPERTIES, format_properties(meta.to_props(), "kafkacompat"))


def read_meta_properties(directory: Path) -> MetaProperties | None:
    """The directory's identity, or None for a fresh directory."""
    path = directory / META_PROPERTIES
    if not path.exists():
        return None
    props = read_properties(path)
    if props.get("version") != str(META_PROPERTIES_VERSION):
        raise CorruptFileError(path, f"unsupported version {props.get('version')!r}, expected 1")
    for required in ("node.id", "cluster.id"):
        if required not in props:
            raise CorruptFileError(path, f"missing {required}")
    try:
        node_id = int(props["node.id"])
    except ValueError:
        raise CorruptFileError(path, f"node.id {props['node.id']!r} is not a number") from None
    # directory.id arrived with KIP-858 (3.7); older directories get one on first start.
    directory_id = props.get("directory.id") or uuid_to_base64(random_kafka_uuid())
    return MetaProperties(node_id, props["cluster.id"], directory_id)


def ensure_meta_properties(
    directory: Path, node_id: int, cluster_id: str | None = None
) -> MetaProperties:
    """Create meta.properties on first start; afterwards keep it and check it is ours.

    Kafka refuses to start when the directory's node.id differs from the configured one: the
    data belongs to another broker. The same goes for a cluster.id the caller insists on.
    """
    existing = read_meta_properties(directory)
    if existing is None:
        meta = MetaProperties(
            node_id,
            cluster_id or uuid_to_base64(random_kafka_uuid()),
            uuid_to_base64(random_kafka_uuid()),
        )
        write_meta_properties(directory, meta)
        return meta
    if existing.node_id != node_id:
        raise NodeIdMismatchError(
            f"{directory / META_PROPERTIES} has node.id={existing.node_id} but this broker is "
            f"node.id={node_id}; point it at its own data directory"
        )
    if cluster_id is not None and existing.cluster_id != cluster_id:
        raise NodeIdMismatchError(
            f"{directory / META_PROPERTIES} has cluster.id={existing.cluster_id}, "
            f"expected {cluster_id}"
        )
    if read_properties(directory / META_PROPERTIES).get("directory.id") is None:
        write_meta_properties(directory, existing)
    return existing
