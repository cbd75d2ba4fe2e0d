"""Metadata, Produce, Fetch, ListOffsets through their handlers, at the oldest and newest
advertised versions, with the memory and disk engines."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.supported import SUPPORTED_VERSIONS
from kafkacompat.records.batch import iter_batches
from kafkacompat.records.builder import RecordBatchBuilder
from tests.handlers.helpers import call, running_broker

PRODUCE_VERSIONS = SUPPORTED_VERSIONS[0]
FETCH_VERSIONS = SUPPORTED_VERSIONS[1]
LIST_OFFSETS_VERSIONS = SUPPORTED_VERSIONS[2]
METADATA_VERSIONS = SUPPORTED_VERSIONS[3]


def _batch(values: list[bytes], timestamp: int | None = None) -> bytes:
    builder = RecordBatchBuilder()
    now = int(time.time() * 1000) if timestamp is None else timestamp
    for i, value in enumerate(values):
        builder.append(value, timestamp=now + i, key=b"k")
    return bytes(builder.build())


def _produce(
    broker: Broker,
    topic: str,
    records: bytes | None,
    version: int,
    partition: int = 0,
    acks: int = 1,
) -> object:
    request = ProduceRequest(
        acks=acks,
        timeout_ms=1000,
        topic_data=[
            TopicProduceData(
                name=topic,
                partition_data=[PartitionProduceData(index=partition, records=records)],
            )
        ],
    )
    return call(broker, request, version)


def _fetch(broker: Broker, topic: str, offset: int, version: int, **kwargs: int) -> object:
    topic_id = (
        broker.logs.topics()[topic].topic_id if topic in broker.logs.topics() else uuid.uuid4()
    )
    request = FetchRequest(
        max_wait_ms=kwargs.pop("max_wait_ms", 0),
        min_bytes=kwargs.pop("min_bytes", 1),
        topics=[
            FetchTopic(
                topic=topic,
                topic_id=topic_id,
                partitions=[
                    FetchPartition(
                        partition=0,
                        fetch_offset=offset,
                        partition_max_bytes=kwargs.pop("partition_max_bytes", 1 << 20),
                        current_leader_epoch=kwargs.pop("current_leader_epoch", -1),
                    )
                ],
            )
        ],
    )
    return call(broker, request, version)


@pytest.fixture(params=["memory", "disk"])
def broker(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_broker(tmp_path, engine=request.param) as b:
        yield b


@pytest.mark.parametrize("version", sorted(set(METADATA_VERSIONS)))
def test_metadata_auto_creates_and_describes(broker: Broker, version: int) -> None:
    request = MetadataRequest(topics=[MetadataRequestTopic(name="orders")])
    response = call(broker, request, version)
    assert [t.name for t in response.topics] == ["orders"]
    topic = response.topics[0]
    assert topic.error_code == ErrorCode.NONE
    assert [p.partition_index for p in topic.partitions] == [0]
    assert topic.partitions[0].leader_id == broker.node_id
    assert response.brokers[0].node_id == broker.node_id
    if version >= 10:
        assert topic.topic_id == broker.logs.topics()["orders"].topic_id
    if version >= 2:
        assert response.cluster_id == broker.cluster_id


def test_metadata_respects_no_auto_create(broker: Broker) -> None:
    request = MetadataRequest(
        topics=[MetadataRequestTopic(name="absent")], allow_auto_topic_creation=False
    )
    response = call(broker, request, 12)
    assert response.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert "absent" not in broker.logs.topics()


def test_metadata_invalid_name_and_unknown_id(broker: Broker) -> None:
    response = call(broker, MetadataRequest(topics=[MetadataRequestTopic(name="bad name!")]), 12)
    assert response.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    response = call(
        broker, MetadataRequest(topics=[MetadataRequestTopic(name=None, topic_id=uuid.uuid4())]), 12
    )
    assert response.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID


def test_metadata_null_topics_lists_all_and_empty_lists_none(broker: Broker) -> None:
    broker.controller.create_topic("a", 2)
    broker.controller.create_topic("b", 1)
    everything = call(broker, MetadataRequest(topics=None), 12)
    assert sorted(t.name for t in everything.topics) == ["a", "b"]
    assert call(broker, MetadataRequest(topics=[]), 12).topics == []
    assert sorted(t.name for t in call(broker, MetadataRequest(topics=[]), 0).topics) == ["a", "b"]


@pytest.mark.parametrize("version", [PRODUCE_VERSIONS[0], PRODUCE_VERSIONS[1]])
def test_produce_then_fetch_round_trip(broker: Broker, version: int) -> None:
    broker.controller.create_topic("t", 1)
    first = _batch([b"a", b"b", b"c"])
    second = _batch([b"d"])
    r1 = _produce(broker, "t", first, version)
    r2 = _produce(broker, "t", second, version)
    p1 = r1.responses[0].partition_responses[0]
    p2 = r2.responses[0].partition_responses[0]
    assert (p1.error_code, p1.base_offset) == (ErrorCode.NONE, 0)
    assert (p2.error_code, p2.base_offset) == (ErrorCode.NONE, 3)
    for fetch_version in (FETCH_VERSIONS[0], FETCH_VERSIONS[1]):
        response = _fetch(broker, "t", 1, fetch_version)
        data = response.responses[0].partitions[0]
        assert data.error_code == ErrorCode.NONE
        assert data.high_watermark == 4
        batches = list(iter_batches(memoryview(bytes(data.records))))
        # The batch holding offset 1 starts at 0: consumers skip what they did not ask for.
        assert [b.base_offset for b in batches] == [0, 3]
        values = [r.value for b in batches for r in b.iter_records()]
        assert values == [b"a", b"b", b"c", b"d"]


def test_produce_errors(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    v = PRODUCE_VERSIONS[1]
    unknown = _produce(broker, "nope", _batch([b"x"]), v).responses[0].partition_responses[0]
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    bad_partition = _produce(broker, "t", _batch([b"x"]), v, partition=5)
    assert bad_partition.responses[0].partition_responses[0].error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    corrupt = bytearray(_batch([b"x"]))
    corrupt[-1] ^= 0xFF
    response = _produce(broker, "t", bytes(corrupt), v).responses[0].partition_responses[0]
    assert response.error_code == ErrorCode.CORRUPT_MESSAGE
    acks = _produce(broker, "t", _batch([b"x"]), v, acks=2).responses[0].partition_responses[0]
    assert acks.error_code == ErrorCode.INVALID_REQUIRED_ACKS
    future = _batch([b"x"], timestamp=int(time.time() * 1000) + 2 * 3_600_000)
    late = _produce(broker, "t", future, v).responses[0].partition_responses[0]
    assert late.error_code == ErrorCode.INVALID_TIMESTAMP
    # Nothing above was written.
    assert broker.logs.get_log("t", 0).log_end_offset == 0


def test_produce_too_large(broker: Broker) -> None:
    broker.controller.create_topic("small", 1, {"max.message.bytes": "1000"})
    big = _batch([b"x" * 2000])
    response = _produce(broker, "small", big, PRODUCE_VERSIONS[1])
    assert response.responses[0].partition_responses[0].error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_produce_acks_zero_sends_nothing(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    assert _produce(broker, "t", _batch([b"x"]), PRODUCE_VERSIONS[1], acks=0) is None
    assert broker.logs.get_log("t", 0).log_end_offset == 1


def test_fetch_out_of_range_and_unknown(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    _produce(broker, "t", _batch([b"x"]), PRODUCE_VERSIONS[1])
    data = _fetch(broker, "t", 5, 12).responses[0].partitions[0]
    assert data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert data.high_watermark == 1
    data = _fetch(broker, "absent", 0, 12).responses[0].partitions[0]
    assert data.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    data = _fetch(broker, "absent", 0, 13).responses[0].partitions[0]
    assert data.error_code == ErrorCode.UNKNOWN_TOPIC_ID
    fenced = _fetch(broker, "t", 0, 12, current_leader_epoch=5).responses[0].partitions[0]
    assert fenced.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH


def test_fetch_at_log_end_waits_then_returns_empty(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    started = time.monotonic()
    data = _fetch(broker, "t", 0, 12, max_wait_ms=200).responses[0].partitions[0]
    assert time.monotonic() - started >= 0.15
    assert data.error_code == ErrorCode.NONE
    assert len(data.records or b"") == 0


def test_fetch_by_topic_id(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    _produce(broker, "t", _batch([b"x"]), PRODUCE_VERSIONS[1])
    response = _fetch(broker, "t", 0, FETCH_VERSIONS[1])
    topic = response.responses[0]
    assert topic.topic_id == broker.logs.topics()["t"].topic_id
    assert topic.partitions[0].high_watermark == 1


def test_fetch_declines_sessions() -> None:
    with running_broker() as broker:
        response = call(broker, FetchRequest(session_id=1234, session_epoch=1), 12)
        assert response.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        response = call(broker, FetchRequest(session_id=0, session_epoch=0), 12)
        assert (response.error_code, response.session_id) == (ErrorCode.NONE, 0)


def test_list_offsets(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    base = int(time.time() * 1000) - 10_000
    _produce(broker, "t", _batch([b"a", b"b"], timestamp=base), PRODUCE_VERSIONS[1])
    _produce(broker, "t", _batch([b"c"], timestamp=base + 1000), PRODUCE_VERSIONS[1])

    def lookup(timestamp: int, version: int) -> tuple[int, int, int]:
        request = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsTopic(
                    name="t",
                    partitions=[ListOffsetsPartition(partition_index=0, timestamp=timestamp)],
                )
            ],
        )
        answer = call(broker, request, version).topics[0].partitions[0]
        return answer.error_code, answer.offset, answer.timestamp

    for version in sorted(set(LIST_OFFSETS_VERSIONS)):
        assert lookup(-2, version) == (ErrorCode.NONE, 0, -1)
        assert lookup(-1, version) == (ErrorCode.NONE, 3, -1)
        assert lookup(base + 1, version) == (ErrorCode.NONE, 1, base + 1)
        assert lookup(base + 500, version) == (ErrorCode.NONE, 2, base + 1000)
        assert lookup(base + 5000, version)[:2] == (ErrorCode.NONE, -1)
    assert lookup(-3, 7) == (ErrorCode.NONE, 2, base + 1000)


def _idempotent_batch(producer_id: int, epoch: int, sequence: int, values: list[bytes]) -> bytes:
    builder = RecordBatchBuilder(
        producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence
    )
    now = int(time.time() * 1000)
    for value in values:
        builder.append(value, timestamp=now)
    return bytes(builder.build())


def test_idempotent_produce_dedupes_and_orders(broker: Broker) -> None:
    from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest

    broker.controller.create_topic("t", 1)
    init = call(broker, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1), 4)
    assert init.error_code == ErrorCode.NONE and init.producer_epoch == 0
    again = call(broker, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1), 4)
    assert again.producer_id != init.producer_id
    pid = init.producer_id
    v = PRODUCE_VERSIONS[1]

    def produce(batch: bytes) -> tuple[int, int]:
        answer = _produce(broker, "t", batch, v).responses[0].partition_responses[0]
        return answer.error_code, answer.base_offset

    first = _idempotent_batch(pid, 0, 0, [b"a", b"b"])
    assert produce(first) == (ErrorCode.NONE, 0)
    assert produce(_idempotent_batch(pid, 0, 2, [b"c"])) == (ErrorCode.NONE, 2)
    # A retry of the first batch: its original offset, and nothing new in the log.
    assert produce(first) == (ErrorCode.NONE, 0)
    assert broker.logs.get_log("t", 0).log_end_offset == 3
    # A gap in the sequence.
    assert (
        produce(_idempotent_batch(pid, 0, 5, [b"x"]))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    # A new epoch starts at 0; the old epoch is then fenced.
    assert produce(_idempotent_batch(pid, 1, 0, [b"d"])) == (ErrorCode.NONE, 3)
    assert produce(_idempotent_batch(pid, 0, 3, [b"y"]))[0] == ErrorCode.INVALID_PRODUCER_EPOCH
    assert broker.logs.get_log("t", 0).log_end_offset == 4


def test_idempotent_state_survives_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 1)
        batch = _idempotent_batch(7, 0, 0, [b"a"])
        assert _produce(broker, "t", batch, 9).responses[0].partition_responses[0].base_offset == 0
    with running_broker(tmp_path, engine="disk") as broker:
        retry = _produce(broker, "t", batch, 9).responses[0].partition_responses[0]
        assert (retry.error_code, retry.base_offset) == (ErrorCode.NONE, 0)
        assert broker.logs.get_log("t", 0).log_end_offset == 1
        following = _idempotent_batch(7, 0, 1, [b"b"])
        assert (
            _produce(broker, "t", following, 9).responses[0].partition_responses[0].base_offset == 1
        )


def test_produce_refuses_two_batches_for_one_partition(broker: Broker) -> None:
    broker.controller.create_topic("t", 1)
    two = _batch([b"a"]) + _batch([b"b"])
    answer = _produce(broker, "t", two, PRODUCE_VERSIONS[1]).responses[0].partition_responses[0]
    assert answer.error_code == ErrorCode.INVALID_RECORD
    assert broker.logs.get_log("t", 0).log_end_offset == 0


def test_transactional_records_without_a_transactional_id_are_refused(broker: Broker) -> None:
    # Kafka's handleProduceRequest refuses transactional records in a request that carries no
    # transactional id (or one the client may not write), and the request's other records.
    v = PRODUCE_VERSIONS[1]
    broker.controller.create_topic("t", 1)
    before = _produce(broker, "t", _batch([b"before"]), v)
    assert before.responses[0].partition_responses[0].error_code == ErrorCode.NONE  # type: ignore[attr-defined]
    builder = RecordBatchBuilder(
        producer_id=1000, producer_epoch=0, base_sequence=0, is_transactional=True
    )
    builder.append(b"in a transaction", timestamp=int(time.time() * 1000))
    response = _produce(broker, "t", bytes(builder.build()), v)
    [partition] = response.responses[0].partition_responses  # type: ignore[attr-defined]
    assert partition.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert (
        _produce(broker, "t", _batch([b"after"]), v).responses[0].partition_responses[0].error_code
        == ErrorCode.NONE
    )  # type: ignore[attr-defined]
    fetched = _fetch(broker, "t", 0, FETCH_VERSIONS[1])
    data = fetched.responses[0].partitions[0]  # type: ignore[attr-defined]
    batches = iter_batches(memoryview(bytes(data.records)))
    assert [r.value for b in batches for r in b.iter_records()] == [b"before", b"after"]
