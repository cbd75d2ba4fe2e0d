"""Dynamic broker configs (KIP-226, Kafka's ``DynamicBrokerConfig``): loaded at start-up,
validated, persisted, and applied to the broker.

They are kept as Kafka keeps them for a single broker: per-broker (resource name = node id,
DYNAMIC_BROKER_CONFIG) and cluster default (resource name "", DYNAMIC_DEFAULT_BROKER_CONFIG),
validated as ``ConfigAdminManager``/``DynamicBrokerConfig`` validate them (a non-dynamic name,
a bad value: :class:`InvalidDynamicConfigError`, INVALID_REQUEST, KAFKA-13609), persisted in the
data directory (:data:`DYNAMIC_BROKER_CONFIGS`: ``version=0``, then ``cluster.<name>`` and
``node.<name>`` lines), and applied over ``server.properties``.  Only the log configs (the
``log.*`` defaults of topic configs) and the connection quotas (which the socket server hears
through :func:`add_reconfigurable`) change behaviour here; the others are stored and shown.
:func:`load_dynamic_broker_configs` belongs in broker start-up; until it is called there, the
first config or topic request loads them.

The DescribeConfigs/AlterConfigs/IncrementalAlterConfigs handlers
(:mod:`kafkacompat.handlers.configs`, :mod:`kafkacompat.handlers.alter_configs`) read and
update them through this module; the server loads them at start-up.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from kafkacompat.broker import Broker
from kafkacompat.config import BROKER_CONFIGS, BrokerConfig, listener_quota_config
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write
from kafkacompat.storage.config import TOPIC_CONFIGS, InvalidConfigError
from kafkacompat.storage.properties_file import format_properties, read_properties

DYNAMIC_BROKER_CONFIGS: Final = "__kafkacompat_dynamic_broker_configs.properties"
"""Broker configs set with AlterConfigs (Kafka keeps them in its metadata log), in the data
directory."""


class InvalidDynamicConfigError(KafkaProtocolError):
    """A dynamic config update Kafka refuses: its ``ConfigException``, which
    ``ConfigAdminManager`` answers with INVALID_REQUEST (KAFKA-13609)."""

    error_code = ErrorCode.INVALID_REQUEST


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
     "max.connections", "producer.id.expiration.ms", "max.connections.per.ip",
     "max.connections.per.ip.overrides", "max.connection.creation.rate"}
)  # fmt: skip
"""The names in :data:`kafkacompat.config.BROKER_CONFIGS` Kafka can update dynamically; every
other known name is read-only."""

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
Reconfigurable = Callable[[Mapping[str, str]], None]
"""Told the broker's effective properties after each dynamic update (Kafka's
``Reconfigurable.reconfigure``)."""
_RECONFIGURABLES: weakref.WeakKeyDictionary[Broker, list[Reconfigurable]] = (
    weakref.WeakKeyDictionary()
)


def add_reconfigurable(broker: Broker, reconfigurable: Reconfigurable) -> None:
    """Kafka's ``DynamicBrokerConfig.addReconfigurable``: layers above this one (the socket
    server) hear updates without this module knowing them."""
    _RECONFIGURABLES.setdefault(broker, []).append(reconfigurable)


def remove_reconfigurable(broker: Broker, reconfigurable: Reconfigurable) -> None:
    found = _RECONFIGURABLES.get(broker, [])
    if reconfigurable in found:
        found.remove(reconfigurable)


def current_broker_props(broker: Broker) -> dict[str, str]:
    """server.properties with the dynamic configs over it."""
    return effective_broker_props(broker, load_dynamic_broker_configs(broker))


def _read(broker: Broker) -> DynamicBrokerConfigs:
    data_dir = broker.logs.data_dir
    path = None if data_dir is None else data_dir / DYNAMIC_BROKER_CONFIGS
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
    atomic_write(data_dir / DYNAMIC_BROKER_CONFIGS, format_properties(props))


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
            broker.apply_broker_defaults(effective_broker_props(broker, dynamic))
    return dynamic


def _scala_set(names: Iterable[str]) -> str:
    return f"Set({', '.join(sorted(names))})"


def validate_dynamic_configs(props: Mapping[str, str], per_broker: bool) -> None:
    """DynamicBrokerConfig.validateConfigs; ConfigAdminManager turns its ConfigException into
    INVALID_REQUEST (KAFKA-13609)."""
    fixed = [n for n in props if n in BROKER_CONFIGS and n not in DYNAMIC_CONFIGS]
    if fixed:
        raise InvalidDynamicConfigError(
            f"Cannot update these configs dynamically: {_scala_set(fixed)}"
        )
    unprefixed = [n for n in props if n in _LISTENER_ONLY]
    if unprefixed:
        raise InvalidDynamicConfigError(
            "These security configs can be dynamically updated only per-listener using the "
            f"listener prefix: {_scala_set(unprefixed)}"
        )
    try:
        BrokerConfig(
            {n: v for n, v in props.items() if n in BROKER_CONFIGS or listener_quota_config(n)}
        )
        for name, value in props.items():
            _validate_listener_quota(name, value)
    except InvalidConfigError as exc:
        raise InvalidDynamicConfigError(str(exc)) from None
    if not per_broker:
        broker_only = [n for n in props if n in _PER_BROKER]
        if broker_only:
            raise InvalidDynamicConfigError(
                "Cannot update these configs at default cluster level, broker id must be "
                f"specified: {_scala_set(broker_only)}"
            )


def _validate_listener_quota(name: str, value: str) -> None:
    """ListenerConnectionQuota.validateReconfiguration: a listener's quota is above 0."""
    base = listener_quota_config(name)
    if base is None:
        return
    parsed = BrokerConfig({base: value}).get(base)
    if parsed <= 0:
        raise InvalidConfigError(f"Invalid {base} {parsed}")


def check_node_id(broker: Broker, name: str) -> None:
    # ConfigAdminManager.validateResourceNameIsCurrentNodeId
    try:
        node = int(name)
    except ValueError:
        raise InvalidDynamicConfigError(f"Node id must be an integer, but it is: {name}") from None
    if node != broker.node_id:
        raise InvalidDynamicConfigError(
            f"Unexpected broker id, expected {broker.node_id}, but received {name}"
        )


def update_dynamic_broker_configs(
    broker: Broker, name: str, new: dict[str, str], *, validate_only: bool
) -> None:
    """Validate ``new`` as the whole dynamic set of resource ``name``, then make it so."""
    per_broker = name != ""
    if per_broker:
        check_node_id(broker, name)
    validate_dynamic_configs(new, per_broker)
    if validate_only:
        return
    dynamic = load_dynamic_broker_configs(broker)
    if per_broker:
        dynamic.node = new
    else:
        dynamic.cluster = new
    _write(broker, dynamic)
    props = effective_broker_props(broker, dynamic)
    broker.apply_broker_defaults(props)
    for reconfigurable in list(_RECONFIGURABLES.get(broker, ())):
        reconfigurable(props)
