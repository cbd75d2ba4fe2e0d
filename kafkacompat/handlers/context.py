"""What a handler knows about the request it is answering."""

from __future__ import annotations

from dataclasses import dataclass

from kafkacompat.protocol.messages.request_header import RequestHeader


@dataclass(frozen=True, slots=True)
class RequestContext:
    header: RequestHeader
    client_host: str = ""

    @property
    def api_version(self) -> int:
        return self.header.request_api_version

    @property
    def client_id(self) -> str | None:
        return self.header.client_id
