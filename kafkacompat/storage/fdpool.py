"""A bounded LRU pool of open file descriptors, so 10,000 partitions do not need 40,000 fds.

Each segment has a .log, .index and .timeindex; keeping them all open would run into
``RLIMIT_NOFILE`` long before the partition count a broker is expected to hold. Segment code
asks the pool for an fd each time it reads or writes; a hit is a dict lookup, a miss opens the
file and, when full, closes the least recently used fd.

An fd returned by :meth:`FdPool.get` stays valid only until the next ``get`` (which may evict
it): use it at once (``os.pread``, ``os.write``, ``os.sendfile``) and do not keep it across an
``await``. Not thread-safe: the broker runs storage on its one asyncio thread.
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from typing import Final

# fds kept free for sockets, the checkpoint writer and whatever else the process opens.
FD_HEADROOM: Final = 128
MIN_CAPACITY: Final = 16


def default_capacity() -> int:
    """Half the soft ``RLIMIT_NOFILE``, and never so much that fewer than FD_HEADROOM remain."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 65536
    return max(MIN_CAPACITY, min(soft // 2, soft - FD_HEADROOM))


PoolKey = tuple[str, int]


class FdPool:
    """``get(path, flags)`` -> an open fd, closing the least recently used beyond ``capacity``."""

    def __init__(self, capacity: int | None = None, mode: int = 0o644) -> None:
        self.capacity = default_capacity() if capacity is None else capacity
        if self.capacity < 1:
            raise ValueError(f"capacity must be positive, got {self.capacity}")
        self._mode = mode
        self._fds: OrderedDict[PoolKey, int] = OrderedDict()
        # path -> the flags it is open with, so releasing a path (every segment close)
        # does not scan the whole pool: shutdown of 10,000 partitions stays linear.
        self._flags_by_path: dict[str, set[int]] = {}
        self.opens = 0
        """How many times a file was opened (misses); for tests and metrics."""

    def __len__(self) -> int:
        return len(self._fds)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str | os.PathLike):
            return False
        return os.fspath(path) in self._flags_by_path

    def get(self, path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> int:
        """An open fd for ``path`` with ``flags``; opens it (evicting the oldest) if needed."""
        key = (os.fspath(path), flags)
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        while len(self._fds) >= self.capacity:
            old_key, oldest = self._fds.popitem(last=False)
            self._forget(old_key)
            os.close(oldest)
        fd = os.open(key[0], flags | getattr(os, "O_CLOEXEC", 0), self._mode)
        self.opens += 1
        self._fds[key] = fd
        self._flags_by_path.setdefault(key[0], set()).add(flags)
        return fd

    def _forget(self, key: PoolKey) -> None:
        flags = self._flags_by_path.get(key[0])
        if flags is not None:
            flags.discard(key[1])
            if not flags:
                del self._flags_by_path[key[0]]

    def release(self, path: str | os.PathLike[str], flags: int | None = None) -> None:
        """Close ``path``'s fds now (all of them, or the one opened with ``flags``)."""
        name = os.fspath(path)
        open_flags = self._flags_by_path.get(name, ())
        for key in [(name, f) for f in open_flags if flags is None or f == flags]:
            self._forget(key)
            os.close(self._fds.pop(key))

    def invalidate(self, path: str | os.PathLike[str]) -> None:
        """Forget ``path`` before it is deleted or renamed, so no fd points at the old file."""
        self.release(path)

    def invalidate_prefix(self, directory: str | os.PathLike[str]) -> None:
        """Forget every file under ``directory`` (a partition folder being deleted)."""
        prefix = os.path.join(os.fspath(directory), "")
        for key in [k for k in self._fds if k[0].startswith(prefix)]:
            self._forget(key)
            os.close(self._fds.pop(key))

    def close_all(self) -> None:
        self._flags_by_path.clear()
        while self._fds:
            _, fd = self._fds.popitem()
            os.close(fd)
