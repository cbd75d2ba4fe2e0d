"""SIGTERM and SIGINT: the broker exits 0 promptly whatever its clients are doing, after
flushing, checkpointing and writing the clean-shutdown marker."""

from __future__ import annotations

import os
import signal
import struct
import time

import pytest

from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE
from tests.server.conftest import StartBroker
from tests.server.helpers import (
    FETCH_VERSION,
    PRODUCE_VERSION,
    TIMEOUT,
    BrokerProcess,
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


def _stop(broker: BrokerProcess, signum: int = signal.SIGTERM) -> None:
    broker.signal(signum)
    assert broker.wait(TIMEOUT) == 0, broker.log_text()
    text = broker.log_text()
    assert "stopped cleanly" in text
    assert "Traceback" not in text, text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_on_an_idle_broker(start_broker: StartBroker, signum: int) -> None:
    broker = start_broker(storage="disk")
    with Client(broker.address) as client:
        create_topic(client, "t")
    assert not (broker.data_dir / CLEAN_SHUTDOWN_FILE).exists()  # consumed at start
    _stop(broker, signum)
    assert (broker.data_dir / CLEAN_SHUTDOWN_FILE).exists()


def test_sigterm_with_busy_clients(start_broker: StartBroker) -> None:
    """A long-polling Fetch, a half-sent frame, a connection that never spoke and one that
    never reads do not hold the broker up, and the data is all there after a restart."""
    broker = start_broker(storage="disk")
    long_poll = Client(broker.address)
    half_sent = Client(broker.address)
    silent = Client(broker.address)
    not_reading = Client(broker.address)
    clients = [long_poll, half_sent, silent, not_reading]
    try:
        create_topic(long_poll, "kept")
        assert produce(long_poll, "kept", batch(b"a", b"b")).error_code == 0
        create_topic(long_poll, "wide")
        assert produce(long_poll, "wide", batch(os.urandom(900 * 1024))).error_code == 0
        create_topic(long_poll, "empty")
        long_poll.send(fetch_request("empty", max_wait_ms=30_000, min_bytes=1), FETCH_VERSION)
        half_sent.send_raw(_SIZE.pack(5000) + bytes(100))
        frame = request_frame(fetch_request("wide"), FETCH_VERSION, 3)
        for _ in range(50):  # far more than the socket buffers hold
            not_reading.send_raw(frame)
        with Client(broker.address) as probe:
            probe.request(api_versions_request(), 3)
        # Give the broker a moment to park the Fetch and fill the buffers; the assertions
        # below hold either way, this only makes the scenario the one described.
        time.sleep(0.5)

        _stop(broker)
        assert (broker.data_dir / CLEAN_SHUTDOWN_FILE).exists()
        for client in clients:
            client.assert_closed()
    finally:
        for client in clients:
            client.close()

    restarted = start_broker(storage="disk", args=["--data-dir", str(broker.data_dir)])
    with Client(restarted.address) as client:
        assert fetch_values(client, "kept") == [b"a", b"b"]
    assert not (broker.data_dir / CLEAN_SHUTDOWN_FILE).exists()
    _stop(restarted)
    assert (broker.data_dir / CLEAN_SHUTDOWN_FILE).exists()


def test_many_pipelined_requests_at_sigterm(start_broker: StartBroker) -> None:
    """A client still sending when the signal comes: the broker stops reading it and exits."""
    broker = start_broker(storage="disk")
    with Client(broker.address) as client:
        create_topic(client, "p")
        frame = request_frame(produce_request("p", batch(b"x" * 1000)), PRODUCE_VERSION, 1)
        client.send_raw(frame * 200)
        _stop(broker)
    assert os.path.exists(broker.data_dir / CLEAN_SHUTDOWN_FILE)
