"""The composition root: one object that builds, starts and stops a whole broker.

Kafka's ``BrokerServer`` does this for a KRaft broker; this one does it for ``kafkacompat
serve``, for :class:`kafkacompat.EmbeddedKafka` and for tests that want a broker on their own
event loop.

Start-up, in order (listening comes as early as it can: the start-up goal is accepting
within about 150 ms):

1. build the :class:`Broker` and open its logs (recovery runs here), without replaying
   ``__consumer_offsets`` yet;
2. apply the dynamic broker configs AlterConfigs persisted in the data directory;
3. bind every listener (:class:`Server`); a port in use raises ``OSError`` and the logs are
   closed again;
4. schedule the broker's housekeeping (:class:`KafkaScheduler`): retention, flush,
   checkpoints, the log cleaner, on Kafka's intervals;
5. log the line that names the bootstrap address (interop tests and ``EmbeddedKafka``'s
   process mode read it: keep it as it is);
6. import the handler modules off the event loop, and replay ``__consumer_offsets`` a slice
   per loop turn (group requests hear COORDINATOR_LOAD_IN_PROGRESS meanwhile).

Shutdown, in order: the scheduled jobs stop; the socket server stops accepting, lets
in-flight requests finish (bounded) and closes every connection; then the broker snapshots
producer state, flushes, checkpoints and writes the clean-shutdown marker.

Signals are not this module's business: :func:`serve` installs them for the command line,
and an embedded broker in a thread must not touch the host process's handlers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from kafkacompat.broker import Broker, wall_clock_ms
from kafkacompat.config import WILDCARD_HOSTS, BrokerConfig, advertised_host
from kafkacompat.dynamic_config import DYNAMIC_BROKER_CONFIGS, load_dynamic_broker_configs
from kafkacompat.handlers import load_all
from kafkacompat.scheduler import KafkaScheduler
from kafkacompat.server import Server
from kafkacompat.storage.manager import Engine

# The lifecycle lines keep the logger they always had: operators filter on it.
log = logging.getLogger("kafkacompat.server")

_WARM_UP_WAIT_S = 2.0
"""How long shutdown waits for the handler imports started at start-up."""
_MARKER_WAIT_S = 2.0
"""How long shutdown lets transaction markers in flight be written."""


def format_bootstrap(bound: list[tuple[str, int]]) -> str:
    """``host:port,...`` as clients take it, IPv6 hosts bracketed."""
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in bound)


class BrokerServer:
    """A broker and its socket server, started with :meth:`startup` and stopped with
    :meth:`shutdown` on the running event loop."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        engine: Engine = "disk",
        data_dir: Path | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.config = config
        self.engine: Engine = engine
        self._data_dir = data_dir
        self._now_ms = now_ms
        self._broker: Broker | None = None
        self._server: Server | None = None
        self.scheduler = KafkaScheduler()
        self._warm_up: asyncio.Future[None] | None = None
        self._group_load: asyncio.Task[None] | None = None
        self._txn_load: asyncio.Task[None] | None = None
        self.started = False
        self._stopped = False

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError("the broker server has not been started")
        return self._broker

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError("the broker server has not been started")
        return self._server

    @property
    def bound(self) -> list[tuple[str, int]]:
        """Where each listener actually listens (port 0 picks one)."""
        return self.server.bound

    @property
    def advertised(self) -> list[tuple[str, int]]:
        """What clients are told, listener by listener: ``advertised.listeners`` when set, else
        each listener as bound with a wildcard host resolved (as Metadata answers)."""
        if self.config.is_set("advertised.listeners"):
            return [(item.host, item.port) for item in self.config.advertised_listeners]
        return [(advertised_host(host), port) for host, port in self.bound]

    @property
    def bootstrap_servers(self) -> str:
        return format_bootstrap(self.advertised)

    # -- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        if self._broker is not None:
            raise RuntimeError("the broker server was already started")
        started = time.monotonic()
        broker = Broker(
            self.config, engine=self.engine, now_ms=self._now_ms, data_dir=self._data_dir
        )
        self._broker = broker
        broker.start(load_groups=False)  # listen first; __consumer_offsets replays below
        try:
            self._apply_dynamic_configs(broker)
            server = Server(broker)
            self._server = server
            await server.start()
        except BaseException:
            broker.shutdown()
            raise
        self._schedule_housekeeping(broker)
        self.started = True
        for listener, (host, _) in zip(self.config.listeners, self.bound, strict=False):
            if host in WILDCARD_HOSTS and not self.config.is_set("advertised.listeners"):
                log.info("%s: resolved wildcard host to %s", listener.name, advertised_host(host))
        log.info(
            "kafkacompat broker %d listening on %s (bootstrap.servers=%s), storage %s, data dir %s, "
            "cluster id %s; started in %.0f ms",
            broker.node_id,
            format_bootstrap(self.bound),
            self.bootstrap_servers,
            self.engine,
            os.path.abspath(broker.data_dir) if self.engine == "disk" else "(none)",
            broker.cluster_id,
            (time.monotonic() - started) * 1000,
        )
        loop = asyncio.get_running_loop()
        # The handler modules (and the generated messages they use) load now, off the event
        # loop, so the first request of each kind does not pay for them.
        self._warm_up = loop.run_in_executor(None, load_all)
        broker.begin_group_load()  # from now on group requests hear COORDINATOR_LOAD_IN_PROGRESS
        self._group_load = loop.create_task(broker.load_groups())
        # __transaction_state in a task of its own: its first step, a turn of the loop later,
        # marks the partitions loading (a transactional request arriving before that builds
        # the coordinator and begins the load itself).
        self._txn_load = loop.create_task(broker.load_transactions())

    def _apply_dynamic_configs(self, broker: Broker) -> None:
        """Dynamic broker configs (AlterConfigs on the broker) persist in the data dir."""
        if self.engine == "disk" and (broker.data_dir / DYNAMIC_BROKER_CONFIGS).exists():
            load_dynamic_broker_configs(broker)

    def _schedule_housekeeping(self, broker: Broker) -> None:
        """Kafka's broker scheduler jobs, on Kafka's intervals and config names."""
        config = self.config
        scheduler = self.scheduler
        scheduler.schedule(
            "kafka-log-retention",
            broker.run_retention,
            config.get("log.retention.check.interval.ms") / 1000,
        )
        # Kafka checks every log.flush.scheduler.interval.ms whether a log is due; the logs
        # themselves know their flush.ms / flush.messages, so a one-second tick is enough.
        scheduler.schedule("kafka-log-flusher", broker.flush_due, 1.0)
        scheduler.schedule(
            "kafka-recovery-point-checkpoint",
            broker.checkpoint,
            max(config.get("log.flush.offset.checkpoint.interval.ms"), 1000) / 1000,
        )
        # The transaction coordinator's two jobs, as Kafka schedules them.
        scheduler.schedule(
            "transaction-abort",
            broker.abort_timed_out_transactions,
            config.get("transaction.abort.timed.out.transaction.cleanup.interval.ms") / 1000,
        )
        scheduler.schedule(
            "transactionalId-expiration",
            broker.remove_expired_transactional_ids,
            config.get("transaction.remove.expired.transaction.cleanup.interval.ms") / 1000,
        )
        # Compaction, when log.cleaner.enable: a round whenever a log is dirty enough, checked
        # again log.cleaner.backoff.ms after the last had nothing to do.
        if config.get("log.cleaner.enable") and config.get("log.cleaner.threads") >= 1:
            scheduler.schedule(
                "kafka-log-cleaner",
                broker.clean_logs,
                max(config.get("log.cleaner.backoff.ms"), 10) / 1000,
            )

    async def shutdown(self) -> None:
        """Stop everything, in order; every wait is bounded.  A second call does nothing."""
        if self._stopped or self._broker is None:
            return
        self._stopped = True
        await self.scheduler.shutdown()
        if self._warm_up is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._warm_up), _WARM_UP_WAIT_S)
            except TimeoutError:
                log.warning("handler modules still loading at shutdown")
        if self._group_load is not None:
            self._group_load.cancel()  # a stop during the replay abandons it; the log is untouched
        if self._txn_load is not None:
            self._txn_load.cancel()
        if self._server is not None:
            await self._server.stop()
        await self._broker.shutdown_transactions(_MARKER_WAIT_S)
        self._broker.shutdown()
        self.started = False


async def serve(
    config: BrokerConfig,
    *,
    engine: Engine = "disk",
    ready: Callable[[BrokerServer], None] | None = None,
) -> None:
    """``kafkacompat serve``: run until SIGTERM or SIGINT."""
    # Handlers first: whoever reads the listening line may send SIGTERM at once, and a stop
    # asked for during start-up is honoured as soon as start-up is done.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    broker_server = BrokerServer(config, engine=engine)
    await broker_server.startup()
    if ready is not None:
        ready(broker_server)
    await stop.wait()
    log.info("shutting down")
    await broker_server.shutdown()
    log.info("stopped cleanly")
