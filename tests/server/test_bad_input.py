"""Bad input on the wire: the offending connection is closed (or answered with an error where
Kafka answers), the broker logs a warning without a traceback, and keeps serving everyone else.

One broker serves the whole module, so each test also proves the previous ones left it healthy.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.framing import decode_response
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from kafkacompat.records.batch import CRC_OFFSET
from tests.server.conftest import StartBroker
from tests.server.helpers import (
    PRODUCE_VERSION,
    BrokerProcess,
    Client,
    api_versions_request,
    batch,
    create_topic,
    fetch_values,
    produce,
    produce_request,
    raw_frame,
    request_frame,
)

_SIZE = struct.Struct(">i")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("bad-input"))
    try:
        yield process.start()
    finally:
        process.close()


def _refused(broker: BrokerProcess, payload: bytes, warning: str) -> None:
    """``payload`` gets the connection closed with ``warning`` logged, and nothing else breaks."""
    mark = broker.mark()
    with Client(broker.address) as client:
        client.send_raw(payload)
        client.assert_closed()
    broker.wait_for_log(warning, since=mark)
    broker.assert_healthy(mark)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), id="tls-hello"),
        pytest.param(b"\xff" * 4096, id="ff-bytes"),
    ],
)
def test_garbage_is_refused_by_its_length_prefix(broker: BrokerProcess, payload: bytes) -> None:
    # Each of these reads as a length prefix that is negative or over 100 MiB.
    _refused(broker, payload, r"request size -?\d+ is not between 0 and socket.request.max.bytes")


def test_random_bytes_in_a_plausible_frame(broker: BrokerProcess) -> None:
    mark = broker.mark()
    for seed in range(20):
        body = bytes((seed * 7 + i * 13) % 256 for i in range(200))
        with Client(broker.address) as client:
            client.send_raw(_SIZE.pack(len(body)) + body)
            client.assert_closed()
    broker.assert_healthy(mark)


@pytest.mark.parametrize(
    "size", [2**31 - 1, -1, -(2**31), 100 * 1024 * 1024 + 1], ids=["2GiB", "-1", "min", "limit+1"]
)
def test_frame_size_outside_limits(broker: BrokerProcess, size: int) -> None:
    # Refused on the four prefix bytes: the broker never waits for (or allocates) the body.
    _refused(
        broker, _SIZE.pack(size) + b"\x00\x12", "is not between 0 and socket.request.max.bytes"
    )


def test_empty_frame(broker: BrokerProcess) -> None:
    _refused(broker, _SIZE.pack(0), "bad request header")


def test_header_cut_short(broker: BrokerProcess) -> None:
    # A whole frame whose header claims a client id longer than the frame.
    payload = struct.pack(">hhih", 18, 0, 1, 500) + b"abc"
    _refused(broker, _SIZE.pack(len(payload)) + payload, "bad request header")


@pytest.mark.parametrize("size", [100, 200_000], ids=["scratch", "own-buffer"])
def test_frame_cut_short_then_closed(broker: BrokerProcess, size: int) -> None:
    mark = broker.mark()
    with Client(broker.address) as client:
        client.send_raw(_SIZE.pack(size) + bytes(size // 2))
    with Client(broker.address) as client:  # the broker has seen the first close by now
        client.request(api_versions_request(), 3)
    broker.assert_healthy(mark)


@pytest.mark.parametrize("api_key", [9999, -1, 88], ids=["9999", "-1", "next"])
def test_unknown_api_key(broker: BrokerProcess, api_key: int) -> None:
    _refused(broker, raw_frame(api_key, 0, 7), f"unknown api key {api_key}")


def test_known_but_unadvertised_api(broker: BrokerProcess) -> None:
    # LeaderAndIsr (4) is in Kafka's schemas but not something a single node answers.
    _refused(broker, raw_frame(4, 0, 7), r"api key 4 \(v0\) is not supported")


@pytest.mark.parametrize(
    ("api_key", "version"),
    [(3, 99), (3, -1), (0, 2)],
    ids=["metadata-v99", "metadata-v-1", "produce-v2"],
)
def test_unsupported_version_of_a_known_api(
    broker: BrokerProcess, api_key: int, version: int
) -> None:
    frame = raw_frame(api_key, version, 7, flexible=version > 9)
    _refused(broker, frame, f"api key {api_key} v{version} is outside")


def test_body_that_does_not_parse(broker: BrokerProcess) -> None:
    # Metadata v1: a topic array claiming 1,000,000 entries with no bytes behind it.
    _refused(broker, raw_frame(3, 1, 7, struct.pack(">i", 1_000_000)), "cannot parse api key 3 v1")


def test_trailing_bytes_after_a_body_are_ignored(broker: BrokerProcess) -> None:
    """As Kafka's parser does (librdkafka sends a few after some Metadata requests)."""
    frame = request_frame(MetadataRequest(topics=None), 1, 7)
    payload = frame[4:] + b"extra"
    mark = broker.mark()
    with Client(broker.address) as client:
        client.send_raw(_SIZE.pack(len(payload)) + payload)
        correlation_id, response = client.receive(3, 1)
        assert correlation_id == 7 and response.brokers
        assert client.request(api_versions_request(), 3).error_code == 0
    broker.assert_healthy(mark)


@pytest.mark.parametrize("version", [5, 127, 32767])
def test_too_new_api_versions_is_answered_in_v0(broker: BrokerProcess, version: int) -> None:
    """KIP-511: a client probing with a newer ApiVersions than ours gets UNSUPPORTED_VERSION in
    a v0 response listing our ApiVersions range, and may ask again on the same connection."""
    mark = broker.mark()
    with Client(broker.address) as client:
        # A v3+ body the broker cannot know the shape of: only the header is read.
        client.send_raw(raw_frame(18, version, 41, b"\x01\x02\x03 future fields", flexible=True))
        correlation_id, response = client.receive(18, 0)
        assert correlation_id == 41
        assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert [(k.api_key, k.min_version, k.max_version) for k in response.api_keys] == [
            (18, 0, 4)
        ]
        retried = client.request(api_versions_request(), 4)
        assert retried.error_code == ErrorCode.NONE
        assert {k.api_key for k in retried.api_keys} >= {0, 1, 3, 18}
    broker.assert_healthy(mark)


def test_api_versions_v0_response_header_is_v0(broker: BrokerProcess) -> None:
    # ApiVersions responses always have header v0, even for v3+ (flexible) requests.
    with Client(broker.address) as client:
        client.send(api_versions_request(), 3, correlation_id=5)
        size = _SIZE.unpack(client._exactly(4))[0]
        body = client._exactly(size)
        assert body[:4] == struct.pack(">i", 5)
        correlation_id, response = decode_response(18, 3, body)
        assert correlation_id == 5 and response.error_code == 0


def test_bad_requests_do_not_disturb_an_open_connection(broker: BrokerProcess) -> None:
    """A client mid-conversation keeps working while others are refused around it."""
    with Client(broker.address) as steady:
        steady.request(api_versions_request(), 3)
        for payload in (b"\xff" * 64, raw_frame(9999, 0, 1), raw_frame(3, 99, 1, flexible=True)):
            with Client(broker.address) as bad:
                bad.send_raw(payload)
                bad.assert_closed()
            assert steady.request(MetadataRequest(topics=None), 12).brokers


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_produce_with_a_wrong_crc(start_broker: StartBroker, storage: str) -> None:
    """CORRUPT_MESSAGE for the bad batch; what was written before stays, readable."""
    broker = start_broker(storage=storage)
    mark = broker.mark()
    with Client(broker.address) as client:
        create_topic(client, "crc")
        first = produce(client, "crc", batch(b"one", b"two"))
        assert (first.error_code, first.base_offset) == (0, 0)

        corrupt = bytearray(batch(b"three"))
        corrupt[-1] ^= 0xFF  # inside the CRC's range
        refused = produce(client, "crc", bytes(corrupt))
        assert refused.error_code == ErrorCode.CORRUPT_MESSAGE

        wrong_crc = bytearray(batch(b"four"))
        wrong_crc[CRC_OFFSET] ^= 0x01  # the stored CRC itself
        assert produce(client, "crc", bytes(wrong_crc)).error_code == ErrorCode.CORRUPT_MESSAGE

        # Same connection, still usable; the log holds exactly the first batch.
        assert fetch_values(client, "crc") == [b"one", b"two"]
        after = produce(client, "crc", batch(b"five"))
        assert (after.error_code, after.base_offset) == (0, 2)
        assert fetch_values(client, "crc") == [b"one", b"two", b"five"]
    broker.assert_healthy(mark)
    if storage == "disk":
        segment = Path(broker.data_dir, "crc-0", "00000000000000000000.log")
        assert b"three" not in segment.read_bytes() and b"four" not in segment.read_bytes()


def test_produce_with_corrupt_records_acks_0_closes(start_broker: StartBroker) -> None:
    """acks=0 cannot be answered, so Kafka closes the connection to tell the producer."""
    broker = start_broker()
    with Client(broker.address) as client:
        create_topic(client, "acks0")
        corrupt = bytearray(batch(b"x"))
        corrupt[-1] ^= 0xFF
        client.send(produce_request("acks0", bytes(corrupt), acks=0), PRODUCE_VERSION)
        client.assert_closed()
    broker.assert_healthy()


def test_half_open_socket_is_harmless(broker: BrokerProcess) -> None:
    """A client that shuts its sending side after a request: the broker closes too."""
    mark = broker.mark()
    with Client(broker.address) as client:
        client.send_raw(request_frame(api_versions_request(), 3, 9)[:10])
        client.sock.shutdown(socket.SHUT_WR)
        client.assert_closed()
    broker.assert_healthy(mark)
