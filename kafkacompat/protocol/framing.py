"""Frames and headers: how a request or response body travels on a connection.

Rules (Kafka's, facts):

* every request and response is an int32 byte length followed by that many bytes;
* a request starts with a header whose version follows from the API and its version:
  v2 (client id plus tagged fields) for flexible versions, v1 otherwise, and v0 only for
  ControlledShutdown v0.  The client id stays a non-compact string even in v2 so that an
  old broker can read the header of any ApiVersions request;
* a response starts with header v1 (correlation id plus tagged fields) for flexible
  versions and v0 otherwise, except that ApiVersions responses always use v0: a client
  parses them before it knows which versions the broker speaks.

:class:`FrameReader` is the sans-I/O part of the server's read path: bytes in, whole
frames out, ``None`` meaning "need more data", with the size limit enforced on the length
prefix before any of the body is buffered.
"""

from __future__ import annotations

import struct

from kafkacompat.protocol import api_info, request_class, response_class
from kafkacompat.protocol.apis import APIS, ApiKey
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.messages.response_header import ResponseHeader
from kafkacompat.protocol.primitives import Chunks, DecodeError

_SIZE = struct.Struct(">i")
_HEADER_PREFIX = struct.Struct(">hhi")

DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024
"""Kafka's ``socket.request.max.bytes`` default."""


class UnknownApiKeyError(DecodeError):
    """The request names an api key this protocol version does not define."""

    def __init__(self, api_key: int, correlation_id: int) -> None:
        super().__init__(f"unknown api key {api_key}")
        self.api_key = api_key
        self.correlation_id = correlation_id


class UnsupportedApiVersionError(DecodeError):
    """The request's version of a known API is outside what the schemas define."""

    def __init__(self, header: RequestHeader) -> None:
        super().__init__(
            f"{api_info(header.request_api_key).name} v{header.request_api_version} is not a known version"
        )
        self.header = header


class FrameTooLargeError(DecodeError):
    """A length prefix is negative or above the configured maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


# Plain ints and a flat table: these run for every request and response.
_CONTROLLED_SHUTDOWN = int(ApiKey.CONTROLLED_SHUTDOWN)
_API_VERSIONS = int(ApiKey.API_VERSIONS)
_NEVER = 1 << 15
_FLEXIBLE_FROM = {
    key: _NEVER if info.flexible_from is None else info.flexible_from for key, info in APIS.items()
}


def request_header_version(api_key: int, api_version: int) -> int:
    if api_version >= _FLEXIBLE_FROM.get(api_key, _NEVER):
        return 2
    if api_key == _CONTROLLED_SHUTDOWN and api_version == 0:
        return 0
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == _API_VERSIONS:
        return 0
    return 1 if api_version >= _FLEXIBLE_FROM.get(api_key, _NEVER) else 0


def read_request_header(frame: memoryview) -> tuple[RequestHeader, int]:
    """The header of a request frame and the offset where its body starts.

    Works for any version of a known API, including versions newer than the schemas
    know, so that a server can still answer a too-new ApiVersions request (KIP-511).
    """
    if len(frame) < _HEADER_PREFIX.size:
        raise DecodeError(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(frame, 0)
    if api_key not in APIS:
        raise UnknownApiKeyError(api_key, correlation_id)
    return RequestHeader.read(frame, 0, request_header_version(api_key, api_version))


def decode_request(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, Message]:
    """Header and body of one request frame (without its length prefix)."""
    buf = memoryview(frame)
    header, pos = read_request_header(buf)
    cls = request_class(header.request_api_key)
    lo, hi = cls.VALID_VERSIONS
    if not lo <= header.request_api_version <= hi:
        raise UnsupportedApiVersionError(header)
    return header, cls.decode(buf[pos:], header.request_api_version)


def encode_request(header: RequestHeader, body: Message) -> bytes:
    """A whole request frame, length prefix included."""
    out: Chunks = [b""]
    header.write(out, request_header_version(header.request_api_key, header.request_api_version))
    body.write(out, header.request_api_version)
    out[0] = _SIZE.pack(sum(map(len, out)))
    return b"".join(out)


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Message) -> Chunks:
    """A whole response frame as chunks, length prefix first.

    Chunks rather than bytes so that large ``records`` views reach the socket without
    being copied into one buffer first.
    """
    out: Chunks = [b""]
    ResponseHeader(correlation_id=correlation_id).write(
        out, response_header_version(api_key, api_version)
    )
    body.write(out, api_version)
    out[0] = _SIZE.pack(sum(map(len, out)))
    return out


def decode_response(
    api_key: int, api_version: int, frame: bytes | bytearray | memoryview
) -> tuple[int, Message]:
    """Correlation id and body of one response frame (without its length prefix)."""
    buf = memoryview(frame)
    header, pos = ResponseHeader.read(buf, 0, response_header_version(api_key, api_version))
    return header.correlation_id, response_class(api_key).decode(buf[pos:], api_version)


class FrameReader:
    """Splits a byte stream into frames.

    ``feed`` bytes as they arrive, then call ``next_frame`` until it returns ``None``.
    A length prefix over ``max_frame_size`` (or negative) raises
    :class:`FrameTooLargeError` as soon as the four prefix bytes are seen, before any of
    the claimed body is buffered.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._start = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._start and self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        available = len(self._buf) - self._start
        if available < 4:
            return None
        (size,) = _SIZE.unpack_from(self._buf, self._start)
        if size < 0 or size > self.max_frame_size:
            raise FrameTooLargeError(size, self.max_frame_size)
        if available < 4 + size:
            return None
        begin = self._start + 4
        frame = bytes(self._buf[begin : begin + size])
        self._start = begin + size
        if self._start > 65536 and self._start * 2 > len(self._buf):
            # Drop consumed bytes now and then so a long-lived connection's buffer does
            # not grow with everything it ever received.
            del self._buf[: self._start]
            self._start = 0
        return frame
