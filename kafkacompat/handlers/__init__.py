"""Request handlers, one module per API family, and the table the server dispatches on.

Each module declares the ``API_KEY`` it serves and an ``async handle(ctx, request)``
returning the response body.  Which versions are advertised is not decided here but in
protocol_specs/apis.toml; a test checks that every advertised API has an entry below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kafkacompat.handlers import api_versions
from kafkacompat.handlers.context import RequestContext
from kafkacompat.protocol.message import Message

Handler = Callable[[RequestContext, Any], Awaitable[Message | None]]
"""Returns the response body, or None where the protocol sends none (Produce acks=0)."""

HANDLERS: Mapping[int, Handler] = {
    api_versions.API_KEY: api_versions.handle,
}

__all__ = ["HANDLERS", "Handler", "RequestContext"]
