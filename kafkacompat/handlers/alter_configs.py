"""AlterConfigs (key 33, v0-2) and IncrementalAlterConfigs (44, v0-1), for TOPIC (2) and
BROKER (4) resources.

The legacy AlterConfigs replaces a resource's whole set; IncrementalAlterConfigs applies SET,
DELETE, APPEND and SUBTRACT to it.  Each resource is answered on its own and a resource named
twice is refused.  A topic's overrides go to the log manager; a broker's dynamic configs are
validated, persisted and applied by :mod:`kafkacompat.dynamic_config`.

Not supported: BROKER_LOGGER, CLIENT_METRICS and GROUP resources (INVALID_REQUEST).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from kafkacompat.broker import Broker
from kafkacompat.config import BROKER_CONFIGS
from kafkacompat.dynamic_config import (
    InvalidDynamicConfigError,
    check_node_id,
    load_dynamic_broker_configs,
    update_dynamic_broker_configs,
)
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.configs import (
    BROKER,
    STATIC_DEFAULTS,
    TOPIC,
    Refused,
    check_config_access,
)
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.metadata.local_controller import validate_topic_name
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages import alter_configs_request as legacy
from kafkacompat.protocol.messages import incremental_alter_configs_request as incremental
from kafkacompat.protocol.messages.alter_configs_response import (
    AlterConfigsResourceResponse as LegacyResult,
)
from kafkacompat.protocol.messages.alter_configs_response import AlterConfigsResponse
from kafkacompat.protocol.messages.incremental_alter_configs_response import (
    AlterConfigsResourceResponse as IncrementalResult,
)
from kafkacompat.protocol.messages.incremental_alter_configs_response import (
    IncrementalAlterConfigsResponse,
)
from kafkacompat.security.authorizer import AclOperation
from kafkacompat.storage.config import TOPIC_CONFIGS, ConfigType, LogConfig

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
_OP_NAMES: Final = {APPEND: "APPEND", SUBTRACT: "SUBTRACT"}


def _check_node_id(broker: Broker, name: str) -> None:
    try:
        check_node_id(broker, name)
    except InvalidDynamicConfigError as exc:
        raise Refused.of(exc) from None


def _update_broker_configs(
    broker: Broker, name: str, new: dict[str, str], *, validate_only: bool
) -> None:
    try:
        update_dynamic_broker_configs(broker, name, new, validate_only=validate_only)
    except InvalidDynamicConfigError as exc:
        raise Refused.of(exc) from None


def _topic_overrides_check(broker: Broker, name: str, overrides: dict[str, str]) -> None:
    """ControllerConfigurationValidator and ConfigurationControlManager.validateAlterConfig,
    in their order: the name, the values, then whether the topic exists."""
    if name == "":
        raise Refused(ErrorCode.INVALID_REQUEST, "Default topic resources are not allowed.")
    try:
        validate_topic_name(name)
        LogConfig.from_props(overrides, broker.controller.broker_config)
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None
    if broker.metadata.topic(name) is None:
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")


def _set_topic_overrides(
    broker: Broker, name: str, overrides: dict[str, str], *, validate_only: bool
) -> None:
    _topic_overrides_check(broker, name, overrides)
    if not validate_only:
        broker.controller.alter_topic_configs(name, overrides, replace_all=True)


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
        _update_broker_configs(broker, resource.resource_name, new, validate_only=validate_only)
    elif resource.resource_type == TOPIC:
        _set_topic_overrides(broker, resource.resource_name, new, validate_only=validate_only)
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource.resource_type}")


def _alter_each(
    ctx: RequestContext,
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
            check_config_access(
                ctx, resource.resource_type, resource.resource_name, AclOperation.ALTER_CONFIGS
            )
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
        ctx,
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
        _update_broker_configs(broker, name, new, validate_only=validate_only)
    elif resource.resource_type == TOPIC:
        topic = broker.metadata.topic(name)
        overrides = dict(topic.configs) if topic is not None else {}
        new = _apply_ops(overrides, ops, _TOPIC_DEFAULTS, _TOPIC_IS_LIST, for_topic=True)
        _set_topic_overrides(broker, name, new, validate_only=validate_only)
    else:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource.resource_type}")


async def incremental_alter_configs(
    ctx: RequestContext, request: incremental.IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    responses = _alter_each(
        ctx,
        request.resources,
        IncrementalResult,
        lambda resource: _incremental_alter(ctx.broker, resource, request.validate_only),
    )
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=responses)


HANDLES: dict[int, Handler] = {
    ApiKey.ALTER_CONFIGS: alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs,
}
