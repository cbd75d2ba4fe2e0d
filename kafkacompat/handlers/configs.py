"""DescribeConfigs (key 32, v0-4), AlterConfigs (33, v0-2), IncrementalAlterConfigs (44, v0-1).

Resources: TOPIC (2) and BROKER (4).  A topic's rows are every topic config with its value,
source and synonyms (Kafka's ``ConfigHelper.createTopicConfigEntry``); a broker's rows, for
resource name = this node's id, every broker config we know plus every property given (Kafka's
``allConfigs``), unknown names sensitive as Kafka treats them; resource name "" describes only
the cluster-wide dynamic defaults (usually none).

Dynamic broker configs (KIP-226) are kept as Kafka keeps them for a single broker: per-broker
(resource name = node id, DYNAMIC_BROKER_CONFIG) and cluster default (resource name "",
DYNAMIC_DEFAULT_BROKER_CONFIG), validated as ``ConfigAdminManager``/``DynamicBrokerConfig``
validate them (a non-dynamic name, a bad value: INVALID_REQUEST, KAFKA-13609), persisted in
the data directory, and applied over ``server.properties``.  Only the log configs (the
``log.*`` defaults of topic configs) change behaviour here; the others are stored and shown.
:func:`load_dynamic_broker_configs` belongs in broker start-up; until it is called there, the
first config or topic request loads them.

Not supported: BROKER_LOGGER, CLIENT_METRICS and GROUP resources (INVALID_REQUEST), config
documentation (always null).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kafkacompat.broker import Broker
from kafkacompat.config import BROKER_CONFIGS, BrokerConfig
from kafkacompat.dynamic_config import DYNAMIC_BROKER_CONFIGS
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages import alter_configs_request as legacy
from kafkacompat.protocol.messages import incremental_alter_configs_request as incremental
from kafkacompat.protocol.messages.alter_configs_response import (
    AlterConfigsResourceResponse as LegacyResult,
)
from kafkacompat.protocol.messages.alter_configs_response import AlterConfigsResponse
from kafkacompat.protocol.messages.describe_configs_request import DescribeConfigsRequest
from kafkacompat.protocol.messages.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from kafkacompat.protocol.messages.incremental_alter_configs_response import (
    AlterConfigsResourceResponse as IncrementalResult,
)
from kafkacompat.protocol.messages.incremental_alter_configs_response import (
    IncrementalAlterConfigsResponse,
)
from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write
from kafkacompat.storage.config import (
    TOPIC_CONFIGS,
    ConfigSource,
    ConfigType,
    InvalidConfigError,
    LogConfig,
)
from kafkacompat.storage.manager import validate_topic_name
from kafkacompat.storage.properties_file import format_properties, read_properties

TOPIC: Final = 2
BROKER: Final = 4

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
_OP_NAMES: Final = {APPEND: "APPEND", SUBTRACT: "SUBTRACT"}


class Refused(Exception):
    """One resource's (or topic's) error as Kafka reports it; ``message`` None is a null."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def of(cls, exc: KafkaProtocolError) -> Refused:
        return cls(exc.error_code, str(exc))


# -- Kafka's view of broker config names --------------------------------------------------------

# The broker properties that default a topic config (ServerTopicConfigSynonyms): the first
# synonym of each topic config; Kafka lets exactly these change dynamically (DynamicLogConfig).
_LOG_CONFIGS: Final = frozenset(
    key.synonyms[0].name for key in TOPIC_CONFIGS.values() if key.synonyms
)
# Per-broker-only dynamic configs (DynamicListenerConfig and the SSL keystore): not at the
# cluster-default level.
_PER_BROKER: Final = frozenset(
    {"listeners", "advertised.listeners", "listener.security.protocol.map",
     "sasl.enabled.mechanisms", "ssl.keystore.password"}
)  # fmt: skip
# SslConfigs.RECONFIGURABLE_CONFIGS change only per listener (listener.name.<l>.ssl...).
_LISTENER_ONLY: Final = frozenset(
    {"ssl.keystore.type", "ssl.keystore.location", "ssl.keystore.password", "ssl.key.password",
     "ssl.truststore.type", "ssl.truststore.location", "ssl.truststore.password",
     "ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.truststore.certificates"}
)  # fmt: skip
DYNAMIC_CONFIGS: Final = _LOG_CONFIGS | _PER_BROKER | frozenset(
    {"num.network.threads", "num.io.threads", "num.recovery.threads.per.data.dir",
     "max.connections", "producer.id.expiration.ms"}
)  # fmt: skip
"""The names in :data:`kafkacompat.config.BROKER_CONFIGS` Kafka can update dynamically; every
other known name is read-only."""

# Kafka's brokerConfigSynonyms: names that set one value in different units, highest first.
_UNIT_GROUPS: Final = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)
_LISTENER_PREFIXED: Final = re.compile(r"listener\.name\.[^.]*\.(.*)")


def broker_synonyms(name: str) -> list[str]:
    for group in _UNIT_GROUPS:
        if name in group:
            return list(group)
    if name == "log.flush.interval.ms":  # its default is the scheduler interval
        return ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]
    match = _LISTENER_PREFIXED.fullmatch(name)
    if match:
        return [name, match.group(1)]
    return [name]


def _static_defaults() -> dict[str, str]:
    """KafkaConfig's defaults as DescribeConfigs reports them (nulls left out).  Where a value
    has several unit synonyms only the coarsest has a default in Kafka (log.retention.hours=168,
    log.retention.ms unset)."""
    defaults = {
        name: key.default for name, key in BROKER_CONFIGS.items() if key.default is not None
    }
    for topic_key in TOPIC_CONFIGS.values():
        if len(topic_key.synonyms) < 2:
            continue
        *finer, coarsest = topic_key.synonyms
        for synonym in finer:
            defaults.pop(synonym.name, None)
        if topic_key.broker_default is not None:
            defaults[coarsest.name] = topic_key.broker_default
        else:
            defaults[coarsest.name] = str(int(topic_key.default) // coarsest.scale)
    return defaults


STATIC_DEFAULTS: Final = _static_defaults()


def _sensitive(name: str) -> bool:
    # KafkaConfig.maybeSensitive: a name whose type is unknown might hold a secret.
    key = BROKER_CONFIGS.get(name)
    if key is None:
        match = _LISTENER_PREFIXED.fullmatch(name)
        key = BROKER_CONFIGS.get(match.group(1)) if match else None
    return key is None or key.type == ConfigType.PASSWORD


def _broker_type(name: str) -> int:
    key = BROKER_CONFIGS.get(name)
    return int(key.type) if key is not None else int(ConfigType.UNKNOWN)


# -- dynamic broker configs ---------------------------------------------------------------------

_DYNAMIC_FILE: Final = DYNAMIC_BROKER_CONFIGS
_FILE_VERSION: Final = "0"
_CLUSTER_PREFIX: Final = "cluster."
_NODE_PREFIX: Final = "node."


@dataclass(slots=True)
class DynamicBrokerConfigs:
    cluster: dict[str, str] = field(default_factory=dict)
    """Resource name "": DYNAMIC_DEFAULT_BROKER_CONFIG."""
    node: dict[str, str] = field(default_factory=dict)
    """Resource name = this node's id: DYNAMIC_BROKER_CONFIG."""


_LOADED: weakref.WeakKeyDictionary[Broker, DynamicBrokerConfigs] = weakref.WeakKeyDictionary()


def _read(broker: Broker) -> DynamicBrokerConfigs:
    data_dir = broker.logs.data_dir
    path = None if data_dir is None else data_dir / _DYNAMIC_FILE
    if path is None or not path.exists():
        return DynamicBrokerConfigs()
    props = read_properties(path)
    if props.get("version") != _FILE_VERSION:
        raise CorruptFileError(path, f"unsupported version {props.get('version')!r}")
    found = DynamicBrokerConfigs()
    for key, value in props.items():
        if key.startswith(_CLUSTER_PREFIX):
            found.cluster[key[len(_CLUSTER_PREFIX) :]] = value
        elif key.startswith(_NODE_PREFIX):
            found.node[key[len(_NODE_PREFIX) :]] = value
    return found


def _write(broker: Broker, dynamic: DynamicBrokerConfigs) -> None:
    data_dir = broker.logs.data_dir
    if data_dir is None:
        return
    props = {"version": _FILE_VERSION}
    props.update({_CLUSTER_PREFIX + k: v for k, v in sorted(dynamic.cluster.items())})
    props.update({_NODE_PREFIX + k: v for k, v in sorted(dynamic.node.items())})
    data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(data_dir / _DYNAMIC_FILE, format_properties(props))


def effective_broker_props(broker: Broker, dynamic: DynamicBrokerConfigs) -> dict[str, str]:
    """Kafka's precedence: per-broker dynamic > cluster dynamic > server.properties."""
    return {**broker.config.props, **dynamic.cluster, **dynamic.node}


def load_dynamic_broker_configs(broker: Broker) -> DynamicBrokerConfigs:
    """The broker's dynamic configs, read from its data directory and applied to every topic's
    log config the first time; later calls return what is loaded."""
    dynamic = _LOADED.get(broker)
    if dynamic is None:
        dynamic = _read(broker)
        _LOADED[broker] = dynamic
        if dynamic.cluster or dynamic.node:
            broker.logs.with_broker_config(effective_broker_props(broker, dynamic))
    return dynamic


def _scala_set(names: Iterable[str]) -> str:
    return f"Set({', '.join(sorted(names))})"


def _validate_dynamic(props: Mapping[str, str], per_broker: bool) -> None:
    """DynamicBrokerConfig.validateConfigs; ConfigAdminManager turns its ConfigException into
    INVALID_REQUEST (KAFKA-13609)."""
    fixed = [n for n in props if n in BROKER_CONFIGS and n not in DYNAMIC_CONFIGS]
    if fixed:
        raise Refused(
            ErrorCode.INVALID_REQUEST,
            f"Cannot update these configs dynamically: {_scala_set(fixed)}",
        )
    unprefixed = [n for n in props if n in _LISTENER_ONLY]
    if unprefixed:
        raise Refused(
            ErrorCode.INVALID_REQUEST,
            "These security configs can be dynamically updated only per-listener using the "
            f"listener prefix: {_scala_set(unprefixed)}",
        )
    try:
        BrokerConfig({n: v for n, v in props.items() if n in BROKER_CONFIGS})
    except InvalidConfigError as exc:
        raise Refused(ErrorCode.INVALID_REQUEST, str(exc)) from None
    if not per_broker:
        broker_only = [n for n in props if n in _PER_BROKER]
        if broker_only:
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                "Cannot update these configs at default cluster level, broker id must be "
                f"specified: {_scala_set(broker_only)}",
            )


def _check_node_id(broker: Broker, name: str) -> None:
    # ConfigAdminManager.validateResourceNameIsCurrentNodeId
    try:
        node = int(name)
    except ValueError:
        raise Refused(
            ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}"
        ) from None
    if node != broker.node_id:
        raise Refused(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {broker.node_id}, but received {name}",
        )


def _store_broker_configs(
    broker: Broker, name: str, new: dict[str, str], *, validate_only: bool
) -> None:
    """Validate ``new`` as the whole dynamic set of resource ``name``, then make it so."""
    per_broker = name != ""
    if per_broker:
        _check_node_id(broker, name)
    _validate_dynamic(new, per_broker)
    if validate_only:
        return
    dynamic = load_dynamic_broker_configs(broker)
    if per_broker:
        dynamic.node = new
    else:
        dynamic.cluster = new
    _write(broker, dynamic)
    broker.logs.with_broker_config(effective_broker_props(broker, dynamic))


# -- describing ---------------------------------------------------------------------------------


def _synonyms(
    broker: Broker,
    dynamic: DynamicBrokerConfigs,
    name: str,
    names: list[str],
    sensitive: bool,
    *,
    drop_leading: bool = True,
) -> list[DescribeConfigsSynonym]:
    """ConfigHelper.configSynonyms: every place one of ``names`` is set, by source precedence,
    dropping those ahead of ``name`` itself.  Kafka drops them even when ``name`` is set
    nowhere, so a topic's retention.ms lists no synonyms unless log.retention.ms is set."""
    found = []
    for values, source in (
        (dynamic.node, ConfigSource.DYNAMIC_BROKER_CONFIG),
        (dynamic.cluster, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
        (broker.config.props, ConfigSource.STATIC_BROKER_CONFIG),
        (STATIC_DEFAULTS, ConfigSource.DEFAULT_CONFIG),
    ):
        for synonym in names:
            if synonym in values:
                value = None if sensitive else values[synonym]
                found.append(DescribeConfigsSynonym(name=synonym, value=value, source=source))
    while drop_leading and found and found[0].name != name:
        found.pop(0)
    return found


def topic_config_rows(
    broker: Broker, config: LogConfig, include_synonyms: bool = True, *, for_create: bool = False
) -> list[DescribeConfigsResourceResult]:
    """Every topic config of ``config``, sorted by name, as ConfigHelper reports them, or with
    ``for_create`` as CreateTopics v5+ lists them: there the controller's
    KafkaConfigSchema.resolveEffectiveTopicConfig names the first source that sets any unit
    synonym (log.retention.hours in server.properties: STATIC_BROKER_CONFIG)."""
    dynamic = load_dynamic_broker_configs(broker)
    rows = []
    for name in sorted(TOPIC_CONFIGS):
        key = TOPIC_CONFIGS[name]
        value = config.value_string(name)
        synonyms: list[DescribeConfigsSynonym] = []
        if name in config.overrides:
            synonyms.append(
                DescribeConfigsSynonym(name=name, value=value, source=ConfigSource.TOPIC_CONFIG)
            )
        if key.synonyms:
            first = key.synonyms[0].name
            synonyms += _synonyms(
                broker, dynamic, first, broker_synonyms(first), False, drop_leading=not for_create
            )
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        rows.append(
            DescribeConfigsResourceResult(
                name=name,
                value=value,
                read_only=False,
                is_default=source == ConfigSource.DEFAULT_CONFIG,
                config_source=source,
                is_sensitive=False,
                synonyms=synonyms if include_synonyms else [],
                config_type=int(key.type),
                documentation=None,
            )
        )
    return rows


def _broker_rows(
    broker: Broker, dynamic: DynamicBrokerConfigs, per_broker: bool, include_synonyms: bool
) -> list[DescribeConfigsResourceResult]:
    if per_broker:
        effective = effective_broker_props(broker, dynamic)
        names = set(BROKER_CONFIGS) | set(effective)
    else:
        effective = dict(dynamic.cluster)
        names = set(effective)
    rows = []
    for name in sorted(names):
        sensitive = _sensitive(name)
        value = effective.get(name, STATIC_DEFAULTS.get(name))
        synonyms = _synonyms(broker, dynamic, name, broker_synonyms(name), sensitive)
        if not per_broker:
            synonyms = [
                s for s in synonyms if s.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
            ]
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        rows.append(
            DescribeConfigsResourceResult(
                name=name,
                value=None if sensitive else value,
                read_only=name not in DYNAMIC_CONFIGS,
                is_default=source == ConfigSource.DEFAULT_CONFIG,
                config_source=source,
                is_sensitive=sensitive,
                synonyms=synonyms if include_synonyms else [],
                config_type=_broker_type(name),
                documentation=None,
            )
        )
    return rows


def _describe_one(
    broker: Broker, resource_type: int, name: str, include_synonyms: bool
) -> list[DescribeConfigsResourceResult]:
    dynamic = load_dynamic_broker_configs(broker)
    if resource_type == TOPIC:
        try:
            validate_topic_name(name)
        except KafkaProtocolError as exc:
            raise Refused.of(exc) from None
        topic = broker.logs.topics().get(name)
        if topic is None:
            # Kafka leaves the message at its schema default, the empty string, here.
            raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "")
        return topic_config_rows(broker, topic.config, include_synonyms)
    if resource_type == BROKER:
        if name == "":
            return _broker_rows(broker, dynamic, False, include_synonyms)
        try:
            node = int(name)
        except ValueError:
            raise Refused(
                ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {name}"
            ) from None
        if node != broker.node_id:
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {broker.node_id} or empty string, "
                f"but received {name}",
            )
        return _broker_rows(broker, dynamic, True, include_synonyms)
    raise Refused(ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {resource_type}")


async def describe_configs(
    ctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    include_synonyms = ctx.api_version >= 1 and request.include_synonyms
    results = []
    for resource in request.resources:
        result = DescribeConfigsResult(
            error_code=ErrorCode.NONE,
            error_message="",  # never set on success: the schema default
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            rows = _describe_one(
                ctx.broker, resource.resource_type, resource.resource_name, include_synonyms
            )
        except Refused as refusal:
            result.error_code, result.error_message = refusal.code, refusal.message
        else:
            wanted = resource.configuration_keys
            result.configs = [r for r in rows if not wanted or r.name in wanted]
        results.append(result)
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


# -- altering -----------------------------------------------------------------------------------


def _topic_overrides_check(broker: Broker, name: str, overrides: dict[str, str]) -> None:
    """ControllerConfigurationValidator and ConfigurationControlManager.validateAlterConfig,
    in their order: the name, the values, then whether the topic exists."""
    if name == "":
        raise Refused(ErrorCode.INVALID_REQUEST, "Default topic resources are not allowed.")
    try:
        validate_topic_name(name)
        LogConfig.from_props(overrides, broker.logs.broker_config)
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None
    if name not in broker.logs.topics():
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")


def _set_topic_overrides(
    broker: Broker, name: str, overrides: dict[str, str], *, validate_only: bool
) -> None:
    _topic_overrides_check(broker, name, overrides)
    if not validate_only:
        broker.logs.alter_topic_config(name, overrides, replace_all=True)


def _duplicate_resources(resources: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    seen: set[tuple[int, str]] = set()
    duplicates = set()
    for key in resources:
        if key in seen:
            duplicates.add(key)
        seen.add(key)
    return duplicates


def _check_entries(names: list[str], null_values: list[str]) -> None:
    if len(set(names)) != len(names):
        raise Refused(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    if null_values:
        raise Refused(
            ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(null_values)
        )


def _legacy_alter(
    broker: Broker, resource: legacy.AlterConfigsResource, validate_only: bool
) -> None:
    _check_entries(
        [c.name for c in resource.configs], [c.name for c in resource.configs if c.value is None]
    )
    new = {c.name: c.value for c in resource.configs if c.value is not None}
    if resource.resource_type == BROKER:
        _store_broker_configs(broker, resource.resource_name, new, validate_only=validate_only)
    elif resource.resource_type == TOPIC:
        _set_topic_overrides(broker, resource.resource_name, new, validate_only=validate_only)
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource.resource_type}")


def _alter_each(
    resources: Sequence[Any],
    result_class: Callable[..., Any],
    alter_one: Callable[[Any], None],
) -> list[Any]:
    """Both AlterConfigs flavours: each resource answered on its own, duplicates refused."""
    duplicates = _duplicate_resources((r.resource_type, r.resource_name) for r in resources)
    responses = []
    for resource in resources:
        result = result_class(
            error_code=ErrorCode.NONE,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            if (resource.resource_type, resource.resource_name) in duplicates:
                raise Refused(ErrorCode.INVALID_REQUEST, "Each resource must appear at most once.")
            alter_one(resource)
        except Refused as refusal:
            result.error_code, result.error_message = refusal.code, refusal.message
        responses.append(result)
    return responses


async def alter_configs(
    ctx: RequestContext, request: legacy.AlterConfigsRequest
) -> AlterConfigsResponse:
    """The legacy AlterConfigs: the given configs replace the resource's whole set."""
    load_dynamic_broker_configs(ctx.broker)
    responses = _alter_each(
        request.resources,
        LegacyResult,
        lambda resource: _legacy_alter(ctx.broker, resource, request.validate_only),
    )
    return AlterConfigsResponse(throttle_time_ms=0, responses=responses)


def _split(value: str | None) -> list[str]:
    return [part for part in (value or "").split(",") if part]


def _apply_ops(
    current: Mapping[str, str],
    ops: list[incremental.AlterableConfig],
    default_of: Mapping[str, str],
    is_list: Mapping[str, bool],
    *,
    for_topic: bool,
) -> dict[str, str]:
    """SET, DELETE, APPEND and SUBTRACT over ``current`` (ConfigurationControlManager for a
    topic, ConfigAdminManager.prepareIncrementalConfigs for a broker: their messages differ)."""
    new = dict(current)
    for op in ops:
        name, kind, value = op.name, op.config_operation, op.value
        if kind == SET:
            assert value is not None
            new[name] = value
        elif kind == DELETE:
            new.pop(name, None)
        elif kind in (APPEND, SUBTRACT):
            if not is_list.get(name, False):
                if for_topic:
                    message = f"Can't {_OP_NAMES[kind]} to key {name} because its type is not LIST."
                elif name not in is_list:
                    message = f"Unknown config name: {name}"
                else:
                    verb = "append" if kind == APPEND else "subtract"
                    message = f"Config value {verb} is not allowed for config key: {name}"
                raise Refused(ErrorCode.INVALID_CONFIG, message)
            parts = _split(new[name] if name in new else default_of.get(name))
            assert value is not None
            if kind == APPEND:
                parts += [item for item in value.split(",") if item not in parts]
            else:
                parts = [item for item in parts if item not in value.split(",")]
            new[name] = ",".join(parts)
        else:
            raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown operations type {kind}")
    return new


_TOPIC_DEFAULTS: Final = {name: key.default for name, key in TOPIC_CONFIGS.items()}
_TOPIC_IS_LIST: Final = {name: key.type == ConfigType.LIST for name, key in TOPIC_CONFIGS.items()}
_BROKER_IS_LIST: Final = {name: key.type == ConfigType.LIST for name, key in BROKER_CONFIGS.items()}


def _incremental_alter(
    broker: Broker, resource: incremental.AlterConfigsResource, validate_only: bool
) -> None:
    ops = resource.configs
    _check_entries(
        [c.name for c in ops],
        [c.name for c in ops if c.config_operation != DELETE and c.value is None],
    )
    name = resource.resource_name
    if resource.resource_type == BROKER:
        dynamic = load_dynamic_broker_configs(broker)
        if name != "":
            _check_node_id(broker, name)
        current = dynamic.node if name != "" else dynamic.cluster
        new = _apply_ops(current, ops, STATIC_DEFAULTS, _BROKER_IS_LIST, for_topic=False)
        _store_broker_configs(broker, name, new, validate_only=validate_only)
    elif resource.resource_type == TOPIC:
        topic = broker.logs.topics().get(name)
        overrides = topic.config.overrides if topic is not None else {}
        new = _apply_ops(overrides, ops, _TOPIC_DEFAULTS, _TOPIC_IS_LIST, for_topic=True)
        _set_topic_overrides(broker, name, new, validate_only=validate_only)
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource.resource_type}")


async def incremental_alter_configs(
    ctx: RequestContext, request: incremental.IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    responses = _alter_each(
        request.resources,
        IncrementalResult,
        lambda resource: _incremental_alter(ctx.broker, resource, request.validate_only),
    )
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=responses)


HANDLES: dict[int, Handler] = {
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
    ApiKey.ALTER_CONFIGS: alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs,
}
