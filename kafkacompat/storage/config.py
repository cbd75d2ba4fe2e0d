"""Topic-level log configuration: Kafka's topic config names, defaults, validators and broker synonyms.

Theory of operation. A topic's effective config is resolved per name, highest precedence first:
the topic's own override (``kafka-configs --alter --entity-type topics``), then the broker's
``server.properties`` synonyms in Kafka's order (``log.retention.ms`` beats
``log.retention.minutes`` beats ``log.retention.hours``), then Kafka's built-in default. The
table :data:`TOPIC_CONFIGS` carries everything DescribeConfigs needs to report a value's
source and synonyms, and :meth:`LogConfig.from_props` is the only place values are parsed.

Defaults follow Apache Kafka 3.x/4.0 (``org.apache.kafka.common.config.TopicConfig`` and
``LogConfig``). Where 4.0 changed a default (KIP-1030: ``message.timestamp.after.max.ms`` is
one hour) the 4.0 value is used; ``message.timestamp.difference.max.ms``, removed in 4.0, is
still accepted so 3.x tooling that sets it keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Final, Protocol

from kafkacompat.errors import ErrorCode, KafkaProtocolError

LONG_MAX: Final = 2**63 - 1
INT_MAX: Final = 2**31 - 1
INT_MIN: Final = -(2**31)
LONG_MIN: Final = -(2**63)

CLEANUP_POLICY_DELETE: Final = "delete"
CLEANUP_POLICY_COMPACT: Final = "compact"
CREATE_TIME: Final = "CreateTime"
LOG_APPEND_TIME: Final = "LogAppendTime"
COMPRESSION_TYPES: Final = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")


class InvalidConfigError(KafkaProtocolError):
    """A config name we do not know, or a value Kafka's validator would refuse."""

    error_code = ErrorCode.INVALID_CONFIG


class ConfigType(IntEnum):
    """Kafka's ``ConfigDef.Type`` as DescribeConfigs v3+ numbers it (``DescribeConfigsResponse.ConfigType``)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """Where a value came from, numbered as in DescribeConfigs v1+ (``DescribeConfigsResponse.ConfigSource``)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


Validator = Callable[[Any], str | None]
"""Returns why a parsed value is refused, or None when it is fine."""


def at_least(minimum: float) -> Validator:
    def check(value: Any) -> str | None:
        return None if value >= minimum else f"Value must be at least {minimum}"

    return check


def between(low: float, high: float) -> Validator:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"Value must be between {low} and {high}"

    return check


def one_of(*options: str) -> Validator:
    def check(value: Any) -> str | None:
        return None if value in options else f"String must be one of: {', '.join(options)}"

    return check


def list_of(*options: str) -> Validator:
    def check(value: Any) -> str | None:
        bad = [item for item in value if item not in options]
        return f"Invalid value(s) {bad}; allowed: {', '.join(options)}" if bad else None

    return check


def _any(_: Any) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class BrokerSynonym:
    """A broker property that supplies a topic config's default; ``scale`` converts its unit to the topic's."""

    name: str
    scale: int = 1


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One row of Kafka's topic ConfigDef."""

    name: str
    attribute: str
    type: ConfigType
    default: str
    """Kafka's default, written as DescribeConfigs shows it."""
    validator: Validator = _any
    synonyms: tuple[BrokerSynonym, ...] = ()
    """Broker properties, highest precedence first."""
    broker_default: str | None = None
    """The broker property's own default (e.g. ``log.retention.hours=168``), where it differs
    in unit from ``default``; only for reporting the DEFAULT_CONFIG synonym."""


def _key(
    name: str,
    type_: ConfigType,
    default: str,
    validator: Validator = _any,
    *synonyms: str | BrokerSynonym,
    broker_default: str | None = None,
) -> ConfigKey:
    return ConfigKey(
        name=name,
        attribute=name.replace(".", "_"),
        type=type_,
        default=default,
        validator=validator,
        synonyms=tuple(s if isinstance(s, BrokerSynonym) else BrokerSynonym(s) for s in synonyms),
        broker_default=broker_default,
    )


_T = ConfigType
_HOUR_MS: Final = 3_600_000
_MINUTE_MS: Final = 60_000

# Kafka's TopicConfig list. Validators and synonyms as in LogConfig.java / ServerLogConfigs.
TOPIC_CONFIGS: Final[Mapping[str, ConfigKey]] = {
    key.name: key
    for key in (
        _key("cleanup.policy", _T.LIST, "delete",
             list_of(CLEANUP_POLICY_COMPACT, CLEANUP_POLICY_DELETE), "log.cleanup.policy"),
        _key("compression.type", _T.STRING, "producer", one_of(*COMPRESSION_TYPES),
             "compression.type"),
        _key("compression.gzip.level", _T.INT, "-1",
             lambda v: None if v == -1 or 1 <= v <= 9 else "Value must be -1 or between 1 and 9",
             "compression.gzip.level"),
        _key("compression.lz4.level", _T.INT, "9", between(1, 17), "compression.lz4.level"),
        _key("compression.zstd.level", _T.INT, "3", between(-131072, 22),
             "compression.zstd.level"),
        _key("delete.retention.ms", _T.LONG, "86400000", at_least(0),
             "log.cleaner.delete.retention.ms"),
        _key("file.delete.delay.ms", _T.LONG, "60000", at_least(0),
             "log.segment.delete.delay.ms"),
        _key("flush.messages", _T.LONG, str(LONG_MAX), at_least(1),
             "log.flush.interval.messages"),
        # log.flush.interval.ms is unset by default and then falls back to the scheduler interval.
        _key("flush.ms", _T.LONG, str(LONG_MAX), at_least(0),
             "log.flush.interval.ms", "log.flush.scheduler.interval.ms",
             broker_default=str(LONG_MAX)),
        _key("follower.replication.throttled.replicas", _T.LIST, ""),
        _key("index.interval.bytes", _T.INT, "4096", at_least(0), "log.index.interval.bytes"),
        _key("leader.replication.throttled.replicas", _T.LIST, ""),
        _key("local.retention.bytes", _T.LONG, "-2", at_least(-2),
             "log.local.retention.bytes"),
        _key("local.retention.ms", _T.LONG, "-2", at_least(-2), "log.local.retention.ms"),
        _key("max.compaction.lag.ms", _T.LONG, str(LONG_MAX), at_least(1),
             "log.cleaner.max.compaction.lag.ms"),
        _key("max.message.bytes", _T.INT, "1048588", at_least(0), "message.max.bytes"),
        _key("message.downconversion.enable", _T.BOOLEAN, "true", _any,
             "log.message.downconversion.enable"),
        _key("message.timestamp.after.max.ms", _T.LONG, "3600000", at_least(0),
             "log.message.timestamp.after.max.ms"),
        _key("message.timestamp.before.max.ms", _T.LONG, str(LONG_MAX), at_least(0),
             "log.message.timestamp.before.max.ms"),
        _key("message.timestamp.difference.max.ms", _T.LONG, str(LONG_MAX), at_least(0),
             "log.message.timestamp.difference.max.ms"),
        _key("message.timestamp.type", _T.STRING, CREATE_TIME,
             one_of(CREATE_TIME, LOG_APPEND_TIME), "log.message.timestamp.type"),
        _key("min.cleanable.dirty.ratio", _T.DOUBLE, "0.5", between(0, 1),
             "log.cleaner.min.cleanable.ratio"),
        _key("min.compaction.lag.ms", _T.LONG, "0", at_least(0),
             "log.cleaner.min.compaction.lag.ms"),
        _key("min.insync.replicas", _T.INT, "1", at_least(1), "min.insync.replicas"),
        _key("preallocate", _T.BOOLEAN, "false", _any, "log.preallocate"),
        _key("remote.storage.enable", _T.BOOLEAN, "false"),
        _key("retention.bytes", _T.LONG, "-1", _any, "log.retention.bytes"),
        _key("retention.ms", _T.LONG, "604800000", at_least(-1),
             "log.retention.ms", BrokerSynonym("log.retention.minutes", _MINUTE_MS),
             BrokerSynonym("log.retention.hours", _HOUR_MS), broker_default="168"),
        # Kafka 4.0 raised the floor to 1 MiB (KIP-1030); 14 (a legacy record's overhead) is
        # kept so tests can roll tiny segments.
        _key("segment.bytes", _T.INT, "1073741824", at_least(14), "log.segment.bytes"),
        _key("segment.index.bytes", _T.INT, "10485760", at_least(4),
             "log.index.size.max.bytes"),
        _key("segment.jitter.ms", _T.LONG, "0", at_least(0),
             "log.roll.jitter.ms", BrokerSynonym("log.roll.jitter.hours", _HOUR_MS)),
        _key("segment.ms", _T.LONG, "604800000", at_least(1),
             "log.roll.ms", BrokerSynonym("log.roll.hours", _HOUR_MS), broker_default="168"),
        _key("unclean.leader.election.enable", _T.BOOLEAN, "false", _any,
             "unclean.leader.election.enable"),
    )
}  # fmt: skip

# Kafka's "never" for flush.messages / flush.ms is Long.MAX_VALUE; here it is None.
_NEVER_IS_NONE: Final = frozenset({"flush.messages", "flush.ms"})


class TypedKey(Protocol):
    """What parsing needs of a config key, topic-level or broker-level."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> ConfigType: ...
    @property
    def validator(self) -> Validator: ...


_INT_RANGES: Final = {
    ConfigType.SHORT: (-(2**15), 2**15 - 1),
    ConfigType.INT: (INT_MIN, INT_MAX),
    ConfigType.LONG: (LONG_MIN, LONG_MAX),
}
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def parse_value(key: TypedKey, raw: str) -> Any:
    """Parse and validate one value as Kafka's ConfigDef would; raises InvalidConfigError."""
    text = raw.strip()
    value: Any
    try:
        if key.type in _INT_RANGES:
            # As Integer.parseInt and friends: ASCII digits only, out of range is not a number.
            low, high = _INT_RANGES[key.type]
            if _INTEGER.fullmatch(text) is None or not low <= int(text) <= high:
                raise ValueError(f"Not a number of type {key.type.name} ({low} to {high})")
            value = int(text)
        elif key.type == ConfigType.DOUBLE:
            try:
                value = float(text)
            except ValueError:
                raise ValueError("Not a number of type DOUBLE") from None
        elif key.type == ConfigType.BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise ValueError("Expected value to be either true or false")
            value = text.lower() == "true"
        elif key.type == ConfigType.LIST:
            value = tuple(item.strip() for item in text.split(",") if item.strip())
        else:
            value = text
    except ValueError as exc:
        raise InvalidConfigError(
            f"Invalid value {raw!r} for configuration {key.name}: {exc}"
        ) from None
    problem = key.validator(value)
    if problem is not None:
        raise InvalidConfigError(f"Invalid value {raw!r} for configuration {key.name}: {problem}")
    return value


def _to_attribute(key: ConfigKey, value: Any) -> Any:
    if key.name in _NEVER_IS_NONE and value == LONG_MAX:
        return None
    return value


def _scaled_broker_value(key: ConfigKey, synonym: BrokerSynonym, raw: str) -> str:
    if synonym.scale == 1:
        return raw
    try:
        return str(int(raw.strip()) * synonym.scale)
    except ValueError:
        raise InvalidConfigError(
            f"Invalid value {raw!r} for broker configuration {synonym.name}"
        ) from None


def broker_value(key: ConfigKey, broker_props: Mapping[str, str]) -> tuple[str, str] | None:
    """The (synonym name, value in the topic config's unit) the broker supplies, if any."""
    for synonym in key.synonyms:
        raw = broker_props.get(synonym.name)
        if raw is None:
            continue
        if key.name == "retention.ms" and raw.strip() == "-1":
            return synonym.name, "-1"  # -1 means unlimited in every unit
        return synonym.name, _scaled_broker_value(key, synonym, raw)
    return None


@dataclass(frozen=True, slots=True)
class LogConfig:
    """One topic's effective log config; attributes are Kafka's names with dots as underscores.

    ``LogConfig()`` is Kafka's defaults. ``overrides`` holds the topic-level values as given,
    which is what is persisted and what DescribeConfigs reports as TOPIC_CONFIG.
    """

    cleanup_policy: tuple[str, ...] = (CLEANUP_POLICY_DELETE,)
    compression_type: str = "producer"
    compression_gzip_level: int = -1
    compression_lz4_level: int = 9
    compression_zstd_level: int = 3
    delete_retention_ms: int = 86_400_000
    file_delete_delay_ms: int = 60_000
    flush_messages: int | None = None
    """Fsync after this many messages; None is Kafka's Long.MAX_VALUE: leave it to the OS."""
    flush_ms: int | None = None
    """Fsync when the oldest unflushed message is this old; None means never."""
    follower_replication_throttled_replicas: tuple[str, ...] = ()
    index_interval_bytes: int = 4096
    leader_replication_throttled_replicas: tuple[str, ...] = ()
    local_retention_bytes: int = -2
    local_retention_ms: int = -2
    max_compaction_lag_ms: int = LONG_MAX
    max_message_bytes: int = 1_048_588
    message_downconversion_enable: bool = True
    message_timestamp_after_max_ms: int = 3_600_000
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_difference_max_ms: int = LONG_MAX
    message_timestamp_type: str = CREATE_TIME
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    min_insync_replicas: int = 1
    preallocate: bool = False
    remote_storage_enable: bool = False
    retention_bytes: int = -1
    """Delete old segments while the partition is larger than this; -1 is unlimited."""
    retention_ms: int = 604_800_000
    """Delete segments whose newest timestamp is older than this; -1 is unlimited."""
    segment_bytes: int = 1_073_741_824
    segment_index_bytes: int = 10_485_760
    segment_jitter_ms: int = 0
    segment_ms: int = 604_800_000
    unclean_leader_election_enable: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_props(
        cls,
        topic_overrides: Mapping[str, str] | None = None,
        broker_defaults: Mapping[str, str] | None = None,
    ) -> LogConfig:
        """Resolve every topic config: topic override > broker synonyms > Kafka's default.

        Unknown topic-level names are refused (INVALID_CONFIG, as Kafka's AdminManager does);
        unrelated broker properties are ignored since ``server.properties`` holds many more.
        """
        overrides = dict(topic_overrides or {})
        broker = broker_defaults or {}
        unknown = sorted(name for name in overrides if name not in TOPIC_CONFIGS)
        if unknown:
            raise InvalidConfigError(f"Unknown topic config name: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, key in TOPIC_CONFIGS.items():
            if name in overrides:
                raw = overrides[name]
            else:
                from_broker = broker_value(key, broker)
                raw = from_broker[1] if from_broker is not None else key.default
            values[key.attribute] = _to_attribute(key, parse_value(key, raw))
        return cls(**values, overrides=overrides)

    def to_props(self) -> dict[str, str]:
        """The topic-level overrides, as they were given (what gets persisted)."""
        return dict(self.overrides)

    def value_string(self, name: str) -> str:
        """A config's effective value as DescribeConfigs shows it."""
        key = TOPIC_CONFIGS[name]
        value = getattr(self, key.attribute)
        if value is None:
            return str(LONG_MAX)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)

    @property
    def compact(self) -> bool:
        return CLEANUP_POLICY_COMPACT in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return CLEANUP_POLICY_DELETE in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == LOG_APPEND_TIME


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    name: str
    value: str
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One DescribeConfigs row for a topic."""

    name: str
    value: str
    source: ConfigSource
    type: ConfigType
    synonyms: tuple[ConfigSynonym, ...]
    """Every place a value is set, highest precedence first, as DescribeConfigs v1+ lists them."""


def describe(config: LogConfig, broker_defaults: Mapping[str, str]) -> list[ConfigEntry]:
    """Rows for DescribeConfigs: value, where it came from and the synonyms behind it.

    Broker values are reported as STATIC_BROKER_CONFIG (``server.properties``); dynamic broker
    configs are not kept here.
    """
    entries = []
    for name, key in TOPIC_CONFIGS.items():
        synonyms: list[ConfigSynonym] = []
        if name in config.overrides:
            synonyms.append(ConfigSynonym(name, config.overrides[name], ConfigSource.TOPIC_CONFIG))
        for synonym in key.synonyms:
            if synonym.name in broker_defaults:
                synonyms.append(
                    ConfigSynonym(
                        synonym.name,
                        broker_defaults[synonym.name],
                        ConfigSource.STATIC_BROKER_CONFIG,
                    )
                )
        if key.synonyms:
            first = key.synonyms[0] if key.broker_default is None else key.synonyms[-1]
            default = key.default if key.broker_default is None else key.broker_default
            synonyms.append(ConfigSynonym(first.name, default, ConfigSource.DEFAULT_CONFIG))
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        entries.append(
            ConfigEntry(name, config.value_string(name), source, key.type, tuple(synonyms))
        )
    return entries


def _check_table_matches_dataclass() -> None:
    # Import-time guard: the table and the dataclass must describe the same configs.
    attributes = {f.name for f in fields(LogConfig)} - {"overrides"}
    table = {key.attribute for key in TOPIC_CONFIGS.values()}
    if attributes != table:
        raise AssertionError(f"LogConfig and TOPIC_CONFIGS differ: {attributes ^ table}")


_check_table_matches_dataclass()
