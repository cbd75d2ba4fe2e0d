"""ListOffsets through each client: the earliest and latest offsets, and offsets by time
(offsets_for_times): the first record, in log order, whose timestamp is at or after the
target, or none."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable

import pytest

from interop.clients import CLIENTS, Record, kcat_base, produce, require, run_kafkajs
from interop.conftest import BrokerProcess
from interop.records import BASE_TIMESTAMP as T

# One record per batch; the timestamps are not monotonic, as CreateTime allows.
TIMESTAMPS = [T, T + 3000, T + 2000, T + 4000]

# target -> expected offset (None: no record at or after it)
BY_TIME = {
    T - 1: 0,
    T: 0,
    T + 1: 1,
    T + 2000: 1,  # offset 2 has exactly T + 2000, but offset 1 (T + 3000) comes first
    T + 3001: 3,
    T + 4000: 3,
    T + 4001: None,
}

OffsetsForTimes = Callable[[str, str, list[int]], list[int | None]]
Watermarks = Callable[[str, str], tuple[int, int]]


def confluent_offsets_for_times(bootstrap: str, topic: str, targets: list[int]) -> list[int | None]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafkacompat-interop-unused"})
    try:
        out: list[int | None] = []
        for target in targets:
            (found,) = consumer.offsets_for_times([TopicPartition(topic, 0, target)], timeout=15)
            assert found.error is None, found.error
            out.append(found.offset if found.offset >= 0 else None)
        return out
    finally:
        consumer.close()


def confluent_watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafkacompat-interop-unused"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)
        return int(low), int(high)
    finally:
        consumer.close()


def kafka_python_offsets_for_times(
    bootstrap: str, topic: str, targets: list[int]
) -> list[int | None]:
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=10000)
    try:
        out: list[int | None] = []
        for target in targets:
            found = consumer.offsets_for_times({tp: target})[tp]
            if found is not None:
                # ListOffsets answers the record's own timestamp with its offset.
                assert found.timestamp == TIMESTAMPS[found.offset]
            out.append(None if found is None else found.offset)
        return out
    finally:
        consumer.close()


def kafka_python_watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=10000)
    try:
        return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def _aiokafka(bootstrap: str, topic: str, targets: list[int] | None) -> object:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> object:
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await asyncio.wait_for(consumer.start(), 30)
        try:
            if targets is None:
                low = (await consumer.beginning_offsets([tp]))[tp]
                high = (await consumer.end_offsets([tp]))[tp]
                return low, high
            out: list[int | None] = []
            for target in targets:
                found = (await consumer.offsets_for_times({tp: target}))[tp]
                if found is not None:
                    assert found.timestamp == TIMESTAMPS[found.offset]
                out.append(None if found is None else found.offset)
            return out
        finally:
            await asyncio.wait_for(consumer.stop(), 10)

    return asyncio.run(asyncio.wait_for(run(), 60))


def aiokafka_offsets_for_times(bootstrap: str, topic: str, targets: list[int]) -> list[int | None]:
    return _aiokafka(bootstrap, topic, targets)  # type: ignore[return-value]


def aiokafka_watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    return _aiokafka(bootstrap, topic, None)  # type: ignore[return-value]


def _kcat_query(bootstrap: str, topic: str, target: int) -> int:
    done = subprocess.run(
        [*kcat_base(bootstrap), "-Q", "-J", "-t", f"{topic}:0:{target}"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return int(json.loads(done.stdout)[topic]["0"]["offset"])


def kcat_offsets_for_times(bootstrap: str, topic: str, targets: list[int]) -> list[int | None]:
    offsets = [_kcat_query(bootstrap, topic, target) for target in targets]
    return [offset if offset >= 0 else None for offset in offsets]


def kcat_watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    return _kcat_query(bootstrap, topic, -2), _kcat_query(bootstrap, topic, -1)


def kafkajs_offsets_for_times(bootstrap: str, topic: str, targets: list[int]) -> list[int | None]:
    *by_time, latest = run_kafkajs(
        {
            "op": "admin",
            "brokers": [bootstrap],
            "calls": [
                *({"method": "fetchTopicOffsetsByTimestamp", "args": [topic, t]} for t in targets),
                {"method": "fetchTopicOffsets", "args": [topic]},
            ],
        }
    )
    high = int(latest[0]["high"])
    # kafkajs answers the high watermark where Kafka finds no record.
    return [None if int(r[0]["offset"]) in (-1, high) else int(r[0]["offset"]) for r in by_time]


def kafkajs_watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    (offsets,) = run_kafkajs(
        {
            "op": "admin",
            "brokers": [bootstrap],
            "calls": [{"method": "fetchTopicOffsets", "args": [topic]}],
        }
    )
    return int(offsets[0]["low"]), int(offsets[0]["high"])


OFFSETS_FOR_TIMES: dict[str, OffsetsForTimes] = {
    "confluent": confluent_offsets_for_times,
    "kafka-python": kafka_python_offsets_for_times,
    "aiokafka": aiokafka_offsets_for_times,
    "kcat": kcat_offsets_for_times,
    "kafkajs": kafkajs_offsets_for_times,
}
WATERMARKS: dict[str, Watermarks] = {
    "confluent": confluent_watermarks,
    "kafka-python": kafka_python_watermarks,
    "aiokafka": aiokafka_watermarks,
    "kcat": kcat_watermarks,
    "kafkajs": kafkajs_watermarks,
}


@pytest.fixture(scope="module")
def timed_topic(broker: BrokerProcess) -> str:
    from interop.conftest import unique_topic

    topic = unique_topic("list-offsets")
    for offset, timestamp in enumerate(TIMESTAMPS):
        record = Record(b"k", f"at {timestamp}".encode(), (), timestamp)
        assert produce("confluent", broker.bootstrap, topic, [record]) == [offset]
    return topic


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_for_times(broker: BrokerProcess, timed_topic: str, client: str) -> None:
    require(client)
    targets = list(BY_TIME)
    found = OFFSETS_FOR_TIMES[client](broker.bootstrap, timed_topic, targets)
    assert dict(zip(targets, found, strict=True)) == BY_TIME


@pytest.mark.parametrize("client", CLIENTS)
def test_earliest_and_latest(broker: BrokerProcess, timed_topic: str, client: str) -> None:
    require(client)
    assert WATERMARKS[client](broker.bootstrap, timed_topic) == (0, len(TIMESTAMPS))
