"""The storage's system calls whose failure means the disk is full or failing, and what each
failure means for a log (Kafka's ``LogDirFailureChannel`` decisions, per partition).

Two kinds of failure, told apart because only one can be retried:

* A *write* that fails (ENOSPC, EDQUOT, EIO on write) leaves the file with bytes the caller
  cuts back off (``ftruncate`` to the size before the write): nothing changed, and the same
  write may succeed once space is freed. The caller answers ``KAFKA_STORAGE_ERROR``.
* An *fsync* that fails cannot be retried: Linux may drop the dirty pages it could not write
  and report success on the next fsync, so nothing that fsync covered may ever be called
  durable. :func:`fsync` raises :class:`LogDirFailure` and the log goes offline until restart;
  recovery then revalidates everything above the recovery point.

A *read* that fails (EIO from ``pread``) means the disk under the log is failing: as Kafka
marks the log dir offline on an ``IOException`` while reading, the log goes offline, and
only the failing partition answers ``KAFKA_STORAGE_ERROR``. Running out of descriptors or
memory says nothing about the disk (:func:`is_transient`): that read is refused, the log
stays online.

``os_write``, ``os_fsync``, ``os_pread`` and ``os_preadv`` are the seams tests replace
(``monkeypatch.setattr(disk_io, "os_write", ...)``) to inject errors at the call without
touching the rest of the process; the storage looks them up as it would ``os.write``, so
the seams cost nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

os_write: Callable[[int, memoryview | bytes], int] = os.write
os_fsync: Callable[[int], None] = os.fsync
os_pread: Callable[[int, int, int], bytes] = os.pread
os_preadv: Callable[[int, list[memoryview], int], int] = os.preadv

_TRANSIENT: frozenset[int] = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR})


class LogDirFailure(OSError):
    """A failure after which a log's bytes on disk cannot be trusted to match what it holds in
    memory (a failed fsync, a partial write that could not be cut back): the log goes offline
    until the broker restarts and recovers it."""


def fsync(fd: int) -> None:
    """``os.fsync``; a failure is a :class:`LogDirFailure`."""
    try:
        os_fsync(fd)
    except OSError as exc:
        raise LogDirFailure(exc.errno, f"fsync failed: {exc.strerror}") from exc


def is_transient(exc: OSError) -> bool:
    """A failure of the process, not of the disk (no descriptor or memory left): retrying
    later may succeed, and taking a log offline for it would turn a passing shortage into
    an outage that lasts until restart."""
    return exc.errno in _TRANSIENT


def describe(exc: BaseException) -> str:
    """A short reason for logs and error messages: the errno's name and text."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{name} ({exc.strerror})"
    return str(exc) or type(exc).__name__
