from __future__ import annotations

import asyncio

from kafkacompat.broker import Broker
from kafkacompat.config import BrokerConfig
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers import api_versions
from kafkacompat.handlers.context import RequestContext
from kafkacompat.protocol.framing import decode_response, encode_response, read_request_header
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.supported import SUPPORTED_VERSIONS


def _ctx(version: int) -> RequestContext:
    # ApiVersions consults no broker state; an unstarted memory broker stands in.
    return RequestContext(
        RequestHeader(
            request_api_key=18, request_api_version=version, correlation_id=7, client_id="t"
        ),
        Broker(BrokerConfig(), engine="memory"),
    )


def test_lists_exactly_the_supported_ranges() -> None:
    response = asyncio.run(
        api_versions.handle(_ctx(3), ApiVersionsRequest("kafkacompat-tests", "1.0"))
    )
    assert response.error_code == ErrorCode.NONE
    assert {
        k.api_key: (k.min_version, k.max_version) for k in response.api_keys
    } == SUPPORTED_VERSIONS


def test_v3_rejects_invalid_client_software_names() -> None:
    for name, version in [("", "1.0"), ("bad name", "1"), ("ok", "-1"), ("x.", "1")]:
        response = asyncio.run(api_versions.handle(_ctx(3), ApiVersionsRequest(name, version)))
        assert response.error_code == ErrorCode.INVALID_REQUEST, (name, version)
    # Before v3 there are no such fields to validate.
    response = asyncio.run(api_versions.handle(_ctx(2), ApiVersionsRequest()))
    assert response.error_code == ErrorCode.NONE


def test_too_new_version_gets_a_v0_answer_a_client_can_read() -> None:
    # KIP-511: v99 cannot be parsed, but its header can, and the answer is a v0 body
    # under a v0 header that names ApiVersions' own range.
    frame = memoryview(b"\x00\x12\x00\x63\x00\x00\x00\x2a\x00\x04test\x00")
    header, _ = read_request_header(frame)
    assert (header.request_api_version, header.correlation_id) == (99, 42)
    chunks = encode_response(
        18, 0, header.correlation_id, api_versions.unsupported_version_response()
    )
    raw = b"".join(chunks)[4:]
    correlation_id, body = decode_response(18, 0, raw)
    assert correlation_id == 42
    assert body.error_code == ErrorCode.UNSUPPORTED_VERSION  # type: ignore[attr-defined]
    assert [(k.api_key, k.min_version, k.max_version) for k in body.api_keys] == [  # type: ignore[attr-defined]
        (18, *SUPPORTED_VERSIONS[18])
    ]


def test_v3_names_the_client_software_in_the_session() -> None:
    ctx = _ctx(3)
    assert ctx.session.client_software_name == "unknown"
    asyncio.run(api_versions.handle(ctx, ApiVersionsRequest("librdkafka", "2.16.0")))
    assert (ctx.session.client_software_name, ctx.session.client_software_version) == (
        "librdkafka",
        "2.16.0",
    )
