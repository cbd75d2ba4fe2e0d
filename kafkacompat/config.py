"""Broker configuration: Kafka's ``server.properties`` names, defaults and validation.

Values come, highest precedence first, from ``--set key=value``, the command-line shorthands
(``--host``/``--port``/``--data-dir``), the ``--config`` file, and Kafka's defaults.  The file
is read as ``java.util.Properties.load`` reads it (what Kafka's ``Utils.loadProps`` calls):
``#``/``!`` comments, ``=``, ``:`` or whitespace between key and value, backslash escapes
including ``\\uXXXX``, and lines continued by a trailing backslash.  Names we do not know are
warned about and kept (DescribeConfigs still shows them as static broker configs, as Kafka
does for unknown keys); a known name with a value Kafka's validator would refuse is fatal,
with the name and the reason.

Listeners follow KRaft's rules: those named in ``controller.listener.names`` belong to the
controller and are neither bound nor advertised here; every other one must map to PLAINTEXT
in ``listener.security.protocol.map`` (no TLS or SASL here, and serving plaintext on a port
a client expects TLS on would only confuse it).  ``node.id`` and ``broker.id`` are synonyms
and must agree when both are given.

Topic-level defaults (``log.retention.hours``, ``log.segment.bytes``, ``message.max.bytes``...)
are the broker synonyms of :data:`kafkacompat.storage.config.TOPIC_CONFIGS`; they are
validated here too, and resolved per topic by :class:`kafkacompat.storage.config.LogConfig`.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
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
    parse_value,
)

log = logging.getLogger(__name__)

Validator = Callable[[Any], str | None]

WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})
"""Listener hosts that bind every interface and so name no host a client could be sent to."""


def advertised_host(host: str) -> str:
    """``host`` as a client should be told it: a wildcard becomes the canonical host name."""
    return canonical_host_name() if host in WILDCARD_HOSTS else host


@functools.cache
def canonical_host_name() -> str:
    """What a listener bound to every interface advertises: Kafka's
    ``InetAddress.getLocalHost().getCanonicalHostName()`` (``withWildcardHostnamesResolved``),
    ``socket.getfqdn()`` here.  Once per process: it may ask DNS."""
    name = socket.getfqdn()
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        log.warning(
            "the canonical host name %r advertised for a wildcard listener does not resolve "
            "here; set advertised.listeners to a name clients can reach",
            name,
        )
    return name


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
        if parse_listener(item) is None:
            return (
                f"{item!r} is not of the form NAME://host:port with a port from 0 to 65535 "
                "(an IPv6 address goes in brackets: PLAINTEXT://[::1]:9092)"
            )
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
    _key("transaction.state.log.segment.bytes", _T.INT, "104857600", at_least(1)),
    _key("transaction.abort.timed.out.transaction.cleanup.interval.ms", _T.INT, "10000",
         at_least(1)),
    _key("transaction.remove.expired.transaction.cleanup.interval.ms", _T.INT, "3600000",
         at_least(1)),
    _key("transaction.partition.verification.enable", _T.BOOLEAN, "true"),
    _key("producer.id.expiration.ms", _T.INT, "86400000", at_least(1)),
    _key("connections.max.idle.ms", _T.LONG, "600000"),
    _key("socket.request.max.bytes", _T.INT, "104857600", at_least(1)),
    _key("socket.send.buffer.bytes", _T.INT, "102400"),
    _key("socket.receive.buffer.bytes", _T.INT, "102400"),
    _key("queued.max.requests", _T.INT, "500", at_least(1)),
    _key("queued.max.request.bytes", _T.LONG, "-1"),
    _key("max.connections", _T.INT, str(INT_MAX), at_least(0)),
    _key("max.connections.per.ip", _T.INT, str(INT_MAX), at_least(0)),
    _key("max.connections.per.ip.overrides", _T.STRING, "",
         lambda value: _ip_overrides(value)[1]),
    _key("max.connection.creation.rate", _T.INT, str(INT_MAX), at_least(0)),
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
         "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
         lambda value: _protocol_map(value)[1]),
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
    _key("log.cleaner.backoff.ms", _T.LONG, "15000", at_least(0)),
    _key("log.cleaner.dedupe.buffer.size", _T.LONG, "134217728", at_least(1)),
    _key("log.cleaner.io.buffer.load.factor", _T.DOUBLE, "0.9"),
    _key("log.cleaner.io.buffer.size", _T.INT, "524288", at_least(0)),
    _key("log.cleaner.io.max.bytes.per.second", _T.DOUBLE, "1.7976931348623157E308"),
    _key("log.cleaner.threads", _T.INT, "1", at_least(0)),
    _key("log.message.timestamp.type", _T.STRING, "CreateTime",
         one_of("CreateTime", "LogAppendTime")),
)  # fmt: skip


# Kafka leaves the finer units unset (null) so that the coarser one with a default applies:
# log.retention.hours=168 and log.roll.hours=168 unless the .ms/.minutes forms are given.
_SYNONYM_DEFAULTS: Final[Mapping[str, str | None]] = {
    "log.retention.ms": None,
    "log.retention.minutes": None,
    "log.roll.ms": None,
    "log.roll.jitter.ms": None,
    "log.roll.jitter.hours": "0",
    "log.flush.interval.ms": None,
}


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
            default = _SYNONYM_DEFAULTS.get(synonym.name, default)
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


def parse_listener(text: str) -> tuple[str, str, int] | None:
    """``NAME://host:port`` as (name, host without brackets, port), or None if malformed."""
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


_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def _protocol_map(value: Any) -> tuple[dict[str, str], str | None]:
    """``listener.security.protocol.map`` as {LISTENER NAME: PROTOCOL}, or why it is invalid."""
    found: dict[str, str] = {}
    for item in value:
        name, sep, protocol = item.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name or protocol not in _SECURITY_PROTOCOLS:
            return found, (
                f"{item!r} is not of the form NAME:PROTOCOL with PROTOCOL one of "
                + ", ".join(_SECURITY_PROTOCOLS)
            )
        found[name] = protocol
    return found, None


_VALID_HOST: Final = re.compile(r"[0-9a-zA-Z\-%._:]*")  # Kafka's Utils.validHostPattern
_COUNT: Final = re.compile(r"[+-]?[0-9]+")  # Integer.parseInt's


def _ip_overrides(value: str) -> tuple[dict[str, int], str | None]:
    """``max.connections.per.ip.overrides`` (``host:n,host:n``, split at each item's last
    colon as Kafka's Csv.parseCsvMap does, so IPv6 addresses work) as {host: n}, or why not."""
    found: dict[str, int] = {}
    for item in re.split(r"\s*,\s*", value) if value else ():
        host, sep, count = item.rpartition(":")
        host, count = host.strip(), count.strip()
        if not sep or _COUNT.fullmatch(count) is None or not -(2**31) <= int(count) < 2**31:
            return found, (
                "Error parsing configuration property 'max.connections.per.ip.overrides': "
                f"{item!r} is not of the form host:count"
            )
        found[host] = int(count)
    invalid = [host for host in found if _VALID_HOST.fullmatch(host) is None]
    if invalid:
        return found, (
            "max.connections.per.ip.overrides contains invalid addresses : " + ",".join(invalid)
        )
    return found, None


LISTENER_QUOTAS: Final = ("max.connections", "max.connection.creation.rate")
"""ListenerConnectionQuota's configs, also set per listener: listener.name.<l>.<config>."""


def listener_quota_config(name: str) -> str | None:
    """The config a ``listener.name.<listener>.`` prefixed connection quota name sets."""
    prefix, _, rest = name.partition(".name.")
    base = rest.partition(".")[2]
    return base if prefix == "listener" and base in LISTENER_QUOTAS else None


def parse_ip_overrides(value: str) -> dict[str, int]:
    """The validated ``max.connections.per.ip.overrides`` value as {host: max connections}."""
    return _ip_overrides(value)[0]


_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")  # Java's, not str.splitlines()'s


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """``Properties.load``'s lines: comments and blank lines dropped, continuations joined
    (a line ending in an odd number of backslashes goes on, minus the next line's leading
    whitespace), each with the number of the line it starts on."""
    out: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(_LINE_BREAK.split(text), 1):
        line = raw.lstrip(" \t\f")
        if pending is None:
            if not line or line[0] in "#!":
                continue
            start = number
            pending = ""
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = None
    if pending is not None:
        out.append((start, pending))
    return out


def _unescape(text: str, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch != "\\" or i == len(text):
            out.append(ch)
            continue
        ch = text[i]
        i += 1
        if ch == "u":
            digits = text[i : i + 4]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise InvalidConfigError(f"{where}: malformed \\uXXXX escape")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(ch, ch))
    return "".join(out)


def parse_server_properties(text: str, source: str = "server.properties") -> dict[str, str]:
    """``key=value`` pairs as ``java.util.Properties.load`` reads them; a later key wins."""
    props: dict[str, str] = {}
    for number, line in _logical_lines(text):
        # The key ends at the first unescaped '=', ':' or whitespace.
        i, key_end = 0, len(line)
        while i < len(line):
            ch = line[i]
            if ch == "\\":
                i += 2
                continue
            if ch in "=: \t\f":
                key_end = i
                break
            i += 1
        value_start = key_end
        while value_start < len(line) and line[value_start] in " \t\f":
            value_start += 1
        if value_start < len(line) and line[value_start] in "=:":
            value_start += 1
            while value_start < len(line) and line[value_start] in " \t\f":
                value_start += 1
        where = f"{source} line {number}"
        props[_unescape(line[:key_end], where)] = _unescape(line[value_start:], where)
    return props


def read_server_properties(path: str | Path) -> dict[str, str]:
    """A ``server.properties`` file; unreadable or undecodable is an InvalidConfigError."""
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InvalidConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidConfigError(
            f"config file {file} is not UTF-8 text (byte {exc.start}); "
            "write non-ASCII characters as \\uXXXX escapes"
        ) from None
    return parse_server_properties(text, str(file))


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
            self._values[name] = parse_value(key, raw)
            if name in _SYNONYMS:
                topic_key = _SYNONYMS[name][1]
                synonym = next(s for s in topic_key.synonyms if s.name == name)
                _scaled_broker_value(topic_key, synonym, raw)
        for name in ("listeners", "advertised.listeners"):
            if name in self._values and not self._values[name]:
                raise InvalidConfigError(f"Invalid value '' for configuration {name}: empty")
        self._check_ids()
        self._check_listeners()
        for name, raw in self.props.items():
            base = listener_quota_config(name)
            if base is not None:  # ListenerConnectionQuota reads it with the base's type
                parse_value(BROKER_CONFIGS[base], raw)
        if self.get("max.connections.per.ip") == 0 and not self.get(
            "max.connections.per.ip.overrides"
        ):  # KafkaConfig.validateValues
            raise InvalidConfigError(
                "max.connections.per.ip can be set to zero only if "
                "max.connections.per.ip.overrides property is set."
            )
        queued, request_max = (
            self.get("queued.max.request.bytes"),
            self.get("socket.request.max.bytes"),
        )
        if 0 < queued < request_max:  # KafkaConfig.validateValues
            raise InvalidConfigError(
                "queued.max.request.bytes must be larger or equal to socket.request.max.bytes"
            )
        self.log_dir  # noqa: B018  (refuses several log.dirs)

    def _check_ids(self) -> None:
        # KafkaConfig.populateSynonyms copies one to the other when only one is given.
        if "node.id" in self.props and "broker.id" in self.props:
            node_id, broker_id = self.get("node.id"), self.get("broker.id")
            if node_id != broker_id:
                raise InvalidConfigError(
                    f"node.id ({node_id}) and broker.id ({broker_id}) must be equal; "
                    "set node.id only"
                )
        elif "broker.id" in self.props and self.get("broker.id") < 0:
            raise InvalidConfigError(
                f"Invalid value {self.props['broker.id']!r} for configuration broker.id: "
                "Value must be at least 0 (broker id generation went with ZooKeeper)"
            )

    def _check_listeners(self) -> None:
        protocols = self.security_protocols
        controllers = self.controller_listener_names
        for config_name in ("listeners", "advertised.listeners"):
            if self.get(config_name) is None:
                continue
            seen: set[str] = set()
            for item in self.get(config_name):
                name = (parse_listener(item) or ("",))[0].upper()
                if name in seen:
                    raise InvalidConfigError(
                        f"Invalid value {self.props[config_name]!r} for configuration "
                        f"{config_name}: listener name {name} appears more than once"
                    )
                seen.add(name)
                if name in controllers:
                    continue
                protocol = protocols.get(name)
                if protocol is None:
                    raise InvalidConfigError(
                        f"{config_name}: no security protocol defined for listener {name} "
                        "in listener.security.protocol.map"
                    )
                if protocol != "PLAINTEXT":
                    raise InvalidConfigError(
                        f"{config_name}: listener {name} uses security protocol {protocol}; "
                        "kafkacompat speaks PLAINTEXT only"
                    )
        if self.get("advertised.listeners") is not None:
            if any(
                item.host == "0.0.0.0" for item in self._broker_listeners("advertised.listeners")
            ):
                # KafkaConfig.validateValues, word for word what a Kafka operator searches for.
                raise InvalidConfigError(
                    "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0. "
                    "Use a routable IP address."
                )
            bound = {listener.name.upper() for listener in self.listeners}
            for listener in self._broker_listeners("advertised.listeners"):
                if listener.name.upper() not in bound:
                    raise InvalidConfigError(
                        f"advertised.listeners: listener {listener.name} is not in listeners "
                        "(advertised listener names must be a subset of the listeners' names)"
                    )
        if not self.listeners:
            raise InvalidConfigError(
                "listeners: there must be at least one broker listener; all of "
                f"{', '.join(self.get('listeners'))} appear in controller.listener.names"
            )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Mapping[str, str] | None = None,
        base: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """``base`` (the caller's defaults) < ``path`` (server.properties) < ``overrides``."""
        props: dict[str, str] = dict(base or {})
        if path is not None:
            props.update(read_server_properties(path))
        props.update(overrides or {})
        return cls(props)

    def get(self, name: str) -> Any:
        """A known setting's value, parsed; Kafka's default when not given."""
        if name in self._values:
            return self._values[name]
        key = BROKER_CONFIGS[name]
        return None if key.default is None else parse_value(key, key.default)

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
        if "node.id" not in self.props and "broker.id" in self.props:
            return int(self.get("broker.id"))
        return int(self.get("node.id"))

    @property
    def controller_listener_names(self) -> frozenset[str]:
        return frozenset(
            name.strip().upper() for name in self.get("controller.listener.names").split(",")
        )

    @property
    def security_protocols(self) -> dict[str, str]:
        """Kafka's effective listener.security.protocol.map: with the default map, the
        controller listeners are PLAINTEXT."""
        protocols, _ = _protocol_map(self.get("listener.security.protocol.map"))
        if "listener.security.protocol.map" not in self.props:
            for name in self.controller_listener_names:
                protocols.setdefault(name, "PLAINTEXT")
        return protocols

    def _broker_listeners(self, config_name: str) -> list[Listener]:
        controllers = self.controller_listener_names
        found = [Listener(*parse_listener(item) or ("", "", 0)) for item in self.get(config_name)]
        return [item for item in found if item.name.upper() not in controllers]

    @property
    def listeners(self) -> list[Listener]:
        """The listeners to bind: ``listeners`` minus the controller's."""
        return self._broker_listeners("listeners")

    @property
    def advertised_listeners(self) -> list[Listener]:
        """Defaults to the listeners; a host that binds every interface (empty, ``0.0.0.0``,
        ``::``) is replaced by the machine's canonical host name, as Kafka's broker
        registration does for an empty host.  (Kafka refuses ``0.0.0.0`` in the listeners when
        it would be advertised; here it is resolved the same way as an empty host, the
        dev-box case of ``--host 0.0.0.0``.)"""
        if self.get("advertised.listeners") is None:
            chosen = self.listeners
        else:
            chosen = self._broker_listeners("advertised.listeners") or self.listeners
        return [Listener(item.name, advertised_host(item.host), item.port) for item in chosen]

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
