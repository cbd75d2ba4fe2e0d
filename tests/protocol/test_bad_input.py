"""Bytes a peer should never send: truncated, padded, lying about lengths, not UTF-8, fuzzed.

The invariant throughout: a decoder returns a message or raises our DecodeError, never any
other exception, and never allocates for a length before checking the bytes exist.
"""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkacompat.protocol import APIS, Message, request_class, response_class
from kafkacompat.protocol.framing import (
    UnknownApiKeyError,
    UnsupportedApiVersionError,
    decode_request,
    encode_request,
    read_request_header,
    request_header_version,
)
from kafkacompat.protocol.messages.api_versions_response import (
    ApiVersion,
    ApiVersionsResponse,
    FinalizedFeatureKey,
    SupportedFeatureKey,
)
from kafkacompat.protocol.messages.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ReplicaState,
)
from kafkacompat.protocol.messages.fetch_response import (
    AbortedTransaction,
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
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from kafkacompat.protocol.messages.sync_group_request import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from kafkacompat.protocol.primitives import DecodeError, read_uvarint
from tests.golden.golden_files import goldens

I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
SENTINEL = "SENTINEL"  # a value whose encoding is easy to find and rewrite in place
SENTINEL_ID = 0x5A5A5A5A
RECORDS = bytes(range(61)) * 2

# --- samples: real encoded messages, flexible and not --------------------------------------


def _golden_bodies() -> list[tuple[str, type[Message], int, bytes]]:
    out = []
    for g in goldens():
        header, pos = read_request_header(memoryview(g.data))
        out.append(
            (g.id, request_class(header.request_api_key), header.request_api_version, g.data[pos:])
        )
    return out


_BUILT: list[tuple[int, Message]] = [
    (0, MetadataRequest(topics=[MetadataRequestTopic(name="a"), MetadataRequestTopic(name="bc")])),
    (4, MetadataRequest(topics=None, allow_auto_topic_creation=False)),
    (10, MetadataRequest(topics=[MetadataRequestTopic(uuid.UUID(int=3), None)])),
    (
        3,
        ProduceRequest("tx", -1, 100, [TopicProduceData("t", [PartitionProduceData(0, RECORDS)])]),
    ),
    (
        15,
        FetchRequest(
            cluster_id="c",
            replica_state=ReplicaState(1, 2),
            topics=[FetchTopic(topic_id=uuid.UUID(int=5), partitions=[FetchPartition(0)])],
            rack_id="r",
        ),
    ),
    (0, ApiVersionsResponse(35, [ApiVersion(18, 0, 4)])),
    (
        3,
        ApiVersionsResponse(
            api_keys=[ApiVersion(0, 3, 11)],
            supported_features=[SupportedFeatureKey("f", 1, 2)],
            finalized_features_epoch=7,
            finalized_features=[FinalizedFeatureKey("f", 2, 1)],
            zk_migration_ready=True,
        ),
    ),
    (
        1,
        MetadataResponse(
            brokers=[MetadataResponseBroker(1, "h", 9092, None)],
            topics=[
                MetadataResponseTopic(
                    0, "t", partitions=[MetadataResponsePartition(0, 0, 1, -1, [1, 2], [1])]
                )
            ],
        ),
    ),
    (
        12,
        MetadataResponse(
            brokers=[MetadataResponseBroker(1, "h", 9092, "r")],
            cluster_id="c",
            topics=[MetadataResponseTopic(0, "t", uuid.UUID(int=1))],
        ),
    ),
    (
        4,
        FetchResponse(
            responses=[
                FetchableTopicResponse(
                    "t",
                    partitions=[
                        PartitionData(
                            0, aborted_transactions=[AbortedTransaction(1, 2)], records=RECORDS
                        )
                    ],
                )
            ]
        ),
    ),
    (0, SaslAuthenticateRequest(b"secret")),
    (3, SyncGroupRequest("g", 1, "m", assignments=[SyncGroupRequestAssignment("m", b"\x00\x01")])),
    (
        5,
        SyncGroupRequest(
            "g", 1, "m", None, "consumer", "range", [SyncGroupRequestAssignment("m", b"a")]
        ),
    ),
]

SAMPLES = _golden_bodies() + [(f"{m.NAME}-v{v}", type(m), v, m.encode(v)) for v, m in _BUILT]


def _frames() -> list[bytes]:
    """Request frames without their length prefix: the captured ones, plus every request of
    every API at every version with default fields (flexible and not, header v0, v1 and v2)."""
    frames = [g.data for g in goldens()]
    for api_key in APIS:
        cls = request_class(api_key)
        for v in range(cls.VALID_VERSIONS[0], cls.VALID_VERSIONS[1] + 1):
            try:
                frames.append(encode_request(RequestHeader(api_key, v, 7, "cli"), cls())[4:])
            except ValueError:  # a default that this version cannot encode (null)
                continue
    return frames


FRAMES = _frames()


def _patch(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


def _raises_decode_error(decode: Callable[[], object]) -> DecodeError:
    try:
        decode()
    except DecodeError as exc:
        return exc
    except Exception as exc:  # pragma: no cover - the failure we are looking for
        pytest.fail(f"raised {type(exc).__name__}, not DecodeError: {exc}")
    pytest.fail("decoded without error")


# --- truncation and trailing bytes -------------------------------------------------------


@pytest.mark.parametrize(("name", "cls", "version", "body"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_truncation_raises_decode_error(
    name: str, cls: type[Message], version: int, body: bytes
) -> None:
    assert cls.decode(body, version).encode(version) == body  # the sample itself is valid
    # Decoding must consume exactly the input, so no strict prefix can pass.
    for n in range(len(body)):
        _raises_decode_error(lambda n=n: cls.decode(body[:n], version))


def test_every_truncation_of_a_request_frame_raises_decode_error() -> None:
    for frame in FRAMES:
        decode_request(frame)
        for n in range(len(frame)):
            _raises_decode_error(lambda f=frame[:n]: decode_request(f))


@pytest.mark.parametrize(("name", "cls", "version", "body"), SAMPLES, ids=[s[0] for s in SAMPLES])
@pytest.mark.parametrize("junk", [b"\x00", b"\xff\xff\xff\xff", b"tail" * 10])
def test_trailing_bytes(
    name: str, cls: type[Message], version: int, body: bytes, junk: bytes
) -> None:
    _raises_decode_error(lambda: cls.decode(body + junk, version))
    message = cls.decode(body, version)
    # read() is the "more follows" entry point: it stops where the message ends.
    assert cls.read(memoryview(body + junk), 0, version) == (message, len(body))
    prefixed = memoryview(b"\x99" * 3 + body + junk)
    assert cls.read(prefixed, 3, version) == (message, 3 + len(body))


def test_trailing_bytes_after_request_frame() -> None:
    frame = FRAMES[0]
    decode_request(frame)
    _raises_decode_error(lambda: decode_request(frame + b"\x00"))


# --- lengths and counts that lie ---------------------------------------------------------

_MD0 = MetadataRequest(topics=[MetadataRequestTopic(name=SENTINEL)]).encode(0)
_MD1 = MetadataRequest(topics=[MetadataRequestTopic(name=SENTINEL)]).encode(1)
_MD9 = MetadataRequest(topics=[MetadataRequestTopic(name=SENTINEL)]).encode(9)
_STR = I16.pack(len(SENTINEL)) + SENTINEL.encode()
_CSTR = bytes([len(SENTINEL) + 1]) + SENTINEL.encode()
_PRODUCE3 = ProduceRequest(
    None, 1, 100, [TopicProduceData("t", [PartitionProduceData(0, SENTINEL.encode())])]
).encode(3)
_PRODUCE9 = ProduceRequest(
    None, 1, 100, [TopicProduceData("t", [PartitionProduceData(0, SENTINEL.encode())])]
).encode(9)
_SASL0 = SaslAuthenticateRequest(SENTINEL.encode()).encode(0)
_MDR0 = MetadataResponse(
    topics=[
        MetadataResponseTopic(
            0, "t", partitions=[MetadataResponsePartition(0, 0, 1, -1, [SENTINEL_ID])]
        )
    ]
).encode(0)
_REPLICAS = I32.pack(1) + I32.pack(SENTINEL_ID)
_CUT = 4  # after a lying length, a few real bytes follow, far fewer than claimed

BAD_LENGTHS: list[tuple[str, type[Message], int, bytes]] = [
    ("string -2", MetadataRequest, 0, _patch(_MD0, _STR, b"\xff\xfe" + SENTINEL.encode())),
    ("string -1 not nullable", MetadataRequest, 0, _patch(_MD0, _STR, b"\xff\xff")),
    ("string -32768", MetadataRequest, 0, _patch(_MD0, _STR, b"\x80\x00" + SENTINEL.encode())),
    ("string 32767", MetadataRequest, 0, _patch(_MD0, _STR, b"\x7f\xff" + SENTINEL.encode())),
    ("compact string null", MetadataRequest, 9, _patch(_MD9, _CSTR, b"\x00")),
    (
        "compact string 2**32",
        MetadataRequest,
        9,
        _patch(_MD9, _CSTR, b"\x80\x80\x80\x80\x10" + SENTINEL.encode()),
    ),
    ("array -2", MetadataRequest, 1, _patch(_MD1, I32.pack(1) + _STR, I32.pack(-2) + _STR)),
    ("array -1 not nullable", MetadataRequest, 0, _patch(_MD0, I32.pack(1) + _STR, I32.pack(-1))),
    (
        "array 2**31-1",
        MetadataRequest,
        0,
        _patch(_MD0, I32.pack(1) + _STR, I32.pack(2**31 - 1) + _STR[:_CUT]),
    ),
    (
        "int32 array 2**31-1",
        MetadataResponse,
        0,
        _patch(_MDR0, _REPLICAS, I32.pack(2**31 - 1) + I32.pack(SENTINEL_ID)),
    ),
    ("int32 array -2", MetadataResponse, 0, _patch(_MDR0, _REPLICAS, I32.pack(-2))),
    (
        "compact array 2**32",
        MetadataRequest,
        9,
        _patch(_MD9, b"\x02" + _CSTR, b"\x80\x80\x80\x80\x10" + _CSTR[:_CUT]),
    ),
    (
        "compact array 2**31",
        MetadataRequest,
        9,
        _patch(_MD9, b"\x02" + _CSTR, b"\x81\x80\x80\x80\x08" + _CSTR[:_CUT]),
    ),
    (
        "nullable bytes -2",
        ProduceRequest,
        3,
        _patch(_PRODUCE3, I32.pack(8) + SENTINEL.encode(), I32.pack(-2) + SENTINEL.encode()),
    ),
    (
        "nullable bytes 2**31-1",
        ProduceRequest,
        3,
        _patch(_PRODUCE3, I32.pack(8) + SENTINEL.encode(), I32.pack(2**31 - 1) + b"SENT"),
    ),
    (
        "compact bytes 2**32",
        ProduceRequest,
        9,
        _patch(_PRODUCE9, b"\x09" + SENTINEL.encode(), b"\x80\x80\x80\x80\x10SENT"),
    ),
    (
        "bytes -1 not nullable",
        SaslAuthenticateRequest,
        0,
        _patch(_SASL0, I32.pack(8), I32.pack(-1)),
    ),
    ("bytes -2", SaslAuthenticateRequest, 0, _patch(_SASL0, I32.pack(8), I32.pack(-2))),
    ("bytes 2**31-1", SaslAuthenticateRequest, 0, _patch(_SASL0, I32.pack(8), I32.pack(2**31 - 1))),
    # A tagged field whose size runs far past the end (FetchRequest v15: tag 0 = cluster id).
    (
        "tagged field size 2**32",
        FetchRequest,
        15,
        FetchRequest(rack_id="r").encode(15)[:-1] + b"\x01\x00\x80\x80\x80\x80\x10\x02c",
    ),
    # The same for a tag this version does not define (skipped, but not past the end).
    (
        "unknown tag size 2**31",
        MetadataRequest,
        9,
        _MD9[:-1] + b"\x01\x63\x81\x80\x80\x80\x08xyz",
    ),
    ("tag count 2**32", MetadataRequest, 9, _MD9[:-1] + b"\x80\x80\x80\x80\x10\x00\x00"),
]


@pytest.mark.parametrize(
    ("name", "cls", "version", "data"), BAD_LENGTHS, ids=[c[0] for c in BAD_LENGTHS]
)
def test_lying_length_fails_fast_without_allocating(
    name: str, cls: type[Message], version: int, data: bytes
) -> None:
    _raises_decode_error(lambda: cls.decode(data, version))  # warm caches outside the trace
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        started = time.perf_counter()
        _raises_decode_error(lambda: cls.decode(data, version))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{name}: peak allocation {peak} bytes"
    assert elapsed < 1.0


def test_lying_length_samples_are_one_edit_from_valid() -> None:
    # Guards the table above: the unedited messages decode, so each failure is the edit's.
    for data, cls, v in [
        (_MD0, MetadataRequest, 0),
        (_MD1, MetadataRequest, 1),
        (_MD9, MetadataRequest, 9),
        (_PRODUCE3, ProduceRequest, 3),
        (_PRODUCE9, ProduceRequest, 9),
        (_SASL0, SaslAuthenticateRequest, 0),
        (_MDR0, MetadataResponse, 0),
    ]:
        cls.decode(data, v)
    # and an unknown tagged field that fits is skipped, not rejected
    assert MetadataRequest.decode(_MD9[:-1] + b"\x01\x63\x03xyz", 9) == MetadataRequest.decode(
        _MD9, 9
    )


# --- varints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "varint",
    [
        b"\x80\x80\x80\x80\x80\x00",  # six bytes, the last one ending it
        b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # ten bytes
        b"\xff" * 64,  # never ends
        b"\x80\x80\x80\x80\x80",  # fifth byte still says "more"
    ],
)
def test_over_long_varint(varint: bytes) -> None:
    with pytest.raises(DecodeError):
        read_uvarint(memoryview(varint + b"\x00" * 8), 0)
    # As an array count, a string length and a tag count inside real messages:
    _raises_decode_error(
        lambda: MetadataRequest.decode(_patch(_MD9, b"\x02" + _CSTR, varint + _CSTR), 9)
    )
    _raises_decode_error(lambda: MetadataRequest.decode(_patch(_MD9, _CSTR, b"\x02" + varint), 9))
    _raises_decode_error(lambda: MetadataRequest.decode(_MD9[:-1] + varint, 9))


@pytest.mark.parametrize("varint", [b"", b"\x80", b"\xff\xff", b"\x80\x80\x80\x80"])
def test_truncated_varint(varint: bytes) -> None:
    with pytest.raises(DecodeError):
        read_uvarint(memoryview(varint), 0)
    # the tag section is the last thing in a message: a cut varint there is the end of input
    _raises_decode_error(lambda: MetadataRequest.decode(_MD9[:-1] + varint, 9))


def test_five_byte_varint_is_accepted() -> None:
    assert read_uvarint(memoryview(b"\x80\x80\x80\x80\x01"), 0) == (2**28, 5)
    assert read_uvarint(memoryview(b"\xff\xff\xff\xff\x0f"), 0) == (2**32 - 1, 5)


# --- invalid UTF-8 -----------------------------------------------------------------------

BAD_UTF8 = [
    b"\xff\xfeSENTIN",  # not UTF-8 at all
    b"\xc0\x80ENTINE",  # overlong NUL
    b"\xed\xa0\x80NTINE",  # a UTF-16 surrogate
    b"SENTINE\xc3",  # cut in the middle of a two-byte character
]


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_in_topic_name(bad: bytes) -> None:
    assert len(bad) == len(SENTINEL)
    for data, v in [(_MD0, 0), (_MD9, 9)]:
        _raises_decode_error(
            lambda d=data, v=v: MetadataRequest.decode(_patch(d, SENTINEL.encode(), bad), v)
        )


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("version", [0, 9])  # header v1 and v2
def test_invalid_utf8_in_client_id(bad: bytes, version: int) -> None:
    frame = encode_request(RequestHeader(3, version, 5, SENTINEL), MetadataRequest(topics=[]))[4:]
    decode_request(frame)
    _raises_decode_error(lambda: decode_request(_patch(frame, SENTINEL.encode(), bad)))


# --- request headers ---------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [9999, -5, 32767, -1, max(APIS) + 1])
def test_unknown_api_key(api_key: int) -> None:
    frame = struct.pack(">hhi", api_key, 0, 31337) + b"\x00\x01x" + b"body"
    with pytest.raises(UnknownApiKeyError) as info:
        decode_request(frame)
    assert isinstance(info.value, DecodeError)
    assert info.value.api_key == api_key
    assert info.value.correlation_id == 31337
    # an unknown key needs only the fixed eight bytes to be reported
    with pytest.raises(UnknownApiKeyError):
        read_request_header(memoryview(frame[:8]))


@pytest.mark.parametrize("version", [99, 12, -1, 32767])
def test_unsupported_version_of_known_api(version: int) -> None:
    # Too-new versions are flexible, so header v2; -1 is below every flexible range: v1.
    tags = b"\x00" if version >= 9 else b""
    frame = struct.pack(">hhi", 0, version, 8080) + b"\x00\x03cli" + tags + b"whatever"
    with pytest.raises(UnsupportedApiVersionError) as info:
        decode_request(frame)
    assert isinstance(info.value, DecodeError)
    assert info.value.header == RequestHeader(0, version, 8080, "cli")


@pytest.mark.parametrize("n", range(8))
def test_frame_shorter_than_header(n: int) -> None:
    frame = struct.pack(">hhi", 3, 1, 7)[:n]
    _raises_decode_error(lambda: decode_request(frame))
    _raises_decode_error(lambda: read_request_header(memoryview(frame)))


def test_header_without_room_for_client_id() -> None:
    _raises_decode_error(lambda: decode_request(struct.pack(">hhi", 3, 1, 7)))
    _raises_decode_error(lambda: decode_request(struct.pack(">hhi", 3, 1, 7) + b"\x00\x05ab"))


# --- fuzz --------------------------------------------------------------------------------


def _mutate(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, at, bit, insert in ops:
        i = at % (len(buf) + 1)
        if kind == 0 and buf:
            buf[i % len(buf)] ^= 1 << bit
        elif kind == 1:
            del buf[i:]
        elif kind == 2:
            buf[i:i] = insert
        elif kind == 3:
            buf[i : i + len(insert)] = insert
        elif kind == 4 and buf:
            del buf[i % len(buf)]
    return bytes(buf)


_OPS = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 1 << 16),
        st.integers(0, 7),
        st.sampled_from(
            [b"\xff", b"\x00", b"\x7f\xff\xff\xff", b"\x80\x80\x80\x80\x10", b"\xff\xfe"]
        )
        | st.binary(min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=4,
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


def _decodes_or_decode_error(decode: Callable[[], Any]) -> None:
    """Decodes, or raises our DecodeError, never anything else."""
    with contextlib.suppress(DecodeError):
        decode()


@FUZZ
@given(st.binary(max_size=200) | st.builds(_mutate, st.sampled_from(FRAMES), _OPS))
def test_fuzz_decode_request(frame: bytes) -> None:
    """decode_request(any bytes) returns or raises DecodeError, never anything else."""
    _decodes_or_decode_error(lambda: decode_request(frame))


@FUZZ
@given(st.sampled_from(SAMPLES), _OPS)
def test_fuzz_decode_message(sample: tuple[str, type[Message], int, bytes], ops: Any) -> None:
    """Message.decode(mutated valid body) returns or raises DecodeError, never anything else."""
    _, cls, version, body = sample
    _decodes_or_decode_error(lambda: cls.decode(_mutate(body, ops), version))


def test_fuzz_corpus_is_varied() -> None:
    headers = {request_header_version(*struct.unpack_from(">hh", f)) for f in FRAMES}
    assert headers == {0, 1, 2}
    assert len(FRAMES) > 300
    assert {response_class(3), request_class(0)} <= {s[1] for s in SAMPLES}
