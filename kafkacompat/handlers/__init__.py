"""Request handlers, one module per API family, and the table the server dispatches on.

Each module exports ``HANDLES``: api key -> ``async handle(ctx, request)`` returning the
response body (None where the protocol sends none: Produce with acks=0).  Which versions are
advertised is not decided here but in protocol_specs/apis.toml; a test checks that every
advertised API has an entry below and every entry is advertised.
"""

from __future__ import annotations

from collections.abc import Mapping

from kafkacompat.handlers import (
    admin_topics,
    api_versions,
    cluster,
    configs,
    fetch,
    init_producer_id,
    metadata,
    offsets,
    produce,
)
from kafkacompat.handlers.context import Handler, RequestContext

# One line per family module.
_FAMILIES: tuple[Mapping[int, Handler], ...] = (
    api_versions.HANDLES,
    # broker data path (metadata, produce, fetch, offsets, producer ids)
    metadata.HANDLES,
    produce.HANDLES,
    fetch.HANDLES,
    offsets.HANDLES,
    init_producer_id.HANDLES,
    # admin (topics, configs, cluster, log dirs)
    admin_topics.HANDLES,
    configs.HANDLES,
    cluster.HANDLES,
    # consumer groups
)

HANDLERS: Mapping[int, Handler] = {key: fn for family in _FAMILIES for key, fn in family.items()}

__all__ = ["HANDLERS", "Handler", "RequestContext"]
