"""LogConfig: Kafka's defaults, validation and broker-synonym precedence."""

from __future__ import annotations

from dataclasses import fields

import pytest

from kafkacompat.errors import ErrorCode
from kafkacompat.storage.config import (
    LONG_MAX,
    TOPIC_CONFIGS,
    ConfigSource,
    InvalidConfigError,
    LogConfig,
    describe,
)


def test_defaults_are_kafkas() -> None:
    config = LogConfig()
    assert config.segment_bytes == 1073741824
    assert config.segment_ms == 604800000
    assert config.segment_index_bytes == 10485760
    assert config.index_interval_bytes == 4096
    assert config.retention_ms == 604800000
    assert config.retention_bytes == -1
    assert config.message_timestamp_type == "CreateTime"
    assert config.flush_messages is None
    assert config.flush_ms is None
    assert config.max_message_bytes == 1048588
    assert config.cleanup_policy == ("delete",)
    assert config.min_insync_replicas == 1
    assert config.compression_type == "producer"
    assert config.file_delete_delay_ms == 60000


def test_table_defaults_parse_to_dataclass_defaults() -> None:
    assert LogConfig.from_props({}, {}) == LogConfig()
    assert {k.attribute for k in TOPIC_CONFIGS.values()} == {f.name for f in fields(LogConfig)} - {
        "overrides"
    }


def test_overrides_are_parsed_and_kept() -> None:
    config = LogConfig.from_props(
        {"retention.ms": "1000", "cleanup.policy": "compact, delete", "flush.messages": "10"}, {}
    )
    assert config.retention_ms == 1000
    assert config.cleanup_policy == ("compact", "delete")
    assert config.compact and config.delete
    assert config.flush_messages == 10
    assert config.to_props() == {
        "retention.ms": "1000",
        "cleanup.policy": "compact, delete",
        "flush.messages": "10",
    }


def test_long_max_means_never() -> None:
    config = LogConfig.from_props({"flush.ms": str(LONG_MAX)}, {})
    assert config.flush_ms is None
    assert config.value_string("flush.ms") == str(LONG_MAX)


@pytest.mark.parametrize(
    "props",
    [
        {"no.such.config": "1"},
        {"retention.ms": "-2"},
        {"retention.ms": "soon"},
        {"segment.bytes": "13"},
        {"segment.bytes": str(2**31)},
        {"message.timestamp.type": "WallClock"},
        {"cleanup.policy": "delete,shred"},
        {"min.cleanable.dirty.ratio": "1.5"},
        {"preallocate": "yes"},
        {"compression.type": "brotli"},
        {"min.insync.replicas": "0"},
    ],
)
def test_invalid_values_are_invalid_config(props: dict[str, str]) -> None:
    with pytest.raises(InvalidConfigError) as info:
        LogConfig.from_props(props, {})
    assert info.value.error_code == ErrorCode.INVALID_CONFIG
    assert next(iter(props)) in str(info.value)


def test_broker_retention_precedence_ms_over_minutes_over_hours() -> None:
    hours = {"log.retention.hours": "2"}
    assert LogConfig.from_props({}, hours).retention_ms == 7_200_000
    minutes = {**hours, "log.retention.minutes": "3"}
    assert LogConfig.from_props({}, minutes).retention_ms == 180_000
    ms = {**minutes, "log.retention.ms": "42"}
    assert LogConfig.from_props({}, ms).retention_ms == 42
    assert LogConfig.from_props({"retention.ms": "7"}, ms).retention_ms == 7
    assert LogConfig.from_props({}, {"log.retention.hours": "-1"}).retention_ms == -1


def test_broker_roll_precedence_and_other_synonyms() -> None:
    assert LogConfig.from_props({}, {"log.roll.hours": "1"}).segment_ms == 3_600_000
    assert LogConfig.from_props({}, {"log.roll.hours": "1", "log.roll.ms": "5"}).segment_ms == 5
    broker = {
        "log.segment.bytes": "1024",
        "log.index.interval.bytes": "100",
        "log.flush.interval.messages": "3",
        "log.flush.interval.ms": "50",
        "message.max.bytes": "2000",
        "log.message.timestamp.type": "LogAppendTime",
        "log.cleanup.policy": "compact",
        "unrelated.broker.setting": "x",
    }
    config = LogConfig.from_props({}, broker)
    assert config.segment_bytes == 1024
    assert config.index_interval_bytes == 100
    assert config.flush_messages == 3
    assert config.flush_ms == 50
    assert config.max_message_bytes == 2000
    assert config.log_append_time
    assert config.cleanup_policy == ("compact",)
    assert config.to_props() == {}


def test_bad_broker_value_is_refused() -> None:
    with pytest.raises(InvalidConfigError):
        LogConfig.from_props({}, {"log.retention.hours": "a week"})


def test_describe_reports_source_and_synonyms() -> None:
    broker = {"log.retention.hours": "24"}
    config = LogConfig.from_props({"segment.bytes": "2048"}, broker)
    rows = {entry.name: entry for entry in describe(config, broker)}
    assert rows["segment.bytes"].source == ConfigSource.TOPIC_CONFIG
    assert rows["segment.bytes"].value == "2048"
    retention = rows["retention.ms"]
    assert retention.source == ConfigSource.STATIC_BROKER_CONFIG
    assert retention.value == str(24 * 3_600_000)
    assert [s.name for s in retention.synonyms] == ["log.retention.hours", "log.retention.hours"]
    assert retention.synonyms[-1].value == "168"
    assert rows["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG
    assert rows["cleanup.policy"].value == "delete"
