"""A broker without sockets, for calling handlers directly."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafkacompat.broker import Broker
from kafkacompat.config import BrokerConfig
from kafkacompat.handlers import HANDLERS
from kafkacompat.handlers.context import RequestContext
from kafkacompat.protocol import request_class, response_class
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.security.session import Session
from kafkacompat.storage.manager import Engine

_correlation = itertools.count(1)


@contextmanager
def running_broker(
    tmp_path: Path | None = None, engine: Engine = "memory", **props: str
) -> Iterator[Broker]:
    """A started broker; ``props`` use underscores for dots (``num_partitions="3"``)."""
    config = BrokerConfig({key.replace("_", "."): value for key, value in props.items()})
    broker = Broker(config, engine=engine, data_dir=tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.shutdown()


def context(broker: Broker, api_key: int, version: int, client_id: str = "tests") -> RequestContext:
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=next(_correlation),
        client_id=client_id,
    )
    return RequestContext(header, broker, Session(client_host="127.0.0.1"))


def call(broker: Broker, request: Message, version: int) -> Any:
    """Run the handler for ``request`` as the server would, through an encode/decode round
    trip of both request and response at ``version`` so field-version mistakes show up."""
    api_key = request.API_KEY
    # A bytearray, as the server's frames are: the log stamps produce batches in place.
    wire_request = request_class(api_key).decode(bytearray(request.encode(version)), version)
    handler = HANDLERS[api_key]

    async def run() -> Message | None:
        return await handler(context(broker, api_key, version), wire_request)

    response = asyncio.run(run())
    if response is None:
        return None
    return response_class(api_key).decode(response.encode(version), version)
