"""The one LogValidator: what a leader refuses, and the record errors it names (KIP-467)."""

from __future__ import annotations

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import CompressionType, RecordBatchBuilder, iter_batches
from kafkacompat.records.batch import FIELD_ATTRIBUTES
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log_validator import (
    RecordError,
    RecordValidationError,
    validate_records,
)

NOW = 1_700_000_000_000


def blob(
    *records: tuple[bytes | None, int],
    codec: CompressionType = CompressionType.NONE,
    producer_id: int = -1,
) -> bytearray:
    builder = RecordBatchBuilder(
        compression_type=codec,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
    )
    for key, ts in records:
        builder.append(b"value", key=key, timestamp=ts)
    return bytearray(builder.build())


def config(**props: str) -> LogConfig:
    return LogConfig.from_props({k.replace("_", "."): v for k, v in props.items()})


def test_every_keyless_record_of_a_compacted_topic_is_named() -> None:
    records = blob(*[(None if i % 3 == 0 else b"k", NOW) for i in range(10)])
    with pytest.raises(RecordValidationError) as info:
        validate_records(records, config(cleanup_policy="compact"), NOW, where="t-0")
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    assert [e.batch_index for e in info.value.record_errors] == [0, 3, 6, 9]
    assert all("t-0" in (e.message or "") for e in info.value.record_errors)


def test_keys_are_not_required_of_the_brokers_own_writes_nor_on_delete_topics() -> None:
    keyless = blob((None, NOW))
    assert validate_records(keyless, config(), NOW).message_count == 1
    validated = validate_records(keyless, config(cleanup_policy="compact"), NOW, from_client=False)
    assert validated.message_count == 1


@pytest.mark.parametrize(
    ("timestamps", "bad"),
    [((NOW - 1001, NOW, NOW - 2000), [0, 2]), ((NOW, NOW + 3_600_001), [1])],
)
def test_timestamps_out_of_bounds_name_their_records(
    timestamps: tuple[int, ...], bad: list[int]
) -> None:
    records = blob(*[(b"k", ts) for ts in timestamps])
    with pytest.raises(RecordValidationError) as info:
        validate_records(records, config(message_timestamp_before_max_ms="1000"), NOW)
    assert info.value.error_code == ErrorCode.INVALID_TIMESTAMP
    assert [e.batch_index for e in info.value.record_errors] == bad


def test_timestamps_inside_the_bounds_and_log_append_time_pass() -> None:
    validate_records(blob((b"k", NOW - 1000)), config(message_timestamp_before_max_ms="1000"), NOW)
    old = blob((b"k", 5))
    log_append = config(message_timestamp_before_max_ms="1", message_timestamp_type="LogAppendTime")
    assert validate_records(old, log_append, NOW).message_count == 1


def test_sizes() -> None:
    big = blob((b"k", NOW))
    with pytest.raises(KafkaProtocolError) as info:
        validate_records(big, config(max_message_bytes=str(len(big) - 1)), NOW)
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE
    with pytest.raises(KafkaProtocolError) as info:
        validate_records(bytearray(), config(), NOW)
    assert info.value.error_code == ErrorCode.INVALID_RECORD


@pytest.mark.parametrize("topic_codec", ["zstd", "uncompressed", "gzip"])
def test_recompression_to_the_topics_codec_keeps_every_record(topic_codec: str) -> None:
    records = blob((b"a", NOW), (None, NOW + 1), codec=CompressionType.LZ4, producer_id=9)
    validated = validate_records(records, config(compression_type=topic_codec), NOW)
    (batch,) = iter_batches(validated.records)
    expected = {"zstd": 4, "uncompressed": 0, "gzip": 1}[topic_codec]
    assert batch.compression_type == expected
    assert validated.batches[0][1][FIELD_ATTRIBUTES] & 7 == expected
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (9, 0, 0)
    assert [(r.key, r.timestamp) for r in batch.iter_records()] == [(b"a", NOW), (None, NOW + 1)]


def test_producer_codec_keeps_the_clients_bytes() -> None:
    records = blob((b"a", NOW), codec=CompressionType.LZ4)
    validated = validate_records(records, config(compression_type="producer"), NOW)
    assert validated.records.obj is records  # no copy, no rebuild


def test_record_error_is_a_pair() -> None:
    assert RecordError(2, "why") == (2, "why")
