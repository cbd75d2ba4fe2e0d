"""Kafka's wire protocol, sans I/O: message codecs, headers and framing.

Message modules are generated (``scripts/generate_protocol.py``) and imported on first use
through :func:`request_class` / :func:`response_class`, so importing this package costs
only the api key index.
"""

from __future__ import annotations

import importlib
from functools import cache

from kafkacompat.protocol.apis import APIS, ApiInfo, ApiKey
from kafkacompat.protocol.message import Message, UnsupportedVersionError
from kafkacompat.protocol.primitives import DecodeError

__all__ = [
    "APIS",
    "ApiInfo",
    "ApiKey",
    "DecodeError",
    "Message",
    "UnsupportedVersionError",
    "api_info",
    "request_class",
    "response_class",
]


def api_info(api_key: int) -> ApiInfo:
    info = APIS.get(api_key)
    if info is None:
        raise DecodeError(f"unknown api key {api_key}")
    return info


@cache
def request_class(api_key: int) -> type[Message]:
    info = api_info(api_key)
    cls: type[Message] = getattr(importlib.import_module(info.request_module), info.request_class)
    return cls


@cache
def response_class(api_key: int) -> type[Message]:
    info = api_info(api_key)
    cls: type[Message] = getattr(importlib.import_module(info.response_module), info.response_class)
    return cls
