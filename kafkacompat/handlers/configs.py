"""DescribeConfigs (key 32, v0-4), and what AlterConfigs and CreateTopics share with it.

Resources: TOPIC (2) and BROKER (4).  A topic's rows are every topic config with its value,
source and synonyms (Kafka's ``ConfigHelper.createTopicConfigEntry``); a broker's rows, for
resource name = this node's id, every broker config we know plus every property given (Kafka's
``allConfigs``), unknown names sensitive as Kafka treats them; resource name "" describes only
the cluster-wide dynamic defaults (usually none).  The dynamic broker configs themselves are
:mod:`kafkacompat.dynamic_config`; altering them is :mod:`kafkacompat.handlers.alter_configs`.

Not supported: BROKER_LOGGER, CLIENT_METRICS and GROUP resources (INVALID_REQUEST), config
documentation (always null).
"""

from __future__ import annotations

import re
from typing import Final

from kafkacompat.broker import Broker
from kafkacompat.config import BROKER_CONFIGS
from kafkacompat.dynamic_config import (
    DYNAMIC_CONFIGS,
    DynamicBrokerConfigs,
    effective_broker_props,
    load_dynamic_broker_configs,
)
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.metadata.local_controller import validate_topic_name
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.describe_configs_request import DescribeConfigsRequest
from kafkacompat.protocol.messages.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType
from kafkacompat.storage.config import TOPIC_CONFIGS, ConfigSource, ConfigType, LogConfig

TOPIC: Final = 2
BROKER: Final = 4


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
        config = broker.topic_config(name)
        if config is None:
            # Kafka leaves the message at its schema default, the empty string, here.
            raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "")
        return topic_config_rows(broker, config, include_synonyms)
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


def check_config_access(
    ctx: RequestContext, resource_type: int, name: str, operation: AclOperation
) -> None:
    """Kafka's ConfigHelper/ZkAdminManager rule: a topic's configs need the operation on the
    topic, a broker's on the cluster."""
    if resource_type == TOPIC:
        if not ctx.authorize(operation, ResourceType.TOPIC, name):
            raise Refused(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    elif resource_type == BROKER and not ctx.authorize(
        operation, ResourceType.CLUSTER, CLUSTER_NAME
    ):
        raise Refused(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Authorization failed.")


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
            check_config_access(
                ctx, resource.resource_type, resource.resource_name, AclOperation.DESCRIBE_CONFIGS
            )
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


HANDLES: dict[int, Handler] = {
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
}
