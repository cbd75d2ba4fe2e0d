"""An immutable picture of the cluster's topics, and the deltas that move it forward.

A publisher is told ``(delta, new image)`` after each change; the image is the whole truth
and the delta says what changed, so a subscriber may act on either (the replica manager
creates logs for ``delta.created``; the group coordinator drops the offsets of
``delta.deleted``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    """The topic's config overrides (Kafka's names); broker defaults fill the rest."""


@dataclass(frozen=True, slots=True)
class MetadataImage:
    cluster_id: str
    topics: Mapping[str, TopicImage] = field(default_factory=dict)
    topics_by_id: Mapping[uuid.UUID, TopicImage] = field(default_factory=dict)

    def topic(self, name: str) -> TopicImage | None:
        return self.topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicImage | None:
        return self.topics_by_id.get(topic_id)

    def with_topics(self, topics: Mapping[str, TopicImage]) -> MetadataImage:
        return MetadataImage(
            self.cluster_id,
            MappingProxyType(dict(topics)),
            MappingProxyType({t.topic_id: t for t in topics.values()}),
        )


@dataclass(frozen=True, slots=True)
class PartitionsAdded:
    topic: TopicImage
    previous_partitions: int


@dataclass(frozen=True, slots=True)
class MetadataDelta:
    created: tuple[TopicImage, ...] = ()
    deleted: tuple[TopicImage, ...] = ()
    partitions_added: tuple[PartitionsAdded, ...] = ()
    configs_altered: tuple[TopicImage, ...] = ()


class MetadataPublisher(Protocol):
    def on_metadata_update(self, delta: MetadataDelta, image: MetadataImage) -> None:
        """Apply ``delta``; ``image`` is the state after it.  Called in subscription order."""
        ...
