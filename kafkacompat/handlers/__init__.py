"""Request handlers, one module per API family, and the table the server dispatches on.

Each module exports ``HANDLES``: api key -> ``async handle(ctx, request)`` returning the
response body (None where the protocol sends none: Produce with acks=0).  Which versions are
advertised is not decided here but in protocol_specs/apis.toml; a test checks that every
advertised API has an entry below and every entry is advertised.

Modules are imported on first use, so that the broker listens before it has loaded the
code (and the generated message classes) of APIs nobody has called yet; the server warms
them up in the background once it listens.  ``FAMILIES`` names each module's api keys; a
test checks it against the modules' own ``HANDLES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Final

from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey as K

FAMILIES: Final[Mapping[str, tuple[int, ...]]] = {
    "api_versions": (K.API_VERSIONS,),
    # broker data path
    "metadata": (K.METADATA,),
    "produce": (K.PRODUCE,),
    "fetch": (K.FETCH,),
    "offsets": (K.LIST_OFFSETS, K.OFFSET_FOR_LEADER_EPOCH),
    "init_producer_id": (K.INIT_PRODUCER_ID,),
    "transactions": (
        K.ADD_PARTITIONS_TO_TXN,
        K.ADD_OFFSETS_TO_TXN,
        K.END_TXN,
        K.WRITE_TXN_MARKERS,
    ),
    # admin
    "admin_topics": (K.CREATE_TOPICS, K.DELETE_TOPICS, K.CREATE_PARTITIONS, K.DELETE_RECORDS),
    "configs": (K.DESCRIBE_CONFIGS,),
    "alter_configs": (K.ALTER_CONFIGS, K.INCREMENTAL_ALTER_CONFIGS),
    "cluster": (K.DESCRIBE_CLUSTER, K.DESCRIBE_LOG_DIRS),
    "admin_transactions": (K.DESCRIBE_PRODUCERS, K.DESCRIBE_TRANSACTIONS, K.LIST_TRANSACTIONS),
    # consumer groups
    "groups": (
        K.FIND_COORDINATOR,
        K.JOIN_GROUP,
        K.SYNC_GROUP,
        K.HEARTBEAT,
        K.LEAVE_GROUP,
        K.DESCRIBE_GROUPS,
        K.LIST_GROUPS,
        K.DELETE_GROUPS,
    ),
    "group_offsets": (K.OFFSET_COMMIT, K.OFFSET_FETCH, K.OFFSET_DELETE, K.TXN_OFFSET_COMMIT),
}


class _Handlers(Mapping[int, Handler]):
    def __init__(self) -> None:
        self._module_of = {key: name for name, keys in FAMILIES.items() for key in keys}
        self._loaded: dict[int, Handler] = {}

    def __getitem__(self, api_key: int) -> Handler:
        handler = self._loaded.get(api_key)
        if handler is None:
            module = self._module_of[api_key]  # KeyError: not handled
            handles: Mapping[int, Handler] = importlib.import_module(f"{__name__}.{module}").HANDLES
            self._loaded.update(handles)
            handler = self._loaded[api_key]
        return handler

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._module_of

    def __iter__(self) -> Iterator[int]:
        return iter(self._module_of)

    def __len__(self) -> int:
        return len(self._module_of)


HANDLERS: Final[Mapping[int, Handler]] = _Handlers()


def load_all() -> None:
    """Import every handler module now (the server's background warm-up)."""
    for name in FAMILIES:
        importlib.import_module(f"{__name__}.{name}")


__all__ = ["FAMILIES", "HANDLERS", "Handler", "RequestContext", "load_all"]
