"""Exceptions for batches that cannot be accepted, each carrying the Kafka error code to answer with.

Kafka draws the same line: a batch whose frame or checksum is damaged is a
``CorruptRecordException`` (CORRUPT_MESSAGE, retriable: the bytes may have been mangled in
transit), while a batch that is intact but says something impossible inside its records is an
``InvalidRecordException`` (INVALID_RECORD, not retriable: resending the same bytes cannot help).
"""

from __future__ import annotations

from kafkacompat.errors import ErrorCode, KafkaProtocolError


class CorruptRecordError(KafkaProtocolError):
    """The batch frame is damaged: bad CRC, impossible batch length, truncation, undecodable codec stream."""

    error_code = ErrorCode.CORRUPT_MESSAGE


class InvalidRecordError(KafkaProtocolError):
    """The batch is intact but its contents break the format: bad varints, counts, lengths or offsets."""

    error_code = ErrorCode.INVALID_RECORD


class UnsupportedForMessageFormatError(KafkaProtocolError):
    """A legacy MessageSet (magic 0 or 1); only RecordBatch v2 is spoken here."""

    error_code = ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


class UnsupportedCompressionTypeError(KafkaProtocolError):
    """The attributes name a codec id Kafka has not defined (5, 6 or 7)."""

    error_code = ErrorCode.UNSUPPORTED_COMPRESSION_TYPE


class RecordTooLargeError(KafkaProtocolError):
    """A compressed batch inflates past the caller's limit.

    MESSAGE_TOO_LARGE rather than CORRUPT_MESSAGE because the bytes may be perfectly valid; the
    Java producer answers this code by splitting the batch and retrying, which is the one
    recovery that can succeed.
    """

    error_code = ErrorCode.MESSAGE_TOO_LARGE
