"""LogManager: the data directory's owner. Partitions' logs, checkpoints, shutdown.

Theory of operation (Kafka's ``LogManager`` for one broker and one log dir):

1. ``start(records)``: create the directory, create or check ``meta.properties`` (a node.id
   mismatch refuses to start), consume the ``.kafka_cleanshutdown`` marker (present = last
   shutdown was clean; removing it now means a crash from here on leaves none), read the
   recovery-point and log-start-offset checkpoints, remove stray partition folders (left by a
   crash mid create/delete), and open the log of every partition of ``records``, the topics
   of the metadata image.
2. Which topics exist is not decided here: the controller
   (:mod:`kafkacompat.metadata.local_controller`) validates and commits topic changes, and
   the replica manager applies them here (``create_logs``, ``add_logs``, ``update_config``,
   ``delete_logs``). A crash between the commit and the folders is repaired by step 1.
3. ``checkpoint()`` writes the checkpoint files; ``shutdown()`` flushes, checkpoints, closes
   every log and then writes the clean-shutdown marker, in that order.

Engines: ``disk`` keeps partition folders and checkpoints; ``memory`` and ``null`` keep only
topic metadata (so topics survive a restart, data does not). With ``data_dir=None`` nothing at
all is persisted. Time comes from the injected ``now_ms`` callable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.storage import disk_io
from kafkacompat.storage.base import PartitionLog
from kafkacompat.storage.checkpoint_file import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    read_checkpoint,
    write_checkpoint,
)
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.data_dir import (
    consume_clean_shutdown,
    lock_data_dir,
    unlock_data_dir,
    write_clean_shutdown,
)
from kafkacompat.storage.fdpool import FdPool
from kafkacompat.storage.kafka_uuid import random_kafka_uuid, uuid_to_base64
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.meta_properties import MetaProperties, ensure_meta_properties
from kafkacompat.storage.null import NullLog
from kafkacompat.storage.partition_dir import (
    DELETE_SUFFIX,
    TopicPartition,
    delete_dir_name,
    parse_partition_dir_name,
    partition_dir_name,
    read_partition_metadata,
    write_partition_metadata,
)
from kafkacompat.storage.topic_records import TOPICS_DIR, TopicRecord

Engine = Literal["disk", "memory", "null"]

_log = logging.getLogger(__name__)


class _FirstError:
    """Run a step per log so that one log's disk error does not skip the others, then raise
    the first error (the caller's scheduler logs it and retries)."""

    def __init__(self) -> None:
        self.error: OSError | None = None

    def __enter__(self) -> _FirstError:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None and self.error is not None:
            raise self.error

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if self.error is None:
                self.error = exc


DEFAULT_RETENTION_CHECK_INTERVAL_MS: Final = 300_000  # log.retention.check.interval.ms


class UnknownTopicOrPartitionError(KafkaProtocolError):
    error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


@dataclass(frozen=True, slots=True)
class LogSpec:
    """Everything a factory needs to open one partition's log."""

    topic: str
    partition: int
    topic_id: uuid.UUID
    directory: Path | None
    """``<data>/<topic>-<partition>``; None when nothing is persisted."""
    config: LogConfig
    recovery_point: int
    log_start_offset: int
    clean_shutdown: bool
    now_ms: int
    fd_pool: FdPool | None = None
    """Shared by every disk log so 10,000 partitions fit under ``ulimit -n 1024``."""
    deferred_roll_flush: bool = False
    """A broker fsyncs rolled segments off its event loop (see Log.take_roll_flushes)."""


LogFactory = Callable[[LogSpec], PartitionLog]


@runtime_checkable
class SupportsConfigUpdate(Protocol):
    def update_config(self, config: LogConfig) -> None: ...


def memory_log_factory(spec: LogSpec) -> PartitionLog:
    return MemoryLog(spec.config)


def null_log_factory(spec: LogSpec) -> PartitionLog:
    return NullLog(spec.config)


def disk_log_factory(spec: LogSpec) -> PartitionLog:
    # Imported here so that the memory and null engines never load the segment code.
    from kafkacompat.storage.log import Log

    assert spec.directory is not None, "the disk engine needs a data directory"
    return Log(
        str(spec.directory),
        spec.config,
        now_ms=spec.now_ms,
        log_start_offset=spec.log_start_offset,
        recovery_point=spec.recovery_point,
        clean_shutdown=spec.clean_shutdown,
        fd_pool=spec.fd_pool,
        deferred_roll_flush=spec.deferred_roll_flush,
    )


def push_config(log: PartitionLog, config: LogConfig) -> None:
    """Hand an altered config to a live log: ``update_config`` where the log has one, else its
    ``settings`` attribute (the disk Log reads its settings on every append and roll)."""
    if isinstance(log, SupportsConfigUpdate):
        log.update_config(config)
    elif hasattr(log, "settings"):
        log.settings = config


_DEFAULT_FACTORIES: Final[Mapping[str, LogFactory]] = {
    "disk": disk_log_factory,
    "memory": memory_log_factory,
    "null": null_log_factory,
}


@dataclass(frozen=True, slots=True)
class PendingRollFlush:
    """A rolled segment waiting for its fsync."""

    topic_partition: TopicPartition
    log: PartitionLog
    flush: Any
    """The disk log's ``RollFlush``: a descriptor of its own, closed by :meth:`close`."""

    def fsync(self) -> None:
        if self.flush.fd is not None:
            disk_io.fsync(self.flush.fd)

    def close(self) -> None:
        if self.flush.fd is not None:
            os.close(self.flush.fd)


@dataclass(slots=True)
class Topic:
    """A topic as the manager holds it: identity, effective config and one log per partition."""

    name: str
    topic_id: uuid.UUID
    config: LogConfig
    logs: list[PartitionLog] = field(default_factory=list)

    @property
    def partitions(self) -> int:
        return len(self.logs)


class LogManager:
    """Owns a data directory: creates, loads, alters and deletes topics and their logs."""

    def __init__(
        self,
        data_dir: Path | str | None,
        node_id: int,
        broker_config: Mapping[str, str] | None = None,
        *,
        engine: Engine = "disk",
        now_ms: Callable[[], int],
        log_factory: LogFactory | None = None,
        cluster_id: str | None = None,
    ) -> None:
        if engine not in _DEFAULT_FACTORIES:
            raise ValueError(f"unknown storage engine {engine!r}")
        if engine == "disk" and data_dir is None:
            raise ValueError("the disk engine needs a data directory")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.node_id = node_id
        self.broker_config: Mapping[str, str] = dict(broker_config or {})
        self.engine = engine
        self.now_ms = now_ms
        self._factory = log_factory or _DEFAULT_FACTORIES[engine]
        self.deferred_roll_flush = False
        """Set by a broker before start(): rolled segments are fsynced by its flusher."""
        self.fd_pool = FdPool() if engine == "disk" else None
        self._requested_cluster_id = cluster_id
        self.meta: MetaProperties | None = None
        self.clean_shutdown = False
        """Whether the previous run shut down cleanly (the marker was present at start)."""
        self._topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._recovery_points: dict[TopicPartition, int] = {}
        self.high_watermark_checkpoint: dict[TopicPartition, int] = {}
        """The high watermarks the last run checkpointed, read at start."""
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def _persists_partitions(self) -> bool:
        return self.data_dir is not None and self.engine == "disk"

    @property
    def cluster_id(self) -> str:
        if self.meta is None:
            raise RuntimeError("LogManager.start() has not run")
        return self.meta.cluster_id

    def start(self, records: Iterable[TopicRecord] = ()) -> None:
        """Open the data dir and the logs of ``records``, the topics the metadata image holds
        (their folders are created where a crash left them missing)."""
        records = list(records)
        data = self.data_dir
        if data is None:
            self.meta = MetaProperties(
                self.node_id,
                self._requested_cluster_id or uuid_to_base64(random_kafka_uuid()),
                uuid_to_base64(random_kafka_uuid()),
            )
            self._started = True
            for record in records:
                self.create_logs(record)
            return
        data.mkdir(parents=True, exist_ok=True)
        lock_data_dir(data)
        self.meta = ensure_meta_properties(data, self.node_id, self._requested_cluster_id)
        self.clean_shutdown = consume_clean_shutdown(data)
        recovery_points = read_checkpoint(data / RECOVERY_POINT_CHECKPOINT)
        log_starts = read_checkpoint(data / LOG_START_OFFSET_CHECKPOINT)
        self.high_watermark_checkpoint = read_checkpoint(data / REPLICATION_OFFSET_CHECKPOINT)
        if self._persists_partitions:
            self._remove_strays(records)
        now = self.now_ms()
        for record in records:
            config = LogConfig.from_props(record.configs, self.broker_config)
            topic = Topic(record.name, record.topic_id, config)
            for partition in range(record.partitions):
                tp = (record.name, partition)
                directory = self.partition_dir(record.name, partition)
                if directory is not None and not directory.exists():
                    # Committed, then a crash before the folder was made: make it now.
                    directory.mkdir()
                    write_partition_metadata(directory, record.topic_id)
                topic.logs.append(
                    self._open_log(
                        topic,
                        partition,
                        recovery_point=recovery_points.get(tp, 0),
                        log_start_offset=log_starts.get(tp, 0),
                        now_ms=now,
                    )
                )
            self._register(topic)
        self._started = True

    def _open_log(
        self,
        topic: Topic,
        partition: int,
        *,
        recovery_point: int,
        log_start_offset: int,
        now_ms: int,
    ) -> PartitionLog:
        directory = self.partition_dir(topic.name, partition)
        self._recovery_points[(topic.name, partition)] = recovery_point
        return self._factory(
            LogSpec(
                topic=topic.name,
                partition=partition,
                topic_id=topic.topic_id,
                directory=directory,
                config=topic.config,
                recovery_point=recovery_point,
                log_start_offset=log_start_offset,
                clean_shutdown=self.clean_shutdown,
                now_ms=now_ms,
                fd_pool=self.fd_pool,
                deferred_roll_flush=self.deferred_roll_flush,
            )
        )

    def partition_dir(self, topic: str, partition: int) -> Path | None:
        """``<data>/<topic>-<partition>``; None when partitions are not persisted."""
        if not self._persists_partitions or self.data_dir is None:
            return None
        return self.data_dir / partition_dir_name(topic, partition)

    def _remove_strays(self, records: list[TopicRecord]) -> None:
        """Delete folders no persisted topic claims: leftovers of a crash mid create/delete,
        and ``-delete`` folders whose removal was interrupted."""
        assert self.data_dir is not None
        claimed = {(r.name, p): r.topic_id for r in records for p in range(r.partitions)}
        for path in self.data_dir.iterdir():
            if not path.is_dir() or path.name == TOPICS_DIR:
                continue
            if path.name.endswith(DELETE_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            tp = parse_partition_dir_name(path.name)
            if tp is None:
                continue
            expected = claimed.get(tp)
            if expected is None or read_partition_metadata(path) not in (None, expected):
                self._delete_partition_dir(path, tp)

    def _delete_partition_dir(self, path: Path, tp: TopicPartition) -> None:
        # Rename first (one atomic step, as Kafka does) so a crash mid-rmtree leaves a folder
        # that is obviously garbage rather than a half-deleted partition.
        assert self.data_dir is not None
        target = self.data_dir / delete_dir_name(tp[0], tp[1], uuid.uuid4())
        path.rename(target)
        shutil.rmtree(target, ignore_errors=True)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("LogManager.start() has not run")

    # -- lookups ---------------------------------------------------------------------------------

    def topics(self) -> Mapping[str, Topic]:
        return self._topics

    def topic(self, name: str) -> Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicOrPartitionError(
                f"This server does not host this topic: {name}"
            ) from None

    def topic_by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def get_log(self, topic: str, partition: int) -> PartitionLog:
        """The partition's log; UNKNOWN_TOPIC_OR_PARTITION when this broker has none."""
        found = self._topics.get(topic)
        if found is None or not 0 <= partition < found.partitions:
            raise UnknownTopicOrPartitionError(
                f"This server does not host this topic-partition: {topic}-{partition}"
            )
        return found.logs[partition]

    def logs(self) -> Iterator[tuple[TopicPartition, PartitionLog]]:
        for topic in self._topics.values():
            for partition, log in enumerate(topic.logs):
                yield (topic.name, partition), log

    # -- topic admin -----------------------------------------------------------------------------

    def _register(self, topic: Topic) -> None:
        self._topics[topic.name] = topic
        self._by_id[topic.topic_id] = topic

    # -- applying metadata changes (the controller decided and committed them) -------------------

    def create_logs(self, record: TopicRecord) -> Topic:
        """Create the partition folders and logs of a topic the controller created."""
        self._require_started()
        config = LogConfig.from_props(record.configs, self.broker_config)
        topic = Topic(record.name, record.topic_id, config)
        self._add_logs(topic, record.partitions)
        self._register(topic)
        return topic

    def _add_logs(self, topic: Topic, total: int) -> None:
        """Open partitions ``topic.partitions`` to ``total``: all of them or, on a disk error
        (ENOSPC writing ``partition.metadata``, EMFILE), none, with their folders removed."""
        now = self.now_ms()
        before = topic.partitions
        try:
            for partition in range(before, total):
                directory = self.partition_dir(topic.name, partition)
                if directory is not None:
                    if directory.exists():  # a stray from a crash; no topic owns it
                        self._delete_partition_dir(directory, (topic.name, partition))
                    directory.mkdir()
                    write_partition_metadata(directory, topic.topic_id)
                topic.logs.append(
                    self._open_log(
                        topic, partition, recovery_point=0, log_start_offset=0, now_ms=now
                    )
                )
        except OSError as exc:
            _log.warning("cannot create the logs of %s: %s", topic.name, disk_io.describe(exc))
            for log in topic.logs[before:]:
                with contextlib.suppress(OSError):
                    log.close()
            del topic.logs[before:]
            for partition in range(before, total):
                self._recovery_points.pop((topic.name, partition), None)
                directory = self.partition_dir(topic.name, partition)
                if directory is not None and directory.exists():
                    shutil.rmtree(directory, ignore_errors=True)
            raise

    def add_logs(self, name: str, total: int) -> Topic:
        """CreatePartitions: open the logs of the new partitions."""
        self._require_started()
        topic = self.topic(name)
        self._add_logs(topic, total)
        return topic

    def update_config(self, name: str, overrides: Mapping[str, str]) -> LogConfig:
        """A topic's config overrides changed: resolve them and push them to every log."""
        self._require_started()
        topic = self.topic(name)
        topic.config = LogConfig.from_props(overrides, self.broker_config)
        for log in topic.logs:
            push_config(log, topic.config)
        return topic.config

    def delete_logs(self, name: str) -> None:
        """DeleteTopics: close and remove the topic's logs."""
        self._require_started()
        topic = self.topic(name)
        del self._topics[name]
        del self._by_id[topic.topic_id]
        for partition, log in enumerate(topic.logs):
            try:
                log.close()
            except OSError:  # its files go now anyway; a full disk must not stop the deletion
                close_handles = getattr(log, "close_handles", None)
                if close_handles is not None:
                    close_handles()
            self._recovery_points.pop((name, partition), None)
            directory = self.partition_dir(name, partition)
            if directory is not None and directory.exists():
                self._delete_partition_dir(directory, (name, partition))

    # -- durability and housekeeping -------------------------------------------------------------

    def _recovery_point(self, tp: TopicPartition, log: PartitionLog) -> int:
        # The disk log knows its own recovery point; otherwise the LEO at our last flush.
        own = getattr(log, "recovery_point", None)
        return own if isinstance(own, int) else self._recovery_points.get(tp, 0)

    def flush(self) -> None:
        """Flush every log; one that fails does not stop the others (the first error is
        raised after all were tried)."""
        with _FirstError() as first:
            for tp, log in self.logs():
                end = log.log_end_offset
                with first.caught():
                    log.flush()
                    self._recovery_points[tp] = end

    @property
    def offline_logs(self) -> list[TopicPartition]:
        """Partitions whose log went offline after a failed fsync (until restart)."""
        return [tp for tp, log in self.logs() if getattr(log, "offline_reason", None)]

    def take_roll_flushes(self) -> list[PendingRollFlush]:
        """Segments the disk logs rolled since the last call, each to be fsynced (off the event
        loop: see :meth:`Log.take_roll_flushes`) and then passed to
        :meth:`complete_roll_flush`."""
        pending: list[PendingRollFlush] = []
        for tp, log in self.logs():
            take = getattr(log, "take_roll_flushes", None)  # only the disk engine rolls
            if take is not None:
                pending.extend(PendingRollFlush(tp, log, flush) for flush in take())
        return pending

    def complete_roll_flush(self, pending: PendingRollFlush) -> None:
        """Move the log's recovery point past the fsynced segment, unless the partition was
        deleted (or deleted and created again) while the fsync ran."""
        topic = self._topics.get(pending.topic_partition[0])
        index = pending.topic_partition[1]
        if topic is not None and index < topic.partitions and topic.logs[index] is pending.log:
            pending.log.complete_roll_flush(pending.flush)  # type: ignore[attr-defined]

    def roll_flush_failed(self, pending: PendingRollFlush, exc: OSError) -> None:
        """A rolled segment's fsync failed: the log goes offline (see ``disk_io``), so its
        recovery point never passes data that may not be on the disk."""
        go_offline = getattr(pending.log, "go_offline", None)
        if go_offline is not None:
            go_offline(exc)

    def flush_due(self, now_ms: int) -> None:
        """Flush the logs whose ``flush.messages`` / ``flush.ms`` have come due."""
        with _FirstError() as first:
            for _, log in self.logs():
                maybe_flush = getattr(log, "maybe_flush", None)  # only the disk engine counts
                if maybe_flush is not None:
                    with first.caught():
                        maybe_flush(now_ms)

    def checkpoint(self, high_watermarks: Mapping[TopicPartition, int] | None = None) -> None:
        """Write recovery-point, log-start-offset and replication checkpoints; the high
        watermarks are the partitions' (the replica manager's), else each log's end."""
        if not self._persists_partitions or self.data_dir is None:
            return
        recovery: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}
        watermarks: dict[TopicPartition, int] = {}
        for tp, log in self.logs():
            recovery[tp] = self._recovery_point(tp, log)
            starts[tp] = log.log_start_offset
            watermarks[tp] = (
                log.log_end_offset if high_watermarks is None else high_watermarks.get(tp, 0)
            )
        write_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT, recovery)
        write_checkpoint(self.data_dir / LOG_START_OFFSET_CHECKPOINT, starts)
        write_checkpoint(self.data_dir / REPLICATION_OFFSET_CHECKPOINT, watermarks)

    def run_retention(self, now_ms: int) -> int:
        """One pass of Kafka's retention check (scheduled every log.retention.check.interval.ms);
        returns how many segments were deleted."""
        deleted = 0
        with _FirstError() as first:
            for _, log in self.logs():
                with first.caught():
                    deleted += log.apply_retention(now_ms)
        return deleted

    def shutdown(self, high_watermarks: Mapping[TopicPartition, int] | None = None) -> None:
        """Flush, checkpoint, close, then mark the shutdown clean: the marker must come last,
        since its presence tells the next start that recovery can be skipped."""
        if not self._started:
            return
        # A disk error here must not keep the data dir locked or leave logs open; it only
        # withholds the clean-shutdown marker, so the next start recovers the unflushed tails.
        clean = True
        try:
            self.flush()
        except OSError:
            clean = False
        try:
            self.checkpoint(high_watermarks)
        except OSError as exc:
            _log.error("cannot write the checkpoints at shutdown: %s", disk_io.describe(exc))
            clean = False
        for _, log in self.logs():
            try:
                log.close()
            except OSError:
                clean = False
        if self.fd_pool is not None:
            self.fd_pool.close_all()
        if self.offline_logs:
            clean = False
        if self.data_dir is not None and clean:
            write_clean_shutdown(self.data_dir)
        if self.data_dir is not None:
            unlock_data_dir(self.data_dir)
        self._started = False

    def with_broker_config(self, broker_config: Mapping[str, str]) -> None:
        """New broker defaults (dynamic broker config); each topic's config is re-resolved
        by :meth:`update_config` as the controller publishes it."""
        self.broker_config = dict(broker_config)
