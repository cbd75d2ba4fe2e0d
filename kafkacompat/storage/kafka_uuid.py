"""Kafka's ``Uuid``: topic ids, cluster ids and directory ids as Kafka writes them."""

from __future__ import annotations

import base64
import uuid


def uuid_to_base64(value: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, no padding (22 chars)."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def uuid_from_base64(text: str) -> uuid.UUID:
    """Kafka's ``Uuid.fromString``; raises ValueError for anything but 22 base64url chars."""
    if len(text) != 22:
        raise ValueError(f"a Kafka uuid is 22 base64url characters, got {text!r}")
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid Kafka uuid {text!r}: {exc}") from None
    if len(raw) != 16 or uuid_to_base64(uuid.UUID(bytes=raw)) != text:
        raise ValueError(f"invalid Kafka uuid {text!r}")
    return uuid.UUID(bytes=raw)


def random_kafka_uuid() -> uuid.UUID:
    """A random id as Kafka's ``Uuid.randomUuid`` makes them.

    Kafka skips ids whose string starts with '-' (command-line tools would read it as a flag)
    and the low reserved values (the zero id, the metadata topic id, and the directory ids
    below 100 that KIP-858 reserves).
    """
    while True:
        candidate = uuid.uuid4()
        if candidate.int >= 100 and not uuid_to_base64(candidate).startswith("-"):
            return candidate
