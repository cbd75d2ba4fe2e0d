"""Broker configuration: Kafka's ``server.properties`` names, defaults and validation.

Values come, highest precedence first, from ``--set key=value``, the ``--config`` file, the
command-line shorthands (``--host``/``--port``/``--data-dir``), and Kafka's defaults.  The
file format is Java's ``.properties`` (the parser lives with the storage files that use the
same format).  Names we do not know are warned about and kept (DescribeConfigs still shows
them as static broker configs, as Kafka does for unknown keys); a known name with a value
Kafka's validator would refuse is fatal, with the name and the reason.

Topic-level defaults (``log.retention.hours``, ``log.segment.bytes``, ``message.max.bytes``...)
are the broker synonyms of :data:`kafkacompat.storage.config.TOPIC_CONFIGS`; they are
validated here too, and resolved per topic by :class:`kafkacompat.storage.config.LogConfig`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kafkacompat.storage.config import (
    INT_MAX,
    TOPIC_CONFIGS,
    ConfigKey,
    ConfigType,
    InvalidConfigError,
    _scaled_broker_value,
    at_least,
    between,
    one_of,
)
from kafkacompat.storage.files import parse_properties

log = logging.getLogger(__name__)

Validator = Callable[[Any], str | None]


def _none(_: Any) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class BrokerKey:
    """One row of the broker's ConfigDef (``KafkaConfig``)."""

    name: str
    type: ConfigType
    default: str | None
    """As DescribeConfigs reports it; None is Kafka's ``null`` default."""
    validator: Validator = _none
    sensitive: bool = False


_T = ConfigType


def _listeners(value: Any) -> str | None:
    for item in value:
        if _parse_listener(item) is None:
            return f"{item!r} is not of the form NAME://host:port"
    return None


def _key(
    name: str, type_: ConfigType, default: str | None, validator: Validator = _none
) -> BrokerKey:
    return BrokerKey(name, type_, default, validator, sensitive=type_ == _T.PASSWORD)


# The broker settings kafkacompat reads, with Kafka 4.0's defaults.
_OWN_KEYS: Final = (
    _key("node.id", _T.INT, "1", at_least(0)),
    _key("broker.id", _T.INT, "-1"),
    _key("listeners", _T.LIST, "PLAINTEXT://127.0.0.1:9092", _listeners),
    _key("advertised.listeners", _T.LIST, None, _listeners),
    _key("log.dirs", _T.LIST, None),
    _key("log.dir", _T.STRING, "/tmp/kafka-logs"),
    _key("num.partitions", _T.INT, "1", at_least(1)),
    _key("default.replication.factor", _T.INT, "1", at_least(1)),
    _key("auto.create.topics.enable", _T.BOOLEAN, "true"),
    _key("delete.topic.enable", _T.BOOLEAN, "true"),
    _key("log.retention.check.interval.ms", _T.LONG, "300000", at_least(1)),
    _key("log.flush.scheduler.interval.ms", _T.LONG, str(2**63 - 1), at_least(0)),
    _key("log.flush.offset.checkpoint.interval.ms", _T.INT, "60000", at_least(0)),
    _key("log.flush.start.offset.checkpoint.interval.ms", _T.INT, "60000", at_least(0)),
    _key("offsets.topic.num.partitions", _T.INT, "50", at_least(1)),
    _key("offsets.topic.replication.factor", _T.SHORT, "3", at_least(1)),
    _key("offsets.topic.segment.bytes", _T.INT, "104857600", at_least(1)),
    _key("offsets.retention.minutes", _T.INT, "10080", at_least(1)),
    _key("offsets.retention.check.interval.ms", _T.LONG, "600000", at_least(1)),
    _key("offsets.commit.timeout.ms", _T.INT, "5000", at_least(1)),
    _key("group.min.session.timeout.ms", _T.INT, "6000"),
    _key("group.max.session.timeout.ms", _T.INT, "1800000"),
    _key("group.initial.rebalance.delay.ms", _T.INT, "3000"),
    _key("group.max.size", _T.INT, str(INT_MAX), at_least(1)),
    _key("group.consumer.session.timeout.ms", _T.INT, "45000", at_least(1)),
    _key("group.consumer.heartbeat.interval.ms", _T.INT, "5000", at_least(1)),
    _key("transaction.state.log.num.partitions", _T.INT, "50", at_least(1)),
    _key("transaction.state.log.replication.factor", _T.SHORT, "3", at_least(1)),
    _key("transaction.max.timeout.ms", _T.INT, "900000", at_least(1)),
    _key("transactional.id.expiration.ms", _T.INT, "604800000", at_least(1)),
    _key("producer.id.expiration.ms", _T.INT, "86400000", at_least(1)),
    _key("connections.max.idle.ms", _T.LONG, "600000"),
    _key("socket.request.max.bytes", _T.INT, "104857600", at_least(1)),
    _key("socket.send.buffer.bytes", _T.INT, "102400"),
    _key("socket.receive.buffer.bytes", _T.INT, "102400"),
    _key("queued.max.requests", _T.INT, "500", at_least(1)),
    _key("max.connections", _T.INT, str(INT_MAX), at_least(0)),
    _key("replica.fetch.max.bytes", _T.INT, "1048576", at_least(0)),
    _key("fetch.max.bytes", _T.INT, "57671680", at_least(1024)),
    _key("min.insync.replicas", _T.INT, "1", at_least(1)),
    _key("compression.type", _T.STRING, "producer"),
    _key("process.roles", _T.LIST, "broker,controller"),
    _key("controller.quorum.voters", _T.LIST, ""),
    _key("controller.quorum.bootstrap.servers", _T.LIST, ""),
    _key("controller.listener.names", _T.STRING, "CONTROLLER"),
    _key("inter.broker.listener.name", _T.STRING, "PLAINTEXT"),
    _key("listener.security.protocol.map", _T.LIST,
         "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL"),
    _key("num.network.threads", _T.INT, "3", at_least(1)),
    _key("num.io.threads", _T.INT, "8", at_least(1)),
    _key("num.recovery.threads.per.data.dir", _T.INT, "2", at_least(1)),
    _key("broker.rack", _T.STRING, None),
    _key("metadata.log.dir", _T.STRING, None),
    _key("share.coordinator.state.topic.replication.factor", _T.SHORT, "3", at_least(1)),
    _key("share.coordinator.state.topic.min.isr", _T.SHORT, "2", at_least(1)),
    _key("transaction.state.log.min.isr", _T.INT, "2", at_least(1)),
    _key("log.segment.delete.delay.ms", _T.LONG, "60000", at_least(0)),
    _key("log.message.format.version", _T.STRING, "3.0-IV1"),
    _key("auto.leader.rebalance.enable", _T.BOOLEAN, "true"),
    _key("ssl.keystore.password", _T.PASSWORD, None),
    _key("sasl.enabled.mechanisms", _T.LIST, "GSSAPI"),
    _key("request.timeout.ms", _T.INT, "30000", between(0, INT_MAX)),
    _key("log.cleaner.enable", _T.BOOLEAN, "true"),
    _key("log.message.timestamp.type", _T.STRING, "CreateTime",
         one_of("CreateTime", "LogAppendTime")),
)  # fmt: skip


def _synonym_keys() -> dict[str, tuple[BrokerKey, ConfigKey]]:
    """Broker properties that default a topic config, typed after the topic config."""
    found: dict[str, tuple[BrokerKey, ConfigKey]] = {}
    for topic_key in TOPIC_CONFIGS.values():
        for synonym in topic_key.synonyms:
            default = (
                topic_key.broker_default
                if topic_key.broker_default is not None and synonym is topic_key.synonyms[-1]
                else (topic_key.default if synonym.scale == 1 else None)
            )
            found[synonym.name] = (
                BrokerKey(synonym.name, topic_key.type, default, topic_key.validator),
                topic_key,
            )
    return found


_SYNONYMS: Final = _synonym_keys()
BROKER_CONFIGS: Final[Mapping[str, BrokerKey]] = {
    **{name: key for name, (key, _) in _SYNONYMS.items()},
    **{key.name: key for key in _OWN_KEYS},
}

_LISTENER = re.compile(r"^([A-Za-z0-9_]+)://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]*):(\d+)$")


def _parse_listener(text: str) -> tuple[str, str, int] | None:
    match = _LISTENER.match(text.strip())
    if match is None:
        return None
    host = match.group(2)
    if host.startswith("["):
        host = host[1:-1]
    port = int(match.group(3))
    if port > 65535:
        return None
    return match.group(1), host, port


def _parse(key: BrokerKey, raw: str) -> Any:
    text = raw.strip()
    try:
        if key.type in (_T.INT, _T.LONG, _T.SHORT):
            value: Any = int(text)
        elif key.type == _T.DOUBLE:
            value = float(text)
        elif key.type == _T.BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            value = text.lower() == "true"
        elif key.type == _T.LIST:
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


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int


class BrokerConfig:
    """The broker's static configuration: the given properties over Kafka's defaults."""

    def __init__(self, props: Mapping[str, str] | None = None) -> None:
        self.props: dict[str, str] = dict(props or {})
        """Everything given (file, --set and shorthands), as strings: the static broker
        configs that DescribeConfigs reports and topic configs fall back to."""
        self.unknown: list[str] = sorted(name for name in self.props if name not in BROKER_CONFIGS)
        self._values: dict[str, Any] = {}
        for name, raw in self.props.items():
            key = BROKER_CONFIGS.get(name)
            if key is None:
                continue
            self._values[name] = _parse(key, raw)
            if name in _SYNONYMS:
                topic_key = _SYNONYMS[name][1]
                synonym = next(s for s in topic_key.synonyms if s.name == name)
                _scaled_broker_value(topic_key, synonym, raw)
        for name in ("listeners", "advertised.listeners"):
            if name in self._values and not self._values[name]:
                raise InvalidConfigError(f"Invalid value '' for configuration {name}: empty")

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Mapping[str, str] | None = None,
        base: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """``base`` (command-line shorthands) < ``path`` (server.properties) < ``overrides``."""
        props: dict[str, str] = dict(base or {})
        if path is not None:
            file = Path(path)
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidConfigError(
                    f"cannot read config file {file}: {exc.strerror}"
                ) from None
            props.update(parse_properties(file, text))
        props.update(overrides or {})
        return cls(props)

    def get(self, name: str) -> Any:
        """A known setting's value, parsed; Kafka's default when not given."""
        if name in self._values:
            return self._values[name]
        key = BROKER_CONFIGS[name]
        return None if key.default is None else _parse(key, key.default)

    def value_string(self, name: str) -> str | None:
        """As DescribeConfigs shows it: the given text, else the default (None for null)."""
        if name in self.props:
            return self.props[name]
        key = BROKER_CONFIGS.get(name)
        return None if key is None else key.default

    def is_set(self, name: str) -> bool:
        return name in self.props

    # -- the settings the broker itself reads --------------------------------------------------

    @property
    def node_id(self) -> int:
        if "node.id" not in self.props and self.get("broker.id") >= 0:
            return int(self.get("broker.id"))
        return int(self.get("node.id"))

    @property
    def listeners(self) -> list[Listener]:
        return [Listener(*_parse_listener(item) or ("", "", 0)) for item in self.get("listeners")]

    @property
    def advertised_listeners(self) -> list[Listener]:
        """Defaults to the listeners, with a wildcard host replaced as Kafka does (the
        canonical host name there; the loopback address here, the dev-box case)."""
        if self.get("advertised.listeners") is None:
            chosen = self.listeners
        else:
            chosen = [
                Listener(*_parse_listener(item) or ("", "", 0))
                for item in self.get("advertised.listeners")
            ]
        return [
            Listener(item.name, "127.0.0.1" if item.host in ("", "0.0.0.0", "::") else item.host,
                     item.port)
            for item in chosen
        ]  # fmt: skip

    @property
    def log_dir(self) -> Path:
        dirs = self.get("log.dirs")
        if dirs:
            if len(dirs) > 1:
                raise InvalidConfigError(
                    "log.dirs: kafkacompat keeps one data directory; "
                    f"{len(dirs)} were given ({', '.join(dirs)})"
                )
            return Path(dirs[0])
        return Path(self.get("log.dir"))
