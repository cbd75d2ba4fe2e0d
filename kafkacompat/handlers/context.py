"""What a handler knows about the request it is answering: its header, the broker, and the
session of the connection it came on (who asks, on which listener)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafkacompat.broker import Broker
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.security.authorizer import AclOperation, Action, ResourceType
from kafkacompat.security.session import Session


@dataclass(frozen=True, slots=True)
class RequestContext:
    header: RequestHeader
    broker: Broker
    session: Session = field(default_factory=Session)

    @property
    def api_version(self) -> int:
        return self.header.request_api_version

    @property
    def client_id(self) -> str | None:
        return self.header.client_id

    @property
    def client_host(self) -> str:
        return self.session.client_host

    def authorize(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        """Whether this session may do ``operation`` on the resource (Kafka's
        ``AuthHelper.authorize``)."""
        return self.broker.authorizer.authorize(
            self.session, [Action(operation, resource_type, name)]
        )[0]

    def authorized(
        self, operation: AclOperation, resource_type: ResourceType, names: Iterable[str]
    ) -> set[str]:
        """The names among ``names`` this session may do ``operation`` on, asked in one call
        (Kafka's ``filterByAuthorized``)."""
        unique = list(dict.fromkeys(names))
        answers = self.broker.authorizer.authorize(
            self.session, [Action(operation, resource_type, name) for name in unique]
        )
        return {name for name, ok in zip(unique, answers, strict=True) if ok}


Handler = Callable[[RequestContext, Any], Awaitable[Message | None]]
"""Returns the response body, or None where the protocol sends none (Produce acks=0)."""


class CloseConnection(Exception):
    """Raised by a handler when Kafka would drop the connection instead of answering
    (an acks=0 produce that failed: the client has no other way to learn of it)."""
