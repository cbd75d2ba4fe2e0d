"""Connection limits: Kafka's ``ConnectionQuotas``, and the descriptors kept for storage.

Counts and limits only; the socket server's acceptors (:mod:`kafkacompat.server`) ask here
before each ``accept()`` and report every connection that opens and closes.

* ``max.connections`` (broker-wide) and ``listener.name.<l>.max.connections``: at the limit
  an acceptor stops accepting until a connection closes; new connections wait in the kernel's
  backlog, they are not refused.  As in Kafka, the inter-broker listener
  (``inter.broker.listener.name``) is exempt from the broker-wide limit when there is more
  than one listener: a connection it accepts over that limit makes the server close the least
  recently active connection of another listener.  Lowered below the connections open,
  ``max.connections`` closes the least recently active ones (not the inter-broker
  listener's) until the count is back at the limit, as Kafka's processors do.
* ``max.connections.per.ip`` and ``max.connections.per.ip.overrides``: a connection over its
  address's limit is accepted and closed at once (Kafka's TooManyConnectionsException).
* ``max.connection.creation.rate`` and ``listener.name.<l>.max.connection.creation.rate``
  (KIP-612): beyond the rate the acceptor waits before accepting the next connection.  Kafka
  measures the rate over its quota windows; here a token bucket holding one second's worth
  does the same job (a burst of ``rate`` connections, then ``rate`` a second).
* Descriptors: connections may hold at most the soft ``RLIMIT_NOFILE`` less the storage's
  descriptor pool and :data:`OTHER_FILES_RESERVE`, so a crowd of clients can never take the
  descriptors segments, indexes, snapshots, checkpoints and the cleaner need.

All of these are dynamic broker configs (:meth:`ConnectionQuotas.reconfigure`), as Kafka's
``DynamicConnectionQuota`` and ``ListenerConnectionQuota`` are.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from kafkacompat.config import BROKER_CONFIGS, parse_ip_overrides
from kafkacompat.storage.config import parse_value

log = logging.getLogger("kafkacompat.server")

INT_MAX: Final = 2**31 - 1

OTHER_FILES_RESERVE: Final = 64
"""Descriptors neither connections nor the storage's pool may use, at the least: stdio, the
event loop, listening sockets, the data directory lock, checkpoint and metadata files being
written, the cleaner's snapshots, segments being flushed after a roll."""


def connection_descriptor_budget(storage_reserve: int, soft_limit: int | None = None) -> int:
    """How many connections fit beside the storage's ``storage_reserve`` descriptors and the
    other files' reserve (an eighth of the limit, at least :data:`OTHER_FILES_RESERVE`)."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return INT_MAX
    other = max(OTHER_FILES_RESERVE, soft_limit // 8)
    return max(1, soft_limit - storage_reserve - other)


def normalize_host(host: str) -> str:
    """One spelling per address: an IPv4-mapped IPv6 peer counts as its IPv4 address."""
    if ":" not in host:
        return host  # accept() already spells IPv4 addresses canonically
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _int(props: Mapping[str, str], name: str, default_name: str | None = None) -> int:
    """A config's value from ``props``; the listener-prefixed form falls back to the broker's
    (Kafka's ``valuesWithPrefixOverride``)."""
    base = default_name or name
    raw = props.get(name)
    if raw is None and default_name is not None:
        raw = props.get(default_name)
    key = BROKER_CONFIGS[base]
    return int(parse_value(key, raw if raw is not None else key.default or "0"))


class _TokenBucket:
    """At most ``rate`` connections a second, with a burst of one second's worth."""

    __slots__ = ("_stamp", "_tokens", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._stamp = time.monotonic()

    def set_rate(self, rate: int) -> None:
        if rate != self.rate:
            self.rate = rate
            self._tokens = min(self._tokens, float(rate))

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def delay(self, now: float) -> float:
        """Seconds until a connection may be accepted (0: now)."""
        if self.rate >= INT_MAX:
            return 0.0
        if self.rate <= 0:
            return 1.0  # a rate of 0 lets nothing in; look again in a second
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        if 0 < self.rate < INT_MAX:
            self._refill(now)
            self._tokens -= 1


class ConnectionQuotas:
    """Kafka's ``ConnectionQuotas``: connection counts per listener and per address against
    the limits, for one broker's listeners."""

    def __init__(
        self,
        listeners: Iterable[str],
        inter_broker_listener: str,
        props: Mapping[str, str],
        descriptor_budget: int = INT_MAX,
        resolve: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.listeners = [name.upper() for name in listeners]
        self._inter_broker = inter_broker_listener.upper()
        self.descriptor_budget = descriptor_budget
        """Connections that fit beside the descriptors kept for storage."""
        self._resolve = resolve
        self.total = 0
        self.per_listener: dict[str, int] = dict.fromkeys(self.listeners, 0)
        self.per_ip: dict[str, int] = {}
        self.max_connections = INT_MAX
        self.max_per_ip = INT_MAX
        self.per_ip_overrides: dict[str, int] = {}
        self.listener_max: dict[str, int] = dict.fromkeys(self.listeners, INT_MAX)
        self._broker_rate = _TokenBucket(INT_MAX)
        self._listener_rate = {name: _TokenBucket(INT_MAX) for name in self.listeners}
        self.reconfigure(props)

    def reconfigure(self, props: Mapping[str, str]) -> None:
        """Apply the broker's effective properties (static, then dynamic over them)."""
        self.max_connections = _int(props, "max.connections")
        self.max_per_ip = _int(props, "max.connections.per.ip")
        overrides: dict[str, int] = {}
        for host, count in parse_ip_overrides(
            props.get("max.connections.per.ip.overrides", "")
        ).items():
            for address in self._addresses(host):
                overrides[address] = count
        self.per_ip_overrides = overrides
        self._broker_rate.set_rate(_int(props, "max.connection.creation.rate"))
        for name in self.listeners:
            prefix = f"listener.name.{name.lower()}."
            self.listener_max[name] = _int(props, prefix + "max.connections", "max.connections")
            self._listener_rate[name].set_rate(
                _int(props, prefix + "max.connection.creation.rate", "max.connection.creation.rate")
            )

    def _addresses(self, host: str) -> list[str]:
        try:
            return [normalize_host(str(ipaddress.ip_address(host)))]
        except ValueError:
            pass
        # Kafka resolves an override's host name when the config is applied.
        try:
            found = self._resolve(host) if self._resolve is not None else []
        except OSError as exc:
            log.warning("max.connections.per.ip.overrides: cannot resolve %s: %s", host, exc)
            return []
        return [normalize_host(address) for address in found]

    # -- the acceptor's questions ------------------------------------------------------------

    def protected(self, listener: str) -> bool:
        """Kafka's protectedListener: the inter-broker listener, when there are others."""
        return listener == self._inter_broker and len(self.listeners) > 1

    def blocked_by(self, listener: str) -> str | None:
        """Why ``listener`` may not accept a connection now (Kafka's connectionSlotAvailable,
        and the descriptor budget), or None."""
        if self.total >= self.descriptor_budget:
            return "descriptors"
        if not self.protected(listener) and self.total >= self.max_connections:
            return "max.connections"
        # Unless set for the listener, its limit is max.connections, as Kafka's
        # valuesWithPrefixOverride gives it: only the inter-broker listener's can then bind.
        if self.per_listener.get(listener, 0) >= self.listener_max.get(listener, INT_MAX):
            return f"listener.name.{listener.lower()}.max.connections"
        return None

    def throttle_delay(self, listener: str, now: float) -> float:
        """Seconds ``listener`` waits before its next accept, for the creation rates."""
        delay = self._listener_rate[listener].delay(now) if listener in self._listener_rate else 0
        if not self.protected(listener):
            delay = max(delay, self._broker_rate.delay(now))
        return delay

    def max_for(self, ip: str) -> int:
        return self.per_ip_overrides.get(ip, self.max_per_ip)

    def inc(self, listener: str, ip: str, now: float) -> int | None:
        """Count a connection just accepted; returns the address's limit when it is over it
        (the caller closes it, and calls :meth:`dec`), else None."""
        self._broker_rate.take(now)
        if listener in self._listener_rate:
            self._listener_rate[listener].take(now)
        count = self.per_ip.get(ip, 0)
        self.per_ip[ip] = count + 1
        self.total += 1
        self.per_listener[listener] = self.per_listener.get(listener, 0) + 1
        limit = self.max_for(ip)
        return limit if count >= limit else None

    def dec(self, listener: str, ip: str) -> None:
        count = self.per_ip.get(ip, 0) - 1
        if count > 0:
            self.per_ip[ip] = count
        else:
            self.per_ip.pop(ip, None)
        self.total -= 1
        self.per_listener[listener] = self.per_listener.get(listener, 1) - 1

    def max_connections_exceeded(self, listener: str) -> bool:
        """Kafka's maxConnectionsExceeded: over the broker-wide limit (which only the
        inter-broker listener may pass), so one of ``listener``'s connections should go."""
        return self.total > self.max_connections and not self.protected(listener)
