"""The server in this process, on the stdlib event loop and on uvloop, for what a child
process cannot show: a handler that raises, shutdown with requests in flight, and the read
and write flow control under tiny limits."""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import kafkacompat.server as server_module
from kafkacompat.broker_server import BrokerServer
from kafkacompat.config import BrokerConfig
from kafkacompat.handlers import HANDLERS
from kafkacompat.handlers.context import CloseConnection, RequestContext
from kafkacompat.protocol.framing import decode_response
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from kafkacompat.protocol.messages.metadata_response import MetadataResponse
from kafkacompat.security.session import ANONYMOUS, SecurityProtocol, Session
from kafkacompat.server import Server
from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE
from tests.server.helpers import (
    FETCH_VERSION,
    PRODUCE_VERSION,
    TIMEOUT,
    api_versions_request,
    batch,
    fetch_request,
    metadata_for,
    produce_request,
    request_frame,
)

_SIZE = struct.Struct(">i")
METADATA = 3

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is optional
    pass


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[None]], None]]:
    """Runs a test coroutine on the parametrized event loop, with an overall timeout."""
    with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:

        def run_it(coroutine: Awaitable[None]) -> None:
            runner.run(asyncio.wait_for(coroutine, TIMEOUT * 2))

        yield run_it


@asynccontextmanager
async def running_broker(**props: str) -> AsyncIterator[BrokerServer]:
    """A whole broker on this test's event loop, built by the composition root."""
    config = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", **props})
    broker_server = BrokerServer(config, engine="memory")
    await asyncio.wait_for(broker_server.startup(), TIMEOUT)
    try:
        yield broker_server
    finally:
        await asyncio.wait_for(broker_server.shutdown(), TIMEOUT)


@asynccontextmanager
async def running_server(**props: str) -> AsyncIterator[Server]:
    async with running_broker(**props) as broker_server:
        yield broker_server.server


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Server) -> Conn:
        host, port = server.bound[0]
        return cls(*await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT))

    def send(self, body: Message, version: int, correlation_id: int) -> None:
        self.writer.write(request_frame(body, version, correlation_id))

    async def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        size = _SIZE.unpack(await asyncio.wait_for(self.reader.readexactly(4), TIMEOUT))[0]
        body = await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT)
        return decode_response(api_key, version, body)

    async def request(self, body: Message, version: int) -> Any:
        assert body.API_KEY is not None
        self.send(body, version, 99)
        correlation_id, response = await self.receive(body.API_KEY, version)
        assert correlation_id == 99
        return response

    async def assert_closed(self) -> None:
        try:
            while await asyncio.wait_for(self.reader.read(1 << 20), TIMEOUT):
                pass
        except ConnectionResetError:
            pass

    def close(self) -> None:
        self.writer.close()


def patch_handler(monkeypatch: pytest.MonkeyPatch, api_key: int, handler: Any) -> None:
    """The server dispatches ``api_key`` to ``handler`` for this test."""
    table = {key: HANDLERS[key] for key in HANDLERS}
    table[api_key] = handler
    monkeypatch.setattr(server_module, "HANDLERS", table)


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def _raise_runtime(_: RequestContext, __: Any) -> Awaitable[Message | None]:
    raise RuntimeError("boom")


async def _unencodable(_: RequestContext, __: Any) -> Message:
    return MetadataResponse(brokers=None)  # type: ignore[arg-type]


async def _close_connection(_: RequestContext, __: Any) -> Message:
    raise CloseConnection("the handler says so")


@pytest.mark.parametrize(
    ("handler", "logged"),
    [
        (_raise_runtime, "request handling failed"),
        (_unencodable, "request handling failed"),
        (_close_connection, "the handler says so"),
    ],
    ids=["raises", "unencodable-response", "close-connection"],
)
def test_a_failing_handler_closes_only_its_connection(
    run: Callable[[Awaitable[None]], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handler: Any,
    logged: str,
) -> None:
    patch_handler(monkeypatch, METADATA, handler)

    async def scenario() -> None:
        async with running_server() as server:
            bystander = await Conn.open(server)
            assert (await bystander.request(api_versions_request(), 3)).error_code == 0
            victim = await Conn.open(server)
            victim.send(MetadataRequest(topics=None), 1, 1)
            await victim.assert_closed()
            assert (await bystander.request(api_versions_request(), 3)).error_code == 0
            fresh = await Conn.open(server)
            assert (await fresh.request(api_versions_request(), 3)).error_code == 0
            for conn in (bystander, victim, fresh):
                conn.close()

    with caplog.at_level(logging.WARNING, logger="kafkacompat.server"):
        run(scenario())
    assert any(logged in record.getMessage() for record in caplog.records)


def test_in_flight_request_is_answered_at_shutdown(
    run: Callable[[Awaitable[None]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = HANDLERS[METADATA]
    started = asyncio.Event()

    async def slow(ctx: RequestContext, request: Any) -> Message | None:
        started.set()
        await asyncio.sleep(0.3)
        return await real(ctx, request)

    patch_handler(monkeypatch, METADATA, slow)

    async def scenario() -> None:
        async with running_broker() as broker_server:
            conn = await Conn.open(broker_server.server)
            conn.send(MetadataRequest(topics=None), 12, 5)
            conn.send(MetadataRequest(topics=None), 12, 6)  # queued behind it: not started
            await asyncio.wait_for(started.wait(), TIMEOUT)
            stopping = asyncio.ensure_future(broker_server.shutdown())
            correlation_id, response = await conn.receive(METADATA, 12)
            assert correlation_id == 5 and response.brokers
            await conn.assert_closed()
            await asyncio.wait_for(stopping, TIMEOUT)
            assert not broker_server.broker.started
            assert not broker_server.scheduler.job_names
            conn.close()

    run(scenario())


def test_parked_fetch_does_not_hold_up_shutdown(
    run: Callable[[Awaitable[None]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A grace period far longer than the test's timeout: only a Fetch may be cut short.
    monkeypatch.setattr(server_module, "_SHUTDOWN_GRACE_S", 3600.0)

    async def scenario() -> None:
        async with running_server() as server:
            conn = await Conn.open(server)
            assert (await conn.request(metadata_for("idle"), 12)).topics[0].error_code == 0
            conn.send(fetch_request("idle", max_wait_ms=30_000, min_bytes=1), FETCH_VERSION, 8)
            await until(lambda: any(c.in_flight == 1 for c in server.connections), "a parked fetch")
            await asyncio.wait_for(server.stop(), TIMEOUT)
            await conn.assert_closed()
            conn.close()

    run(scenario())


def test_shutdown_with_a_client_that_does_not_read(
    run: Callable[[Awaitable[None]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "_SHUTDOWN_FLUSH_S", 0.2)

    async def scenario() -> None:
        async with running_server() as server:
            conn = await Conn.open(server)
            assert (await conn.request(metadata_for("wide"), 12)).topics[0].error_code == 0
            produced = await conn.request(
                produce_request("wide", batch(bytes(900 * 1024))), PRODUCE_VERSION
            )
            assert produced.responses[0].partition_responses[0].error_code == 0
            conn.writer.transport.pause_reading()  # type: ignore[attr-defined]
            for i in range(30):
                conn.send(fetch_request("wide"), FETCH_VERSION, i)
            await until(
                lambda: any(c.writes_pending() for c in server.connections), "a full write buffer"
            )
            await asyncio.wait_for(server.stop(), TIMEOUT)
            assert not server.connections
            conn.close()

    run(scenario())


@pytest.mark.parametrize(
    ("max_frames", "max_bytes"), [(2, 1 << 30), (1 << 30, 3000), (16, 64 << 20)]
)
def test_read_flow_control_keeps_order(
    run: Callable[[Awaitable[None]], None],
    monkeypatch: pytest.MonkeyPatch,
    max_frames: int,
    max_bytes: int,
) -> None:
    """Pipelined requests under tiny queue limits: reading pauses and resumes over and over,
    and every request is still answered once, in order."""
    monkeypatch.setattr(server_module, "_MAX_QUEUED_FRAMES", max_frames)
    monkeypatch.setattr(server_module, "_MAX_QUEUED_BYTES", max_bytes)
    pauses = 0
    real_enqueue = server_module.Connection._enqueue

    def counting_enqueue(self: server_module.Connection, frame: bytearray) -> None:
        nonlocal pauses
        was_paused = self._paused
        real_enqueue(self, frame)
        pauses += self._paused and not was_paused

    monkeypatch.setattr(server_module.Connection, "_enqueue", counting_enqueue)
    padded = api_versions_request()
    padded.client_software_name = "k" * 1500
    calls = [(METADATA, 12, MetadataRequest(topics=None)) if i % 2 else (18, 3, padded)
             for i in range(300)]  # fmt: skip

    async def scenario() -> None:
        async with running_server() as server:
            conn = await Conn.open(server)
            conn.writer.write(b"".join(request_frame(b, v, i) for i, (_, v, b) in enumerate(calls)))
            for i, (api_key, version, _) in enumerate(calls):
                correlation_id, response = await conn.receive(api_key, version)
                assert correlation_id == i
                assert response.brokers if api_key == METADATA else response.error_code == 0
            [connection] = server.connections
            assert not connection._paused  # reading resumed after the last pause
            conn.close()

    run(scenario())
    if max_frames < 16 or max_bytes < 1 << 20:
        assert pauses > 1


def test_client_gone_mid_request(
    run: Callable[[Awaitable[None]], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = HANDLERS[METADATA]
    started = asyncio.Event()

    async def slow(ctx: RequestContext, request: Any) -> Message | None:
        started.set()
        await asyncio.sleep(0.2)
        return await real(ctx, request)

    patch_handler(monkeypatch, METADATA, slow)

    async def scenario() -> None:
        async with running_server() as server:
            conn = await Conn.open(server)
            conn.send(MetadataRequest(topics=None), 12, 1)
            await asyncio.wait_for(started.wait(), TIMEOUT)
            conn.writer.transport.abort()  # type: ignore[attr-defined]
            await until(lambda: not server.connections, "the connection to go")
            await asyncio.sleep(0.3)  # past the handler's end
            other = await Conn.open(server)
            assert (await other.request(api_versions_request(), 3)).error_code == 0
            other.close()

    with caplog.at_level(logging.DEBUG, logger="kafkacompat"):
        run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_composition_root_schedules_housekeeping_and_stops_everything(
    run: Callable[[Awaitable[None]], None], tmp_path: Path
) -> None:
    async def scenario() -> None:
        config = BrokerConfig(
            {"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "data")}
        )
        broker_server = BrokerServer(config, engine="disk")
        await asyncio.wait_for(broker_server.startup(), TIMEOUT)
        assert broker_server.scheduler.job_names == [
            "kafka-log-cleaner",
            "kafka-log-flusher",
            "kafka-log-retention",
            "kafka-recovery-point-checkpoint",
            "transaction-abort",
            "transactionalId-expiration",
        ]
        host, port = broker_server.bound[0]
        assert broker_server.bootstrap_servers == f"{host}:{port}" and port > 0
        conn = await Conn.open(broker_server.server)
        assert (await conn.request(api_versions_request(), 3)).error_code == 0
        conn.close()
        await asyncio.wait_for(broker_server.shutdown(), TIMEOUT)
        assert not broker_server.scheduler.job_names
        assert not broker_server.broker.started
        assert (tmp_path / "data" / CLEAN_SHUTDOWN_FILE).exists()
        await asyncio.wait_for(broker_server.shutdown(), TIMEOUT)  # twice: nothing happens
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)

    run(scenario())


def test_composition_root_port_in_use_frees_the_data_dir(
    run: Callable[[Awaitable[None]], None], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_broker() as first:
            _, port = first.bound[0]
            props = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "log.dirs": str(tmp_path)}
            second = BrokerServer(BrokerConfig(props), engine="disk")
            with pytest.raises(OSError):
                await asyncio.wait_for(second.startup(), TIMEOUT)
            assert not second.broker.started
        # The failed start let go of the data directory's lock: another broker may use it.
        props["listeners"] = "PLAINTEXT://127.0.0.1:0"
        third = BrokerServer(BrokerConfig(props), engine="disk")
        await asyncio.wait_for(third.startup(), TIMEOUT)
        await asyncio.wait_for(third.shutdown(), TIMEOUT)

    run(scenario())


def test_each_connection_carries_its_listener_and_a_kafka_connection_id(
    run: Callable[[Awaitable[None]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = HANDLERS[METADATA]
    sessions: list[Session] = []

    async def recording(ctx: RequestContext, request: Any) -> Message | None:
        sessions.append(ctx.session)
        return await real(ctx, request)

    patch_handler(monkeypatch, METADATA, recording)
    props = {
        "listeners": "EXTERNAL://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "EXTERNAL:PLAINTEXT,INTERNAL:PLAINTEXT,"
        "CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
    }

    async def scenario() -> None:
        async with running_broker(**props) as broker_server:
            server = broker_server.server
            (_, external_port), (_, internal_port) = server.bound
            expected = []
            for port, listener in [
                (external_port, "EXTERNAL"),
                (internal_port, "INTERNAL"),
                (external_port, "EXTERNAL"),
            ]:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), TIMEOUT
                )
                conn = Conn(reader, writer)
                assert (await conn.request(api_versions_request(), 3)).error_code == 0
                assert (await conn.request(MetadataRequest(topics=None), 12)).brokers
                client_port = writer.get_extra_info("sockname")[1]
                expected.append((listener, port, client_port))
                conn.close()
            assert len(sessions) == 3
            indexes = []
            for session, (listener, port, client_port) in zip(sessions, expected, strict=True):
                assert session.listener_name == listener
                assert session.security_protocol is SecurityProtocol.PLAINTEXT
                assert session.principal == ANONYMOUS
                assert (session.client_host, session.client_port) == ("127.0.0.1", client_port)
                assert (session.client_software_name, session.client_software_version) == (
                    "kafkacompat-tests",
                    "1.0",
                )
                prefix = f"127.0.0.1:{port}-127.0.0.1:{client_port}-"
                assert session.connection_id.startswith(prefix), session.connection_id
                indexes.append(int(session.connection_id.removeprefix(prefix)))
            assert len(set(indexes)) == 3 and indexes == sorted(indexes)

    run(scenario())


def test_a_closed_connection_is_freed_without_the_cyclic_collector(
    run: Callable[[Awaitable[None]], None],
) -> None:
    # The soak run found every closed connection waiting for gc with its 64 KiB read buffer.
    async def scenario() -> None:
        async with running_server() as server:
            conn = await Conn.open(server)
            assert (await conn.request(api_versions_request(), 3)).error_code == 0
            await until(lambda: len(server.connections) == 1, "the connection to be counted")
            (connection,) = server.connections
            alive = weakref.ref(connection)
            del connection
            gc.disable()
            try:
                conn.close()
                await until(lambda: not server.connections, "the connection to close")
                for _ in range(20):  # the transport lets go a loop turn or two later
                    if alive() is None:
                        break
                    await asyncio.sleep(0.01)
                assert alive() is None, gc.get_referrers(alive())
            finally:
                gc.enable()

    run(scenario())
