"""The admin clients behind one interface: confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient and kafkajs's admin.  Each raises :class:`ClientError` with Kafka's error
code for an error the broker answered, whatever the client's own exception is called."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from interop.clients import ClientError, run_kafkajs

ADMIN_CLIENTS = ("confluent", "kafka-python", "kafkajs")
TIMEOUT_S = 15.0

# Kafka's DescribeConfigs ConfigSource values, by code.
CONFIG_SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
}


@dataclass(frozen=True)
class ConfigValue:
    value: str | None
    source: str
    """Kafka's ConfigSource name: DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG..."""


class Admin(Protocol):
    name: str
    incremental_alter: bool
    """Has IncrementalAlterConfigs (else only AlterConfigs, which replaces a resource's
    whole set of overrides)."""

    def create_topic(
        self,
        topic: str,
        partitions: int = 1,
        configs: dict[str, str] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
    ) -> None: ...

    def delete_topic(self, topic: str) -> None: ...

    def partition_count(self, topic: str) -> int | None:
        """None when the topic does not exist."""
        ...

    def topic_configs(self, topic: str) -> dict[str, ConfigValue]: ...

    def broker_configs(self, broker_id: int) -> dict[str, ConfigValue]: ...

    def alter_topic_configs(
        self, topic: str, configs: dict[str, str | None], *, incremental: bool
    ) -> None:
        """Set each config; a None value (incremental only) deletes the override."""
        ...

    def create_partitions(self, topic: str, total: int) -> None: ...

    def delete_records(self, topic: str, partition: int, before_offset: int) -> int:
        """The partition's new low watermark."""
        ...


T = TypeVar("T")


class ConfluentAdmin:
    name = "confluent"
    incremental_alter = True

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient

        # Without this librdkafka's metadata requests re-create topics as soon as deleted.
        self.admin = AdminClient(
            {"bootstrap.servers": bootstrap, "allow.auto.create.topics": False}
        )

    @staticmethod
    def _wait(future: Any) -> Any:
        from confluent_kafka import KafkaException

        try:
            return future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            code = error.code()
            raise ClientError("confluent", code if code >= 0 else None, str(error)) from exc

    def create_topic(
        self,
        topic: str,
        partitions: int = 1,
        configs: dict[str, str] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
    ) -> None:
        from confluent_kafka.admin import NewTopic

        new = NewTopic(topic, partitions, replication_factor, config=configs or {})
        (future,) = self.admin.create_topics(
            [new], validate_only=validate_only, request_timeout=TIMEOUT_S
        ).values()
        self._wait(future)

    def delete_topic(self, topic: str) -> None:
        (future,) = self.admin.delete_topics([topic], request_timeout=TIMEOUT_S).values()
        self._wait(future)

    def partition_count(self, topic: str) -> int | None:
        metadata = self.admin.list_topics(topic=topic, timeout=TIMEOUT_S)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return None
        return len(described.partitions)

    def _configs(self, resource: Any) -> dict[str, ConfigValue]:
        (future,) = self.admin.describe_configs([resource], request_timeout=TIMEOUT_S).values()
        entries = self._wait(future)
        return {
            name: ConfigValue(entry.value, CONFIG_SOURCES[int(entry.source)])
            for name, entry in entries.items()
        }

    def topic_configs(self, topic: str) -> dict[str, ConfigValue]:
        from confluent_kafka.admin import ConfigResource, ResourceType

        return self._configs(ConfigResource(ResourceType.TOPIC, topic))

    def broker_configs(self, broker_id: int) -> dict[str, ConfigValue]:
        from confluent_kafka.admin import ConfigResource, ResourceType

        return self._configs(ConfigResource(ResourceType.BROKER, str(broker_id)))

    def alter_topic_configs(
        self, topic: str, configs: dict[str, str | None], *, incremental: bool
    ) -> None:
        from confluent_kafka.admin import (
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            ResourceType,
        )

        if incremental:
            entries = [
                ConfigEntry(
                    name,
                    value,
                    incremental_operation=AlterConfigOpType.DELETE
                    if value is None
                    else AlterConfigOpType.SET,
                )
                for name, value in configs.items()
            ]
            resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
            (future,) = self.admin.incremental_alter_configs(
                [resource], request_timeout=TIMEOUT_S
            ).values()
        else:
            resource = ConfigResource(ResourceType.TOPIC, topic, set_config=configs)
            with warnings.catch_warnings():  # deprecated, but still Kafka's AlterConfigs
                warnings.simplefilter("ignore", DeprecationWarning)
                futures = self.admin.alter_configs([resource], request_timeout=TIMEOUT_S)
            (future,) = futures.values()
        self._wait(future)

    def create_partitions(self, topic: str, total: int) -> None:
        from confluent_kafka.admin import NewPartitions

        (future,) = self.admin.create_partitions(
            [NewPartitions(topic, total)], request_timeout=TIMEOUT_S
        ).values()
        self._wait(future)

    def delete_records(self, topic: str, partition: int, before_offset: int) -> int:
        from confluent_kafka import TopicPartition

        (future,) = self.admin.delete_records(
            [TopicPartition(topic, partition, before_offset)], request_timeout=TIMEOUT_S
        ).values()
        return int(self._wait(future).low_watermark)


class KafkaPythonAdmin:
    name = "kafka-python"
    incremental_alter = True

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)

    def close(self) -> None:
        self.admin.close()

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        import kafka.errors

        try:
            return call()
        except kafka.errors.KafkaError as exc:
            raise ClientError("kafka-python", getattr(exc, "errno", None), repr(exc)) from exc

    def create_topic(
        self,
        topic: str,
        partitions: int = 1,
        configs: dict[str, str] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
    ) -> None:
        spec = {
            topic: {
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "configs": configs or {},
            }
        }
        self._call(lambda: self.admin.create_topics(spec, validate_only=validate_only))

    def delete_topic(self, topic: str) -> None:
        self._call(lambda: self.admin.delete_topics([topic]))

    def partition_count(self, topic: str) -> int | None:
        (described,) = self._call(lambda: self.admin.describe_topics([topic]))
        if described["error_code"] != 0:
            return None
        return len(described["partitions"])

    def _configs(self, kind: str, name: str) -> dict[str, ConfigValue]:
        from kafka.admin import ConfigResource

        described = self._call(
            lambda: self.admin.describe_configs([ConfigResource(kind, name)], config_filter="all")
        )
        return {
            key: ConfigValue(entry["value"], entry["config_source"])
            for key, entry in described[kind.lower()][name].items()
        }

    def topic_configs(self, topic: str) -> dict[str, ConfigValue]:
        return self._configs("TOPIC", topic)

    def broker_configs(self, broker_id: int) -> dict[str, ConfigValue]:
        return self._configs("BROKER", str(broker_id))

    def alter_topic_configs(
        self, topic: str, configs: dict[str, str | None], *, incremental: bool
    ) -> None:
        from kafka.admin import AlterConfigOp, ConfigResource

        entries: dict[str, Any] = {
            name: (AlterConfigOp.DELETE, None) if value is None else value
            for name, value in configs.items()
        }
        result = self._call(
            lambda: self.admin.alter_configs(
                [ConfigResource("TOPIC", topic, configs=entries)], incremental=incremental
            )
        )
        outcome = result["topic"][topic]
        if outcome != "OK":
            raise ClientError("kafka-python", None, str(outcome))

    def create_partitions(self, topic: str, total: int) -> None:
        self._call(lambda: self.admin.create_partitions({topic: total}))

    def delete_records(self, topic: str, partition: int, before_offset: int) -> int:
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        result = self._call(lambda: self.admin.delete_records({tp: before_offset}))
        answer = result[tp]
        return int(answer["low_watermark"] if isinstance(answer, dict) else answer.low_watermark)


class KafkajsAdmin:
    name = "kafkajs"
    incremental_alter = False  # kafkajs 2.x sends AlterConfigs only

    TOPIC, BROKER = 2, 4  # kafkajs's ConfigResourceTypes

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def _calls(self, *calls: tuple[str, list[Any]]) -> list[Any]:
        """Calls on one kafkajs admin, in order; their results."""
        return list(
            run_kafkajs(
                {
                    "op": "admin",
                    "brokers": [self.bootstrap],
                    "retries": 1,
                    "calls": [{"method": method, "args": args} for method, args in calls],
                }
            )
        )

    def _call(self, method: str, *args: Any) -> Any:
        (result,) = self._calls((method, list(args)))
        return result

    def create_topic(
        self,
        topic: str,
        partitions: int = 1,
        configs: dict[str, str] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
    ) -> None:
        created = self._call(
            "createTopics",
            {
                "validateOnly": validate_only,
                "waitForLeaders": not validate_only,
                "timeout": 10000,
                "topics": [
                    {
                        "topic": topic,
                        "numPartitions": partitions,
                        "replicationFactor": replication_factor,
                        "configEntries": [
                            {"name": k, "value": v} for k, v in (configs or {}).items()
                        ],
                    }
                ],
            },
        )
        if created is False and not validate_only:
            # kafkajs turns TOPIC_ALREADY_EXISTS into a `false` result instead of an error.
            raise ClientError("kafkajs", 36, "createTopics returned false: topic exists")

    def delete_topic(self, topic: str) -> None:
        self._call("deleteTopics", {"topics": [topic], "timeout": 10000})

    def partition_count(self, topic: str) -> int | None:
        topics = set(self._call("listTopics"))
        if topic not in topics:
            return None
        described = self._call("fetchTopicMetadata", {"topics": [topic]})
        return len(described["topics"][0]["partitions"])

    def _configs(self, kind: int, name: str) -> dict[str, ConfigValue]:
        described = self._call(
            "describeConfigs",
            {"resources": [{"type": kind, "name": name}], "includeSynonyms": False},
        )
        (resource,) = described["resources"]
        if resource["errorCode"]:
            raise ClientError("kafkajs", resource["errorCode"], resource.get("errorMessage", ""))
        return {
            entry["configName"]: ConfigValue(
                entry["configValue"], CONFIG_SOURCES[int(entry["configSource"])]
            )
            for entry in resource["configEntries"]
        }

    def topic_configs(self, topic: str) -> dict[str, ConfigValue]:
        return self._configs(self.TOPIC, topic)

    def broker_configs(self, broker_id: int) -> dict[str, ConfigValue]:
        return self._configs(self.BROKER, str(broker_id))

    def alter_topic_configs(
        self, topic: str, configs: dict[str, str | None], *, incremental: bool
    ) -> None:
        assert not incremental, "kafkajs has no IncrementalAlterConfigs"
        self._call(
            "alterConfigs",
            {
                "validateOnly": False,
                "resources": [
                    {
                        "type": self.TOPIC,
                        "name": topic,
                        "configEntries": [{"name": k, "value": v} for k, v in configs.items()],
                    }
                ],
            },
        )

    def create_partitions(self, topic: str, total: int) -> None:
        self._call("createPartitions", {"topicPartitions": [{"topic": topic, "count": total}]})

    def delete_records(self, topic: str, partition: int, before_offset: int) -> int:
        # deleteTopicRecords expects the admin to hold the topic's metadata already.
        _, _, offsets = self._calls(
            ("fetchTopicMetadata", [{"topics": [topic]}]),
            (
                "deleteTopicRecords",
                [
                    {
                        "topic": topic,
                        "partitions": [{"partition": partition, "offset": str(before_offset)}],
                    }
                ],
            ),
            ("fetchTopicOffsets", [topic]),
        )
        (answer,) = [p for p in offsets if int(p["partition"]) == partition]
        return int(answer["low"])


@contextmanager
def admin_client(name: str, bootstrap: str) -> Iterator[Admin]:
    admin: Admin
    if name == "confluent":
        admin = ConfluentAdmin(bootstrap)
    elif name == "kafka-python":
        admin = KafkaPythonAdmin(bootstrap)
    else:
        admin = KafkajsAdmin(bootstrap)
    try:
        yield admin
    finally:
        close = getattr(admin, "close", None)
        if close is not None:
            close()
