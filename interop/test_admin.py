"""Topics and configs through each admin client: create, describe, alter, grow, delete, and
the errors Kafka answers when they are misused."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from interop.admin_clients import (
    ADMIN_CLIENTS,
    Admin,
    ConfigValue,
    KafkaPythonAdmin,
    admin_client,
)
from interop.clients import ClientError, Record, consume, produce, require
from interop.conftest import BrokerProcess

every_admin = pytest.mark.parametrize("client", ADMIN_CLIENTS)

RETENTION_DEFAULT = "604800000"  # log.retention.hours=168
SEGMENT_BYTES_DEFAULT = "1073741824"


@pytest.fixture(autouse=True)
def _needs_tool(client: str) -> None:
    require(client)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Kafka applies topic creation and deletion asynchronously: poll for the outcome."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout_s}s")
        time.sleep(0.1)


@every_admin
def test_topic_lifecycle(broker: BrokerProcess, client: str, topic: str) -> None:
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 3, {"retention.ms": "3600000", "cleanup.policy": "compact"})
        wait_until(lambda: admin.partition_count(topic) == 3, "three partitions")

        configs = admin.topic_configs(topic)
        assert configs["retention.ms"] == ConfigValue("3600000", "DYNAMIC_TOPIC_CONFIG")
        assert configs["cleanup.policy"] == ConfigValue("compact", "DYNAMIC_TOPIC_CONFIG")
        assert configs["segment.bytes"] == ConfigValue(SEGMENT_BYTES_DEFAULT, "DEFAULT_CONFIG")

        # The new partitions take records.
        (offset,) = produce("confluent", broker.bootstrap, topic, [Record(b"k", b"v")], partition=2)
        assert offset == 0
        (read,) = consume("kafka-python", broker.bootstrap, topic, 2, 0, 1)
        assert read.record.value == b"v"

        admin.delete_topic(topic)
        wait_until(lambda: admin.partition_count(topic) is None, "deleted")


@every_admin
def test_create_validate_only(broker: BrokerProcess, client: str, topic: str) -> None:
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 2, {"retention.ms": "3600000"}, validate_only=True)
        time.sleep(0.2)
        assert admin.partition_count(topic) is None


@every_admin
def test_alter_configs(broker: BrokerProcess, client: str, topic: str) -> None:
    """IncrementalAlterConfigs changes the named configs only; AlterConfigs replaces the
    topic's whole set of overrides, so the ones not named return to their defaults."""
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 1, {"cleanup.policy": "compact"})
        wait_until(lambda: admin.partition_count(topic) == 1, "created")

        incremental = admin.incremental_alter
        admin.alter_topic_configs(topic, {"retention.ms": "7200000"}, incremental=incremental)
        configs = admin.topic_configs(topic)
        assert configs["retention.ms"] == ConfigValue("7200000", "DYNAMIC_TOPIC_CONFIG")
        if incremental:
            assert configs["cleanup.policy"] == ConfigValue("compact", "DYNAMIC_TOPIC_CONFIG")
            admin.alter_topic_configs(topic, {"retention.ms": None}, incremental=True)
            configs = admin.topic_configs(topic)
            assert configs["retention.ms"] == ConfigValue(RETENTION_DEFAULT, "DEFAULT_CONFIG")
            assert configs["cleanup.policy"] == ConfigValue("compact", "DYNAMIC_TOPIC_CONFIG")
        else:
            assert configs["cleanup.policy"] == ConfigValue("delete", "DEFAULT_CONFIG")


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_alter_configs_replace(broker: BrokerProcess, client: str, topic: str) -> None:
    """Plain AlterConfigs from the clients that also have the incremental form (kafka-python
    resends the other overrides itself, as its documentation says).  kafkajs has only this
    form, which test_alter_configs covers."""
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 1, {"cleanup.policy": "compact"})
        wait_until(lambda: admin.partition_count(topic) == 1, "created")
        admin.alter_topic_configs(topic, {"retention.ms": "7200000"}, incremental=False)
        configs = admin.topic_configs(topic)
        assert configs["retention.ms"] == ConfigValue("7200000", "DYNAMIC_TOPIC_CONFIG")
        kept = client == "kafka-python"
        assert configs["cleanup.policy"] == (
            ConfigValue("compact", "DYNAMIC_TOPIC_CONFIG")
            if kept
            else ConfigValue("delete", "DEFAULT_CONFIG")
        )


@every_admin
def test_create_partitions(broker: BrokerProcess, client: str, topic: str) -> None:
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 1)
        wait_until(lambda: admin.partition_count(topic) == 1, "created")
        admin.create_partitions(topic, 4)
        wait_until(lambda: admin.partition_count(topic) == 4, "grown to four partitions")
    (offset,) = produce("kafka-python", broker.bootstrap, topic, [Record(b"k", b"p3")], partition=3)
    assert offset == 0
    (read,) = consume("confluent", broker.bootstrap, topic, 3, 0, 1)
    assert read.record.value == b"p3"


@every_admin
def test_broker_configs(broker: BrokerProcess, client: str) -> None:
    with admin_client(client, broker.bootstrap) as admin:
        configs = admin.broker_configs(1)
    assert configs["message.max.bytes"].value == "1048588"
    assert configs["num.partitions"].value == "1"
    assert configs["log.dirs"].value == str(broker.data_dir)


@every_admin
def test_delete_records(broker: BrokerProcess, client: str, topic: str) -> None:
    records = [Record(b"k", f"v{i}".encode()) for i in range(5)]
    assert produce("confluent", broker.bootstrap, topic, records) == [0, 1, 2, 3, 4]
    with admin_client(client, broker.bootstrap) as admin:
        assert admin.delete_records(topic, 0, 3) == 3
    read = consume("kafka-python", broker.bootstrap, topic, 0, 3, 2)
    assert [(r.offset, r.record.value) for r in read] == [(3, b"v3"), (4, b"v4")]


@pytest.mark.parametrize("client", ["kafka-python"])  # the only one with describe_log_dirs
def test_describe_log_dirs(broker: BrokerProcess, client: str, topic: str) -> None:
    produce("confluent", broker.bootstrap, topic, [Record(b"k", b"v" * 100)] * 3)
    with admin_client(client, broker.bootstrap) as admin:
        assert isinstance(admin, KafkaPythonAdmin)
        (answer,) = admin.admin.describe_log_dirs()
    assert answer["broker"] == 1
    (log_dir,) = answer["log_dirs"]
    assert (log_dir["error_code"], log_dir["log_dir"]) == (0, str(broker.data_dir))
    sizes = {
        (t["name"], p["partition_index"]): p["partition_size"]
        for t in log_dir["topics"]
        for p in t["partitions"]
    }
    on_disk = sum(f.stat().st_size for f in (broker.data_dir / f"{topic}-0").glob("*.log"))
    assert sizes[(topic, 0)] == on_disk > 300


# Kafka's error codes for misuse: (what, the call, the code Kafka answers).
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40

MISUSES: dict[str, tuple[Callable[[Admin, str], object], int]] = {
    "create-existing": (
        lambda admin, topic: admin.create_topic(topic, 1),
        TOPIC_ALREADY_EXISTS,
    ),
    "bad-config-value": (
        lambda admin, topic: admin.create_topic(topic + "-new", 1, {"retention.ms": "soon"}),
        INVALID_CONFIG,
    ),
    "unknown-config": (
        lambda admin, topic: admin.create_topic(topic + "-new", 1, {"no.such.config": "1"}),
        INVALID_CONFIG,
    ),
    "zero-partitions": (
        lambda admin, topic: admin.create_topic(topic + "-new", 0),
        INVALID_PARTITIONS,
    ),
    "replication-factor-3": (
        lambda admin, topic: admin.create_topic(topic + "-new", 1, replication_factor=3),
        INVALID_REPLICATION_FACTOR,
    ),
    "bad-name": (
        lambda admin, topic: admin.create_topic("bad name!", 1),
        INVALID_TOPIC_EXCEPTION,
    ),
    "delete-unknown": (
        lambda admin, topic: admin.delete_topic(topic + "-missing"),
        UNKNOWN_TOPIC_OR_PARTITION,
    ),
    "shrink-partitions": (
        lambda admin, topic: admin.create_partitions(topic, 1),
        INVALID_PARTITIONS,
    ),
    "describe-unknown": (
        lambda admin, topic: admin.topic_configs(topic + "-missing"),
        UNKNOWN_TOPIC_OR_PARTITION,
    ),
}


@every_admin
@pytest.mark.parametrize("misuse", MISUSES)
def test_admin_errors(broker: BrokerProcess, client: str, topic: str, misuse: str) -> None:
    if (client, misuse) == ("kafka-python", "describe-unknown"):
        # kafka-python's describe_configs drops a resource's error code: no configs at all.
        with admin_client(client, broker.bootstrap) as admin:
            assert admin.topic_configs(topic + "-missing") == {}
        return
    call, code = MISUSES[misuse]
    with admin_client(client, broker.bootstrap) as admin:
        admin.create_topic(topic, 2)
        with pytest.raises(ClientError) as raised:
            call(admin, topic)
        assert raised.value.code == code, str(raised.value)
        assert admin.partition_count(topic) == 2  # the existing topic is untouched
        assert admin.partition_count(topic + "-new") is None
