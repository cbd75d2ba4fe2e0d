"""The base of every generated message class: versioned encode and decode.

A generated module defines one dataclass per struct and per message, one reader and one
writer function per distinct wire layout, and fills the message class's ``_readers`` /
``_writers`` tables (version -> function).  This class holds the only logic they share,
so the generated modules are data classes plus straight-line field code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, ClassVar, Self

from kafkacompat.protocol.primitives import Chunks, DecodeError, check_consumed

Reader = Callable[[memoryview, int], tuple[Any, int]]
Writer = Callable[[Chunks, Any], None]


class UnsupportedVersionError(ValueError):
    """Asked to encode a version the message does not have (a bug in the caller)."""


class Message:
    """A request, response, header or data record of Kafka's protocol."""

    __slots__ = ()

    NAME: ClassVar[str]
    API_KEY: ClassVar[int | None] = None
    VALID_VERSIONS: ClassVar[tuple[int, int]]
    FLEXIBLE_FROM: ClassVar[int | None] = None
    """The first flexible (compact, tagged) version, or None if no version is flexible."""

    _readers: ClassVar[dict[int, Reader]]
    _writers: ClassVar[dict[int, Writer]]

    @classmethod
    def is_flexible(cls, version: int) -> bool:
        return cls.FLEXIBLE_FROM is not None and version >= cls.FLEXIBLE_FROM

    @classmethod
    def read(cls, buf: memoryview, pos: int, version: int) -> tuple[Self, int]:
        """Decodes one message starting at ``pos``; returns it and the position after it."""
        reader = cls._readers.get(version)
        if reader is None:
            raise DecodeError(f"{cls.NAME} has no version {version}")
        try:
            return reader(buf, pos)
        except DecodeError:
            raise
        except (struct.error, UnicodeDecodeError, ValueError, IndexError, OverflowError) as exc:
            raise DecodeError(f"{cls.NAME} v{version}: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, version: int) -> Self:
        """Decodes ``data`` as exactly one message; trailing bytes are an error."""
        buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        message, pos = cls.read(buf, 0, version)
        check_consumed(buf, pos, f"{cls.NAME} v{version}")
        return message

    def write(self, out: Chunks, version: int) -> None:
        """Appends the encoded message to ``out`` (no copy of ``records`` payloads)."""
        writer = self._writers.get(version)
        if writer is None:
            raise UnsupportedVersionError(f"{self.NAME} has no version {version}")
        writer(out, self)

    def encode(self, version: int) -> bytes:
        out: Chunks = []
        self.write(out, version)
        return b"".join(out)
