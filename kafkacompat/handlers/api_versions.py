"""ApiVersions (key 18), v0-4: which APIs and versions this broker speaks.

The ranges come from ``kafkacompat.protocol.supported`` (generated from
protocol_specs/apis.toml), never from a list here.  KIP-511: a client probes with the
newest version it knows; when that is newer than ours the server cannot parse the body,
and answers with :func:`unsupported_version_response` (a v0 body, whose header is v0 as
for every ApiVersions response) so the client retries with a version we have.  v3+
requests name the client software, which must match KIP-511's pattern.
"""

from __future__ import annotations

import re

from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from kafkacompat.protocol.supported import SUPPORTED_VERSIONS

API_KEY = ApiKey.API_VERSIONS

# KIP-511: letters, digits, '-' and '.', starting and ending with a letter or digit.
_SOFTWARE_PATTERN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def supported_api_versions() -> list[ApiVersion]:
    return [
        ApiVersion(api_key=key, min_version=lo, max_version=hi)
        for key, (lo, hi) in sorted(SUPPORTED_VERSIONS.items())
    ]


async def handle(ctx: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
    if ctx.api_version >= 3 and not (
        _SOFTWARE_PATTERN.fullmatch(request.client_software_name)
        and _SOFTWARE_PATTERN.fullmatch(request.client_software_version)
    ):
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST)
    if ctx.api_version >= 3:
        # KIP-511: the connection's client software, kept for its lifetime.
        ctx.session.client_software_name = request.client_software_name
        ctx.session.client_software_version = request.client_software_version
    return ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=supported_api_versions())


HANDLES: dict[int, Handler] = {API_KEY: handle}


def unsupported_version_response() -> ApiVersionsResponse:
    """The answer to an ApiVersions version newer than ours, to be encoded as v0.

    As Kafka does, it lists only ApiVersions' own range: enough for the client to pick
    a version and ask again.
    """
    lo, hi = SUPPORTED_VERSIONS[API_KEY]
    return ApiVersionsResponse(
        error_code=ErrorCode.UNSUPPORTED_VERSION,
        api_keys=[ApiVersion(api_key=API_KEY, min_version=lo, max_version=hi)],
    )
