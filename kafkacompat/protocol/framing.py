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

import collections
import struct
from collections.abc import Callable

from kafkacompat.protocol import api_info, request_class, response_class
from kafkacompat.protocol.apis import APIS, ApiKey
from kafkacompat.protocol.memory_pool import SimpleMemoryPool
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


SCRATCH_SIZE = 64 * 1024
"""Frames up to this size (length prefix included) are read into one reused buffer."""

FIRST_OWN_BUFFER = 1024 * 1024
"""The most a large frame's first buffer of its own holds: once a client has sent 64 KiB of a
frame, up to 1 MiB (the common size of a produce: librdkafka's and Java's batch and request
limits) is taken at once, so such a frame is copied only once on the way (growing 4x from
64 KiB cost 13-17% of large-produce throughput on the null engine, measured); beyond it the
buffer grows by :data:`GROWTH`.  A client's bytes buy at most 16x their size in buffer."""

GROWTH = 4
"""How much a large frame's buffer grows each time it fills: memory stays within about this
factor of the bytes received, and the bytes copied on growth total about a third of the
frame (measured in ``scripts/bench/bench_request_memory.py``)."""


_new_buffer: Callable[[int], bytearray] | None = None


def _frame_buffer(size: int) -> bytearray:
    """``size`` bytes about to be overwritten, so not zero-filled first: ``bytearray(size)``
    writes every byte once more (measured: 20 us per MiB, a fifth of cutting a 1 MiB frame)
    and faults every page in before a byte has arrived.  The reader delivers a frame only
    once every byte of it was received, so nothing left in the memory is ever seen."""
    global _new_buffer
    if _new_buffer is None:
        _new_buffer = _resolve_allocator()
    return _new_buffer(size)


def _resolve_allocator() -> Callable[[int], bytearray]:
    # Resolved on the first large frame: ctypes costs a client that never sees one ~3 ms.
    try:
        import ctypes

        make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except (ImportError, AttributeError):  # not CPython
        return bytearray
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)

    def uninitialized(size: int) -> bytearray:
        buffer: bytearray = make(None, size)
        return buffer

    return uninitialized


def _discard(frame: bytearray) -> None:
    """Where frames go once the reader is closed."""


class FrameReader:
    """Splits a byte stream into frames, sans I/O, shaped for ``asyncio.BufferedProtocol``.

    Two ways in, the same frames out:

    * zero-copy: :meth:`get_buffer` says where the next bytes should be read to and
      :meth:`buffer_updated` how many were; this is what the server does, so the event loop
      reads straight into these buffers;
    * :meth:`feed` with bytes already read (it copies them in through the same two calls).

    Then :meth:`next_frame` until it returns ``None`` ("need more data") or, given
    ``on_frame``, each frame is passed to it the moment it is complete: the server's way, since
    the queue in between added about 50% to the cost of cutting a 1 KiB frame (measured).

    Buffers.  Bytes land in a fixed scratch buffer of ``scratch_size``; every frame complete
    in it is copied out as soon as it arrives, and a partial one is moved to the front.  A
    frame too big for the scratch buffer stays there until the scratch buffer is full, then
    moves to a ``bytearray`` of its own (at most :data:`FIRST_OWN_BUFFER` at first) that grows
    by :data:`GROWTH` each time it fills, up to
    exactly the frame's size; :meth:`get_buffer` hands out the unfilled rest of it, so most
    of a large produce is copied from the kernel once and never again.  Memory follows the
    bytes received, not the size a length prefix claims: a client that claims 100 MiB and
    sends 18 bytes costs nothing beyond the scratch buffer.  Frames are writable
    ``bytearray``s (the log stamps offsets into produce batches in place).  Memory held is
    the scratch buffer, one frame being read, and the frames not yet taken.

    Request memory (``pool``, KIP-72).  Frames that fit the scratch buffer never touch the
    pool: heartbeats and metadata get through whatever a bulk load holds.  A large frame
    takes its whole claimed size from the pool when it leaves the scratch buffer, all or
    nothing, so connections holding partial frames never wait on each other's bytes (a
    deadlock when every one of them holds part of the pool).  Refused, the reader sets
    :attr:`waiting_for_memory`, takes no more bytes (its reader should stop reading: the
    scratch buffer is full), and waits in the pool; once granted it moves the frame out and
    calls ``on_memory``.  A delivered large frame keeps its share until :meth:`release`.

    Limit.  A length prefix above ``max_frame_size`` (or negative) stops the reader as soon as
    its four bytes are in, before any of the claimed body is buffered: the frames before it
    are delivered, :attr:`error` is set, and :meth:`next_frame` raises it (every time, once
    those frames are taken).  Bytes given after that are dropped.  Neither
    :meth:`buffer_updated` nor :meth:`feed` raises.
    """

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        scratch_size: int = SCRATCH_SIZE,
        on_frame: Callable[[bytearray], object] | None = None,
        pool: SimpleMemoryPool | None = None,
        on_memory: Callable[[], object] | None = None,
    ) -> None:
        if scratch_size < 8:
            raise ValueError("the scratch buffer must hold a length prefix and then some")
        self.max_frame_size = max_frame_size
        self._scratch = bytearray(scratch_size)
        self._scratch_view = memoryview(self._scratch)
        self._largest_small = scratch_size - 4  # the largest body the scratch buffer holds
        self._end = 0  # bytes of a partial frame at the front of the scratch buffer
        self._frame: bytearray | None = None  # a large frame being read in place
        self._filled = 0  # how much of it
        self._size = 0  # its claimed size (the buffer may still be smaller)
        self._ready: collections.deque[bytearray] = collections.deque()
        self._ready_bytes = 0
        self._deliver: Callable[[bytearray], object] = (
            on_frame if on_frame is not None else self._keep
        )
        self.pool = pool
        self._on_memory = on_memory
        self._reserved = 0  # taken from the pool for the partial large frame
        self.waiting_for_memory = False
        """The scratch buffer is full with the start of a large frame the pool refused."""
        self.error: FrameTooLargeError | None = None
        """Set once a bad length prefix arrived; the reader reads nothing more."""

    def _keep(self, frame: bytearray) -> None:
        self._ready.append(frame)
        self._ready_bytes += 4 + len(frame)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame (length prefixes included)."""
        partial = self._end if self._frame is None else 4 + self._filled
        return partial + self._ready_bytes

    @property
    def allocated(self) -> int:
        """Bytes of buffer the reader holds on to: what a long-lived idle connection costs."""
        held = len(self._scratch) + self._ready_bytes
        return held + (len(self._frame) if self._frame is not None else 0)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where to read the next bytes to (``sizehint`` is ignored, as the loop allows)."""
        if self._frame is not None:
            return memoryview(self._frame)[self._filled :]
        if self.error is not None:
            return self._scratch_view  # read and dropped
        if self.waiting_for_memory:
            # Asked anyway (a reader that could not stop): never hand out an empty buffer,
            # take the memory over the pool's limit instead.
            assert self.pool is not None
            self.pool.cancel_wait(self._memory_freed)
            self.pool.force_allocate(self._size)
            self._granted()
            assert self._frame is not None
            return memoryview(self._frame)[self._filled :]
        # Never full: complete frames are cut out and a full one moves to its own buffer.
        return self._scratch_view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`."""
        frame = self._frame
        if frame is not None:
            filled = self._filled + nbytes
            self._filled = filled
            if filled == self._size:
                self._frame = None
                self._reserved = 0  # the frame's share now travels with it
                self._deliver(frame)
            elif filled == len(frame):
                bigger = _frame_buffer(min(self._size, len(frame) * GROWTH))
                bigger[:filled] = frame
                self._frame = bigger
            return
        if self.error is not None:
            return
        self._end += nbytes
        self._cut()

    def _cut(self) -> None:
        scratch = self._scratch
        start, end = 0, self._end
        limit = self.max_frame_size
        deliver = self._deliver
        while end - start >= 4:
            (size,) = _SIZE.unpack_from(scratch, start)
            if size < 0 or size > limit:
                self.error = FrameTooLargeError(size, limit)
                break
            body = start + 4
            if end - body >= size:
                deliver(scratch[body : body + size])
                start = body + size
                continue
            break
        if start:
            remaining = end - start
            scratch[:remaining] = self._scratch_view[start:end]
            self._end = end = remaining
        if end == len(scratch) and self.error is None:
            # Full with the start of one frame (a smaller one would be complete): only now
            # does it cost memory of its own.
            (self._size,) = _SIZE.unpack_from(scratch, 0)
            pool = self.pool
            if pool is None:
                self._move_out()
            elif pool.try_allocate(self._size):
                self._reserved = self._size
                self._move_out()
            else:
                self.waiting_for_memory = True
                pool.wait(self._memory_freed)

    def _move_out(self) -> None:
        size, end = self._size, self._end
        frame = _frame_buffer(min(size, max(FIRST_OWN_BUFFER, GROWTH * len(self._scratch))))
        have = end - 4
        frame[:have] = self._scratch_view[4:end]
        self._frame, self._filled, self._end = frame, have, 0

    def _memory_freed(self) -> None:
        pool = self.pool
        if not self.waiting_for_memory or pool is None:
            return
        if not pool.allocate_waited(self._size):
            pool.wait(self._memory_freed)
            return
        self._granted()
        if self._on_memory is not None:
            self._on_memory()

    def _granted(self) -> None:
        self.waiting_for_memory = False
        self._reserved = self._size
        self._move_out()

    def release(self, frame: bytearray) -> None:
        """A delivered frame is done with: give its share back to the pool (frames that fit
        the scratch buffer never had one)."""
        size = len(frame)
        if size > self._largest_small and self.pool is not None:
            self.pool.release(size)

    def close(self) -> None:
        """The connection is gone: give back what the partial frame holds or waits for.
        Frames already delivered are given back with :meth:`release`."""
        pool = self.pool
        if pool is not None:
            if self.waiting_for_memory:
                pool.cancel_wait(self._memory_freed)
                self.waiting_for_memory = False
            if self._reserved:
                reserved, self._reserved = self._reserved, 0
                pool.release(reserved)
        self._frame = None
        self._end = 0
        # The callbacks are the owner's bound methods: dropping them breaks the owner <->
        # reader cycle, so a closed connection (and this 64 KiB buffer) is freed at once by
        # reference counting instead of waiting for the cyclic collector (the soak run held
        # ~60 MiB of closed connections that way).  A tiny buffer keeps get_buffer valid.
        self._deliver = _discard
        self._on_memory = None
        self._scratch = bytearray(8)
        self._scratch_view = memoryview(self._scratch)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes already read elsewhere, copied in through :meth:`get_buffer`."""
        view = memoryview(data).cast("B")
        while view:
            target = self.get_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def next_frame(self) -> bytearray | None:
        """The next whole frame's body (without its length prefix), or ``None`` for "need
        more data"; raises :class:`FrameTooLargeError` once the frames before a bad length
        prefix are taken."""
        if self._ready:
            frame = self._ready.popleft()
            self._ready_bytes -= 4 + len(frame)
            return frame
        if self.error is not None:
            raise self.error
        return None
