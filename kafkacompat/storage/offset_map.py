"""The log cleaner's offset map: key -> offset of its latest record (Kafka's ``OffsetMap``).

Built over a log's cleanable range by :func:`kafkacompat.storage.log_cleaner.build_offset_map`.
Its memory is bounded by ``log.cleaner.dedupe.buffer.size``; when it fills, the round ends
there, and the next one goes on from that offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# What one offset-map entry costs in a Python dict (slot, bytes object, int), beside the key's
# own bytes; the dedupe buffer's size is a memory budget, so the map counts in these units.
MAP_ENTRY_OVERHEAD: Final = 120


@dataclass(slots=True)
class OffsetMap:
    """Key -> offset of its latest record in the mapped range (Kafka's ``SkimpyOffsetMap``,
    with whole keys instead of MD5 digests, so a collision can never drop a record)."""

    budget_bytes: int
    latest: dict[bytes, int] = field(default_factory=dict)
    used_bytes: int = 0
    latest_offset: int = -1

    @property
    def full(self) -> bool:
        return self.used_bytes >= self.budget_bytes

    def put(self, key: bytes, offset: int) -> None:
        if key not in self.latest:
            self.used_bytes += len(key) + MAP_ENTRY_OVERHEAD
        self.latest[key] = offset
