"""A data directory's ownership and shutdown state: Kafka's ``.lock`` (``FileLock``), so two
brokers never share a directory, and the ``.kafka_cleanshutdown`` marker
(``CleanShutdownFileHandler``), present only after a clean shutdown.

The data directory as a whole (Kafka's names, so Kafka's tools and engineers recognise it)::

    <data>/.lock                              held by the running broker
    <data>/meta.properties                    version, node.id, cluster.id, directory.id
    <data>/recovery-point-offset-checkpoint   per partition: offset below which all is fsync'd
    <data>/log-start-offset-checkpoint        per partition: first readable offset
    <data>/replication-offset-checkpoint      per partition: high watermark
    <data>/cleaner-offset-checkpoint          per compacted partition: first dirty offset
    <data>/.kafka_cleanshutdown               present only after a clean shutdown
    <data>/<topic>-<partition>/partition.metadata   the topic id
    <data>/<topic>-<partition>/leader-epoch-checkpoint   per epoch: its first offset
    <data>/__kafkacompat_topics/<topic id>.properties   ours: topic name, partitions, overrides

Where each is read and written: :mod:`kafkacompat.storage.meta_properties`,
:mod:`kafkacompat.storage.checkpoint_file`, :mod:`kafkacompat.storage.partition_dir`,
:mod:`kafkacompat.storage.topic_records`; all of them through
:mod:`kafkacompat.storage.atomic_file`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from kafkacompat.storage.atomic_file import atomic_write, fsync_dir

CLEAN_SHUTDOWN_FILE: Final = ".kafka_cleanshutdown"


class DataDirInUseError(Exception):
    """Another process holds the data directory's ``.lock`` (Kafka's FileLock)."""


LOCK_FILE = ".lock"


_HELD_LOCKS: dict[str, int] = {}


def lock_data_dir(directory: Path) -> None:
    """Take Kafka's exclusive lock on ``<dir>/.lock`` so two brokers never share a data dir.

    The lock is per process: the kernel drops it when the process exits, however it exits.
    A second LogManager in the same process (tests that simulate a crash by abandoning one)
    shares the lock already held."""
    key = os.path.realpath(directory)
    if key in _HELD_LOCKS:
        return
    fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUseError(
            f"{directory} is in use by another process (it holds {directory / LOCK_FILE})"
        ) from None
    _HELD_LOCKS[key] = fd


def unlock_data_dir(directory: Path) -> None:
    fd = _HELD_LOCKS.pop(os.path.realpath(directory), None)
    if fd is not None:
        os.close(fd)


def write_clean_shutdown(directory: Path, broker_epoch: int = -1) -> None:
    """Kafka 3.7+ writes a small JSON body; older versions an empty file. Presence is what counts."""
    atomic_write(
        directory / CLEAN_SHUTDOWN_FILE,
        b'{"version":0,"brokerEpoch":' + str(broker_epoch).encode() + b"}",
    )


def consume_clean_shutdown(directory: Path) -> bool:
    """Whether the last shutdown was clean; removes the marker so a crash from now on leaves none."""
    path = directory / CLEAN_SHUTDOWN_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(directory)
    return True
