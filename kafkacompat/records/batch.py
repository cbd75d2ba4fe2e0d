"""RecordBatch v2 (magic 2): a zero-copy view over one batch, and a walker over many.

Theory of operation. A Produce request's ``records`` field, a Fetch response's, and a log segment
are all the same thing: RecordBatches laid end to end. :func:`iter_batches` finds the frames
(checking only the 61-byte header and, by default, the CRC) and yields a :class:`RecordBatch` per
frame, a view that reads header fields straight out of the caller's buffer. Records are decoded
(and decompressed) only when someone asks for them with :meth:`RecordBatch.iter_records`, because
the broker's normal append path never needs them: it stamps the base offset and the partition
leader epoch in place, both of which sit outside the CRC, and stores the bytes as received.

The magic byte sits at byte 16 in both this format and the legacy MessageSet (offset int64,
size int32, crc int32, magic int8), so a legacy message is recognised, and refused, before any
v2-only field is interpreted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Final

import crc32c

from kafkacompat.records.compression import CODECS, BytesLike, CompressionType, decompress
from kafkacompat.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    UnsupportedCompressionTypeError,
    UnsupportedForMessageFormatError,
)
from kafkacompat.records.record import Record, iter_records

# The header, in wire order: (field, struct code). Everything below is derived from this table.
_HEADER_FIELDS: Final = (
    ("base_offset", "q"),  # first record's offset; assigned by the broker on append
    ("batch_length", "i"),  # bytes after this field: the batch is batch_length + 12 bytes
    ("partition_leader_epoch", "i"),  # leader's epoch at append; assigned by the broker
    ("magic", "b"),  # format version, 2; same position as a legacy MessageSet's magic
    ("crc", "I"),  # CRC-32C from attributes to the end of the batch
    ("attributes", "h"),  # codec, timestamp type, transactional, control, delete horizon bits
    ("last_offset_delta", "i"),  # last record's offset minus base_offset
    ("base_timestamp", "q"),  # first record's timestamp, or the delete horizon (KIP-534)
    ("max_timestamp", "q"),  # largest record timestamp, or the log append time
    ("producer_id", "q"),  # -1 unless the producer is idempotent or transactional
    ("producer_epoch", "h"),  # fences zombie producers sharing a producer id
    ("base_sequence", "i"),  # first record's sequence number, -1 without a producer id
    ("records_count", "i"),  # number of records that follow, after decompression
)

HEADER_FORMAT: Final = ">" + "".join(code for _, code in _HEADER_FIELDS)
RECORD_BATCH_HEADER: Final = struct.Struct(HEADER_FORMAT)
_OFFSETS: Final = {
    name: struct.calcsize(">" + "".join(code for _, code in _HEADER_FIELDS[:index]))
    for index, (name, _) in enumerate(_HEADER_FIELDS)
}

BASE_OFFSET_OFFSET: Final = _OFFSETS["base_offset"]
LENGTH_OFFSET: Final = _OFFSETS["batch_length"]
PARTITION_LEADER_EPOCH_OFFSET: Final = _OFFSETS["partition_leader_epoch"]
MAGIC_OFFSET: Final = _OFFSETS["magic"]
CRC_OFFSET: Final = _OFFSETS["crc"]
ATTRIBUTES_OFFSET: Final = _OFFSETS["attributes"]
LAST_OFFSET_DELTA_OFFSET: Final = _OFFSETS["last_offset_delta"]
BASE_TIMESTAMP_OFFSET: Final = _OFFSETS["base_timestamp"]
MAX_TIMESTAMP_OFFSET: Final = _OFFSETS["max_timestamp"]
PRODUCER_ID_OFFSET: Final = _OFFSETS["producer_id"]
PRODUCER_EPOCH_OFFSET: Final = _OFFSETS["producer_epoch"]
BASE_SEQUENCE_OFFSET: Final = _OFFSETS["base_sequence"]
RECORDS_COUNT_OFFSET: Final = _OFFSETS["records_count"]
RECORDS_OFFSET: Final = RECORD_BATCH_HEADER.size

HeaderFields = tuple[int, ...]
"""``RECORD_BATCH_HEADER.unpack`` of one header: the fields in wire order."""

# Positions in :data:`HeaderFields`, for hot paths that unpack a header once and keep the tuple.
_FIELD_INDEX: Final = {name: index for index, (name, _) in enumerate(_HEADER_FIELDS)}
FIELD_BASE_OFFSET: Final = _FIELD_INDEX["base_offset"]
FIELD_BATCH_LENGTH: Final = _FIELD_INDEX["batch_length"]
FIELD_PARTITION_LEADER_EPOCH: Final = _FIELD_INDEX["partition_leader_epoch"]
FIELD_MAGIC: Final = _FIELD_INDEX["magic"]
FIELD_CRC: Final = _FIELD_INDEX["crc"]
FIELD_ATTRIBUTES: Final = _FIELD_INDEX["attributes"]
FIELD_LAST_OFFSET_DELTA: Final = _FIELD_INDEX["last_offset_delta"]
FIELD_BASE_TIMESTAMP: Final = _FIELD_INDEX["base_timestamp"]
FIELD_MAX_TIMESTAMP: Final = _FIELD_INDEX["max_timestamp"]
FIELD_PRODUCER_ID: Final = _FIELD_INDEX["producer_id"]
FIELD_PRODUCER_EPOCH: Final = _FIELD_INDEX["producer_epoch"]
FIELD_BASE_SEQUENCE: Final = _FIELD_INDEX["base_sequence"]
FIELD_RECORDS_COUNT: Final = _FIELD_INDEX["records_count"]

# The three leading fields a broker rewrites on append, in one ``pack_into``: the base offset
# and the leader epoch it assigns, and the batch length between them, written back unchanged.
_STAMPED_FIELDS: Final = ("base_offset", "batch_length", "partition_leader_epoch")
assert tuple(name for name, _ in _HEADER_FIELDS[:3]) == _STAMPED_FIELDS
OFFSET_LENGTH_EPOCH: Final = struct.Struct(">" + "".join(code for _, code in _HEADER_FIELDS[:3]))

# Kafka's names: base offset + batch length precede every batch, and are not in batch_length.
LOG_OVERHEAD: Final = LENGTH_OFFSET + 4
RECORD_BATCH_OVERHEAD: Final = RECORD_BATCH_HEADER.size
MIN_BATCH_LENGTH: Final = RECORD_BATCH_OVERHEAD - LOG_OVERHEAD
CURRENT_MAGIC: Final = 2
# A legacy v0 message's size field counts at least crc, magic, attributes and two lengths.
_LEGACY_RECORD_OVERHEAD_V0: Final = 14

COMPRESSION_CODEC_MASK: Final = 0x07
TIMESTAMP_TYPE_MASK: Final = 0x08
TRANSACTIONAL_FLAG_MASK: Final = 0x10
CONTROL_FLAG_MASK: Final = 0x20
DELETE_HORIZON_FLAG_MASK: Final = 0x40

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
NO_PARTITION_LEADER_EPOCH: Final = -1

# A compressed batch is inflated into at most this many bytes unless the caller says otherwise.
# Clients cap requests at 1 MiB by default; 64x that covers text compressed very well.
DEFAULT_MAX_UNCOMPRESSED_SIZE: Final = 64 * 1024 * 1024

_I8: Final = struct.Struct(">b")
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")
_I64: Final = struct.Struct(">q")


class TimestampType(IntEnum):
    """Bit 3 of the attributes (Kafka's ``TimestampType``, minus the pre-v1 NO_TIMESTAMP_TYPE)."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


def _as_byte_view(buffer: BytesLike) -> memoryview:
    view = memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _check_magic(magic: int) -> None:
    if magic == CURRENT_MAGIC:
        return
    if magic in (0, 1):
        raise UnsupportedForMessageFormatError(
            f"legacy message format (magic {magic}); only RecordBatch v2 is supported"
        )
    raise CorruptRecordError(f"unknown magic byte {magic}")


class RecordBatch:
    """A view over exactly one v2 batch; header reads and in-place stamps touch the buffer directly.

    Construction checks only the frame (size, magic, batch length); call :meth:`ensure_valid`
    for the CRC, or get batches from :func:`iter_batches`, which does.
    """

    __slots__ = ("_buffer",)

    def __init__(self, buffer: BytesLike) -> None:
        view = _as_byte_view(buffer)
        if len(view) < RECORD_BATCH_OVERHEAD:
            raise CorruptRecordError(
                f"{len(view)} bytes is shorter than the {RECORD_BATCH_OVERHEAD}-byte batch header"
            )
        _check_magic(_I8.unpack_from(view, MAGIC_OFFSET)[0])
        (batch_length,) = _I32.unpack_from(view, LENGTH_OFFSET)
        if batch_length + LOG_OVERHEAD != len(view):
            raise CorruptRecordError(
                f"batch length {batch_length} does not match the {len(view)}-byte buffer"
            )
        self._buffer = view

    @classmethod
    def _of_frame(cls, view: memoryview) -> RecordBatch:
        """A view over a frame the caller has already checked (size, magic, length)."""
        batch = cls.__new__(cls)
        batch._buffer = view
        return batch

    # -- header fields, read from the buffer on every access so in-place stamps show ------------

    @property
    def buffer(self) -> memoryview:
        """The batch's bytes, header included: what a log segment stores."""
        return self._buffer

    def header_fields(self) -> HeaderFields:
        """Every header field with one unpack, in wire order (index with the ``FIELD_*`` names)."""
        fields: HeaderFields = RECORD_BATCH_HEADER.unpack_from(self._buffer)
        return fields

    @property
    def base_offset(self) -> int:
        value: int = _I64.unpack_from(self._buffer, BASE_OFFSET_OFFSET)[0]
        return value

    @property
    def batch_length(self) -> int:
        value: int = _I32.unpack_from(self._buffer, LENGTH_OFFSET)[0]
        return value

    @property
    def partition_leader_epoch(self) -> int:
        value: int = _I32.unpack_from(self._buffer, PARTITION_LEADER_EPOCH_OFFSET)[0]
        return value

    @property
    def magic(self) -> int:
        value: int = _I8.unpack_from(self._buffer, MAGIC_OFFSET)[0]
        return value

    @property
    def crc(self) -> int:
        value: int = _U32.unpack_from(self._buffer, CRC_OFFSET)[0]
        return value

    @property
    def attributes(self) -> int:
        value: int = _I16.unpack_from(self._buffer, ATTRIBUTES_OFFSET)[0]
        return value

    @property
    def last_offset_delta(self) -> int:
        value: int = _I32.unpack_from(self._buffer, LAST_OFFSET_DELTA_OFFSET)[0]
        return value

    @property
    def base_timestamp(self) -> int:
        value: int = _I64.unpack_from(self._buffer, BASE_TIMESTAMP_OFFSET)[0]
        return value

    @property
    def max_timestamp(self) -> int:
        value: int = _I64.unpack_from(self._buffer, MAX_TIMESTAMP_OFFSET)[0]
        return value

    @property
    def producer_id(self) -> int:
        value: int = _I64.unpack_from(self._buffer, PRODUCER_ID_OFFSET)[0]
        return value

    @property
    def producer_epoch(self) -> int:
        value: int = _I16.unpack_from(self._buffer, PRODUCER_EPOCH_OFFSET)[0]
        return value

    @property
    def base_sequence(self) -> int:
        value: int = _I32.unpack_from(self._buffer, BASE_SEQUENCE_OFFSET)[0]
        return value

    @property
    def records_count(self) -> int:
        value: int = _I32.unpack_from(self._buffer, RECORDS_COUNT_OFFSET)[0]
        return value

    # -- derived ---------------------------------------------------------------------------------

    @property
    def compression_id(self) -> int:
        """The raw codec bits, 0-7, including ids no codec is assigned to."""
        return self.attributes & COMPRESSION_CODEC_MASK

    @property
    def compression_type(self) -> CompressionType:
        compression_id = self.compression_id
        try:
            return CompressionType(compression_id)
        except ValueError:
            raise UnsupportedCompressionTypeError(
                f"unknown compression type id {compression_id}"
            ) from None

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & TIMESTAMP_TYPE_MASK:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG_MASK)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_FLAG_MASK)

    @property
    def delete_horizon_ms(self) -> int | None:
        """When the cleaner may drop this batch's tombstones (KIP-534); kept in base_timestamp."""
        return self.base_timestamp if self.has_delete_horizon else None

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id > NO_PRODUCER_ID

    @property
    def size_in_bytes(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    # -- integrity -------------------------------------------------------------------------------

    def compute_checksum(self) -> int:
        return crc32c.crc32c(self._buffer[ATTRIBUTES_OFFSET:])

    def is_valid(self) -> bool:
        """Whether the stored CRC matches the bytes it covers."""
        return self.compute_checksum() == self.crc

    def ensure_valid(self) -> None:
        """Raise CorruptRecordError unless the CRC matches."""
        computed = self.compute_checksum()
        if computed != self.crc:
            raise CorruptRecordError(
                f"record batch is corrupt: stored crc {self.crc:#010x}, computed {computed:#010x}"
            )

    def ensure_valid_from_client(self) -> None:
        """The checks Kafka's LogValidator adds for batches a client produced.

        A client batch must hold at least one record, and its offsets must run 0..count-1 with
        no gaps (gaps appear only after compaction, never on the way in); clients may not
        write control batches, and an idempotent batch must carry a sequence number.
        """
        _check_client_fields(self.header_fields())

    # -- in-place stamps -------------------------------------------------------------------------

    def _writable(self) -> memoryview:
        if self._buffer.readonly:
            raise TypeError("this batch is over a read-only buffer; wrap a bytearray to stamp it")
        return self._buffer

    def set_base_offset(self, base_offset: int) -> None:
        """Assign offsets on append; outside the CRC, so the checksum stays valid."""
        _I64.pack_into(self._writable(), BASE_OFFSET_OFFSET, base_offset)

    def set_partition_leader_epoch(self, epoch: int) -> None:
        """Stamp the leader epoch on append; outside the CRC, so the checksum stays valid."""
        _I32.pack_into(self._writable(), PARTITION_LEADER_EPOCH_OFFSET, epoch)

    def set_max_timestamp(self, timestamp_type: TimestampType, max_timestamp: int) -> None:
        """Set the timestamp type bit and max timestamp, then re-checksum (both are in the CRC).

        With LOG_APPEND_TIME this is how a broker stamps a batch for
        ``message.timestamp.type=LogAppendTime``: readers then report ``max_timestamp`` as
        every record's timestamp, so the records themselves are left untouched.
        """
        buffer = self._writable()
        attributes = self.attributes & ~TIMESTAMP_TYPE_MASK
        if timestamp_type == TimestampType.LOG_APPEND_TIME:
            attributes |= TIMESTAMP_TYPE_MASK
        _I16.pack_into(buffer, ATTRIBUTES_OFFSET, attributes)
        _I64.pack_into(buffer, MAX_TIMESTAMP_OFFSET, max_timestamp)
        _U32.pack_into(buffer, CRC_OFFSET, self.compute_checksum())

    # -- records ---------------------------------------------------------------------------------

    def records_payload(self, max_uncompressed_size: int = DEFAULT_MAX_UNCOMPRESSED_SIZE) -> bytes:
        """The records section, decompressed if the batch is compressed."""
        compression_type = self.compression_type
        section = self._buffer[RECORDS_OFFSET:]
        if compression_type == CompressionType.NONE:
            return section.tobytes()
        return bytes(decompress(compression_type, section, max_uncompressed_size))

    def iter_records(
        self, max_uncompressed_size: int = DEFAULT_MAX_UNCOMPRESSED_SIZE
    ) -> Iterator[Record]:
        """Decode the records, decompressing first (into at most ``max_uncompressed_size`` bytes).

        Raises InvalidRecordError for malformed records, including a records_count that does
        not match what is there, which surfaces once the records run out.
        """
        log_append_time = (
            self.max_timestamp if self.timestamp_type == TimestampType.LOG_APPEND_TIME else None
        )
        return iter_records(
            self.records_payload(max_uncompressed_size),
            self.records_count,
            self.base_offset,
            self.base_timestamp,
            self.last_offset_delta,
            log_append_time,
        )

    def __repr__(self) -> str:
        return (
            f"RecordBatch(base_offset={self.base_offset}, last_offset_delta="
            f"{self.last_offset_delta}, records_count={self.records_count}, "
            f"compression_id={self.compression_id}, size_in_bytes={self.size_in_bytes})"
        )


def _check_client_fields(fields: HeaderFields, allow_control: bool = False) -> None:
    """:meth:`RecordBatch.ensure_valid_from_client` on an unpacked header."""
    count = fields[FIELD_RECORDS_COUNT]
    if count <= 0:
        raise InvalidRecordError(f"invalid record count {count} in a client batch")
    last_offset_delta = fields[FIELD_LAST_OFFSET_DELTA]
    if last_offset_delta + 1 != count:
        raise InvalidRecordError(
            f"last offset delta {last_offset_delta} is inconsistent with {count} records"
        )
    if fields[FIELD_ATTRIBUTES] & CONTROL_FLAG_MASK:
        if not allow_control:
            raise InvalidRecordError("clients may not write control batches")
        return  # a marker has no sequence
    producer_id = fields[FIELD_PRODUCER_ID]
    if producer_id > NO_PRODUCER_ID and fields[FIELD_BASE_SEQUENCE] < 0:
        raise InvalidRecordError(
            f"invalid sequence number {fields[FIELD_BASE_SEQUENCE]} for producer id {producer_id}"
        )


def _short_frame(view: memoryview, position: int, allow_truncated_tail: bool) -> None:
    """The frame checks for fewer than a header's worth of bytes: legacy magic and impossible
    lengths still raise; otherwise the tail is truncated (None) or, if not allowed, corrupt."""
    remaining = len(view) - position
    if remaining < LOG_OVERHEAD:
        if allow_truncated_tail:
            return
        raise CorruptRecordError(f"{remaining} trailing bytes are too few for a batch header")
    (batch_length,) = _I32.unpack_from(view, position + LENGTH_OFFSET)
    if batch_length < _LEGACY_RECORD_OVERHEAD_V0:
        raise CorruptRecordError(f"batch length {batch_length} is impossibly small")
    if remaining <= MAGIC_OFFSET:
        if allow_truncated_tail:
            return
        raise CorruptRecordError(f"{remaining} trailing bytes are too few for a batch header")
    _check_magic(_I8.unpack_from(view, position + MAGIC_OFFSET)[0])
    if batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"batch length {batch_length} is below the minimum {MIN_BATCH_LENGTH}"
        )
    if allow_truncated_tail:
        return
    size = batch_length + LOG_OVERHEAD
    raise CorruptRecordError(f"batch of {size} bytes is truncated: only {remaining} bytes remain")


def _read_frame(
    view: memoryview, position: int, allow_truncated_tail: bool, verify_crc: bool
) -> HeaderFields | None:
    """The header of the batch at ``position`` after checking its frame (and CRC), unpacked
    once; None for a truncated tail when that is allowed. Raises as :func:`iter_batches` says."""
    remaining = len(view) - position
    if remaining < RECORD_BATCH_OVERHEAD:
        _short_frame(view, position, allow_truncated_tail)
        return None
    fields: HeaderFields = RECORD_BATCH_HEADER.unpack_from(view, position)
    batch_length = fields[FIELD_BATCH_LENGTH]
    if batch_length < _LEGACY_RECORD_OVERHEAD_V0:
        raise CorruptRecordError(f"batch length {batch_length} is impossibly small")
    if fields[FIELD_MAGIC] != CURRENT_MAGIC:
        _check_magic(fields[FIELD_MAGIC])
    if batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"batch length {batch_length} is below the minimum {MIN_BATCH_LENGTH}"
        )
    size = batch_length + LOG_OVERHEAD
    if size > remaining:
        if allow_truncated_tail:
            return None
        raise CorruptRecordError(
            f"batch of {size} bytes is truncated: only {remaining} bytes remain"
        )
    if verify_crc:
        computed = crc32c.crc32c(view[position + ATTRIBUTES_OFFSET : position + size])
        if computed != fields[FIELD_CRC]:
            raise CorruptRecordError(
                f"record batch is corrupt: stored crc {fields[FIELD_CRC]:#010x}, "
                f"computed {computed:#010x}"
            )
    compression_id = fields[FIELD_ATTRIBUTES] & COMPRESSION_CODEC_MASK
    if compression_id not in CODECS:
        raise UnsupportedCompressionTypeError(f"unknown compression type id {compression_id}")
    return fields


def iter_batches(
    buffer: BytesLike, *, allow_truncated_tail: bool = False, verify_crc: bool = True
) -> Iterator[RecordBatch]:
    """Walk concatenated batches, yielding a view per batch.

    Checks each frame: a header's worth of bytes, a sane batch length that fits the buffer,
    magic 2 (legacy magic 0/1 raises UnsupportedForMessageFormatError), a known codec id and,
    unless ``verify_crc`` is false, the CRC.

    ``allow_truncated_tail`` is for Fetch responses, which Kafka cuts at ``max_bytes`` even in
    the middle of a batch: the walk then ends quietly at an incomplete final batch instead of
    raising. Anything that cannot be the prefix of a valid batch still raises.
    """
    view = _as_byte_view(buffer)
    end = len(view)
    position = 0
    while position < end:
        fields = _read_frame(view, position, allow_truncated_tail, verify_crc)
        if fields is None:
            return
        size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
        yield RecordBatch._of_frame(view[position : position + size])
        position += size


def check_client_batches(
    buffer: BytesLike, *, allow_control: bool = False
) -> list[tuple[int, HeaderFields]]:
    """A producer's blob checked as a leader checks it, reading each 61-byte header once.

    Every frame and CRC first, as :func:`iter_batches` checks them, then Kafka's client-batch
    rules (:meth:`RecordBatch.ensure_valid_from_client`) on every batch: Kafka, too, runs
    ``analyzeAndValidateRecords`` over the whole blob before its ``LogValidator``. Returns
    (position in the blob, header fields) per batch; an empty blob gives an empty list.
    ``allow_control``: the transaction coordinator's markers (Kafka's ``AppendOrigin.COORDINATOR``).
    """
    view = _as_byte_view(buffer)
    end = len(view)
    position = 0
    found: list[tuple[int, HeaderFields]] = []
    while position < end:
        fields = _read_frame(view, position, False, True)
        assert fields is not None  # only a tolerated truncated tail gives None
        found.append((position, fields))
        position += fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
    for _, fields in found:
        _check_client_fields(fields, allow_control)
    return found
