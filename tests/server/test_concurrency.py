"""Many connections, pipelined requests, big frames, and clients that do not read."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.protocol.framing import decode_response
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from tests.server.conftest import StartBroker
from tests.server.helpers import (
    FETCH_VERSION,
    PRODUCE_VERSION,
    TIMEOUT,
    Client,
    api_versions_request,
    batch,
    create_topic,
    fetch_request,
    fetch_values,
    produce,
    produce_request,
    request_frame,
)

_SIZE = struct.Struct(">i")
CONNECTIONS = 1000


@pytest.fixture(scope="module")
def raised_fd_limit() -> Iterator[int]:
    """The soft RLIMIT_NOFILE raised to the hard limit, for this process and the brokers it
    starts (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if wanted < CONNECTIONS * 2 + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {CONNECTIONS} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_files_limit(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+|unlimited)", limits, re.MULTILINE)
    assert match is not None, limits
    return 2**31 if match.group(1) == "unlimited" else int(match.group(1))


def test_a_thousand_concurrent_connections(raised_fd_limit: int, start_broker: StartBroker) -> None:
    broker = start_broker()
    if Path("/proc").is_dir():
        assert _open_files_limit(broker.pid) >= CONNECTIONS + 100
    mark = broker.mark()
    host, port = broker.address

    async def run() -> list[tuple[int, int]]:
        opened = await asyncio.wait_for(
            asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(CONNECTIONS))),
            TIMEOUT * 2,
        )
        try:
            # Every connection is open before any of them asks.
            for i, (_, writer) in enumerate(opened):
                writer.write(request_frame(api_versions_request(), 3, i))

            async def answer(reader: asyncio.StreamReader) -> tuple[int, int]:
                (size,) = _SIZE.unpack(await reader.readexactly(4))
                correlation_id, response = decode_response(18, 3, await reader.readexactly(size))
                return correlation_id, response.error_code

            return await asyncio.wait_for(
                asyncio.gather(*(answer(reader) for reader, _ in opened)), TIMEOUT * 2
            )
        finally:
            for _, writer in opened:
                writer.close()

    answers = asyncio.run(run())
    assert answers == [(i, 0) for i in range(CONNECTIONS)]
    broker.assert_healthy(mark)


def test_pipelined_requests_are_answered_in_order(start_broker: StartBroker) -> None:
    """100 requests in one write, more than the broker queues before it stops reading: all
    answered, in order, each in its own version's format."""
    broker = start_broker()
    calls = []
    for i in range(100):
        if i % 3 == 0:
            calls.append((18, i % 5, api_versions_request()))
        else:
            version = i % 13
            calls.append((3, version, MetadataRequest(topics=[] if version == 0 else None)))
    with Client(broker.address) as client:
        client.send_raw(
            b"".join(
                request_frame(body, version, 10_000 + i)
                for i, (_, version, body) in enumerate(calls)
            )
        )
        for i, (api_key, version, _) in enumerate(calls):
            correlation_id, response = client.receive(api_key, version)
            assert correlation_id == 10_000 + i
            if api_key == 3:
                assert [(b.host, b.port) for b in response.brokers] == [broker.address]
            else:
                assert response.error_code == 0
    broker.assert_healthy()


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_large_produce_across_many_reads(start_broker: StartBroker, storage: str) -> None:
    broker = start_broker(storage=storage, settings={"message.max.bytes": str(8 << 20)})
    value = os.urandom(5 << 20)
    records = batch(value, b"after")
    with Client(broker.address) as client:
        create_topic(client, "big")
        frame = request_frame(produce_request("big", records), PRODUCE_VERSION, 31)
        assert len(frame) > 5 << 20
        # Small writes first (the length prefix split too), then bigger ones.
        for piece in (frame[:1], frame[1:3], frame[3:7], frame[7:1000]):
            client.send_raw(piece)
        for start in range(1000, len(frame), 65_521):
            client.send_raw(frame[start : start + 65_521])
        correlation_id, response = client.receive(0, PRODUCE_VERSION)
        assert correlation_id == 31
        [partition] = response.responses[0].partition_responses
        assert (partition.error_code, partition.base_offset) == (0, 0)
        assert fetch_values(client, "big") == [value, b"after"]
        # And an ordinary produce right after it on the same connection.
        assert produce(client, "big", batch(b"small")).base_offset == 2
    broker.assert_healthy()


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_client_that_does_not_read(start_broker: StartBroker) -> None:
    """A client that sends Fetches and never reads stalls only itself: the broker stops
    working for it instead of buffering a response per request, keeps serving others, and
    closes it once idle."""
    broker = start_broker(settings={"connections.max.idle.ms": "1500"})
    value = os.urandom(1 << 20)
    with Client(broker.address) as client:
        create_topic(client, "wide")
        produce(client, "wide", batch(value[: 900 * 1024]))
    before = _rss_bytes(broker.pid)
    mark = broker.mark()
    stalled = Client(broker.address)
    try:
        frame = request_frame(fetch_request("wide"), FETCH_VERSION, 1)
        stalled.sock.settimeout(TIMEOUT)
        for _ in range(300):  # 300 x 900 KiB of responses if they were all made
            stalled.send_raw(frame)
        # Others are served meanwhile.
        with Client(broker.address) as other:
            assert fetch_values(other, "wide") == [value[: 900 * 1024]]
        broker.wait_for_log("idle for over 1500 ms", since=mark)
        grown = _rss_bytes(broker.pid) - before
        assert grown < 100 << 20, f"the broker grew by {grown >> 20} MiB for one stalled client"
        stalled.assert_closed()
    finally:
        stalled.close()
    broker.assert_healthy(mark)


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
def test_broker_raises_its_own_open_file_limit(start_broker: StartBroker) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard RLIMIT_NOFILE is {hard}")
    # Low, but above what this test process already holds (earlier tests may hold many).
    low = max(256, len(os.listdir("/proc/self/fd")) + 128)
    if low >= hard:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} leaves no room below it")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        broker = start_broker()  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert _open_files_limit(broker.pid) == hard
