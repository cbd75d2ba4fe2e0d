"""What a handler knows about the request it is answering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kafkacompat.broker import Broker
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.request_header import RequestHeader


@dataclass(frozen=True, slots=True)
class RequestContext:
    header: RequestHeader
    broker: Broker
    client_host: str = ""

    @property
    def api_version(self) -> int:
        return self.header.request_api_version

    @property
    def client_id(self) -> str | None:
        return self.header.client_id


Handler = Callable[[RequestContext, Any], Awaitable[Message | None]]
"""Returns the response body, or None where the protocol sends none (Produce acks=0)."""


class CloseConnection(Exception):
    """Raised by a handler when Kafka would drop the connection instead of answering
    (an acks=0 produce that failed: the client has no other way to learn of it)."""
