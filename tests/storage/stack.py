"""A log manager behind the local controller, as a broker composes them, for tests that need
topics to persist without a whole broker."""

from __future__ import annotations

from typing import Any

from kafkacompat.metadata.image import MetadataDelta, MetadataImage
from kafkacompat.metadata.local_controller import LocalController
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.manager import LogManager, Topic
from kafkacompat.storage.topic_records import TopicRecord


class Stack:
    """The controller decides and commits topic changes, the log manager applies them: the
    replica manager's part, without partitions."""

    def __init__(self, log_manager: LogManager, controller: LocalController) -> None:
        self.log_manager = log_manager
        self.controller = controller
        controller.subscribe(self)
        records = controller.load_records()
        log_manager.start(records)
        controller.start(log_manager.cluster_id, records)

    def on_metadata_update(self, delta: MetadataDelta, image: MetadataImage) -> None:
        for topic in delta.deleted:
            self.log_manager.delete_logs(topic.name)
        for topic in delta.created:
            self.log_manager.create_logs(
                TopicRecord(topic.name, topic.topic_id, topic.partitions, dict(topic.configs))
            )
        for added in delta.partitions_added:
            self.log_manager.add_logs(added.topic.name, added.topic.partitions)
        for topic in delta.configs_altered:
            self.log_manager.update_config(topic.name, topic.configs)

    def create_topic(self, *args: Any, **kwargs: Any) -> Topic:
        created = self.controller.create_topic(*args, **kwargs)
        if kwargs.get("validate_only"):
            return Topic(created.name, created.topic_id, LogConfig())
        return self.log_manager.topic(created.name)

    def add_partitions(self, name: str, total: int, **kwargs: Any) -> None:
        self.controller.create_partitions(name, total, **kwargs)

    def alter_topic_config(self, name: str, changes: Any, **kwargs: Any) -> LogConfig:
        return self.controller.alter_topic_configs(name, changes, **kwargs)

    def delete_topic(self, name: str) -> None:
        self.controller.delete_topic(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log_manager, name)
