"""What ``scripts/capture_golden.py`` asks the clients to produce, in one place.

The capture script hands these records to every producer (each client, each codec); the golden
tests decode the captured Produce requests and expect exactly these records back. Plain data
only, so the script can import it without pulling in pytest or the package under test.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

TOPIC = "golden"
# Fixed, so that Fetch v13+ requests, which name topics by id, come out the same on every capture.
TOPIC_ID = uuid.UUID("6b61666b-6163-6f6d-7061-74676f6c6465")
PARTITION_COUNT = 3
# Not partition 0: a decoder that drops the field and falls back to the default would still pass.
PARTITION = 1

CONFLUENT_GROUP = "golden-confluent"
KAFKA_PYTHON_GROUP = "golden-kafka-python"

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
"""Kafka's codec names; the index is the codec id in a batch's attributes."""

# kafka-python picks its producer id from our InitProducerId answer.
PRODUCER_ID = 1000
PRODUCER_EPOCH = 0

BASE_TIMESTAMP = 1_700_000_000_000


class ProducedRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


RECORDS: tuple[ProducedRecord, ...] = (
    ProducedRecord(b"key-0", b"value-0", (), BASE_TIMESTAMP),
    # Duplicate header keys keep their order; a record may carry the same key several times.
    ProducedRecord(
        b"key-1", b"dup headers", (("trace", b"a"), ("trace", b"b"), ("n", b"")), BASE_TIMESTAMP + 5
    ),
    # A tombstone (null value), with a timestamp behind the batch's base: a negative delta.
    # (No null header value: kafka-python's send() refuses one, though its batches can hold it.)
    ProducedRecord(b"tombstone", None, (("why", b"deleted"),), BASE_TIMESTAMP - 7),
    # No key; non-ASCII header key and value bytes that are not UTF-8.
    ProducedRecord(
        None, "h\u00e9llo \u2713".encode(), (("cl\u00e9", b"\x00\xff"),), BASE_TIMESTAMP + 9
    ),
    # Repetitive enough that every codec shrinks the batch: both clients send a batch
    # uncompressed when compressing does not make it smaller.
    ProducedRecord(b"key-4", b"golden bytes " * 24, (), BASE_TIMESTAMP + 1000),
)
