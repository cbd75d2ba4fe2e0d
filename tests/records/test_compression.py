"""The codec table: round trips, interop with the reference libraries, and bounded inflation."""

from __future__ import annotations

import gzip
import random
import struct
import tracemalloc
from collections.abc import Callable

import cramjam
import kafka.codec
import lz4.frame
import pytest
import snappy
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.errors import KafkaProtocolError
from kafkacompat.records import compression
from kafkacompat.records.compression import (
    CODECS,
    XERIAL_MAGIC,
    CompressionType,
    compress,
    decompress,
)
from kafkacompat.records.errors import (
    CorruptRecordError,
    RecordTooLargeError,
    UnsupportedCompressionTypeError,
)

ALL = list(CompressionType)
COMPRESSED = [c for c in CompressionType if c != CompressionType.NONE]
TEXT = b"".join(
    b'{"user_id": %d, "event": "page_view", "path": "/products/%d", "ms": %d}\n'
    % (i, i % 97, 1_700_000_000_000 + i)
    for i in range(12_000)
)  # ~0.9 MiB, several blocks of every codec


def test_table_holds_exactly_kafkas_codec_ids() -> None:
    assert sorted(CODECS) == [0, 1, 2, 3, 4]
    assert all(CODECS[i].compression_type == i for i in CODECS)


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("data", [b"", b"x", TEXT, bytes(range(256)) * 1000])
def test_round_trip(codec: CompressionType, data: bytes) -> None:
    packed = compress(codec, memoryview(data))
    assert bytes(decompress(codec, packed, len(data))) == data


@settings(max_examples=60, deadline=None)
@given(codec=st.sampled_from(ALL), data=st.binary(max_size=3000))
def test_round_trip_random(codec: CompressionType, data: bytes) -> None:
    assert bytes(decompress(codec, compress(codec, data), len(data))) == data


# -- interop with the libraries kafka-python (and Kafka's own framing) use --------------------

READERS: dict[CompressionType, Callable[[bytes], bytes]] = {
    CompressionType.GZIP: gzip.decompress,
    CompressionType.SNAPPY: kafka.codec.snappy_decode,  # xerial-aware, as the Java client
    CompressionType.LZ4: lz4.frame.decompress,
    CompressionType.ZSTD: lambda d: zstandard.ZstdDecompressor().decompress(
        d, max_output_size=1 << 24
    ),
}


@pytest.mark.parametrize("codec", COMPRESSED)
def test_reference_libraries_read_ours(codec: CompressionType) -> None:
    assert READERS[codec](compress(codec, TEXT)) == TEXT


def _zstd_streamed(data: bytes) -> bytes:
    # Like zstd-jni's stream (the Java client): no content size in the frame header.
    compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    return compressor.compress(data) + compressor.flush()


WRITERS: list[tuple[CompressionType, Callable[[bytes], bytes]]] = [
    (CompressionType.GZIP, gzip.compress),
    (CompressionType.SNAPPY, lambda d: kafka.codec.snappy_encode(d, xerial_compatible=True)),
    (CompressionType.SNAPPY, snappy.compress),  # raw, as librdkafka may send
    (CompressionType.LZ4, lambda d: lz4.frame.compress(d, block_linked=False)),
    (
        CompressionType.LZ4,
        lambda d: lz4.frame.compress(d, block_linked=True, content_checksum=True),
    ),
    (CompressionType.LZ4, lambda d: lz4.frame.compress(d, store_size=False, block_checksum=True)),
    (CompressionType.ZSTD, zstandard.ZstdCompressor().compress),
    (CompressionType.ZSTD, _zstd_streamed),
]


@pytest.mark.parametrize(("codec", "writer"), WRITERS)
def test_we_read_reference_libraries(
    codec: CompressionType, writer: Callable[[bytes], bytes]
) -> None:
    assert bytes(decompress(codec, writer(TEXT), len(TEXT))) == TEXT


def test_snappy_is_written_with_xerial_framing() -> None:
    packed = compress(CompressionType.SNAPPY, TEXT)
    assert packed[:16] == XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    first_block_length = struct.unpack_from(">i", packed, 16)[0]
    first_block = packed[20 : 20 + first_block_length]
    assert cramjam.snappy.decompress_raw_len(first_block) == 32 * 1024


def test_lz4_frame_is_the_java_clients() -> None:
    packed = compress(CompressionType.LZ4, TEXT)
    # version 1, independent blocks, no checksums, 64 KiB blocks; the Java client rejects
    # frames without the independent-blocks flag.
    assert packed[:7] == b"\x04\x22\x4d\x18\x60\x40\x82"
    assert packed.endswith(b"\x00\x00\x00\x00")


def test_lz4_stores_incompressible_blocks_raw() -> None:
    noise = random.Random(0).randbytes(100_000)
    packed = compress(CompressionType.LZ4, noise)
    assert struct.unpack_from("<I", packed, 7)[0] & 0x80000000
    assert lz4.frame.decompress(packed) == noise


# -- bounded inflation ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL)
def test_max_size_is_inclusive_and_enforced(codec: CompressionType) -> None:
    packed = compress(codec, TEXT)
    assert len(decompress(codec, packed, len(TEXT))) == len(TEXT)
    with pytest.raises(RecordTooLargeError) as info:
        decompress(codec, packed, len(TEXT) - 1)
    assert info.value.error_code == 10


BOMB = bytes(64 * 1024 * 1024)


@pytest.fixture(scope="module")
def bombs() -> dict[CompressionType, bytes]:
    return {
        CompressionType.GZIP: bytes(cramjam.gzip.compress(BOMB, level=1)),
        CompressionType.SNAPPY: bytes(cramjam.snappy.compress_raw(BOMB)),
        CompressionType.LZ4: lz4.frame.compress(BOMB, block_linked=False, store_size=False),
        CompressionType.ZSTD: _zstd_streamed(BOMB),
    }


@pytest.mark.parametrize("codec", COMPRESSED)
def test_zip_bomb_is_refused_without_allocating_its_size(
    codec: CompressionType, bombs: dict[CompressionType, bytes]
) -> None:
    limit = 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(RecordTooLargeError):
            decompress(codec, bombs[codec], limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit


@pytest.mark.parametrize("codec", [CompressionType.GZIP, CompressionType.LZ4, CompressionType.ZSTD])
def test_a_low_size_estimate_grows_to_fit(codec: CompressionType) -> None:
    # Pins cramjam's "output buffer full" wording, which the growth loop depends on.
    module = {1: cramjam.gzip, 3: cramjam.lz4, 4: cramjam.zstd}[codec]
    packed = compress(codec, TEXT)
    grown = compression._grow_and_decompress(module.decompress_into, packed, 1, len(TEXT), "x")
    assert bytes(grown) == TEXT
    with pytest.raises(RecordTooLargeError):
        compression._grow_and_decompress(module.decompress_into, packed, 1, len(TEXT) - 1, "x")


def test_multi_member_gzip_decodes_past_the_last_members_size() -> None:
    packed = gzip.compress(TEXT) + gzip.compress(b"tail")
    assert bytes(decompress(CompressionType.GZIP, packed, len(TEXT) + 4)) == TEXT + b"tail"


def test_negative_max_size_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        decompress(CompressionType.GZIP, compress(CompressionType.GZIP, b"x"), -1)


# -- damaged input --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSED)
def test_truncated_stream_is_corrupt(codec: CompressionType) -> None:
    packed = compress(codec, TEXT)
    for cut in (1, 7, 21, len(packed) // 2, len(packed) - 1):
        with pytest.raises(CorruptRecordError):
            decompress(codec, packed[:cut], 1 << 24)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_garbage_is_corrupt(codec: CompressionType) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decompress(codec, b"\xff" * 64, 1 << 20)
    assert info.value.error_code == 2


def test_xerial_block_length_past_the_end_is_corrupt() -> None:
    packed = bytearray(compress(CompressionType.SNAPPY, TEXT))
    struct.pack_into(">i", packed, 16, len(packed))
    with pytest.raises(CorruptRecordError):
        decompress(CompressionType.SNAPPY, packed, 1 << 24)
    struct.pack_into(">i", packed, 16, -5)
    with pytest.raises(CorruptRecordError):
        decompress(CompressionType.SNAPPY, packed, 1 << 24)


@pytest.mark.parametrize("codec_id", [5, 6, 7, -1, 99])
def test_unassigned_codec_ids_are_unsupported(codec_id: int) -> None:
    with pytest.raises(UnsupportedCompressionTypeError) as info:
        decompress(codec_id, b"abc", 100)
    assert info.value.error_code == 76
    with pytest.raises(UnsupportedCompressionTypeError):
        compress(codec_id, b"abc")


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=200))
def test_fuzz_decompress_raises_only_protocol_errors(codec: CompressionType, data: bytes) -> None:
    try:
        out = decompress(codec, data, 64 * 1024)
    except KafkaProtocolError:
        return
    assert len(out) <= 64 * 1024


@settings(max_examples=200, deadline=None)
@given(
    codec=st.sampled_from(COMPRESSED),
    position=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
)
def test_fuzz_mutated_streams_raise_only_protocol_errors(
    codec: CompressionType, position: int, byte: int
) -> None:
    packed = bytearray(compress(codec, TEXT[:5000]))
    packed[position % len(packed)] = byte
    try:
        out = decompress(codec, packed, 64 * 1024)
    except KafkaProtocolError:
        return
    assert len(out) <= 64 * 1024
