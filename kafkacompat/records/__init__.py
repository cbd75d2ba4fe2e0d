"""Kafka's RecordBatch v2 (magic 2): the unit clients produce, brokers store and consumers fetch.

No I/O here. ``batch`` finds and checks frames and stamps them in place, ``record`` decodes
the records inside, ``compression`` holds the codec table, ``builder`` and ``control`` encode.
The usual entry points are re-exported below.
"""

from kafkacompat.records.batch import (
    DEFAULT_MAX_UNCOMPRESSED_SIZE,
    RecordBatch,
    TimestampType,
    iter_batches,
)
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.records.compression import CODECS, CompressionType, compress, decompress
from kafkacompat.records.control import (
    ControlRecordType,
    EndTransactionMarker,
    build_end_transaction_marker_batch,
    decode_control_record_key,
    decode_end_transaction_marker,
)
from kafkacompat.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
    UnsupportedCompressionTypeError,
    UnsupportedForMessageFormatError,
)
from kafkacompat.records.record import Header, Record

__all__ = [
    "CODECS",
    "DEFAULT_MAX_UNCOMPRESSED_SIZE",
    "CompressionType",
    "ControlRecordType",
    "CorruptRecordError",
    "EndTransactionMarker",
    "Header",
    "InvalidRecordError",
    "Record",
    "RecordBatch",
    "RecordBatchBuilder",
    "RecordTooLargeError",
    "TimestampType",
    "UnsupportedCompressionTypeError",
    "UnsupportedForMessageFormatError",
    "build_end_transaction_marker_batch",
    "compress",
    "decode_control_record_key",
    "decode_end_transaction_marker",
    "decompress",
    "iter_batches",
]
