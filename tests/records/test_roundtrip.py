"""Property: random records -> our builder -> our reader gives the same records, for every codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch

from kafkacompat.records import CompressionType, Record, RecordBatchBuilder, iter_batches

nullable_bytes = st.none() | st.binary(max_size=64)
headers = st.lists(st.tuples(st.text(max_size=12), nullable_bytes), max_size=4)
timestamps = st.integers(min_value=-(2**61), max_value=2**61)
records = st.lists(
    st.tuples(nullable_bytes, nullable_bytes, headers, timestamps), min_size=1, max_size=12
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    records=records,
    codec=st.sampled_from(list(CompressionType)),
    base_offset=st.integers(min_value=0, max_value=2**62),
    leader_epoch=st.integers(min_value=-1, max_value=2**31 - 1),
    producer=st.none()
    | st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**15 - 1), st.integers(0, 2**31 - 1)),
    transactional=st.booleans(),
)
def test_builder_then_reader_round_trip(
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    codec: CompressionType,
    base_offset: int,
    leader_epoch: int,
    producer: tuple[int, int, int] | None,
    transactional: bool,
) -> None:
    producer_id, producer_epoch, base_sequence = producer or (-1, -1, -1)
    builder = RecordBatchBuilder(
        compression_type=codec,
        base_offset=base_offset,
        partition_leader_epoch=leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=transactional and producer is not None,
    )
    for key, value, hdrs, timestamp in records:
        builder.append(value, key=key, headers=hdrs, timestamp=timestamp)
    assert len(builder) == len(records)
    data = builder.build()

    (batch,) = list(iter_batches(data))
    assert batch.compression_type == codec
    assert batch.base_offset == base_offset and batch.partition_leader_epoch == leader_epoch
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (
        producer_id,
        producer_epoch,
        base_sequence,
    )
    assert batch.is_transactional == (transactional and producer is not None)
    assert batch.base_timestamp == records[0][3]
    assert batch.max_timestamp == max(r[3] for r in records)
    assert batch.last_offset == base_offset + len(records) - 1
    batch.ensure_valid_from_client()
    assert list(batch.iter_records()) == [
        Record(base_offset + i, ts, key, value, hdrs)
        for i, (key, value, hdrs, ts) in enumerate(records)
    ]
    # And the independent reader agrees on the CRC.
    assert DefaultRecordBatch(data).validate_crc()
