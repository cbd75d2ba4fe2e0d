"""Injected disk faults: ENOSPC (or any errno) at the storage's write call, EIO at its fsync
and at its reads (``pread``/``preadv``), for the files a predicate picks, through the seams of :mod:`kafkacompat.storage.disk_io`."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from kafkacompat.storage import disk_io


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class DiskFaults:
    """Faults switched on and off by a test; ``writes_refused`` counts refusals so a test can
    tell its fault was really hit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.write_error: int | None = None
        self.fsync_error: int | None = None
        self.matches: Callable[[str], bool] = lambda path: True
        self.partial = False
        """Write half of the first refused write before refusing (a torn append)."""
        self.writes_refused = 0
        self.fsyncs_refused = 0
        self.read_error: int | None = None
        self.reads_refused = 0
        real_write, real_fsync = disk_io.os_write, disk_io.os_fsync
        real_pread, real_preadv = disk_io.os_pread, disk_io.os_preadv

        def write(fd: int, data: memoryview | bytes) -> int:
            if self.write_error is not None and self.matches(fd_path(fd)):
                if self.partial and len(data) > 1 and self.writes_refused == 0:
                    self.writes_refused += 1
                    return real_write(fd, memoryview(data)[: len(data) // 2])
                self.writes_refused += 1
                raise OSError(self.write_error, os.strerror(self.write_error))
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            if self.fsync_error is not None and self.matches(fd_path(fd)):
                self.fsyncs_refused += 1
                raise OSError(self.fsync_error, os.strerror(self.fsync_error))
            real_fsync(fd)

        def refuse_read(fd: int) -> None:
            if self.read_error is not None and self.matches(fd_path(fd)):
                self.reads_refused += 1
                raise OSError(self.read_error, os.strerror(self.read_error))

        def pread(fd: int, size: int, position: int) -> bytes:
            refuse_read(fd)
            return real_pread(fd, size, position)

        def preadv(fd: int, buffers: list[memoryview], position: int) -> int:
            refuse_read(fd)
            return real_preadv(fd, buffers, position)

        monkeypatch.setattr(disk_io, "os_write", write)
        monkeypatch.setattr(disk_io, "os_fsync", fsync)
        monkeypatch.setattr(disk_io, "os_pread", pread)
        monkeypatch.setattr(disk_io, "os_preadv", preadv)

    @contextmanager
    def full(
        self, matches: Callable[[str], bool] = lambda path: True, error: int = errno.ENOSPC
    ) -> Iterator[DiskFaults]:
        """Writes to matching files fail with ``error`` inside the block."""
        self.write_error, self.matches, self.writes_refused = error, matches, 0
        try:
            yield self
        finally:
            self.write_error = None

    @contextmanager
    def failing_fsync(
        self, matches: Callable[[str], bool] = lambda path: True
    ) -> Iterator[DiskFaults]:
        self.fsync_error, self.matches, self.fsyncs_refused = errno.EIO, matches, 0
        try:
            yield self
        finally:
            self.fsync_error = None

    @contextmanager
    def failing_reads(
        self, matches: Callable[[str], bool] = lambda path: True, error: int = errno.EIO
    ) -> Iterator[DiskFaults]:
        """Reads of matching files fail with ``error`` inside the block."""
        self.read_error, self.matches, self.reads_refused = error, matches, 0
        try:
            yield self
        finally:
            self.read_error = None
