"""Small files written atomically and read strictly: a crash leaves the old file or the new one,
never a torn one, and every parser in ``kafkacompat.storage`` raises :class:`CorruptFileError`
naming the file and line, so an operator can act.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from kafkacompat.storage import disk_io


class CorruptFileError(Exception):
    """A data-directory file that cannot be parsed; names the file so an operator can act."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def fsync_dir(directory: Path | str) -> None:
    """Make a create/rename/unlink in ``directory`` durable (the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old content or the new, never half.

    Write a temp file in the same directory (rename is atomic only within a filesystem), fsync
    it so the data is on disk before the name points at it, rename over, fsync the directory
    so the rename itself survives a power cut. Kafka's checkpoint files do the same.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = disk_io.os_write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"not UTF-8 ({exc})") from None
