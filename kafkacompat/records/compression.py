"""The four Kafka codecs, one flat table keyed by the id in a batch's attributes.

Every codec is backed by ``cramjam`` (see pyproject.toml for why). Two wire details are
Kafka's own rather than the libraries' defaults:

* Snappy: the Java client writes snappy-java's *xerial* framing (an 8-byte magic, two int32
  versions, then blocks of int32 length + raw snappy), librdkafka may write bare raw snappy.
  Both are read; xerial is written, with snappy-java's 32 KiB block size.
* LZ4: the LZ4 *frame* format, but the Java client's reader rejects linked blocks ("Dependent
  block stream is unsupported"), so frames are written as the Java client writes them:
  independent 64 KiB blocks, no checksums.

Decompression is always bounded by a caller-given ``max_size``: a few kilobytes of zstd can
claim gigabytes of output, so nothing larger than the limit is ever allocated. Each codec first
derives an estimate of the output size from its own framing (exact for snappy, the trailer for
gzip, frame/block headers for lz4 and zstd), decompresses into a buffer of that size, and only
grows the buffer (doubling, never past ``max_size``) when the estimate was too small.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final, TypeAlias

import cramjam

from kafkacompat.records.errors import (
    CorruptRecordError,
    RecordTooLargeError,
    UnsupportedCompressionTypeError,
)

BytesLike: TypeAlias = bytes | bytearray | memoryview


class CompressionType(IntEnum):
    """Codec ids as stored in bits 0-2 of a batch's attributes (Kafka's ``CompressionType``)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


@dataclass(frozen=True, slots=True)
class Codec:
    compression_type: CompressionType
    compress: Callable[[BytesLike], bytes]
    # (data, max_size) -> the uncompressed bytes, never longer than max_size.
    decompress: Callable[[BytesLike, int], bytearray]


# When a codec's framing gives no size, start from this ratio; text often compresses 4-10x.
_GUESS_RATIO: Final = 4
_MIN_CAPACITY: Final = 64 * 1024


def _grow_and_decompress(
    decompress_into: Callable[[BytesLike, bytearray], int],
    data: BytesLike,
    estimate: int | None,
    max_size: int,
    codec: str,
) -> bytearray:
    capacity = estimate if estimate is not None else max(len(data) * _GUESS_RATIO, _MIN_CAPACITY)
    capacity = min(capacity, max_size)
    while True:
        out = bytearray(capacity)
        try:
            written = decompress_into(data, out)
        except cramjam.DecompressionError as exc:
            if not _output_was_full(exc):
                raise CorruptRecordError(f"corrupt {codec} data: {exc}") from None
            if capacity >= max_size:
                raise RecordTooLargeError(
                    f"{codec} data inflates past the {max_size}-byte limit"
                ) from None
            capacity = min(max(capacity * 2, _MIN_CAPACITY), max_size)
            continue
        del out[written:]
        return out


def _output_was_full(exc: Exception) -> bool:
    # cramjam reports "ran out of output space" only through its message: Rust's write_all
    # error for the streaming codecs, snappy's own wording for raw blocks. Growing the buffer
    # is worth it only for that case; anything else is a corrupt stream, and retrying would
    # let one bad batch cost allocations up to max_size. tests/records pin these messages.
    text = str(exc)
    return "failed to write whole buffer" in text or "smaller than required" in text


def _check_max_size(max_size: int) -> None:
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")


# -- none ---------------------------------------------------------------------------------------


def _none_compress(data: BytesLike) -> bytes:
    return bytes(data)


def _none_decompress(data: BytesLike, max_size: int) -> bytearray:
    _check_max_size(max_size)
    if len(data) > max_size:
        raise RecordTooLargeError(f"{len(data)} bytes exceed the {max_size}-byte limit")
    return bytearray(data)


# -- gzip ---------------------------------------------------------------------------------------

_GZIP_MIN_MEMBER: Final = 18  # 10-byte header + 8-byte trailer
_U32_LE: Final = struct.Struct("<I")


def _gzip_compress(data: BytesLike) -> bytes:
    # Level 6 is what java.util.zip.Deflater, and so the Java client, uses by default.
    return bytes(cramjam.gzip.compress(data, level=6))


def _gzip_decompress(data: BytesLike, max_size: int) -> bytearray:
    _check_max_size(max_size)
    estimate = None
    if len(data) >= _GZIP_MIN_MEMBER:
        # ISIZE, the last member's length mod 2**32: exact for the single-member streams
        # every client writes; a lie only costs a retry or a corrupt-stream error.
        (estimate,) = _U32_LE.unpack_from(data, len(data) - 4)
    return _grow_and_decompress(cramjam.gzip.decompress_into, data, estimate, max_size, "gzip")


# -- snappy -------------------------------------------------------------------------------------

XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")  # magic, version, compatible version
_XERIAL_VERSION: Final = 1
_XERIAL_BLOCK_SIZE: Final = 32 * 1024  # snappy-java's SnappyOutputStream default
_I32: Final = struct.Struct(">i")


def _snappy_compress(data: BytesLike) -> bytes:
    view = memoryview(data)
    out = bytearray(_XERIAL_HEADER.pack(XERIAL_MAGIC, _XERIAL_VERSION, _XERIAL_VERSION))
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE])
        out += _I32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_raw_length(block: memoryview) -> int:
    try:
        return cramjam.snappy.decompress_raw_len(block)
    except cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"corrupt snappy data: {exc}") from None


def _snappy_decompress(data: BytesLike, max_size: int) -> bytearray:
    _check_max_size(max_size)
    view = memoryview(data)
    is_xerial = view[: len(XERIAL_MAGIC)].tobytes() == XERIAL_MAGIC
    blocks = _xerial_blocks(view) if is_xerial else [view]
    # Raw snappy states its uncompressed length up front, so the total is known exactly
    # before a single byte is allocated.
    lengths = []
    total = 0
    for block in blocks:
        length = _snappy_raw_length(block)
        total += length
        if total > max_size:
            raise RecordTooLargeError(f"snappy data inflates past the {max_size}-byte limit")
        lengths.append(length)
    out = bytearray(total)
    target = memoryview(out)
    position = 0
    for block, length in zip(blocks, lengths, strict=True):
        try:
            cramjam.snappy.decompress_raw_into(block, target[position : position + length])
        except cramjam.DecompressionError as exc:
            raise CorruptRecordError(f"corrupt snappy data: {exc}") from None
        position += length
    return out


def _xerial_blocks(view: memoryview) -> list[memoryview]:
    if len(view) < _XERIAL_HEADER.size:
        raise CorruptRecordError("truncated xerial snappy header")
    blocks = []
    position = _XERIAL_HEADER.size
    while position < len(view):
        if len(view) - position < _I32.size:
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = _I32.unpack_from(view, position)
        position += _I32.size
        if length < 0 or length > len(view) - position:
            raise CorruptRecordError(f"xerial snappy block length {length} is out of bounds")
        blocks.append(view[position : position + length])
        position += length
    return blocks


# -- lz4 ----------------------------------------------------------------------------------------

_LZ4_MAGIC: Final = 0x184D2204
_LZ4_FLG_CONTENT_SIZE: Final = 0x08
_LZ4_FLG_BLOCK_CHECKSUM: Final = 0x10
_LZ4_FLG_DICT_ID: Final = 0x01
_LZ4_UNCOMPRESSED_BLOCK: Final = 0x80000000
_LZ4_BLOCK_MAX: Final = {4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024}
_U64_LE: Final = struct.Struct("<Q")


# The frame header the Java client writes: magic, FLG 0x60 (version 1, independent blocks, no
# checksums, no content size), BD 0x40 (64 KiB blocks), header checksum. Fixed, so precomputed.
_LZ4_KAFKA_FRAME_HEADER: Final = b"\x04\x22\x4d\x18\x60\x40\x82"
_LZ4_KAFKA_BLOCK_SIZE: Final = 64 * 1024
_LZ4_END_MARK: Final = b"\x00\x00\x00\x00"


def _lz4_compress(data: BytesLike) -> bytes:
    # Written block by block rather than with cramjam's frame encoder: that one links blocks
    # by default, which the Java client's reader refuses, and wants a bytes copy of its input.
    view = memoryview(data)
    out = bytearray(_LZ4_KAFKA_FRAME_HEADER)
    for start in range(0, len(view), _LZ4_KAFKA_BLOCK_SIZE):
        chunk = view[start : start + _LZ4_KAFKA_BLOCK_SIZE]
        block = cramjam.lz4.compress_block(chunk, store_size=False)
        if len(block) < len(chunk):
            out += _U32_LE.pack(len(block))
            out += block
        else:  # incompressible: the frame format lets the block be stored as is
            out += _U32_LE.pack(len(chunk) | _LZ4_UNCOMPRESSED_BLOCK)
            out += chunk
    out += _LZ4_END_MARK
    return bytes(out)


def _lz4_estimate(view: memoryview, max_size: int) -> int | None:
    """Output size from the frame: the content size if stated, else blocks x block maximum.

    The block walk stops once past ``max_size``, so a frame of a million tiny blocks costs no
    more Python work than the limit allows.
    """
    if len(view) < 7 or _U32_LE.unpack_from(view, 0)[0] != _LZ4_MAGIC:
        return None
    flg, bd = view[4], view[5]
    position = 6
    if flg & _LZ4_FLG_CONTENT_SIZE:
        if len(view) < position + 8:
            return None
        content_size: int = _U64_LE.unpack_from(view, position)[0]
        return content_size
    block_max = _LZ4_BLOCK_MAX.get((bd >> 4) & 0x07)
    if block_max is None:
        return None
    position += (4 if flg & _LZ4_FLG_DICT_ID else 0) + 1  # + header checksum byte
    checksum_size = 4 if flg & _LZ4_FLG_BLOCK_CHECKSUM else 0
    total = 0
    while len(view) - position >= 4 and total <= max_size:
        (word,) = _U32_LE.unpack_from(view, position)
        if word == 0:  # end mark
            return total
        size = word & ~_LZ4_UNCOMPRESSED_BLOCK
        total += size if word & _LZ4_UNCOMPRESSED_BLOCK else block_max
        position += 4 + size + checksum_size
    return total


def _lz4_decompress(data: BytesLike, max_size: int) -> bytearray:
    _check_max_size(max_size)
    estimate = _lz4_estimate(memoryview(data), max_size)
    return _grow_and_decompress(cramjam.lz4.decompress_into, data, estimate, max_size, "lz4")


# -- zstd ---------------------------------------------------------------------------------------

_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_BLOCK_MAX: Final = 128 * 1024
_ZSTD_DICT_ID_SIZES: Final = (0, 1, 2, 4)
_ZSTD_RAW_BLOCK, _ZSTD_RLE_BLOCK, _ZSTD_COMPRESSED_BLOCK = 0, 1, 2


def _zstd_compress(data: BytesLike) -> bytes:
    # Level 3 is zstd's and the Java client's default.
    return bytes(cramjam.zstd.compress(data, level=3))


def _zstd_estimate(view: memoryview, max_size: int) -> int | None:
    """Output size of the first frame: its content size if stated, else summed block bounds.

    zstd-jni's streaming compressor (the Java client) leaves the content size out, but every
    block header still bounds its output: raw and RLE blocks state it, compressed blocks are
    at most 128 KiB. Like the lz4 walk, it stops once past ``max_size``.
    """
    if len(view) < 6 or _U32_LE.unpack_from(view, 0)[0] != _ZSTD_MAGIC:
        return None
    descriptor = view[4]
    fcs_flag = descriptor >> 6
    single_segment = bool(descriptor & 0x20)
    position = 5 + (0 if single_segment else 1) + _ZSTD_DICT_ID_SIZES[descriptor & 0x03]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if fcs_size:
        if len(view) < position + fcs_size:
            return None
        content_size = int.from_bytes(view[position : position + fcs_size], "little")
        return content_size + 256 if fcs_size == 2 else content_size
    total = 0
    while len(view) - position >= 3 and total <= max_size:
        header = int.from_bytes(view[position : position + 3], "little")
        last, block_type, size = header & 1, (header >> 1) & 3, header >> 3
        if block_type in (_ZSTD_RAW_BLOCK, _ZSTD_RLE_BLOCK):
            total += size
        else:
            total += _ZSTD_BLOCK_MAX
        position += 3 + (1 if block_type == _ZSTD_RLE_BLOCK else size)
        if last:
            break
    return total


def _zstd_decompress(data: BytesLike, max_size: int) -> bytearray:
    _check_max_size(max_size)
    estimate = _zstd_estimate(memoryview(data), max_size)
    return _grow_and_decompress(cramjam.zstd.decompress_into, data, estimate, max_size, "zstd")


# -- the table ----------------------------------------------------------------------------------

CODECS: Final[Mapping[int, Codec]] = MappingProxyType(
    {
        CompressionType.NONE: Codec(CompressionType.NONE, _none_compress, _none_decompress),
        CompressionType.GZIP: Codec(CompressionType.GZIP, _gzip_compress, _gzip_decompress),
        CompressionType.SNAPPY: Codec(CompressionType.SNAPPY, _snappy_compress, _snappy_decompress),
        CompressionType.LZ4: Codec(CompressionType.LZ4, _lz4_compress, _lz4_decompress),
        CompressionType.ZSTD: Codec(CompressionType.ZSTD, _zstd_compress, _zstd_decompress),
    }
)


def codec_for(compression_id: int) -> Codec:
    """The codec for an attributes codec id; ids Kafka has not assigned (5-7) are refused."""
    codec = CODECS.get(compression_id)
    if codec is None:
        raise UnsupportedCompressionTypeError(f"unknown compression type id {compression_id}")
    return codec


def compress(compression_type: int, data: BytesLike) -> bytes:
    """Compress ``data`` the way Kafka's Java client would for this codec."""
    return codec_for(compression_type).compress(data)


def decompress(compression_type: int, data: BytesLike, max_size: int) -> bytearray:
    """Decompress ``data``; RecordTooLargeError if the output would exceed ``max_size`` bytes."""
    return codec_for(compression_type).decompress(data, max_size)
