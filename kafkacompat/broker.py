"""The broker's state, shared by every handler: config, logs, producers, and the waiters that
long-polling fetches park on.

A single-node cluster: this broker is every partition's leader and the controller, every
partition has one replica, and the high watermark is the log end offset.  Handlers run on one
event loop thread, so state changes between two awaits are atomic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kafkacompat.config import BrokerConfig
from kafkacompat.coordinators.producer_ids import ProducerIdManager
from kafkacompat.coordinators.producer_state import ProducerStateRegistry
from kafkacompat.storage.manager import Engine, LogManager

log = logging.getLogger(__name__)

LEADER_EPOCH = 0
"""A single broker never changes leader, so every partition stays in its first epoch."""

TopicPartition = tuple[str, int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AppendWaiters:
    """Long-polling fetches wait here for appends to the partitions they read (Kafka's fetch
    purgatory, keyed by partition).  Produce calls :meth:`notify` after every append."""

    def __init__(self) -> None:
        self._waiters: dict[TopicPartition, set[asyncio.Event]] = {}

    def register(self, partitions: Iterable[TopicPartition]) -> asyncio.Event:
        event = asyncio.Event()
        for tp in partitions:
            self._waiters.setdefault(tp, set()).add(event)
        return event

    def unregister(self, partitions: Iterable[TopicPartition], event: asyncio.Event) -> None:
        for tp in partitions:
            waiting = self._waiters.get(tp)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[tp]

    def notify(self, tp: TopicPartition) -> None:
        waiting = self._waiters.get(tp)
        if waiting:
            for event in waiting:
                event.set()

    def wake_all(self) -> None:
        """At shutdown: every parked fetch answers now with what it has."""
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    def __len__(self) -> int:
        return len(self._waiters)


class Broker:
    """Everything a request handler may consult or change."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        engine: Engine = "disk",
        now_ms: Callable[[], int] = wall_clock_ms,
        data_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.now_ms = now_ms
        self.engine = engine
        self.data_dir = data_dir if data_dir is not None else config.log_dir
        self.logs = LogManager(
            self.data_dir if engine == "disk" else None,
            self.node_id,
            config.props,
            engine=engine,
            now_ms=now_ms,
        )
        self.append_waiters = AppendWaiters()
        self.producer_ids = ProducerIdManager(self.data_dir if engine == "disk" else None)
        self.producer_states = ProducerStateRegistry(
            producer_id_expiration_ms=config.get("producer.id.expiration.ms")
        )
        self.started = False
        self.bound: tuple[str, int] | None = None
        """Where the server actually listens (port 0 picks one); the advertised address
        unless ``advertised.listeners`` says otherwise."""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.start()
        self.started = True

    def shutdown(self) -> None:
        if not self.started:
            return
        self.started = False
        # Producer snapshots first: they record the log end offsets the logs close at.
        self.producer_states.snapshot_all()
        self.logs.shutdown()

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    @property
    def advertised_host_port(self) -> tuple[str, int]:
        if self.bound is not None and not self.config.is_set("advertised.listeners"):
            host, port = self.bound
            return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), port
        listener = self.config.advertised_listeners[0]
        return listener.host, listener.port

    # -- housekeeping (Kafka's scheduler tasks) ------------------------------------------------

    def run_retention(self) -> int:
        """Retention, and with it the expiry of idle producers (producer.id.expiration.ms)."""
        now = self.now_ms()
        self.producer_states.remove_expired_producers(now)
        return self.logs.run_retention(now)

    def flush_due(self) -> None:
        """Kafka's log flusher: fsync partitions whose flush.ms has elapsed."""
        now = self.now_ms()
        for _, partition_log in self.logs.logs():
            maybe_flush = getattr(partition_log, "maybe_flush", None)
            if maybe_flush is not None:
                maybe_flush(now)

    def checkpoint(self) -> None:
        self.logs.checkpoint()
