"""Producing from each client: acks=0, 1 and all; idempotent producers (checked in the log
files themselves: producer id, epoch and gap-free sequences); a 900 KB record; records over
the broker's limits refused with MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from interop.clients import CLIENTS, ClientError, Record, consume, produce, require
from interop.conftest import BrokerProcess, new_broker
from interop.records import ProduceOnce, assert_read_back


def incompressible(size: int) -> bytes:
    return os.urandom(size)


MESSAGE_TOO_LARGE = 10
RECORD_LIST_TOO_LARGE = 18


@pytest.mark.parametrize("acks", [0, 1, -1], ids=["acks0", "acks1", "acks-all"])
@pytest.mark.parametrize("client", CLIENTS)
def test_acks(broker: BrokerProcess, client: str, acks: int, topic: str) -> None:
    require(client)
    records = [Record(f"k{i}".encode(), f"acks {acks} #{i}".encode()) for i in range(3)]
    offsets = produce(client, broker.bootstrap, topic, records, acks=acks)
    if acks != 0 and client != "kcat":
        assert offsets == [0, 1, 2]
    read = consume("kafka-python", broker.bootstrap, topic, 0, 0, 3)
    assert [(c.offset, c.record.key, c.record.value) for c in read] == [
        (i, r.key, r.value) for i, r in enumerate(records)
    ]


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    records: int
    producer_id: int
    producer_epoch: int
    base_sequence: int


_BATCH = struct.Struct(">qiiBIhiqqqhii")
"""RecordBatch v2's header: baseOffset batchLength partitionLeaderEpoch magic crc attributes
lastOffsetDelta baseTimestamp maxTimestamp producerId producerEpoch baseSequence count."""


def batches_on_disk(partition_dir: Path) -> list[BatchHeader]:
    """Every batch header in the partition's segment files, read as Kafka lays them out."""
    out: list[BatchHeader] = []
    for segment in sorted(partition_dir.glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + _BATCH.size <= len(data):
            fields = _BATCH.unpack_from(data, at)
            base_offset, length, *_, producer_id, epoch, sequence, count = fields
            if length <= 0:
                break  # preallocated tail
            out.append(BatchHeader(base_offset, count, producer_id, epoch, sequence))
            at += 12 + length
    return out


IDEMPOTENT = {
    # None: kafka-python's own default, which is enable_idempotence=True.
    "confluent": True,
    "kafka-python": None,
    "aiokafka": True,
    "kcat": True,
    "kafkajs": True,
}


@pytest.mark.parametrize("client", CLIENTS)
def test_idempotent_producer(broker: BrokerProcess, client: str, topic: str) -> None:
    """Two idempotent producers, one after the other: each gets its own producer id, and
    numbers its batches from sequence 0 without gaps; every record lands once.  (kcat runs
    once per record, so each of its records has a producer of its own.)"""
    require(client)
    sends = [
        [Record(b"k", f"producer {p} record {i}".encode()) for i in range(5)] for p in range(2)
    ]
    for number, records in enumerate(sends):
        offsets = produce(client, broker.bootstrap, topic, records, idempotent=IDEMPOTENT[client])
        if client != "kcat":
            assert offsets == list(range(5 * number, 5 * number + 5))
    read = consume("confluent", broker.bootstrap, topic, 0, 0, 10)
    assert [c.record.value for c in read] == [r.value for records in sends for r in records]

    batches = batches_on_disk(broker.data_dir / f"{topic}-0")
    assert sum(b.records for b in batches) == 10
    producers: dict[int, list[BatchHeader]] = {}
    for batch in batches:
        assert batch.producer_id >= 0 and batch.producer_epoch >= 0, batch
        producers.setdefault(batch.producer_id, []).append(batch)
    sessions = 10 if client == "kcat" else 2
    assert len(producers) == sessions, f"expected {sessions} producer ids: {batches}"
    for mine in producers.values():
        sequence = 0
        for batch in mine:
            assert batch.base_sequence == sequence, mine
            sequence += batch.records
        assert sequence == 10 // sessions


BIG = Record(b"big", incompressible(900 * 1024), (("h", b"v"),), None)
"""Under message.max.bytes (1048588), with room for the batch framing."""


@pytest.fixture(scope="module")
def produced(broker: BrokerProcess) -> ProduceOnce:
    return ProduceOnce(broker.bootstrap)


@pytest.mark.parametrize("consumer", CLIENTS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_900kb_record(
    broker: BrokerProcess, produced: ProduceOnce, producer: str, consumer: str
) -> None:
    require(producer, consumer)
    batch = produced.get(producer, [BIG])
    assert batch.offsets in ([0], [None])
    read = consume(consumer, broker.bootstrap, batch.topic, 0, 0, 1)
    assert_read_back(producer, consumer, [BIG], read, 0, batch.window_ms)


CLIENT_LIMIT = 16 * 1024 * 1024
"""The clients' own size limits, raised so that the broker is the one that refuses."""


@pytest.mark.parametrize("producer", CLIENTS)
def test_over_message_max_bytes(broker: BrokerProcess, producer: str, topic: str) -> None:
    """A batch over message.max.bytes is refused with MESSAGE_TOO_LARGE, the client says so,
    nothing is appended, and the partition takes the next record at offset 0."""
    require(producer)
    big = Record(b"too-big", incompressible(1_200_000))
    with pytest.raises(ClientError) as refused:
        produce(producer, broker.bootstrap, topic, [big], max_request_bytes=CLIENT_LIMIT)
    assert refused.value.code == MESSAGE_TOO_LARGE, str(refused.value)
    offsets = produce(producer, broker.bootstrap, topic, [Record(b"k", b"small")])
    assert offsets in ([0], [None])
    (read,) = consume("kafka-python", broker.bootstrap, topic, 0, 0, 1)
    assert (read.offset, read.record.value) == (0, b"small")


@pytest.fixture(scope="module")
def small_segments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker whose batches may be larger than its segments (3 MB against 1 MiB)."""
    process = new_broker(
        tmp_path_factory.mktemp("small-segments"),
        settings={"message.max.bytes": "3000000", "log.segment.bytes": "1048576"},
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("producer", CLIENTS)
def test_over_segment_bytes(small_segments: BrokerProcess, producer: str, topic: str) -> None:
    """A batch larger than segment.bytes cannot fit in any segment: RECORD_LIST_TOO_LARGE."""
    require(producer)
    big = Record(b"too-big", incompressible(1_500_000))
    with pytest.raises(ClientError) as refused:
        produce(producer, small_segments.bootstrap, topic, [big], max_request_bytes=CLIENT_LIMIT)
    assert refused.value.code == RECORD_LIST_TOO_LARGE, str(refused.value)
