"""Frames and headers: header version rules, frame round trips, and FrameReader fed every way.

Header rules are Kafka's (see kafkacompat/protocol/framing.py and FORMAT.md): request header
v2 for flexible versions, v1 otherwise, v0 only for ControlledShutdown v0; response header v1
for flexible versions except ApiVersions, whose response header is always v0 (KIP-511).
"""

from __future__ import annotations

import itertools
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.protocol import APIS, ApiKey, request_class, response_class
from kafkacompat.protocol.framing import (
    FIRST_OWN_BUFFER,
    GROWTH,
    SCRATCH_SIZE,
    FrameReader,
    FrameTooLargeError,
    UnsupportedApiVersionError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    read_request_header,
    request_header_version,
    response_header_version,
)
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.api_versions_response import (
    ApiVersion,
    ApiVersionsResponse,
    SupportedFeatureKey,
)
from kafkacompat.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from kafkacompat.protocol.messages.fetch_response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.produce_response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.primitives import DecodeError

INT32 = struct.Struct(">i")
RECORDS = bytes(range(61)) * 3  # opaque to the codec: any bytes stand in for a RecordBatch


def _frame(body: bytes) -> bytes:
    return INT32.pack(len(body)) + body


# --- header version rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "version", "expected"),
    [
        (ApiKey.CONTROLLED_SHUTDOWN, 0, 0),  # the one API/version without a client id
        (ApiKey.CONTROLLED_SHUTDOWN, 1, 1),
        (ApiKey.CONTROLLED_SHUTDOWN, 3, 2),  # flexible from 3
        (ApiKey.PRODUCE, 0, 1),
        (ApiKey.PRODUCE, 8, 1),
        (ApiKey.PRODUCE, 9, 2),
        (ApiKey.METADATA, 8, 1),
        (ApiKey.METADATA, 9, 2),
        (ApiKey.FETCH, 11, 1),
        (ApiKey.FETCH, 12, 2),
        (ApiKey.API_VERSIONS, 0, 1),
        (ApiKey.API_VERSIONS, 2, 1),
        (ApiKey.API_VERSIONS, 3, 2),
        (ApiKey.API_VERSIONS, 9, 2),  # too new for us, still flexible (KIP-511)
    ],
)
def test_request_header_version(api_key: int, version: int, expected: int) -> None:
    assert request_header_version(api_key, version) == expected


@pytest.mark.parametrize(
    ("api_key", "version", "expected"),
    [
        (ApiKey.PRODUCE, 8, 0),
        (ApiKey.PRODUCE, 9, 1),
        (ApiKey.METADATA, 8, 0),
        (ApiKey.METADATA, 9, 1),
        (ApiKey.FETCH, 12, 1),
        (ApiKey.CONTROLLED_SHUTDOWN, 0, 0),
        (ApiKey.CONTROLLED_SHUTDOWN, 3, 1),
        # ApiVersions responses use header v0 at every version, flexible or not.
        (ApiKey.API_VERSIONS, 0, 0),
        (ApiKey.API_VERSIONS, 3, 0),
        (ApiKey.API_VERSIONS, 4, 0),
    ],
)
def test_response_header_version(api_key: int, version: int, expected: int) -> None:
    assert response_header_version(api_key, version) == expected


def test_header_versions_agree_with_every_generated_class() -> None:
    # The rule is computed from APIS; the generated classes carry FLEXIBLE_FROM separately.
    for api_key in APIS:
        req, resp = request_class(api_key), response_class(api_key)
        lo, hi = req.VALID_VERSIONS
        for v in range(lo, hi + 1):
            want_req = 0 if (api_key, v) == (ApiKey.CONTROLLED_SHUTDOWN, 0) else 1
            if req.is_flexible(v) and want_req:
                want_req = 2
            assert request_header_version(api_key, v) == want_req, (req.NAME, v)
            want_resp = int(resp.is_flexible(v) and api_key != ApiKey.API_VERSIONS)
            assert response_header_version(api_key, v) == want_resp, (resp.NAME, v)


def test_controlled_shutdown_v0_header_has_no_client_id() -> None:
    frame = encode_request(
        RequestHeader(ApiKey.CONTROLLED_SHUTDOWN, 0, 77, "ignored"),
        ControlledShutdownRequest(broker_id=5),
    )
    assert frame == _frame(struct.pack(">hhi", 7, 0, 77) + struct.pack(">i", 5))
    header, body = decode_request(frame[4:])
    assert header.client_id == ""  # v0 has no client id; the default stands in
    assert body == ControlledShutdownRequest(broker_id=5)


def test_api_versions_v3_response_header_has_no_tagged_fields() -> None:
    body = ApiVersionsResponse(error_code=0, api_keys=[ApiVersion(18, 0, 4)])
    frame = b"".join(encode_response(ApiKey.API_VERSIONS, 3, 0x01020304, body))
    assert INT32.unpack_from(frame)[0] == len(frame) - 4
    # correlation id, then directly the int16 error code (no tagged-field byte in between)
    assert frame[4:8] == b"\x01\x02\x03\x04"
    assert frame[8:10] == b"\x00\x00"
    assert frame[10] == 2  # compact array of one ApiVersion
    assert frame[4:] == b"\x01\x02\x03\x04" + body.encode(3)


def test_flexible_response_header_has_tagged_fields() -> None:
    body = MetadataResponse(throttle_time_ms=0x0A0B0C0D)
    frame = b"".join(encode_response(ApiKey.METADATA, 9, 0x01020304, body))
    assert frame[4:9] == b"\x01\x02\x03\x04\x00"  # correlation id + empty tag section
    assert frame[9:13] == b"\x0a\x0b\x0c\x0d"  # throttle_time_ms opens MetadataResponse v9
    frame8 = b"".join(encode_response(ApiKey.METADATA, 8, 0x01020304, body))
    assert frame8[4:12] == b"\x01\x02\x03\x04\x0a\x0b\x0c\x0d"


def test_flexible_request_header_client_id_is_int16_length_string() -> None:
    frame = encode_request(
        RequestHeader(ApiKey.METADATA, 12, 0x11223344, "héllo"),
        MetadataRequest(topics=None),
    )
    raw = "héllo".encode()
    assert frame[4:12] == struct.pack(">hhi", 3, 12, 0x11223344)
    # int16 length (not a compact varint of length + 1), the UTF-8 bytes, then the tag section
    assert frame[12:14] == struct.pack(">h", len(raw))
    assert frame[14 : 14 + len(raw)] == raw
    assert frame[14 + len(raw)] == 0
    header, pos = read_request_header(memoryview(frame[4:]))
    assert header.client_id == "héllo"
    assert pos == 8 + 2 + len(raw) + 1


def test_flexible_request_header_null_client_id() -> None:
    frame = encode_request(RequestHeader(ApiKey.METADATA, 12, 1, None), MetadataRequest())
    assert frame[12:15] == b"\xff\xff\x00"
    header, _ = decode_request(frame[4:])
    assert header.client_id is None


def test_too_new_api_versions_header_still_parses() -> None:
    # KIP-511: a client probes with the newest ApiVersions it knows. The header must parse so
    # the broker can answer with a v0 UNSUPPORTED_VERSION response carrying the correlation id.
    body = ApiVersionsRequest("some-client", "9.9").encode(4)  # stands in for a v9 body
    raw = struct.pack(">hhi", 18, 9, 4242) + struct.pack(">h", 6) + b"client" + b"\x00" + body
    header, pos = read_request_header(memoryview(raw))
    assert header == RequestHeader(18, 9, 4242, "client")
    assert raw[pos:] == body
    with pytest.raises(UnsupportedApiVersionError) as info:
        decode_request(raw)
    assert info.value.header == RequestHeader(18, 9, 4242, "client")


# --- frame round trips -----------------------------------------------------------------

REQUEST_CASES: list[tuple[int, Any]] = [
    (0, MetadataRequest(topics=[MetadataRequestTopic(name="a")])),
    (4, MetadataRequest(topics=None, allow_auto_topic_creation=False)),
    (9, MetadataRequest(topics=[MetadataRequestTopic(name="t1"), MetadataRequestTopic(name="t2")])),
    (12, MetadataRequest(topics=[MetadataRequestTopic(topic_id=uuid.UUID(int=7), name=None)])),
    (
        3,
        ProduceRequest(
            transactional_id=None,
            acks=-1,
            timeout_ms=30000,
            topic_data=[TopicProduceData("t", [PartitionProduceData(0, RECORDS)])],
        ),
    ),
    (
        9,
        ProduceRequest(
            transactional_id="tx",
            acks=1,
            timeout_ms=1500,
            topic_data=[TopicProduceData("t", [PartitionProduceData(3, RECORDS)])],
        ),
    ),
    (0, ApiVersionsRequest()),
    (3, ApiVersionsRequest("kafkacompat-tests", "1.0")),
    (4, ApiVersionsRequest("kafkacompat-tests", "1.0")),
    (3, ControlledShutdownRequest(broker_id=1, broker_epoch=9)),
]


@pytest.mark.parametrize(
    ("version", "body"), REQUEST_CASES, ids=[f"{b.NAME}-v{v}" for v, b in REQUEST_CASES]
)
def test_request_frame_round_trip(version: int, body: Any) -> None:
    header = RequestHeader(body.API_KEY, version, 123456, "client-1")
    frame = encode_request(header, body)
    (size,) = INT32.unpack_from(frame)
    assert size == len(frame) - 4
    got_header, got_body = decode_request(frame[4:])
    assert got_header == header
    assert got_body == body
    assert encode_request(got_header, got_body) == frame


RESPONSE_CASES: list[tuple[int, Any]] = [
    (0, ApiVersionsResponse(error_code=35, api_keys=[ApiVersion(18, 0, 4)])),
    (
        3,
        ApiVersionsResponse(
            api_keys=[ApiVersion(0, 3, 11), ApiVersion(18, 0, 4)],
            supported_features=[SupportedFeatureKey("metadata.version", 1, 20)],
            finalized_features_epoch=5,
        ),
    ),
    (
        1,
        MetadataResponse(
            brokers=[MetadataResponseBroker(1, "localhost", 9092, None)],
            controller_id=1,
            topics=[MetadataResponseTopic(0, "t", partitions=[MetadataResponsePartition(0, 0, 1)])],
        ),
    ),
    (
        12,
        MetadataResponse(
            brokers=[MetadataResponseBroker(1, "localhost", 9092, "rack-a")],
            cluster_id="cluster",
            topics=[MetadataResponseTopic(0, "t", uuid.UUID(int=9))],
        ),
    ),
    (
        9,
        ProduceResponse(
            responses=[TopicProduceResponse("t", [PartitionProduceResponse(0, 0, 42)])]
        ),
    ),
    (
        4,
        FetchResponse(
            responses=[FetchableTopicResponse("t", partitions=[PartitionData(0, records=RECORDS)])]
        ),
    ),
    (
        13,
        FetchResponse(
            responses=[
                FetchableTopicResponse(
                    topic_id=uuid.UUID(int=1), partitions=[PartitionData(0, records=RECORDS)]
                )
            ]
        ),
    ),
]


@pytest.mark.parametrize(
    ("version", "body"), RESPONSE_CASES, ids=[f"{b.NAME}-v{v}" for v, b in RESPONSE_CASES]
)
def test_response_frame_round_trip(version: int, body: Any) -> None:
    api_key = body.API_KEY
    chunks = encode_response(api_key, version, -99, body)
    frame = b"".join(chunks)
    (size,) = INT32.unpack_from(frame)
    assert size == len(frame) - 4
    correlation_id, got = decode_response(api_key, version, frame[4:])
    assert correlation_id == -99
    assert got == body


def test_response_records_are_not_copied_into_one_buffer() -> None:
    big = bytes(1 << 16)
    body = FetchResponse(
        responses=[FetchableTopicResponse("t", partitions=[PartitionData(0, records=big)])]
    )
    chunks = encode_response(ApiKey.FETCH, 12, 1, body)
    assert any(c is big for c in chunks)


# --- FrameReader ------------------------------------------------------------------------

BODIES = [
    b"",
    b"x",
    bytes(range(256)),
    encode_request(RequestHeader(3, 12, 1, "c"), MetadataRequest())[4:],
    b"\x00" * 70000,  # larger than the reader's compaction threshold
    b"tail",
]
STREAM = b"".join(_frame(b) for b in BODIES)


def _drain(reader: FrameReader) -> list[bytes]:
    frames = []
    while (frame := reader.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_frame_reader_whole_stream() -> None:
    reader = FrameReader()
    reader.feed(STREAM)
    assert _drain(reader) == BODIES
    assert reader.buffered == 0


def test_frame_reader_one_byte_at_a_time() -> None:
    reader = FrameReader()
    frames: list[bytes] = []
    for i in range(len(STREAM)):
        reader.feed(STREAM[i : i + 1])
        frames += _drain(reader)
    assert frames == BODIES
    assert reader.buffered == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, len(STREAM)), max_size=40), st.booleans())
def test_frame_reader_random_chunks(cuts: list[int], as_memoryview: bool) -> None:
    points = sorted({0, len(STREAM), *cuts})
    reader = FrameReader()
    frames: list[bytes] = []
    for a, b in itertools.pairwise(points):
        chunk = memoryview(STREAM)[a:b] if as_memoryview else STREAM[a:b]
        reader.feed(chunk)
        frames += _drain(reader)
    assert frames == BODIES
    assert reader.buffered == 0


def test_frame_reader_partial_frame_stays_buffered() -> None:
    body = b"0123456789"
    reader = FrameReader()
    reader.feed(_frame(b"first") + _frame(body)[:7])
    assert reader.next_frame() == b"first"
    assert reader.next_frame() is None
    assert reader.next_frame() is None  # asking again changes nothing
    assert reader.buffered == 7
    reader.feed(_frame(body)[7:-1])
    assert reader.next_frame() is None
    reader.feed(_frame(body)[-1:])
    assert reader.next_frame() == body
    assert reader.next_frame() is None
    assert reader.buffered == 0


def test_frame_reader_partial_length_prefix() -> None:
    reader = FrameReader()
    reader.feed(b"\x00\x00")
    assert reader.next_frame() is None
    reader.feed(b"\x00\x01z")
    assert reader.next_frame() == b"z"


def test_frame_reader_zero_length_frame() -> None:
    reader = FrameReader()
    reader.feed(b"\x00\x00\x00\x00")
    assert reader.next_frame() == b""
    assert reader.next_frame() is None
    assert reader.buffered == 0


@pytest.mark.parametrize("size", [2**31 - 1, 2**31 - 2**20, -1, -(2**31)])
def test_frame_reader_rejects_huge_or_negative_prefix(size: int) -> None:
    reader = FrameReader()
    reader.feed(INT32.pack(size)[:3])
    assert reader.next_frame() is None  # three bytes are not a prefix yet
    reader.feed(INT32.pack(size)[3:])
    with pytest.raises(FrameTooLargeError) as info:
        reader.next_frame()
    assert isinstance(info.value, DecodeError)
    assert info.value.size == size
    assert reader.buffered == 4  # nothing of the claimed body was waited for or buffered


def test_frame_reader_limit_is_inclusive() -> None:
    reader = FrameReader(max_frame_size=8)
    reader.feed(_frame(b"12345678"))
    assert reader.next_frame() == b"12345678"
    reader.feed(_frame(b"123456789"))
    with pytest.raises(FrameTooLargeError):
        reader.next_frame()


def test_frame_reader_rejects_oversized_frame_after_good_ones() -> None:
    reader = FrameReader(max_frame_size=1000)
    reader.feed(_frame(b"ok") + INT32.pack(1001))
    assert reader.next_frame() == b"ok"
    with pytest.raises(FrameTooLargeError):
        reader.next_frame()


def _buffer_capacity(reader: FrameReader) -> int:
    # What matters is the memory the reader holds on to, consumed bytes or not.
    return reader.allocated


def test_frame_reader_buffer_does_not_grow_with_traffic() -> None:
    # Chunks that never line up with frame boundaries leave a partial frame behind almost
    # every time, so the buffer is rarely emptied outright: the consumed prefix must still
    # be dropped now and then, or a long-lived connection would keep everything it read.
    frame = _frame(bytes(range(256)) * 4)
    stream = frame * 6000  # ~6 MB
    reader = FrameReader()
    count = 0
    peak = 0
    for i in range(0, len(stream), 1499):
        reader.feed(stream[i : i + 1499])
        count += len(_drain(reader))
        peak = max(peak, _buffer_capacity(reader))
    assert count == 6000
    assert peak < 4 * 65536


@pytest.mark.parametrize("leftover", [b"", b"\x00\x00", _frame(b"next")[:6]])
def test_frame_reader_lets_go_of_a_large_frame(leftover: bytes) -> None:
    # After a large produce request, an idle connection must not keep its megabytes.
    big = bytes(1 << 20)
    reader = FrameReader()
    reader.feed(_frame(big) + leftover)
    assert reader.next_frame() == big
    assert reader.next_frame() is None
    assert reader.buffered == len(leftover)
    assert _buffer_capacity(reader) == SCRATCH_SIZE  # the scratch buffer alone


# --- FrameReader, zero-copy: get_buffer / buffer_updated as the event loop calls them ---------


def _read_into(reader: FrameReader, data: bytes, chunk: int) -> list[bytes]:
    """What a BufferedProtocol's loop does: ask for a buffer, read at most ``chunk`` bytes
    into it, report them; and the server's drain after each read."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        target = reader.get_buffer(-1)
        assert len(target) > 0, "the reader handed out a full buffer"
        n = min(len(target), chunk, len(data) - pos)
        target[:n] = data[pos : pos + n]
        reader.buffer_updated(n)
        pos += n
        frames += _drain(reader)
    return frames


@pytest.mark.parametrize("scratch_size", [8, 100, SCRATCH_SIZE])
@pytest.mark.parametrize("chunk", [1, 3, 4096, 1 << 30], ids=["byte", "3", "4k", "whole"])
def test_frame_reader_zero_copy_every_way(scratch_size: int, chunk: int) -> None:
    reader = FrameReader(scratch_size=scratch_size)
    assert _read_into(reader, STREAM, chunk) == BODIES
    assert reader.buffered == 0
    assert reader.allocated == scratch_size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=60), st.integers(8, 300))
def test_frame_reader_zero_copy_random_reads(chunks: list[int], scratch_size: int) -> None:
    reader = FrameReader(scratch_size=scratch_size)
    frames: list[bytes] = []
    pos, i = 0, 0
    while pos < len(STREAM):
        n = min(chunks[i % len(chunks)], len(STREAM) - pos)
        frames += _read_into(reader, STREAM[pos : pos + n], n)
        pos, i = pos + n, i + 1
    assert frames == BODIES


@pytest.mark.parametrize("trailing", [b"\x00", b"\x00\x00\x00", _frame(b"partial")[:-1]])
def test_frame_reader_zero_copy_with_trailing_data(trailing: bytes) -> None:
    reader = FrameReader()
    assert _read_into(reader, STREAM + trailing, 1 << 30) == BODIES
    assert reader.next_frame() is None
    assert reader.buffered == len(trailing)


def test_frame_reader_reads_a_large_frame_straight_into_its_own_buffer() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: larger than the scratch buffer
    wire = _frame(body)
    reader = FrameReader()
    first = reader.get_buffer()
    first[:1000] = wire[:1000]
    reader.buffer_updated(1000)
    assert reader.next_frame() is None
    # The start waits in the scratch buffer: no memory of its own yet.
    assert reader.allocated == SCRATCH_SIZE
    rest = reader.get_buffer()
    assert len(rest) == SCRATCH_SIZE - 1000
    rest[:] = wire[1000:SCRATCH_SIZE]
    reader.buffer_updated(len(rest))
    # Full: the frame has its own buffer now, up to FIRST_OWN_BUFFER (here the whole
    # frame), and the rest of the body goes straight into it.
    assert reader.allocated == SCRATCH_SIZE + min(len(body), FIRST_OWN_BUFFER)
    rest = reader.get_buffer()
    assert len(rest) == len(body) - (SCRATCH_SIZE - 4)
    rest[:] = wire[SCRATCH_SIZE:]
    reader.buffer_updated(len(rest))
    frame = reader.next_frame()
    assert frame == body and isinstance(frame, bytearray)
    assert rest.obj is frame  # the very buffer the loop read into: no copy after the read
    assert reader.allocated == SCRATCH_SIZE


def test_frame_reader_claimed_size_costs_nothing_until_sent() -> None:
    # A client claims 100 MiB and sends 18 bytes: it costs those bytes, in the scratch buffer.
    reader = FrameReader()
    reader.feed(INT32.pack(100 << 20) + b"x" * 14)
    assert reader.next_frame() is None and reader.error is None
    assert reader.buffered == 18
    assert reader.allocated == SCRATCH_SIZE


@pytest.mark.parametrize("chunk", [4096, 65536, 1 << 30], ids=["4k", "64k", "whole"])
def test_frame_reader_memory_follows_bytes_received(chunk: int) -> None:
    body = bytes(range(256)) * (16 << 10)  # 4 MiB
    wire = _frame(body)
    reader = FrameReader()
    pos, peak_ratio = 0, 0.0
    while pos < len(wire):
        target = reader.get_buffer()
        n = min(len(target), chunk, len(wire) - pos)
        target[:n] = wire[pos : pos + n]
        reader.buffer_updated(n)
        pos += n
        if pos < len(wire):
            assert reader.next_frame() is None
            own = reader.allocated - SCRATCH_SIZE
            # Nothing before the scratch fills, then at most FIRST_OWN_BUFFER, and past that
            # never more than GROWTH times what arrived.
            assert own <= max(FIRST_OWN_BUFFER, GROWTH * pos) if pos >= SCRATCH_SIZE else own == 0
            peak_ratio = max(peak_ratio, own / pos)
    assert reader.next_frame() == body
    assert peak_ratio > 1  # it did allocate ahead of the bytes, within the bound
    assert reader.allocated == SCRATCH_SIZE


@pytest.mark.parametrize("size", [SCRATCH_SIZE - 3, SCRATCH_SIZE * GROWTH, SCRATCH_SIZE * 100 + 7])
def test_frame_reader_large_frame_byte_by_byte(size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    wire = _frame(body) + _frame(b"after")
    reader = FrameReader()
    cut = max(0, len(wire) - 3 * 4096)
    for i in range(0, cut, 4096):
        reader.feed(wire[i : min(i + 4096, cut)])
    # The rest a byte at a time: through the last growth step, the frame's end, the next prefix.
    for i in range(cut, len(wire)):
        reader.feed(wire[i : i + 1])
    assert _drain(reader) == [body, b"after"]
    assert reader.buffered == 0


def test_frames_are_writable() -> None:
    # The log stamps base offsets into produce batches in place.
    reader = FrameReader()
    reader.feed(_frame(b"abc") + _frame(bytes(SCRATCH_SIZE)))
    small, large = _drain(reader)
    assert isinstance(small, bytearray) and isinstance(large, bytearray)
    small[0] = ord("z")
    assert small == b"zbc"


def test_frame_reader_limit_is_checked_before_buffering() -> None:
    reader = FrameReader(max_frame_size=1 << 20)
    target = reader.get_buffer()
    target[:6] = _frame(b"ok")
    target[6:10] = INT32.pack((1 << 20) + 1)
    reader.buffer_updated(10)
    assert reader.next_frame() == b"ok"
    with pytest.raises(FrameTooLargeError) as info:
        reader.next_frame()
    assert (info.value.size, info.value.limit) == ((1 << 20) + 1, 1 << 20)
    assert reader.allocated == SCRATCH_SIZE  # no buffer for the claimed body was made
    # Stopped for good: more bytes are dropped, and the error is raised again.
    reader.feed(_frame(b"more"))
    with pytest.raises(FrameTooLargeError):
        reader.next_frame()
    assert len(reader.get_buffer()) == SCRATCH_SIZE  # never a full buffer, even now


def test_frame_reader_rejects_a_tiny_scratch_buffer() -> None:
    with pytest.raises(ValueError):
        FrameReader(scratch_size=4)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 30], ids=["byte", "7", "whole"])
def test_frame_reader_on_frame_gets_each_frame_as_it_completes(chunk: int) -> None:
    delivered: list[bytearray] = []
    reader = FrameReader(scratch_size=100, on_frame=delivered.append)
    trailing = _frame(b"partial")[:-2]
    assert _read_into(reader, STREAM + trailing, chunk) == []  # nothing left to pull
    assert delivered == BODIES
    assert reader.buffered == len(trailing) and reader.error is None


def test_frame_reader_on_frame_with_a_bad_prefix() -> None:
    delivered: list[bytearray] = []
    reader = FrameReader(max_frame_size=10, on_frame=delivered.append)
    reader.feed(_frame(b"ok") + _frame(b"far too long") + _frame(b"never"))  # never raises
    assert delivered == [b"ok"]
    assert reader.error is not None and reader.error.size == 12
    with pytest.raises(FrameTooLargeError):
        reader.next_frame()
