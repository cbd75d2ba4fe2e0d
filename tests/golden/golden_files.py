"""The captured frames in tests/fixtures/golden/, found by name and decoded with our codec."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from kafkacompat.protocol.framing import decode_request
from kafkacompat.protocol.messages.request_header import RequestHeader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
CLIENTS = ("confluent", "kafka_python")

_NAME = re.compile(
    r"(?P<api>[a-z_]+?)_request_v(?P<version>\d+)_(?P<client>confluent|kafka_python)"
    r"(?:_(?P<codec>none|gzip|snappy|lz4|zstd))?\.bin"
)


@dataclass(frozen=True)
class Golden:
    path: Path
    api: str
    version: int
    client: str
    codec: str | None

    @classmethod
    def from_path(cls, path: Path) -> Golden:
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path.name} does not follow <api>_request_v<N>_<client>[_<codec>]")
        return cls(
            path, match["api"], int(match["version"]), match["client"], match["codec"] or None
        )

    @property
    def id(self) -> str:
        return self.path.stem

    @cached_property
    def data(self) -> bytes:
        return self.path.read_bytes()

    def decode(self) -> tuple[RequestHeader, Any]:
        """Header and body; the body is typed Any so tests can reach each API's own fields."""
        return decode_request(self.data)


def goldens(api: str | None = None) -> list[Golden]:
    found = [Golden.from_path(p) for p in sorted(FIXTURES.glob("*_request_v*.bin"))]
    return [g for g in found if api is None or g.api == api]


def client_versions() -> dict[str, str]:
    versions: dict[str, str] = MANIFEST["clients"]
    return versions
