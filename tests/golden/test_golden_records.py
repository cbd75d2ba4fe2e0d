"""The record batches inside the captured Produce requests, decoded by us and by kafka-python.

Every producer in ``scripts/capture_golden.py`` sent ``produced.RECORDS`` to one partition in
one batch, so each fixture must hold exactly one RecordBatch v2 whose records are those: keys,
null values, duplicate header keys, timestamps that go backwards. Our reader and kafka-python's
must agree on every record, and our builder must write the uncompressed batch byte for byte as
the clients did.
"""

from __future__ import annotations

import pytest
from kafka.record.memory_records import MemoryRecords

from kafkacompat.records import CompressionType, RecordBatch, RecordBatchBuilder, TimestampType
from kafkacompat.records import iter_batches as our_batches
from tests.golden import produced
from tests.golden.golden_files import Golden, goldens

PRODUCE = goldens("produce")

# (offset, timestamp, key, value, headers) as the producers were told to write them.
EXPECTED = [
    (offset, r.timestamp, r.key, r.value, list(r.headers))
    for offset, r in enumerate(produced.RECORDS)
]

# kafka-python is idempotent by default, so it stamps the producer id our InitProducerId gave
# and starts sequences at 0; librdkafka is not, unless asked.
PRODUCER_STATE = {
    "confluent": (-1, -1, -1),
    "kafka_python": (produced.PRODUCER_ID, produced.PRODUCER_EPOCH, 0),
}

# How each codec's stream starts. For snappy the clients differ: kafka-python, like the Java
# client, uses xerial framing, while librdkafka writes one raw snappy block, which starts with
# the uncompressed length as a varint (see stream_start). Brokers must read both.
STREAM_MAGIC = {
    "gzip": b"\x1f\x8b",
    "snappy": b"\x82SNAPPY\x00",
    "lz4": b"\x04\x22\x4d\x18",  # the LZ4 frame format, not raw blocks
    "zstd": b"\x28\xb5\x2f\xfd",
}


def by_id(items: list[Golden]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("golden", items, ids=[g.id for g in items])


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def stream_start(client: str, codec: str, uncompressed_size: int) -> bytes:
    if (client, codec) == ("confluent", "snappy"):
        return uvarint(uncompressed_size)
    return STREAM_MAGIC[codec]


def records_of(golden: Golden) -> bytes:
    _, body = golden.decode()
    ((partition,),) = [t.partition_data for t in body.topic_data]
    return bytes(partition.records)


def only_batch(golden: Golden) -> RecordBatch:
    (batch,) = list(our_batches(records_of(golden)))  # checks the CRC too
    return batch


def uncompressed_twin(golden: Golden) -> Golden:
    (twin,) = [g for g in PRODUCE if g.client == golden.client and g.codec == "none"]
    return twin


def test_every_codec_from_every_client() -> None:
    assert sorted((g.client, g.codec) for g in PRODUCE) == sorted(
        (client, codec) for client in ("confluent", "kafka_python") for codec in produced.CODECS
    )


@by_id(PRODUCE)
def test_batch_header(golden: Golden) -> None:
    batch = only_batch(golden)
    assert batch.size_in_bytes == len(records_of(golden))
    assert batch.magic == 2
    assert batch.base_offset == 0
    # Both clients leave 0 here (the Java client writes -1); the broker overwrites it anyway.
    assert batch.partition_leader_epoch == 0
    assert batch.compression_type == CompressionType(produced.CODECS.index(golden.codec or ""))
    assert batch.timestamp_type == TimestampType.CREATE_TIME
    assert not batch.is_transactional
    assert not batch.is_control
    assert not batch.has_delete_horizon
    assert batch.records_count == len(produced.RECORDS)
    assert batch.last_offset_delta == len(produced.RECORDS) - 1
    assert batch.base_timestamp == produced.RECORDS[0].timestamp
    assert batch.max_timestamp == max(r.timestamp for r in produced.RECORDS)
    state = (batch.producer_id, batch.producer_epoch, batch.base_sequence)
    assert state == PRODUCER_STATE[golden.client]
    batch.ensure_valid_from_client()


@by_id(PRODUCE)
def test_our_reader_gives_the_produced_records(golden: Golden) -> None:
    records = list(only_batch(golden).iter_records())
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records] == EXPECTED


@by_id(PRODUCE)
def test_kafka_python_reader_agrees_with_ours(golden: Golden) -> None:
    data = records_of(golden)
    theirs = MemoryRecords(data)
    batch = theirs.next_batch()
    assert not theirs.has_next()
    assert batch.validate_crc()
    assert batch.compression_type == produced.CODECS.index(golden.codec or "")
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == PRODUCER_STATE[
        golden.client
    ]
    their_records = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    ours = [
        (r.offset, r.timestamp, r.key, r.value, r.headers)
        for r in only_batch(golden).iter_records()
    ]
    assert their_records == ours
    assert their_records == EXPECTED


@by_id([g for g in PRODUCE if g.codec != "none"])
def test_compressed_records_are_the_uncompressed_ones(golden: Golden) -> None:
    """Same records, same client: inflating the compressed section gives the plain one."""
    batch = only_batch(golden)
    plain = only_batch(uncompressed_twin(golden))
    section = bytes(batch.buffer[61:])
    plain_section = bytes(plain.buffer[61:])
    assert section.startswith(stream_start(golden.client, golden.codec or "", len(plain_section)))
    assert batch.records_payload() == plain_section
    # Both clients send a batch uncompressed when compressing does not pay, so this one did.
    assert batch.size_in_bytes < plain.size_in_bytes


@by_id([g for g in PRODUCE if g.codec == "none"])
def test_our_builder_writes_the_batch_the_client_wrote(golden: Golden) -> None:
    producer_id, producer_epoch, base_sequence = PRODUCER_STATE[golden.client]
    builder = RecordBatchBuilder(
        partition_leader_epoch=0,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )
    for r in produced.RECORDS:
        builder.append(r.value, timestamp=r.timestamp, key=r.key, headers=r.headers)
    assert builder.build() == records_of(golden)
