"""Kafka's ``LogValidator``: every check a leader makes on a producer's records before they
get offsets, in one pass.

Theory of operation.  :func:`validate_records` is the first half of Kafka's
``UnifiedLog.appendAsLeader`` (``analyzeAndValidateRecords`` + ``LogValidator``):

1. frames and CRCs, one CRC pass per batch, and the client-batch rules (magic 2, no control
   batches from clients, sequences with producer ids): ``check_client_batches`` reads each
   61-byte header once and the header fields travel on to the producer-state analysis and
   the engine's append, so nothing walks the blob again;
2. sizes: a batch over ``max.message.bytes`` is MESSAGE_TOO_LARGE, a blob over
   ``segment.bytes`` RECORD_LIST_TOO_LARGE;
3. timestamps, for CreateTime topics: ``message.timestamp.before.max.ms`` /
   ``after.max.ms`` (KIP-937), checked on the header's bounds (the first record's and the
   largest timestamp); only when the bounds fail are the records decoded, to name each
   offending record as Kafka does;
4. keys, for compacted topics: each keyless record is named (Kafka's ``validateKey``);
5. recompression, when the topic's ``compression.type`` is a codec and a batch uses
   another: the batch is rebuilt with the topic's codec (Kafka's
   ``validateMessagesAndAssignOffsetsCompressed``), keeping producer id, epoch, sequence,
   the transactional flag and every record's timestamp, key, value and headers.

Record errors (KIP-467): a check that names records raises :class:`RecordValidationError`
carrying ``(batch_index, message)`` pairs, which Produce v8+ returns in ``record_errors``;
the whole batch is refused, as in Kafka.  Only steps 3 (on failure), 4 and 5 decode records:
the common produce path does no per-record Python work.

Time is passed in; nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records.batch import (
    FIELD_ATTRIBUTES,
    FIELD_BASE_TIMESTAMP,
    FIELD_BATCH_LENGTH,
    FIELD_MAX_TIMESTAMP,
    FIELD_RECORDS_COUNT,
    LOG_OVERHEAD,
    HeaderFields,
    RecordBatch,
    check_client_batches,
)
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.records.compression import CompressionType
from kafkacompat.records.errors import InvalidRecordError, RecordTooLargeError

NO_TIMESTAMP: Final = -1
LONG_MAX: Final = 2**63 - 1
CODEC_MASK: Final = 0x07
_TOPIC_CODECS: Final = {
    "uncompressed": CompressionType.NONE,
    "gzip": CompressionType.GZIP,
    "snappy": CompressionType.SNAPPY,
    "lz4": CompressionType.LZ4,
    "zstd": CompressionType.ZSTD,
}
_SHOWN_ERRORS: Final = 3
"""Kafka's exception message quotes at most the first three record errors."""


class ValidatorSettings(Protocol):
    """The topic configs the validator obeys; ``kafkacompat.storage.config.LogConfig`` fits."""

    @property
    def max_message_bytes(self) -> int: ...
    @property
    def segment_bytes(self) -> int: ...
    @property
    def message_timestamp_type(self) -> str: ...
    @property
    def message_timestamp_before_max_ms(self) -> int: ...
    @property
    def message_timestamp_after_max_ms(self) -> int: ...
    @property
    def message_timestamp_difference_max_ms(self) -> int: ...
    @property
    def compression_type(self) -> str: ...
    @property
    def compact(self) -> bool: ...


class RecordError(NamedTuple):
    """One refused record: its index in the batch and why (Produce v8+ ``record_errors``)."""

    batch_index: int
    message: str | None


class RecordValidationError(KafkaProtocolError):
    """A batch refused because of the records it names (Kafka's RecordValidationException)."""

    def __init__(self, message: str, error_code: ErrorCode, record_errors: list[RecordError]):
        super().__init__(message, error_code)
        self.record_errors = tuple(record_errors)


class RecordBatchTooLargeError(InvalidRecordError):
    """A produce blob larger than a whole segment (Kafka's RecordBatchTooLargeException)."""

    error_code = ErrorCode.RECORD_LIST_TOO_LARGE


@dataclass(frozen=True, slots=True)
class ValidatedRecords:
    """A blob that passed every check: what the engine's append needs, already read."""

    records: memoryview
    """Writable: the engine stamps offsets and the leader epoch into it in place."""
    batches: list[tuple[int, HeaderFields]]
    """(position in ``records``, header fields) per batch."""
    message_count: int


def _timestamp_bounds(settings: ValidatorSettings) -> tuple[int, int] | None:
    """(before, after) allowances in ms, or None when neither is limited (a Kafka 3.x
    ``message.timestamp.difference.max.ms`` still bounds both sides)."""
    difference = settings.message_timestamp_difference_max_ms
    before = min(settings.message_timestamp_before_max_ms, difference)
    after = min(settings.message_timestamp_after_max_ms, difference)
    if before >= LONG_MAX and after >= LONG_MAX:
        return None
    return before, after


def _refuse(error_code: ErrorCode, what: str, errors: list[RecordError]) -> RecordValidationError:
    shown = "; ".join(f"record {e.batch_index}: {e.message}" for e in errors[:_SHOWN_ERRORS])
    return RecordValidationError(
        f"{len(errors)} record(s) refused ({what}); the first {min(len(errors), _SHOWN_ERRORS)}: "
        f"{shown}",
        error_code,
        errors,
    )


def _check_timestamps(
    view: memoryview,
    position: int,
    fields: HeaderFields,
    bounds: tuple[int, int],
    now_ms: int,
) -> None:
    before, after = bounds
    max_timestamp = fields[FIELD_MAX_TIMESTAMP]
    oldest = min(fields[FIELD_BASE_TIMESTAMP], max_timestamp)
    if max_timestamp == NO_TIMESTAMP:
        return  # Kafka exempts records without a timestamp (-1) from both bounds
    too_new = max_timestamp - now_ms > after
    too_old = oldest != NO_TIMESTAMP and now_ms - oldest > before
    if not (too_new or too_old):
        return
    # The bounds failed: name the records, as Kafka's per-record check does.
    errors: list[RecordError] = []
    batch = RecordBatch(view[position : position + fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD])
    for index, record in enumerate(batch.iter_records()):
        ts = record.timestamp
        if ts == NO_TIMESTAMP:
            continue
        if ts - now_ms > after:
            errors.append(
                RecordError(
                    index,
                    f"timestamp {ts} is more than {after} ms after the broker time {now_ms} "
                    "(message.timestamp.after.max.ms)",
                )
            )
        elif now_ms - ts > before:
            errors.append(
                RecordError(
                    index,
                    f"timestamp {ts} is more than {before} ms before the broker time {now_ms} "
                    "(message.timestamp.before.max.ms)",
                )
            )
    if not errors:  # the header disagrees with its records: judge by the header
        errors.append(RecordError(0, f"batch timestamps {oldest}..{max_timestamp} out of range"))
    raise _refuse(ErrorCode.INVALID_TIMESTAMP, "timestamp out of range", errors)


def _check_keys(view: memoryview, position: int, fields: HeaderFields, where: str) -> None:
    """Every record of a compacted topic needs a key: compaction keeps the latest record
    per key, and a keyless one has no latest."""
    batch = RecordBatch(view[position : position + fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD])
    errors = [
        RecordError(index, f"Compacted topic cannot accept a record without a key in {where}")
        for index, record in enumerate(batch.iter_records())
        if record.key is None
    ]
    if errors:
        raise _refuse(ErrorCode.INVALID_RECORD, "keyless records on a compacted topic", errors)


def _recompress(batch: RecordBatch, codec: CompressionType) -> bytes:
    builder = RecordBatchBuilder(
        compression_type=codec,
        producer_id=batch.producer_id,
        producer_epoch=batch.producer_epoch,
        base_sequence=batch.base_sequence,
        is_transactional=batch.is_transactional,
    )
    for record in batch.iter_records():
        builder.append(
            record.value, timestamp=record.timestamp, key=record.key, headers=record.headers
        )
    return builder.build()


def validate_records(
    records: bytearray | memoryview,
    settings: ValidatorSettings,
    now_ms: int,
    *,
    from_client: bool = True,
    allow_control: bool = False,
    where: str = "this partition",
) -> ValidatedRecords:
    """Check a producer's blob as a leader does (see the module doc); ``where`` names the
    partition in error messages.  ``from_client=False`` (the broker's own records: a
    coordinator's, or a test writing a log directly) skips steps 3-5, which judge what a
    client sent; ``allow_control`` (only the leader's append for those writers) lets control
    batches through, for the transaction coordinator's markers."""
    view = memoryview(records)
    if view.readonly:
        view = memoryview(bytearray(view))  # the engine stamps in place
    # Only the leader's append for the broker's own writers (the transaction coordinator's
    # WriteTxnMarkers) asks for control batches: Kafka refuses them from CLIENT origin.
    batches = check_client_batches(view, allow_control=allow_control)
    if not batches:
        # Kafka's ProduceRequest.validateRecords: v3+ need at least one batch per partition.
        raise InvalidRecordError("produce records hold no record batch for this partition")
    max_message_bytes = settings.max_message_bytes
    message_count = 0
    for _, fields in batches:
        batch_size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
        if batch_size > max_message_bytes:
            raise RecordTooLargeError(
                f"batch of {batch_size} bytes exceeds max.message.bytes {max_message_bytes}"
            )
        message_count += fields[FIELD_RECORDS_COUNT]
    if len(view) > settings.segment_bytes:
        raise RecordBatchTooLargeError(
            f"{len(view)} bytes of records exceed segment.bytes {settings.segment_bytes}"
        )
    if not from_client:
        return ValidatedRecords(view, batches, message_count)
    bounds = (
        None if settings.message_timestamp_type == "LogAppendTime" else _timestamp_bounds(settings)
    )
    compact = settings.compact
    if bounds is not None or compact:
        for position, fields in batches:
            if bounds is not None:
                _check_timestamps(view, position, fields, bounds, now_ms)
            if compact:
                _check_keys(view, position, fields, where)
    target = _TOPIC_CODECS.get(settings.compression_type)
    if target is not None and any(
        fields[FIELD_ATTRIBUTES] & CODEC_MASK != target for _, fields in batches
    ):
        return _recompressed(view, batches, target, message_count)
    return ValidatedRecords(view, batches, message_count)


def _recompressed(
    view: memoryview,
    batches: list[tuple[int, HeaderFields]],
    target: CompressionType,
    message_count: int,
) -> ValidatedRecords:
    out = bytearray()
    for position, fields in batches:
        size = fields[FIELD_BATCH_LENGTH] + LOG_OVERHEAD
        if fields[FIELD_ATTRIBUTES] & CODEC_MASK == target:
            out += view[position : position + size]
        else:
            out += _recompress(RecordBatch(view[position : position + size]), target)
    rebuilt = memoryview(out)
    return ValidatedRecords(rebuilt, check_client_batches(rebuilt), message_count)
