"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.broker import Broker
from kafkacompat.config import BROKER_CONFIGS
from kafkacompat.dynamic_config import load_dynamic_broker_configs
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages import alter_configs_request as legacy
from kafkacompat.protocol.messages import incremental_alter_configs_request as incremental
from kafkacompat.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kafkacompat.storage.config import TOPIC_CONFIGS, ConfigSource, ConfigType
from kafkacompat.storage.manager import Engine
from tests.handlers.helpers import call, running_broker

TOPIC, BROKER = 2, 4
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@pytest.fixture(params=["memory", "disk"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    engine: Engine = request.param
    with running_broker(tmp_path, engine=engine) as started:
        started.controller.create_topic("t", 1, {"retention.ms": "1000"})
        yield started


def describe(
    broker: Broker,
    version: int,
    resource_type: int,
    name: str,
    keys: list[str] | None = None,
    synonyms: bool = False,
) -> Any:
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsResource(
                resource_type=resource_type, resource_name=name, configuration_keys=keys
            )
        ],
        include_synonyms=synonyms,
        include_documentation=True,
    )
    (result,) = call(broker, request, version).results
    assert (result.resource_type, result.resource_name) == (resource_type, name)
    return result


def rows(result: Any) -> dict[str, Any]:
    return {row.name: row for row in result.configs}


def incremental_alter(
    broker: Broker,
    version: int,
    resource_type: int,
    name: str,
    *ops: tuple[str, int, str | None],
    validate_only: bool = False,
) -> Any:
    request = incremental.IncrementalAlterConfigsRequest(
        resources=[
            incremental.AlterConfigsResource(
                resource_type=resource_type,
                resource_name=name,
                configs=[
                    incremental.AlterableConfig(name=n, config_operation=op, value=v)
                    for n, op, v in ops
                ],
            )
        ],
        validate_only=validate_only,
    )
    (result,) = call(broker, request, version).responses
    return result


def legacy_alter(
    broker: Broker,
    version: int,
    resource_type: int,
    name: str,
    configs: dict[str, str | None],
    validate_only: bool = False,
) -> Any:
    request = legacy.AlterConfigsRequest(
        resources=[
            legacy.AlterConfigsResource(
                resource_type=resource_type,
                resource_name=name,
                configs=[legacy.AlterableConfig(name=n, value=v) for n, v in configs.items()],
            )
        ],
        validate_only=validate_only,
    )
    (result,) = call(broker, request, version).responses
    return result


# -- DescribeConfigs ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(5))
def test_describe_topic(broker: Broker, version: int) -> None:
    result = describe(broker, version, TOPIC, "t", synonyms=True)
    assert (result.error_code, result.error_message) == (ErrorCode.NONE, "")
    found = rows(result)
    assert set(found) == set(TOPIC_CONFIGS)
    retention, segment = found["retention.ms"], found["segment.bytes"]
    assert (retention.value, segment.value) == ("1000", "1073741824")
    assert not retention.read_only and not retention.is_sensitive
    if version == 0:
        assert (retention.is_default, segment.is_default) == (False, True)
    else:
        assert retention.config_source == ConfigSource.TOPIC_CONFIG
        assert segment.config_source == ConfigSource.DEFAULT_CONFIG
        assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
            ("retention.ms", "1000", ConfigSource.TOPIC_CONFIG)
        ]
        assert [(s.name, s.value, s.source) for s in segment.synonyms] == [
            ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG)
        ]
    if version >= 3:
        assert retention.config_type == ConfigType.LONG
        assert found["cleanup.policy"].config_type == ConfigType.LIST
        assert retention.documentation is None


def test_synonyms_follow_kafkas_precedence(tmp_path: Path) -> None:
    with running_broker(tmp_path, log_segment_bytes="2048", log_retention_hours="2") as broker:
        broker.controller.create_topic("t", 1)
        found = rows(describe(broker, 4, TOPIC, "t", synonyms=True))
        segment = found["segment.bytes"]
        assert (segment.value, segment.config_source) == ("2048", ConfigSource.STATIC_BROKER_CONFIG)
        assert [(s.name, s.value, s.source) for s in segment.synonyms] == [
            ("log.segment.bytes", "2048", ConfigSource.STATIC_BROKER_CONFIG),
            ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG),
        ]
        # Kafka drops synonyms ahead of log.retention.ms, which is unset: hours do not show.
        retention = found["retention.ms"]
        assert (retention.value, retention.synonyms) == ("7200000", [])
        without = rows(describe(broker, 4, TOPIC, "t", synonyms=False))
        assert without["segment.bytes"].synonyms == []


def test_describe_filters_keys(broker: Broker) -> None:
    result = describe(broker, 1, TOPIC, "t", keys=["retention.ms", "no.such.key"])
    assert list(rows(result)) == ["retention.ms"]
    assert len(describe(broker, 1, TOPIC, "t", keys=[]).configs) == len(TOPIC_CONFIGS)


def test_describe_topic_errors(broker: Broker) -> None:
    missing = describe(broker, 4, TOPIC, "missing")
    assert (missing.error_code, missing.error_message, missing.configs) == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "",
        [],
    )
    assert describe(broker, 4, TOPIC, "bad name").error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert describe(broker, 4, 8, "1").error_code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("version", [0, 4])
def test_describe_broker(tmp_path: Path, version: int) -> None:
    props = {"num_partitions": "3", "custom_plugin_setting": "x", "ssl_keystore_password": "pw"}
    with running_broker(tmp_path, **props) as broker:
        result = describe(broker, version, BROKER, str(broker.node_id), synonyms=True)
        assert result.error_code == ErrorCode.NONE
        found = rows(result)
        assert set(BROKER_CONFIGS) <= set(found)
        partitions = found["num.partitions"]
        assert (partitions.value, partitions.read_only) == ("3", True)
        # Kafka cannot type an unknown name, so it treats it as possibly secret.
        for secret in ("custom.plugin.setting", "ssl.keystore.password"):
            assert found[secret].is_sensitive and found[secret].value is None
        assert not found["log.retention.ms"].read_only
        assert found["log.retention.ms"].value is None
        assert found["log.retention.hours"].value == "168"
        if version == 0:
            assert not partitions.is_default and found["auto.create.topics.enable"].is_default
        else:
            assert partitions.config_source == ConfigSource.STATIC_BROKER_CONFIG
            assert found["custom.plugin.setting"].config_source == (
                ConfigSource.STATIC_BROKER_CONFIG
            )
            assert found["auto.create.topics.enable"].config_source == ConfigSource.DEFAULT_CONFIG
            assert [(s.name, s.source) for s in partitions.synonyms] == [
                ("num.partitions", ConfigSource.STATIC_BROKER_CONFIG),
                ("num.partitions", ConfigSource.DEFAULT_CONFIG),
            ]


def test_describe_broker_names(broker: Broker) -> None:
    # "" is the cluster-wide dynamic default level: empty until something is set there.
    assert describe(broker, 4, BROKER, "").configs == []
    other = describe(broker, 4, BROKER, str(broker.node_id + 1))
    assert other.error_code == ErrorCode.INVALID_REQUEST
    assert other.error_message == (
        f"Unexpected broker id, expected {broker.node_id} or empty string, but received "
        f"{broker.node_id + 1}"
    )
    assert describe(broker, 4, BROKER, "one").error_code == ErrorCode.INVALID_REQUEST


# -- AlterConfigs -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2])
def test_alter_configs_replaces_the_whole_set(broker: Broker, version: int) -> None:
    result = legacy_alter(broker, version, TOPIC, "t", {"segment.bytes": "4096"})
    assert (result.error_code, result.error_message) == (ErrorCode.NONE, None)
    config = broker.logs.topic("t").config
    assert dict(config.overrides) == {"segment.bytes": "4096"}
    assert config.retention_ms == 604_800_000


def test_alter_configs_refusals(broker: Broker) -> None:
    missing = legacy_alter(broker, 2, TOPIC, "missing", {"retention.ms": "1"})
    assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert missing.error_message == "The topic 'missing' does not exist."
    assert legacy_alter(broker, 2, TOPIC, "t", {"nope": "1"}).error_code == ErrorCode.INVALID_CONFIG
    assert legacy_alter(broker, 2, TOPIC, "t", {"retention.ms": "x"}).error_code == (
        ErrorCode.INVALID_CONFIG
    )
    null = legacy_alter(broker, 2, TOPIC, "t", {"retention.ms": None})
    assert (null.error_code, null.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Null value not supported for : retention.ms",
    )
    assert legacy_alter(broker, 2, 3, "x", {}).error_code == ErrorCode.INVALID_REQUEST
    assert dict(broker.logs.topic("t").config.overrides) == {"retention.ms": "1000"}


def test_alter_configs_duplicate_resources_and_validate_only(broker: Broker) -> None:
    resource = legacy.AlterConfigsResource(
        resource_type=TOPIC,
        resource_name="t",
        configs=[legacy.AlterableConfig(name="retention.ms", value="5")],
    )
    request = legacy.AlterConfigsRequest(resources=[resource, resource])
    results = call(broker, request, 1).responses
    assert [r.error_code for r in results] == [ErrorCode.INVALID_REQUEST] * 2
    assert (
        legacy_alter(broker, 1, TOPIC, "t", {"retention.ms": "5"}, validate_only=True).error_code
        == 0
    )
    assert broker.logs.topic("t").config.retention_ms == 1000


def test_broker_configs_change_only_where_kafka_allows(broker: Broker) -> None:
    node = str(broker.node_id)
    fixed = legacy_alter(broker, 2, BROKER, node, {"num.partitions": "4"})
    assert (fixed.error_code, fixed.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "Cannot update these configs dynamically: Set(num.partitions)",
    )
    cluster_wide = legacy_alter(broker, 2, BROKER, "", {"advertised.listeners": "PLAINTEXT://h:1"})
    assert cluster_wide.error_code == ErrorCode.INVALID_REQUEST
    bad = legacy_alter(broker, 2, BROKER, node, {"log.retention.ms": "soon"})
    assert bad.error_code == ErrorCode.INVALID_REQUEST
    other = legacy_alter(broker, 2, BROKER, str(broker.node_id + 1), {"log.retention.ms": "5"})
    assert other.error_message == (
        f"Unexpected broker id, expected {broker.node_id}, but received {broker.node_id + 1}"
    )


def test_dynamic_broker_config_applies_to_topics(broker: Broker) -> None:
    node = str(broker.node_id)
    broker.controller.create_topic("plain", 1)
    assert legacy_alter(broker, 0, BROKER, node, {"log.segment.bytes": "4096"}).error_code == 0
    assert broker.logs.topic("plain").config.segment_bytes == 4096
    segment = rows(describe(broker, 1, TOPIC, "plain", synonyms=True))["segment.bytes"]
    assert (segment.value, segment.config_source) == ("4096", ConfigSource.DYNAMIC_BROKER_CONFIG)
    own = rows(describe(broker, 1, BROKER, node, keys=["log.segment.bytes"]))["log.segment.bytes"]
    assert (own.value, own.config_source) == ("4096", ConfigSource.DYNAMIC_BROKER_CONFIG)
    # The legacy API replaces the set: an empty set removes it again.
    assert legacy_alter(broker, 0, BROKER, node, {}).error_code == 0
    assert broker.logs.topic("plain").config.segment_bytes == 1_073_741_824


# -- IncrementalAlterConfigs --------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
def test_incremental_topic_operations(broker: Broker, version: int) -> None:
    ok = incremental_alter(
        broker, version, TOPIC, "t",
        ("retention.ms", DELETE, None), ("segment.bytes", SET, "8192"),
        ("cleanup.policy", APPEND, "compact"),
    )  # fmt: skip
    assert (ok.error_code, ok.error_message) == (ErrorCode.NONE, None)
    config = broker.logs.topic("t").config
    assert dict(config.overrides) == {"segment.bytes": "8192", "cleanup.policy": "delete,compact"}
    assert incremental_alter(broker, version, TOPIC, "t", ("cleanup.policy", SUBTRACT, "delete"))
    assert broker.logs.topic("t").config.cleanup_policy == ("compact",)


def test_incremental_topic_refusals(broker: Broker) -> None:
    not_list = incremental_alter(broker, 1, TOPIC, "t", ("retention.ms", APPEND, "5"))
    assert (not_list.error_code, not_list.error_message) == (
        ErrorCode.INVALID_CONFIG,
        "Can't APPEND to key retention.ms because its type is not LIST.",
    )
    for op in [("nope", SET, "1"), ("retention.ms", SET, "x"), ("cleanup.policy", SET, "bin")]:
        assert incremental_alter(broker, 1, TOPIC, "t", op).error_code == ErrorCode.INVALID_CONFIG
    assert incremental_alter(broker, 1, TOPIC, "t", ("retention.ms", SET, None)).error_code == (
        ErrorCode.INVALID_REQUEST
    )
    duplicate = incremental_alter(
        broker, 1, TOPIC, "t", ("retention.ms", SET, "1"), ("retention.ms", SET, "2")
    )
    assert duplicate.error_message == "Error due to duplicate config keys"
    assert incremental_alter(broker, 1, TOPIC, "gone", ("retention.ms", SET, "1")).error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    assert incremental_alter(broker, 1, TOPIC, "", ("retention.ms", SET, "1")).error_code == (
        ErrorCode.INVALID_REQUEST
    )
    validate = incremental_alter(
        broker, 1, TOPIC, "t", ("retention.ms", SET, "7"), validate_only=True
    )
    assert validate.error_code == ErrorCode.NONE
    assert dict(broker.logs.topic("t").config.overrides) == {"retention.ms": "1000"}


def test_incremental_cluster_default(broker: Broker) -> None:
    assert (
        incremental_alter(broker, 1, BROKER, "", ("log.retention.ms", SET, "60000")).error_code == 0
    )
    (row,) = describe(broker, 4, BROKER, "", synonyms=True).configs
    assert (row.name, row.value, row.config_source) == (
        "log.retention.ms",
        "60000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )
    assert broker.logs.topic("t").config.retention_ms == 1000  # its own override wins
    broker.controller.create_topic("new", 1)
    assert broker.logs.topic("new").config.retention_ms == 60_000
    appended = incremental_alter(broker, 1, BROKER, "", ("log.retention.ms", APPEND, "1"))
    assert appended.error_code == ErrorCode.INVALID_CONFIG
    assert (
        incremental_alter(broker, 1, BROKER, "", ("log.retention.ms", DELETE, None)).error_code == 0
    )
    assert describe(broker, 4, BROKER, "").configs == []
    assert broker.logs.topic("new").config.retention_ms == 604_800_000


def test_configs_survive_a_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 1)
        node = str(broker.node_id)
        assert (
            incremental_alter(broker, 1, TOPIC, "t", ("retention.ms", SET, "123")).error_code == 0
        )
        assert (
            incremental_alter(
                broker, 1, BROKER, node, ("log.segment.bytes", SET, "4096")
            ).error_code
            == 0
        )
    with running_broker(tmp_path, engine="disk") as broker:
        # What broker start-up is to call: the dynamic configs reach the logs at once.
        load_dynamic_broker_configs(broker)
        assert broker.logs.topic("t").config.segment_bytes == 4096
        found = rows(describe(broker, 4, TOPIC, "t"))
        assert (found["retention.ms"].value, found["retention.ms"].config_source) == (
            "123",
            ConfigSource.TOPIC_CONFIG,
        )
        assert found["segment.bytes"].value == "4096"
        assert broker.logs.topic("t").config.segment_bytes == 4096
