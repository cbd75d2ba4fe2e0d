"""The records the interop tests send, and how a read is compared with what was sent."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from interop.clients import Consumed, Record, observable, produce, sendable
from interop.conftest import unique_topic

BASE_TIMESTAMP = (time.time_ns() // 1_000_000 // 1000) * 1000 - 60_000
"""Explicit CreateTimes: a minute ago, inside the broker's message.timestamp.*.max.ms."""


def standard_records() -> list[Record]:
    """Keys and values binary, null and empty; headers repeated, empty, null, binary and
    UTF-8; each record its own CreateTime."""
    return [
        Record(
            b"k\x00\xfe\xff\n\tbinary",
            bytes(range(256)) * 4,
            (
                ("h1", b"v1"),
                ("dup", b"first"),
                ("empty", b""),
                ("dup", b"second"),
                ("bin", b'\x01\xff\x80"\\'),
            ),
            BASE_TIMESTAMP,
        ),
        Record(None, b"value with a null key", (), BASE_TIMESTAMP + 1),
        Record(
            b"tombstone", None, (("dup", b"a"), ("dup", b"b"), ("dup", b"c")), BASE_TIMESTAMP + 2
        ),
        Record(b"", b"", (("null-value", None),), BASE_TIMESTAMP + 3),
        Record(
            "ключ".encode(),
            "значение ✓".encode(),
            (("заголовок", "✓".encode()),),
            BASE_TIMESTAMP + 4,
        ),
        Record(b"compressible", b"kafkacompat " * 800, (), BASE_TIMESTAMP + 5),
    ]


def assert_read_back(
    producer: str,
    consumer: str,
    asked: Sequence[Record],
    read: Sequence[Consumed],
    first_offset: int,
    window_ms: tuple[int, int],
) -> None:
    """``read`` holds exactly what ``producer`` sent for ``asked``, byte for byte, at
    consecutive offsets from ``first_offset``.  A record sent without a timestamp must carry
    one from the producer's clock, inside ``window_ms``."""
    assert [c.offset for c in read] == list(range(first_offset, first_offset + len(asked)))
    for index, (want, got) in enumerate(zip(asked, read, strict=True)):
        expected = observable(consumer, sendable(producer, want))
        actual = got.record
        if expected.timestamp is None:
            low, high = window_ms
            assert actual.timestamp is not None and low <= actual.timestamp <= high, (
                f"record {index}: timestamp {actual.timestamp} outside the produce window "
                f"{window_ms}"
            )
            actual = replace(actual, timestamp=None)
        assert actual == expected, f"record {index} ({producer} -> {consumer})"


@dataclass
class Produced:
    topic: str
    records: list[Record]
    offsets: list[int | None]
    window_ms: tuple[int, int]
    """Wall clock before and after producing: the bounds of producer-stamped timestamps."""


class ProduceOnce:
    """Topics produced on first use and shared by the tests that read them (one per
    producer and options); a producer's failure is remembered and fails each of those
    tests, without producing again."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.done: dict[tuple[Any, ...], Produced | Exception] = {}

    def get(self, producer: str, records: Sequence[Record], **options: Any) -> Produced:
        key = (producer, tuple(records), tuple(sorted(options.items())))
        if key not in self.done:
            self.done[key] = self._produce(producer, list(records), options)
        result = self.done[key]
        if isinstance(result, Exception):
            raise AssertionError(f"{producer} could not produce ({options})") from result
        return result

    def _produce(
        self, producer: str, records: list[Record], options: dict[str, Any]
    ) -> Produced | Exception:
        topic = unique_topic(f"{producer}-{'-'.join(map(str, options.values()))}")
        started = time.time_ns() // 1_000_000
        try:
            offsets = produce(producer, self.bootstrap, topic, records, **options)
        except Exception as exc:
            return exc
        return Produced(topic, records, offsets, (started, time.time_ns() // 1_000_000))
