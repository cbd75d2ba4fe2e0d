"""Frame sizes at and around the limits, and idle connections.

The broker here has ``socket.request.max.bytes=100000`` (just over the 64 KiB scratch buffer,
so both read paths are exercised on either side of it) and ``connections.max.idle.ms=1000``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest

from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from tests.server.helpers import (
    FETCH_VERSION,
    BrokerProcess,
    Client,
    api_versions_request,
    create_topic,
    fetch_request,
    request_frame,
)

MAX_BYTES = 100_000
IDLE_MS = 1000
SCRATCH = 64 * 1024
_SIZE = struct.Struct(">i")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(
        tmp_path_factory.mktemp("limits"),
        settings={
            "socket.request.max.bytes": str(MAX_BYTES),
            "connections.max.idle.ms": str(IDLE_MS),
        },
    )
    try:
        yield process.start()
    finally:
        process.close()


def api_versions_frame(size: int, correlation_id: int) -> bytes:
    """An ApiVersions v3 request of exactly ``size`` bytes after the length prefix, padded
    with a long (valid) client software name."""
    name_length = size - 40
    while True:
        body = ApiVersionsRequest(
            client_software_name="k" * name_length, client_software_version="1"
        )
        frame = request_frame(body, 3, correlation_id)
        if len(frame) - 4 == size:
            return frame
        name_length += size - (len(frame) - 4)


def send_in_pieces(client: Client, data: bytes, sizes: list[int]) -> None:
    """``data`` in writes of the given sizes, cycling, so the broker sees it cut anywhere."""
    position, i = 0, 0
    while position < len(data):
        step = sizes[i % len(sizes)]
        client.send_raw(data[position : position + step])
        position += step
        i += 1


@pytest.mark.parametrize(
    "size",
    [SCRATCH - 4, SCRATCH - 3, SCRATCH, MAX_BYTES - 1, MAX_BYTES],
    ids=["fills-scratch", "just-over-scratch", "scratch", "limit-1", "limit"],
)
def test_frames_up_to_the_limit_are_served(broker: BrokerProcess, size: int) -> None:
    mark = broker.mark()
    frame = api_versions_frame(size, 77)
    with Client(broker.address) as client:
        send_in_pieces(client, frame, [1, 2, 3, 5, 8, 13, 4096, 1, 30000])
        correlation_id, response = client.receive(18, 3)
        assert (correlation_id, response.error_code) == (77, 0)
        # The connection carries on with ordinary frames.
        assert client.request(api_versions_request(), 3).error_code == 0
    broker.assert_healthy(mark)


def test_just_over_the_limit_is_refused(broker: BrokerProcess) -> None:
    mark = broker.mark()
    frame = api_versions_frame(MAX_BYTES + 1, 78)
    with Client(broker.address) as client:
        client.send_raw(frame[:4])  # the prefix alone is enough to refuse it
        client.assert_closed()
    broker.wait_for_log(f"request size {MAX_BYTES + 1} is not between", since=mark)
    broker.assert_healthy(mark)


def test_big_and_small_frames_in_one_write(broker: BrokerProcess) -> None:
    """Bytes after a frame read into its own buffer are the next frames, not lost."""
    sizes = [MAX_BYTES, 50, SCRATCH - 3, 60, SCRATCH - 4, MAX_BYTES - 7, 40]
    frames = [api_versions_frame(size, 1000 + i) for i, size in enumerate(sizes)]
    with Client(broker.address) as client:
        client.send_raw(b"".join(frames))
        got = [client.receive(18, 3) for _ in frames]
    assert [(c, r.error_code) for c, r in got] == [(1000 + i, 0) for i in range(len(sizes))]


def test_small_frames_byte_by_byte(broker: BrokerProcess) -> None:
    frames = b"".join(request_frame(api_versions_request(), v, 500 + v) for v in range(5))
    with Client(broker.address) as client:
        send_in_pieces(client, frames, [1])
        got = [client.receive(18, v)[0] for v in range(5)]
    assert got == [500, 501, 502, 503, 504]


def _closed_when_idle(broker: BrokerProcess, client: Client) -> None:
    started = time.monotonic()
    client.assert_closed()
    # Never before its time (a lower bound is safe on a slow machine; an upper one is not).
    assert time.monotonic() - started >= IDLE_MS / 1000 * 0.9


def test_connection_that_sends_nothing_is_closed_when_idle(broker: BrokerProcess) -> None:
    mark = broker.mark()
    with Client(broker.address) as client:
        _closed_when_idle(broker, client)
    broker.wait_for_log(f"idle for over {IDLE_MS} ms", since=mark)
    broker.assert_healthy(mark)


@pytest.mark.parametrize("claimed", [200, 90_000], ids=["scratch", "own-buffer"])
def test_frame_cut_short_then_silence_is_closed_when_idle(
    broker: BrokerProcess, claimed: int
) -> None:
    mark = broker.mark()
    with Client(broker.address) as client:
        client.send_raw(_SIZE.pack(claimed) + bytes(claimed // 3))
        _closed_when_idle(broker, client)
    broker.assert_healthy(mark)


def test_connection_idle_after_requests_is_closed(broker: BrokerProcess) -> None:
    mark = broker.mark()
    with Client(broker.address) as client:
        for _ in range(3):
            assert client.request(api_versions_request(), 3).error_code == 0
        _closed_when_idle(broker, client)
    broker.assert_healthy(mark)


def test_long_poll_is_not_idle(broker: BrokerProcess) -> None:
    """A Fetch parked for three idle periods is a request in flight, not an idle connection."""
    with Client(broker.address) as client:
        create_topic(client, "quiet")
        started = time.monotonic()
        correlation_id = client.send(
            fetch_request("quiet", max_wait_ms=3 * IDLE_MS, min_bytes=1), FETCH_VERSION
        )
        got, response = client.receive(1, FETCH_VERSION)
        assert got == correlation_id and response.error_code == 0
        assert time.monotonic() - started >= 3 * IDLE_MS / 1000 * 0.9
        # And it is served as usual afterwards.
        assert client.request(api_versions_request(), 3).error_code == 0
