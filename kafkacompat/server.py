"""The network server: asyncio sockets, framing and dispatch (Kafka's ``SocketServer``).

Read path.  Each connection is a :class:`asyncio.BufferedProtocol`, so the event loop reads
straight into the buffers of the connection's sans-I/O :class:`FrameReader`
(``protocol/framing.py``, where the rules are tested byte by byte): small frames land in a
reused 64 KiB scratch buffer and are copied out; a larger frame fills the scratch buffer, then
gets a ``bytearray`` of its own that grows as its bytes arrive (never what the length prefix
claims before it is sent) and the rest of its body is read directly into it.  The length
prefix is checked against ``socket.request.max.bytes`` before any body is buffered.  Frames
are writable bytearrays because the log stamps offsets into produce batches in place.

Request memory (``queued.max.request.bytes``, KIP-72; default -1, unbounded).  With a bound,
a frame larger than the scratch buffer takes its size from a :class:`SimpleMemoryPool` when
it leaves the scratch buffer; refused, its connection stops reading until a handled request
gives memory back.  The share is returned when the request's handler is done (nothing keeps
a view of the frame after that) or its connection is lost.  Small frames never wait.

Order.  As Kafka does, a connection's requests are handled one at a time and answered in
order; a long-polling Fetch parks only its own connection.  Reading pauses while too many
requests are queued, which pushes back on a client through TCP.

Write path.  Responses are lists of chunks (records stay views of their source) written with
``writelines``.  Measured on loopback (issue 4): sendfile is no faster than read+write and
uvloop has no sendfile, so record bytes are read from the segment with ``pread`` and written
with the rest of the response.

Write path, continued.  As in Kafka, where a connection is muted until its response is sent,
the next request is not started while the transport's write buffer is over its high-water
mark: a client that sends but never reads stalls only itself (and is closed once idle for
``connections.max.idle.ms``) instead of growing the broker's memory by a response per request.

Failure.  A frame that cannot be parsed, names an unknown API or a version we do not speak
(except ApiVersions, answered per KIP-511) closes the connection, as Kafka's SocketServer
does; a handler that fails unexpectedly is logged and closes only its own connection.

Shutdown.  Stop accepting and stop reading; requests being handled get a few seconds to
finish and be answered, except parked Fetches, which have nothing more to wait for and are
dropped with their connection as Kafka drops its purgatory; then every connection is closed
(aborted if its client does not read what is left to send).  The composition root
(:mod:`kafkacompat.broker_server`) then shuts the broker down: flush, checkpoint, and the
clean-shutdown marker.

Accept.  Each listener has an :class:`Acceptor` of our own over its listening sockets, as
Kafka's, so that accepting can stop: at ``max.connections`` (broker or listener), at the
descriptor budget that keeps storage's reserve, or while the creation rate makes new
connections wait, they stay in the kernel's backlog; over ``max.connections.per.ip`` one is
accepted and closed (:mod:`kafkacompat.connection_quotas` holds the counts and limits).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any, cast

from kafkacompat.broker import Broker
from kafkacompat.config import Listener
from kafkacompat.connection_quotas import (
    ConnectionQuotas,
    connection_descriptor_budget,
    normalize_host,
)
from kafkacompat.dynamic_config import (
    add_reconfigurable,
    current_broker_props,
    remove_reconfigurable,
)
from kafkacompat.handlers import HANDLERS
from kafkacompat.handlers.api_versions import unsupported_version_response
from kafkacompat.handlers.context import CloseConnection, RequestContext
from kafkacompat.protocol import request_class
from kafkacompat.protocol.framing import (
    FrameReader,
    encode_response,
    read_request_header,
)
from kafkacompat.protocol.memory_pool import SimpleMemoryPool
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.primitives import DecodeError
from kafkacompat.protocol.supported import SUPPORTED_VERSIONS
from kafkacompat.scheduler import KafkaScheduler
from kafkacompat.security.session import SecurityProtocol, Session

log = logging.getLogger("kafkacompat.server")

_API_VERSIONS = 18
_MAX_QUEUED_FRAMES = 16
_MAX_QUEUED_BYTES = 64 * 1024 * 1024
_SHUTDOWN_GRACE_S = 5.0
"""How long in-flight requests may take to finish at shutdown."""
_SHUTDOWN_FLUSH_S = 2.0
"""How long closing connections may take to flush what was already written."""
_FETCH = 1
_ACCEPT_BATCH = 64
"""Connections accepted per readiness callback, so one listener cannot starve the loop."""
_BACKLOG = 1024
_ACCEPT_RETRY_S = (0.05, 2.0)
"""First and longest wait before accepting again after accept() failed (EMFILE...)."""
_LIMIT_LOG_INTERVAL_S = 60.0
"""A limit that keeps being hit is logged at most this often."""
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def tune_allocator() -> None:
    """Keep glibc from returning each large frame buffer to the kernel and faulting it back
    in for the next one (about 366 page faults per 1 MiB frame with the defaults)."""
    try:
        # The C library already loaded into this process; no find_library (it may spawn a
        # subprocess) on the start-up path.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 256 * 1024 * 1024)
    mallopt(m_trim_threshold, 512 * 1024 * 1024)


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go and the JVM's launchers do: a
    broker holds a descriptor per connection and per open segment, and the common soft default
    of 1024 is less than a thousand clients need.  Returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    was = soft
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. macOS caps it below an "unlimited" hard limit
            pass
    log.info(
        "open file limit (RLIMIT_NOFILE): soft %s (was %s), hard %s",
        *("unlimited" if n == resource.RLIM_INFINITY else n for n in (soft, was, hard)),
    )
    return int(soft)


class Connection(asyncio.BufferedProtocol):
    def __init__(self, server: Server, listener: Listener | None = None) -> None:
        self.server = server
        self.broker = server.broker
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.client_host = ""
        self.session = Session()
        if listener is not None:
            # Which listener the connection came in on, and the protocol that listener speaks
            # (listener.security.protocol.map), as Kafka's RequestContext carries them.
            self.session.listener_name = listener.name
            self.session.security_protocol = SecurityProtocol(
                server.security_protocols.get(listener.name.upper(), "PLAINTEXT")
            )
        self._frames = FrameReader(
            server.max_request_size,
            on_frame=self._enqueue,
            pool=server.memory_pool,
            on_memory=self._memory_granted,
        )
        self._memory_wait = False  # paused until the pool has room for a large frame
        self._queue: collections.deque[bytearray] = collections.deque()
        self._queued_bytes = 0
        self._worker: asyncio.Task[None] | None = None
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = False
        self.busy = False
        self.in_flight: int | None = None
        """The api key of the request being handled, if any."""
        self.last_active = time.monotonic()
        self.quota: tuple[str, str] | None = None
        """(listener, address) as counted by the server's ConnectionQuotas, until released."""

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client_host = str(peer[0])
            self.session.client_host = self.client_host
            self.session.client_port = int(peer[1])
            self.peer = f"{peer[0]}:{peer[1]}"
            local = transport.get_extra_info("sockname")
            if isinstance(local, tuple) and len(local) >= 2:
                # Kafka's connection id: local-ip:port-remote-ip:port-index.
                self.session.connection_id = f"{local[0]}:{local[1]}-{peer[0]}:{peer[1]}-{self.server.next_connection_index()}"
        self.server.connections.add(self)
        log.debug("connection from %s opened", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.server.release(self)
        self._release_memory()
        self._queue.clear()
        self._queued_bytes = 0
        self._writable.set()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        log.debug("connection from %s closed%s", self.peer, f": {exc}" if exc else "")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        frames = self._frames
        frames.buffer_updated(nbytes)  # whole frames go to _enqueue as they complete
        if frames.waiting_for_memory and not self._memory_wait:
            self._memory_wait = True
            if not self._paused and self.transport is not None:
                self.transport.pause_reading()
            pool = frames.pool
            assert pool is not None
            log.debug(
                "connection from %s waits for request memory: %d bytes in use of "
                "queued.max.request.bytes=%d",
                self.peer,
                pool.used,
                pool.size,
            )
        exc = frames.error
        if exc is not None and not self.closed:
            log.warning(
                "closing connection from %s: request size %d is not between 0 and "
                "socket.request.max.bytes (%d)",
                self.peer,
                exc.size,
                exc.limit,
            )
            self.close()

    def _memory_granted(self) -> None:
        self._memory_wait = False
        if not self._paused and not self.closed and self.transport is not None:
            self.transport.resume_reading()

    def _release_memory(self) -> None:
        frames = self._frames
        for frame in self._queue:
            frames.release(frame)
        frames.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self.last_active = time.monotonic()  # the client is reading: not idle
        self._writable.set()

    # -- request processing ------------------------------------------------------------------

    def _enqueue(self, frame: bytearray) -> None:
        if self.closed:
            self._frames.release(frame)
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if (
            len(self._queue) >= _MAX_QUEUED_FRAMES or self._queued_bytes >= _MAX_QUEUED_BYTES
        ) and not self._paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._paused = True
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        queue = self._queue
        while queue and not self.closed and not self.server.stopping:
            if not self._writable.is_set():
                # Not busy while waiting: a client that does not read is idle, and closed.
                await self._writable.wait()
                if self.closed or self.server.stopping:
                    return
            frame = queue.popleft()
            self._queued_bytes -= len(frame)
            if (
                self._paused
                and len(queue) < _MAX_QUEUED_FRAMES // 2
                and self._queued_bytes < _MAX_QUEUED_BYTES // 2
            ):
                assert self.transport is not None
                if not self._memory_wait:
                    self.transport.resume_reading()
                self._paused = False
            self.busy = True
            try:
                await self._handle(frame)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("closing connection from %s: request handling failed", self.peer)
                self.close()
                return
            finally:
                # Nothing refers to the frame now (responses never hold request bytes; the
                # log copies or writes what it keeps), so its pool share is free.
                self._frames.release(frame)
                del frame
                self.busy = False
                self.in_flight = None
                self.last_active = time.monotonic()

    async def _handle(self, frame: bytearray) -> None:
        view = memoryview(frame)
        try:
            header, pos = read_request_header(view)
        except DecodeError as exc:
            log.warning("closing connection from %s: bad request header: %s", self.peer, exc)
            self.close()
            return
        api_key, version = header.request_api_key, header.request_api_version
        supported = SUPPORTED_VERSIONS.get(api_key)
        if supported is None or api_key not in HANDLERS:
            log.warning(
                "closing connection from %s: api key %d (v%d) is not supported",
                self.peer,
                api_key,
                version,
            )
            self.close()
            return
        body: Message | None
        if not supported[0] <= version <= supported[1]:
            if api_key != _API_VERSIONS:
                log.warning(
                    "closing connection from %s: api key %d v%d is outside %d-%d",
                    self.peer,
                    api_key,
                    version,
                    *supported,
                )
                self.close()
                return
            # KIP-511: answer a too-new ApiVersions in v0 so the client can pick again.
            self._send(
                encode_response(api_key, 0, header.correlation_id, unsupported_version_response())
            )
            return
        try:
            # read, not decode: like Kafka's parser, ignore bytes after the body (librdkafka
            # sends a few after some Metadata v12 requests).
            request, _ = request_class(api_key).read(view, pos, version)
        except DecodeError as exc:
            log.warning(
                "closing connection from %s: cannot parse api key %d v%d: %s",
                self.peer,
                api_key,
                version,
                exc,
            )
            self.close()
            return
        ctx = RequestContext(header, self.broker, self.session)
        self.in_flight = api_key
        try:
            body = await HANDLERS[api_key](ctx, request)
        except CloseConnection as exc:
            log.warning("closing connection from %s: %s", self.peer, exc)
            self.close()
            return
        if body is not None and not self.closed:
            self._send(encode_response(api_key, version, header.correlation_id, body))

    def _send(self, chunks: list[Any]) -> None:
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            transport.writelines(chunks)

    def writes_pending(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def stop_reading(self) -> None:
        """At shutdown: read no more requests."""
        if not self.closed and not self._paused and self.transport is not None:
            if not self._memory_wait:
                self.transport.pause_reading()
            self._paused = True

    def close(self) -> None:
        """Close after what was written is sent."""
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Close now, dropping anything not yet sent."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (None: every interface), as
    asyncio's create_server makes them: one per address the name resolves to."""
    infos = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, type_, proto)
            except OSError:
                continue  # an address family this host does not have
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"error while attempting to bind on address {address!r}: {exc.strerror}",
                ) from None
            sock.setblocking(False)
            sock.listen(_BACKLOG)
        if not sockets:
            raise OSError(f"no address to listen on for {host}:{port}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Acceptor:
    """Kafka's ``Acceptor``: accepts a listener's connections while the connection quotas
    allow, and otherwise leaves them in the kernel's backlog.  asyncio's create_server cannot
    stop accepting, hence this loop of our own over the listening sockets."""

    def __init__(self, server: Server, listener: Listener, sockets: list[socket.socket]) -> None:
        self.server = server
        self.listener = listener
        self.name = listener.name.upper()
        self.sockets = sockets
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = _ACCEPT_RETRY_S[0]

    def resume(self) -> None:
        """Watch the listening sockets again (a slot freed, a limit changed, a wait ended)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._reading or self._closed:
            return
        self._reading = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def pause(self, retry_in: float | None = None) -> None:
        if self._reading:
            self._reading = False
            for sock in self.sockets:
                self._loop.remove_reader(sock.fileno())
        if retry_in is not None and not self._closed and self._retry is None:
            self._retry = self._loop.call_later(retry_in, self.resume)

    @property
    def waiting_for_slot(self) -> bool:
        return not self._reading and self._retry is None and not self._closed

    def close(self) -> None:
        self.pause()
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for sock in self.sockets:
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        server, quotas, name = self.server, self.server.quotas, self.name
        for _ in range(_ACCEPT_BATCH):
            blocked = quotas.blocked_by(name)
            if blocked is not None:
                self.pause()  # until a connection closes or the limit changes
                server.limit_reached(self, blocked)
                return
            now = time.monotonic()
            delay = quotas.throttle_delay(name, now)
            if delay > 0:
                log.debug("listener %s: connection creation rate reached, waiting", name)
                self.pause(retry_in=delay)
                return
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    # Level-triggered readiness would call us again at once: wait instead.
                    server.limit_reached(self, f"accept() failed: {exc.strerror}")
                    self.pause(retry_in=self._backoff)
                    self._backoff = min(self._backoff * 2, _ACCEPT_RETRY_S[1])
                    return
                log.debug("listener %s: accept() failed: %s", name, exc)  # ECONNABORTED...
                continue
            self._backoff = _ACCEPT_RETRY_S[0]
            server.accepted(self.listener, conn, address, now)


class Server:
    """Listens and serves connections: Kafka's ``SocketServer``.  The broker's own housekeeping
    is scheduled by the composition root (:mod:`kafkacompat.broker_server`)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.max_request_size: int = config.get("socket.request.max.bytes")
        queued_max_bytes: int = config.get("queued.max.request.bytes")
        # Kafka's MemoryPool.NONE for -1 (its default) and 0: no accounting at all.
        self.memory_pool = SimpleMemoryPool(queued_max_bytes) if queued_max_bytes > 0 else None
        self.idle_ms: int = config.get("connections.max.idle.ms")
        self.connections: set[Connection] = set()
        self.security_protocols = config.security_protocols
        self._connection_index = 0
        self.stopping = False
        self._acceptors: list[Acceptor] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._scheduler = KafkaScheduler()
        self.bound: list[tuple[str, int]] = []
        pool = broker.logs.fd_pool
        self.quotas = ConnectionQuotas(
            [listener.name for listener in config.listeners],
            config.get("inter.broker.listener.name"),
            current_broker_props(broker),
            # Segments' descriptors come from the storage's pool, bounded by its capacity:
            # that much stays reserved for it, whatever the clients do.
            connection_descriptor_budget(0 if pool is None else pool.capacity),
            _resolve_host,
        )
        self._limit_logged: dict[str, float] = {}

    async def start(self) -> None:
        try:
            for listener in self.broker.config.listeners:
                sockets = _listening_sockets(listener.host or None, listener.port)
                self._acceptors.append(Acceptor(self, listener, sockets))
                sockname = sockets[0].getsockname()
                # A named host (localhost, a DNS name) is what clients should be told, not the
                # address it resolved to; a wildcard is replaced by the advertised default later.
                self.bound.append((listener.host or str(sockname[0]), int(sockname[1])))
        except BaseException:
            for acceptor in self._acceptors:  # a later listener failed: free the earlier ones
                acceptor.close()
            self._acceptors.clear()
            raise
        for acceptor in self._acceptors:
            acceptor.resume()
        add_reconfigurable(self.broker, self.reconfigure)
        self.broker.bound = self.bound[0]
        self._scheduler.schedule(
            "idle-connection-reaper", self._close_idle, self._idle_check_interval()
        )

    # -- connection quotas (Kafka's ConnectionQuotas and DynamicConnectionQuota) -------------

    def reconfigure(self, props: Mapping[str, str]) -> None:
        """Dynamic max.connections* configs changed: apply them to the running listeners."""
        self.quotas.reconfigure(props)
        if self.quotas.total > self.quotas.max_connections:
            self._close_excess_connections()
        for acceptor in self._acceptors:
            if acceptor.waiting_for_slot:
                acceptor.resume()  # a raised limit lets the backlog in now

    def accepted(self, listener: Listener, conn: socket.socket, address: Any, now: float) -> None:
        name = listener.name.upper()
        ip = normalize_host(str(address[0]))
        limit = self.quotas.inc(name, ip, now)
        if limit is not None:
            # Kafka's TooManyConnectionsException: closed at once, other addresses unaffected.
            log.info(
                "Rejected connection from %s, address already has the configured maximum of "
                "%d connections.",
                ip,
                limit,
            )
            self.quotas.dec(name, ip)
            conn.close()
            return
        if self.quotas.total > self.quotas.max_connections:
            self._close_excess_connections()
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.get_running_loop().create_task(self._connect(listener, conn, (name, ip)))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(
        self, listener: Listener, conn: socket.socket, quota: tuple[str, str]
    ) -> None:
        made: list[Connection] = []

        def factory() -> Connection:
            connection = Connection(self, listener)
            connection.quota = quota
            made.append(connection)
            return connection

        try:
            await asyncio.get_running_loop().connect_accepted_socket(factory, conn)
        except BaseException as exc:
            if made:
                # The transport was made: it closed the socket (closing it here again could
                # close a descriptor number reused meanwhile).
                self.release(made[0])
            else:
                self.quotas.dec(*quota)
                self._slot_freed()
                conn.close()
            if not isinstance(exc, OSError):
                raise
            log.debug("connection on listener %s lost before it was set up: %s", *quota[:1], exc)

    def release(self, connection: Connection) -> None:
        """A connection closed: its quota slot is free (once, however often this is called)."""
        if connection.quota is not None:
            self.quotas.dec(*connection.quota)
            connection.quota = None
            self._slot_freed()

    def _slot_freed(self) -> None:
        for acceptor in self._acceptors:
            if acceptor.waiting_for_slot:
                acceptor.resume()

    def _close_excess_connections(self) -> None:
        """Kafka's closeExcessConnections: over max.connections (the inter-broker listener
        went past it, or it was lowered), the least recently active connections of the other
        listeners go until the count is back at the limit."""
        quotas = self.quotas
        candidates = []
        closing = 0
        for c in self.connections:
            if c.quota is None:
                continue
            if c.closed:
                closing += 1  # still counted until its transport is gone
            elif quotas.max_connections_exceeded(c.quota[0]):
                candidates.append(c)
        excess = quotas.total - closing - quotas.max_connections
        if excess <= 0 or not candidates:
            return
        candidates.sort(key=lambda c: c.last_active)
        for connection in candidates[:excess]:
            log.info(
                "closing connection from %s: max.connections (%d) exceeded",
                connection.peer,
                quotas.max_connections,
            )
            connection.close()

    def limit_reached(self, acceptor: Acceptor, why: str) -> None:
        """Say once (a minute at most) why a listener stopped accepting; it resumes by itself."""
        now = time.monotonic()
        key = f"{acceptor.name}:{why}"
        if now - self._limit_logged.get(key, -_LIMIT_LOG_INTERVAL_S) < _LIMIT_LOG_INTERVAL_S:
            return
        self._limit_logged[key] = now
        quotas = self.quotas
        if why == "descriptors":
            log.warning(
                "listener %s: not accepting connections while %d are open: the rest of the "
                "open file limit is kept for the storage's segments, indexes, snapshots and "
                "cleaner (connections may use %d descriptors)",
                acceptor.name,
                quotas.total,
                quotas.descriptor_budget,
            )
        elif why.startswith("accept()"):
            log.warning(
                "listener %s: %s; %d connections open; accepting again shortly",
                acceptor.name,
                why,
                quotas.total,
            )
        else:
            log.info(
                "listener %s: %s reached (%d connections open); new connections wait until "
                "one closes",
                acceptor.name,
                why,
                quotas.total,
            )

    def next_connection_index(self) -> int:
        """Kafka's per-processor connection index, wrapping at Int.MaxValue as it does."""
        index = self._connection_index
        self._connection_index = 0 if index == 2**31 - 1 else index + 1
        return index

    def _idle_check_interval(self) -> float:
        if self.idle_ms < 0:
            return 3600.0
        return min(max(self.idle_ms / 4000, 0.05), 10.0)

    def _close_idle(self) -> None:
        if self.idle_ms < 0:
            return
        deadline = time.monotonic() - self.idle_ms / 1000
        for connection in list(self.connections):
            if not connection.busy and connection.last_active < deadline:
                log.debug(
                    "closing connection from %s: idle for over %d ms", connection.peer, self.idle_ms
                )
                if connection.writes_pending():
                    connection.abort()  # it does not read: close() would wait for it forever
                else:
                    connection.close()

    async def stop(self) -> None:
        """Stop accepting and reading, let in-flight requests finish (briefly), close every
        connection.  Every wait here is bounded: SIGTERM always ends the process.  The broker
        itself (flush, checkpoint, clean-shutdown marker) is shut down by the caller."""
        if self.stopping:
            return
        loop = asyncio.get_running_loop()
        self.stopping = True
        remove_reconfigurable(self.broker, self.reconfigure)
        for acceptor in self._acceptors:
            acceptor.close()
        for task in list(self._connecting):
            task.cancel()
        await self._scheduler.shutdown()
        for connection in list(self.connections):
            connection.stop_reading()
        self.broker.replica_manager.begin_shutdown()
        # Parked JoinGroup/SyncGroup answer NOT_COORDINATOR now, not after the grace period.
        self.broker.shutdown_groups()
        deadline = loop.time() + _SHUTDOWN_GRACE_S
        while loop.time() < deadline and any(
            c.busy and c.in_flight != _FETCH for c in self.connections
        ):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close()
        deadline = loop.time() + _SHUTDOWN_FLUSH_S
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            log.debug("aborting connection from %s: it does not read", connection.peer)
            connection.abort()


def _resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (max.connections.per.ip.overrides names hosts)."""
    infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def install_event_loop_policy() -> str:
    """uvloop when installed (several times faster socket I/O here), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
