"""LocalController: the controller of a one-broker cluster, whose metadata log is the data
directory's topic files.

Theory of operation.  Admin requests (CreateTopics, CreatePartitions, DeleteTopics, the
topic half of AlterConfigs, auto-creation from Metadata) arrive here, never at the storage
layer.  Each one is decided as Kafka's controller decides it (topic name rules and
collisions, partition counts, config values against the broker's defaults), then committed by
one atomic write of the topic's record (``<data>/__topics/<id>``; a delete removes it), then
published as a :class:`~kafkacompat.metadata.image.MetadataDelta` with the new
:class:`~kafkacompat.metadata.image.MetadataImage` to every subscriber in order.  The replica
manager, subscribed first, creates or removes the partitions and their logs; the group
coordinator drops the offsets of deleted topics.

A crash after the commit and before a subscriber acted is repaired at the next start: the
log manager opens (creating where missing) the logs of every topic in the image and deletes
partition folders no topic claims, as a KRaft broker replays its metadata log.

The cluster work swaps this class for one whose source is a consensus engine; handlers and
publishers do not change.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.metadata.image import (
    MetadataDelta,
    MetadataImage,
    MetadataPublisher,
    PartitionsAdded,
    TopicImage,
)
from kafkacompat.storage.base import KafkaStorageError
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.kafka_uuid import random_kafka_uuid, uuid_to_base64
from kafkacompat.storage.topic_records import (
    TopicRecord,
    delete_topic_file,
    read_topics,
    write_topic,
)

MAX_TOPIC_NAME_LENGTH: Final = 249  # Kafka's Topic.MAX_NAME_LENGTH: room for "-<partition>" etc.
_LEGAL_TOPIC_CHARS: Final = re.compile(r"[a-zA-Z0-9._-]+")


class InvalidTopicError(KafkaProtocolError):
    error_code = ErrorCode.INVALID_TOPIC_EXCEPTION


class TopicExistsError(KafkaProtocolError):
    error_code = ErrorCode.TOPIC_ALREADY_EXISTS


class UnknownTopicOrPartitionError(KafkaProtocolError):
    error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class InvalidPartitionsError(KafkaProtocolError):
    error_code = ErrorCode.INVALID_PARTITIONS


def validate_topic_name(name: str) -> None:
    """Kafka's ``Topic.validate``: INVALID_TOPIC_EXCEPTION with Kafka's wording."""
    if not name:
        raise InvalidTopicError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopicError('Topic name cannot be "." or ".."')
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, "
            f"topic name: {name}"
        )
    if not _LEGAL_TOPIC_CHARS.fullmatch(name):
        raise InvalidTopicError(
            f'Topic name "{name}" is illegal, it contains a character other than ASCII '
            "alphanumerics, '.', '_' and '-'"
        )


def collision_key(name: str) -> str:
    """Kafka's ``Topic.unifyCollisionChars``: '.' and '_' collide in metric names."""
    return name.replace(".", "_")


def _record(topic: TopicImage) -> TopicRecord:
    return TopicRecord(topic.name, topic.topic_id, topic.partitions, dict(topic.configs))


class LocalController:
    """Decides, commits and publishes topic changes; holds the current image."""

    def __init__(
        self, data_dir: Path | None, broker_config: Mapping[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.broker_config: Mapping[str, str] = dict(broker_config or {})
        self.image = MetadataImage(cluster_id="")
        self._publishers: list[MetadataPublisher] = []
        self._collisions: dict[str, str] = {}

    # -- loading and subscribing -----------------------------------------------------------------

    def load_records(self) -> list[TopicRecord]:
        """The committed topics, read from the data dir (none without one)."""
        if self.data_dir is None or not self.data_dir.is_dir():
            return []
        return read_topics(self.data_dir)

    def start(self, cluster_id: str, records: list[TopicRecord]) -> MetadataImage:
        """The image at start-up: what :meth:`load_records` read, in the cluster it belongs to."""
        topics = {
            r.name: TopicImage(r.name, r.topic_id, r.partitions, dict(r.configs)) for r in records
        }
        self._collisions = {collision_key(name): name for name in topics}
        self.image = MetadataImage(cluster_id).with_topics(topics)
        return self.image

    def subscribe(self, publisher: MetadataPublisher) -> None:
        self._publishers.append(publisher)

    def _publish(self, delta: MetadataDelta, topics: Mapping[str, TopicImage]) -> None:
        self.image = self.image.with_topics(topics)
        for publisher in self._publishers:
            publisher.on_metadata_update(delta, self.image)

    def _commit(self, topic: TopicImage) -> None:
        if self.data_dir is not None:
            write_topic(self.data_dir, _record(topic))

    def topic(self, name: str) -> TopicImage:
        found = self.image.topic(name)
        if found is None:
            raise UnknownTopicOrPartitionError(f"This server does not host this topic: {name}")
        return found

    # -- topic changes ---------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str] | None = None,
        topic_id: uuid.UUID | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicImage:
        """CreateTopics for one topic. Errors as Kafka answers them: INVALID_TOPIC_EXCEPTION,
        TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_CONFIG."""
        validate_topic_name(name)
        if name in self.image.topics:
            raise TopicExistsError(f"Topic '{name}' already exists.")
        colliding = self._collisions.get(collision_key(name))
        if colliding is not None:
            raise InvalidTopicError(f"Topic '{name}' collides with existing topic: {colliding}")
        if partitions <= 0:
            raise InvalidPartitionsError(
                f"Number of partitions was set to an invalid non-positive value: {partitions}"
            )
        overrides = dict(configs or {})
        LogConfig.from_props(overrides, self.broker_config)  # INVALID_CONFIG
        if topic_id is None:
            topic_id = random_kafka_uuid()
        elif topic_id.int == 0 or topic_id in self.image.topics_by_id:
            raise InvalidTopicError(f"topic id {uuid_to_base64(topic_id)} is not usable")
        topic = TopicImage(name, topic_id, partitions, overrides)
        if validate_only:
            return topic
        self._commit_and_publish(topic, None, MetadataDelta(created=(topic,)))
        self._collisions[collision_key(name)] = name
        return topic

    def _commit_and_publish(
        self, topic: TopicImage, previous: TopicImage | None, delta: MetadataDelta
    ) -> None:
        """Commit ``topic`` (after this it exists across restarts) and publish ``delta``; all
        or nothing on a disk error (KAFKA_STORAGE_ERROR): the log manager removes what it had
        made of new partitions, and the commit is taken back, so no half-created topic or
        partition remains, in memory or across a restart."""
        try:
            self._commit(topic)
        except OSError as exc:  # atomic: the previous file, if any, is still there
            raise KafkaStorageError(f"cannot commit topic '{topic.name}': {exc}") from exc
        before = self.image
        try:
            self._publish(delta, {**self.image.topics, topic.name: topic})
        except OSError as exc:
            self.image = before
            if self.data_dir is not None:
                with contextlib.suppress(OSError):  # else the next start makes the folders
                    if previous is None:
                        delete_topic_file(self.data_dir, topic.topic_id)
                    else:
                        self._commit(previous)
            raise KafkaStorageError(
                f"cannot create the logs of topic '{topic.name}': {exc}"
            ) from exc

    def create_partitions(
        self, name: str, total: int, *, validate_only: bool = False
    ) -> TopicImage:
        """CreatePartitions: grow to ``total`` partitions; shrinking is INVALID_PARTITIONS."""
        current = self.topic(name)
        if total <= current.partitions:
            raise InvalidPartitionsError(
                f"Topic currently has {current.partitions} partitions, which is higher than or "
                f"equal to the requested {total}."
            )
        grown = TopicImage(name, current.topic_id, total, current.configs)
        if validate_only:
            return grown
        self._commit_and_publish(
            grown,
            current,
            MetadataDelta(partitions_added=(PartitionsAdded(grown, current.partitions),)),
        )
        return grown

    def alter_topic_configs(
        self,
        name: str,
        changes: Mapping[str, str | None],
        *,
        replace_all: bool = False,
        validate_only: bool = False,
    ) -> LogConfig:
        """IncrementalAlterConfigs (``None`` deletes an override) or, with ``replace_all``,
        AlterConfigs (the given overrides become the whole set); returns the effective config."""
        current = self.topic(name)
        overrides = {} if replace_all else dict(current.configs)
        for key, value in changes.items():
            if value is None:
                overrides.pop(key, None)
            else:
                overrides[key] = value
        config = LogConfig.from_props(overrides, self.broker_config)  # INVALID_CONFIG
        if validate_only:
            return config
        altered = TopicImage(name, current.topic_id, current.partitions, config.overrides)
        self._commit_and_publish(altered, current, MetadataDelta(configs_altered=(altered,)))
        return config

    def delete_topic(self, name: str) -> None:
        """DeleteTopics: forget the topic (the commit point), then publish."""
        topic = self.topic(name)
        if self.data_dir is not None:
            delete_topic_file(self.data_dir, topic.topic_id)
        self._collisions.pop(collision_key(name), None)
        remaining = {n: t for n, t in self.image.topics.items() if n != name}
        self._publish(MetadataDelta(deleted=(topic,)), remaining)

    def alter_broker_defaults(self, broker_config: Mapping[str, str]) -> None:
        """Dynamic broker config changed the defaults every topic's config resolves against:
        every topic's effective config may have changed."""
        self.broker_config = dict(broker_config)
        topics = dict(self.image.topics)
        if topics:
            self._publish(MetadataDelta(configs_altered=tuple(topics.values())), topics)
