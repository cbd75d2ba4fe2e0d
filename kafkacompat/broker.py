"""The broker's parts, as every handler sees them: config, the metadata image and its
controller, the replica manager (partitions and their logs), the coordinators, the authorizer.

A single-node cluster: the local controller decides topic changes and publishes them to the
replica manager and the group coordinator.  Handlers run on one event loop thread, so state
changes between two awaits are atomic.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kafkacompat.cluster.delayed_fetch import DelayedFetchPurgatory
from kafkacompat.cluster.replica_manager import ReplicaManager
from kafkacompat.config import BrokerConfig, advertised_host
from kafkacompat.coordinators.group_timers import TimerQueue
from kafkacompat.coordinators.producer_ids import ProducerIdManager
from kafkacompat.metadata.image import MetadataDelta, MetadataImage
from kafkacompat.metadata.local_controller import LocalController
from kafkacompat.security.authorizer import AllowAllAuthorizer, Authorizer
from kafkacompat.storage.base import KafkaStorageError
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.manager import Engine, LogManager, Topic

if TYPE_CHECKING:
    from kafkacompat.coordinators.group_coordinator import GroupCoordinator
    from kafkacompat.coordinators.group_store import LoadedGroups
    from kafkacompat.coordinators.transaction_coordinator import TransactionCoordinator
    from kafkacompat.coordinators.transaction_io import LocalTxnMarkerWriter, TransactionStateLog
    from kafkacompat.storage.log_cleaner_manager import LogCleanerManager

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class LoopTimerDriver:
    """Runs a coordinator's :class:`TimerQueue` on the running event loop: one loop timer,
    armed for the earliest deadline, re-armed after every run."""

    def __init__(self, timers: TimerQueue) -> None:
        self.timers = timers
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed_for: int | None = None
        timers.on_schedule = self._on_schedule

    def _on_schedule(self, deadline: int) -> None:
        if self._armed_for is None or deadline < self._armed_for:
            self.arm()

    def arm(self) -> None:
        """Make sure the loop wakes up for the earliest deadline (nothing without a running
        loop: the next call from inside one arms it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        deadline = self.timers.next_deadline()
        if deadline is None:
            self.cancel()
            return
        if (
            self._handle is not None
            and self._loop is loop
            and self._armed_for is not None
            and self._armed_for <= deadline
        ):
            return
        self.cancel()
        delay = max(deadline - self.timers.now_ms(), 0) / 1000
        self._handle = loop.call_later(delay, self._fire)
        self._loop = loop
        self._armed_for = deadline

    def poll(self) -> None:
        """Run whatever is due now and re-arm (handlers call it: a test's event loop may
        have ended since the timer was armed)."""
        self.timers.run_due()
        if self._loop is not None and self._loop.is_closed():
            self._handle = self._loop = self._armed_for = None
        self.arm()

    def _fire(self) -> None:
        self._handle = self._loop = self._armed_for = None
        try:
            self.timers.run_due()
        except Exception:
            log.exception("a group coordinator timer failed")
        finally:
            self.arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop = self._armed_for = None


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
        # Rolled segments are fsynced by flush_due, off the event loop, as Kafka's roll does.
        self.logs.deferred_roll_flush = True
        self.controller = LocalController(self.data_dir if engine == "disk" else None, config.props)
        self.replica_manager = ReplicaManager(
            self.logs,
            local_broker_id=self.node_id,
            now_ms=now_ms,
            producer_id_expiration_ms=config.get("producer.id.expiration.ms"),
        )
        # Order matters: logs and partitions exist before any other subscriber hears of them.
        self.controller.subscribe(self.replica_manager)
        self.controller.subscribe(self)
        self.authorizer: Authorizer = AllowAllAuthorizer()
        self.producer_ids = ProducerIdManager(self.data_dir if engine == "disk" else None)
        self.group_timers = TimerQueue(now_ms)
        self.group_timer_driver = LoopTimerDriver(self.group_timers)
        self._groups: GroupCoordinator | None = None
        self._txn_coordinator: TransactionCoordinator | None = None
        self._txn_log: TransactionStateLog | None = None
        self._txn_markers: LocalTxnMarkerWriter | None = None
        self._txn_load: Generator[None, None, None] | None = None
        self._txn_load_begun = False
        self._log_cleaner: LogCleanerManager | None = None
        self.started = False
        self._group_load: Generator[None, None, LoadedGroups] | None = None
        self._load_started = time.monotonic()
        self._group_load_begun = False
        self.bound: tuple[str, int] | None = None
        """Where the server actually listens (port 0 picks one); the advertised address
        unless ``advertised.listeners`` says otherwise."""

    @property
    def groups(self) -> GroupCoordinator:
        """The group coordinator, built on first use: its modules (about 30 ms of imports) load
        after the listener is up, not before (start-up goal: accepting within 150 ms)."""
        if self._groups is None:
            from kafkacompat.coordinators.group_coordinator import GroupConfig, GroupCoordinator
            from kafkacompat.coordinators.group_store import GroupStore

            self._groups = GroupCoordinator(
                GroupConfig.from_broker_config(self.config),
                self.group_timers,
                GroupStore(
                    self.logs,
                    num_partitions=self.config.get("offsets.topic.num.partitions"),
                    segment_bytes=self.config.get("offsets.topic.segment.bytes"),
                    now_ms=self.now_ms,
                    leader_epoch=0,
                    create_topic=self._create_internal_topic,
                    append_records=self._append_offsets_records,
                ),
            )
        return self._groups

    def _create_internal_topic(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        self.controller.create_topic(name, partitions, configs)
        return self.logs.topic(name)

    def _append_offsets_records(self, partition: int, records: bytearray, now_ms: int) -> int:
        leader = self.replica_manager.get_partition_or_error("__consumer_offsets", partition)
        info = self.replica_manager.append_records(
            leader, records, now_ms=now_ms, from_client=False
        )
        return info.base_offset

    # -- transactions ---------------------------------------------------------------------------

    @property
    def txn_coordinator(self) -> TransactionCoordinator:
        """The transaction coordinator, built on first use (after the listener is up, as the
        group coordinator)."""
        if self._txn_coordinator is None:
            from kafkacompat.coordinators.transaction_coordinator import TransactionCoordinator
            from kafkacompat.coordinators.transaction_io import (
                LocalTxnMarkerWriter,
                TransactionStateLog,
            )
            from kafkacompat.coordinators.transaction_state_manager import (
                TransactionStateManager,
                TransactionStateManagerConfig,
            )

            config = self.config
            txn_log = TransactionStateLog(
                self.logs,
                self.replica_manager,
                num_partitions=config.get("transaction.state.log.num.partitions"),
                segment_bytes=config.get("transaction.state.log.segment.bytes"),
                now_ms=self.now_ms,
                create_topic=self._create_internal_topic,
            )
            manager = TransactionStateManager(
                txn_log,
                TransactionStateManagerConfig(
                    num_partitions=txn_log.num_partitions,
                    transaction_max_timeout_ms=config.get("transaction.max.timeout.ms"),
                    transactional_id_expiration_ms=config.get("transactional.id.expiration.ms"),
                    abort_timed_out_transactions_interval_ms=config.get(
                        "transaction.abort.timed.out.transaction.cleanup.interval.ms"
                    ),
                    remove_expired_transactional_ids_interval_ms=config.get(
                        "transaction.remove.expired.transaction.cleanup.interval.ms"
                    ),
                ),
                self.now_ms,
            )
            self._txn_markers = LocalTxnMarkerWriter(
                self.replica_manager,
                self.now_ms,
                self._on_offsets_transaction_completed,
                lambda name: self.controller.image.topic(name) is not None,
            )
            self._txn_log = txn_log
            self._txn_coordinator = TransactionCoordinator(
                manager, self.producer_ids, self._txn_markers, self.now_ms
            )
            if self.started:
                self.begin_txn_load()  # nobody may see the partitions before they are loading
        return self._txn_coordinator

    @property
    def txn_markers(self) -> LocalTxnMarkerWriter:
        """Where markers are written: the coordinator's own path and WriteTxnMarkers'."""
        self.txn_coordinator  # noqa: B018 (builds the writer with the coordinator)
        assert self._txn_markers is not None
        return self._txn_markers

    def _on_offsets_transaction_completed(
        self, producer_id: int, partitions: list[int], committed: bool
    ) -> None:
        on_completed = getattr(self.groups, "on_transaction_completed", None)
        if on_completed is not None:
            on_completed(producer_id, partitions, committed)

    def ensure_transaction_state_topic(self) -> None:
        """Create ``__transaction_state`` at first need (FindCoordinator TRANSACTION, as
        Kafka): every partition is owned, empty, at once."""
        coordinator = self.txn_coordinator
        txn_log = self._txn_log
        assert txn_log is not None
        if txn_log.topic() is not None:
            return
        txn_log.create()
        for partition in range(txn_log.num_partitions):
            epoch = txn_log.coordinator_epoch(partition)
            coordinator.txn_manager.add_loading_partition(partition, epoch)
            coordinator.on_election(partition, epoch, {})

    def begin_txn_load(self) -> None:
        """Mark every partition of ``__transaction_state`` loading (transactional requests
        hear COORDINATOR_LOAD_IN_PROGRESS) and take the load's first step."""
        coordinator = self.txn_coordinator
        if self._txn_load is None and not coordinator.is_active and not self._txn_load_begun:
            self._txn_load_begun = True
            self._txn_load = self._txn_load_steps()
            self._step_txn_load()

    def _txn_load_steps(self) -> Generator[None, None, None]:
        from kafkacompat.coordinators.transaction_log import load_transactions_steps

        coordinator = self.txn_coordinator
        txn_log = self._txn_log
        assert txn_log is not None
        topic = txn_log.topic()
        started = time.monotonic()
        if topic is not None:
            epochs = {p: txn_log.coordinator_epoch(p) for p in range(topic.partitions)}
            for partition, epoch in epochs.items():
                coordinator.txn_manager.add_loading_partition(partition, epoch)
            yield
            ids = 0
            for partition, epoch in epochs.items():
                loaded = yield from load_transactions_steps(txn_log, partition)
                ids += len(loaded)
                coordinator.on_election(partition, epoch, loaded)
            log.debug(
                "loaded %d transactional ids from __transaction_state in %.0f ms",
                ids,
                (time.monotonic() - started) * 1000,
            )
        coordinator.startup()

    def _step_txn_load(self) -> bool:
        if self._txn_load is None:
            return True
        try:
            next(self._txn_load)
            return False
        except StopIteration:
            self._txn_load = None
            return True

    async def load_transactions(self) -> None:
        """Finish the load of ``__transaction_state``, a slice per turn of the event loop."""
        self.begin_txn_load()
        while self.started and not self._step_txn_load():
            await asyncio.sleep(0)

    async def abort_timed_out_transactions(self) -> None:
        if self._txn_coordinator is not None and self._txn_coordinator.is_active:
            await self._txn_coordinator.abort_timed_out_transactions()

    async def remove_expired_transactional_ids(self) -> None:
        if self._txn_coordinator is not None and self._txn_coordinator.is_active:
            await self._txn_coordinator.remove_expired_transactional_ids()

    async def shutdown_transactions(self, wait_s: float) -> None:
        """Let marker writes in flight finish (bounded), then stop the coordinator; a Prepare
        state still unfinished is completed by the next start's load."""
        coordinator = self._txn_coordinator
        if coordinator is None:
            return
        try:
            await asyncio.wait_for(coordinator.wait_for_markers(), wait_s)
        except TimeoutError:
            log.warning("transaction markers still being written at shutdown")
        await coordinator.shutdown()

    def shutdown_groups(self) -> None:
        """Answer parked JoinGroup/SyncGroup with NOT_COORDINATOR (a coordinator never built
        has none)."""
        if self._groups is not None:
            self._groups.shutdown()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, *, load_groups: bool = True) -> None:
        """Open the logs; with ``load_groups`` also replay ``__consumer_offsets`` now. A server
        passes False, listens, and then runs :meth:`load_groups` on its loop, as Kafka does:
        group requests get COORDINATOR_LOAD_IN_PROGRESS until the replay is done."""
        records = self.controller.load_records()
        self.logs.start(records)
        self.controller.start(self.logs.cluster_id, records)
        self.replica_manager.start(self.logs.high_watermark_checkpoint)
        self.started = True
        if self._log_cleaner is not None:
            self._log_cleaner.cancelled.clear()
        if load_groups:
            self.begin_group_load()
            while not self._step_group_load():
                pass
            self.begin_txn_load()
            while not self._step_txn_load():
                pass

    def begin_group_load(self) -> None:
        """Build the coordinator and take the replay's first step, which marks it loading:
        group requests from here on get COORDINATOR_LOAD_IN_PROGRESS until it is done."""
        if self._group_load_begun:
            return
        self._group_load_begun = True
        self._load_started = time.monotonic()
        self._group_load = self.groups.startup_steps()
        self._step_group_load()

    def _step_group_load(self) -> bool:
        """One step of the replay; True when it is done (and then arms the group timers)."""
        if self._group_load is None:
            return True
        try:
            next(self._group_load)
            return False
        except StopIteration as done:
            self._group_load = None
            loaded = done.value
            if loaded.records:
                # Debug: the first line a broker logs must stay the one naming its port.
                log.debug(
                    "loaded %d groups and the offsets of %d from %d records of "
                    "__consumer_offsets in %.0f ms",
                    len(loaded.groups),
                    len(loaded.offsets),
                    loaded.records,
                    (time.monotonic() - self._load_started) * 1000,
                )
            self.group_timer_driver.arm()
            return True

    async def load_groups(self) -> None:
        """Finish the replay of ``__consumer_offsets``, a few thousand batches per turn of the
        event loop, so that produce, fetch and metadata requests are served meanwhile."""
        self.begin_group_load()
        while self.started and not self._step_group_load():
            await asyncio.sleep(0)

    def shutdown(self) -> None:
        if not self.started:
            return
        self.started = False
        if self._log_cleaner is not None:
            self._log_cleaner.cancelled.set()
        self.shutdown_groups()
        self.group_timer_driver.cancel()
        self.group_timers.cancel_all()
        self.replica_manager.shutdown()

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    @property
    def metadata(self) -> MetadataImage:
        """The current metadata image: which topics exist, their ids, partitions, configs."""
        return self.controller.image

    @property
    def delayed_fetch(self) -> DelayedFetchPurgatory:
        return self.replica_manager.delayed_fetch

    def on_metadata_update(self, delta: MetadataDelta, image: MetadataImage) -> None:
        """The group coordinator's subscription: as Kafka, committed offsets of a deleted
        topic go with it."""
        if delta.deleted:
            self.groups.on_partitions_deleted(
                [(topic.name, p) for topic in delta.deleted for p in range(topic.partitions)]
            )

    def topic_config(self, name: str) -> LogConfig | None:
        """A topic's effective config: its overrides over the broker's defaults."""
        topic = self.controller.image.topic(name)
        if topic is None:
            return None
        return LogConfig.from_props(topic.configs, self.controller.broker_config)

    def apply_broker_defaults(self, props: Mapping[str, str]) -> None:
        """Dynamic broker configs changed the defaults topics' configs resolve against."""
        self.logs.with_broker_config(props)
        self.controller.alter_broker_defaults(props)

    @property
    def advertised_host_port(self) -> tuple[str, int]:
        """Where clients are sent (Metadata, FindCoordinator, DescribeCluster): the first
        listener as bound (port 0 resolved), a wildcard host as the canonical host name."""
        if self.bound is not None and not self.config.is_set("advertised.listeners"):
            host, port = self.bound
            return advertised_host(host), port
        listener = self.config.advertised_listeners[0]
        return listener.host, listener.port

    # -- housekeeping (Kafka's scheduler tasks) ------------------------------------------------

    def run_retention(self) -> int:
        """Retention, and with it the expiry of idle producers (producer.id.expiration.ms)."""
        return self.replica_manager.run_retention(self.now_ms())

    async def flush_due(self) -> None:
        """Kafka's log flusher, every second: fsync segments rolled since the last pass (in a
        thread: a 1 GiB fsync must not stall the event loop), then logs whose flush.ms has
        elapsed."""
        loop = asyncio.get_running_loop()
        for pending in self.logs.take_roll_flushes():
            try:
                await loop.run_in_executor(None, pending.fsync)
            except OSError as exc:
                # Never retried (a second fsync may lie): that log goes offline, the rest go on.
                self.logs.roll_flush_failed(pending, exc)
                continue
            finally:
                pending.close()
            if self.started:
                self.logs.complete_roll_flush(pending)  # unless the topic went meanwhile
        self.logs.flush_due(self.now_ms())

    def checkpoint(self) -> None:
        self.replica_manager.checkpoint()

    @property
    def log_cleaner(self) -> LogCleanerManager:
        if self._log_cleaner is None:
            from kafkacompat.storage.log_cleaner_manager import LogCleanerManager

            self._log_cleaner = LogCleanerManager(
                self.data_dir if self.engine == "disk" else None,
                dedupe_buffer_size=self.config.get("log.cleaner.dedupe.buffer.size"),
                load_factor=self.config.get("log.cleaner.io.buffer.load.factor"),
            )
        return self._log_cleaner

    def _first_unstable_offset(self, tp: tuple[str, int]) -> int | None:
        """A partition's first unstable offset, for the cleaner (which never cleans past it)."""
        partition = self.replica_manager.get_partition(*tp)
        if partition is None:
            return None
        try:
            return partition.log.first_unstable_offset
        except KafkaStorageError:
            # The producer state cannot be loaded: nothing is known stable, so nothing is
            # cleaned (the log start offset as the bound leaves an empty range).
            return partition.log.log_start_offset

    async def clean_logs(self) -> int:
        """Kafka's log cleaner thread: compact the dirtiest log, in a worker thread, and again
        while one is dirty enough; returns how many rounds ran. The server calls it every
        log.cleaner.backoff.ms when log.cleaner.enable is set."""
        from kafkacompat.storage.log_cleaner import CleaningAborted, clean

        if self.engine != "disk":
            return 0  # the memory and null engines keep no segments to rewrite
        cleaner = self.log_cleaner
        loop = asyncio.get_running_loop()
        rounds = 0
        while self.started:
            now = self.now_ms()
            picked = cleaner.grab_filthiest(self.logs.logs(), now, self._first_unstable_offset)
            if picked is None:
                break
            tp, plan = picked
            partition = self.replica_manager.get_partition(*tp)
            producers = None if partition is None else partition.log.producer_last_offsets()
            epochs = None if partition is None else partition.log.producer_epochs_without_data()
            plan.open_files()
            try:
                result = await loop.run_in_executor(
                    None,
                    functools.partial(
                        clean,
                        plan,
                        now_ms=now,
                        map_budget_bytes=cleaner.map_budget_bytes,
                        producer_last_offsets=producers,
                        producer_epochs=epochs,
                        cancelled=cleaner.cancelled,
                    ),
                )
            except CleaningAborted:
                break
            live = {key for key, _ in self.logs.logs()}
            if not self.started or tp not in live:
                for cleaned in result.cleaned:
                    cleaned.discard()
                break
            if cleaner.swap_in(tp, result, self.now_ms(), live):
                rounds += 1
                stats = result.stats
                log.info(
                    "cleaned %s-%d: %d of %d records kept, %d -> %d bytes, %d keys",
                    tp[0],
                    tp[1],
                    stats.records_retained,
                    stats.records_read,
                    stats.bytes_read,
                    stats.bytes_written,
                    stats.map_keys,
                )
            await asyncio.sleep(0)
        return rounds
