"""Produce (key 0), v3+: append producers' record batches to partition logs.

Each partition's records blob is appended whole or not at all, and answered on its own: one
bad partition does not fail the others.  The log validates batches (magic 2, CRC, lengths),
assigns offsets and stamps the leader epoch and, for LogAppendTime topics, the time.  Before
that, idempotent batches pass the partition's producer state: a retried batch (same producer,
epoch and sequences as one of the last five) is answered with its original offsets and
written nothing; a gap or an old epoch is refused.

acks: 0 sends no response (an error then closes the connection, as Kafka does, so the
client notices); 1 and -1 answer after the append; with one replica they mean the same.
Produce v0-2 carry legacy message formats that Kafka 4.0 dropped (KIP-896): not advertised.
"""

from __future__ import annotations

import struct
from pathlib import Path

from kafkacompat.broker import LEADER_EPOCH, Broker
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import CloseConnection, Handler, RequestContext
from kafkacompat.handlers.metadata import INTERNAL_TOPICS
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.produce_request import ProduceRequest
from kafkacompat.protocol.messages.produce_response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from kafkacompat.records.batch import iter_batches
from kafkacompat.storage.config import LOG_APPEND_TIME, LogConfig
from kafkacompat.storage.manager import Topic

API_KEY = ApiKey.PRODUCE

_VALID_ACKS = (0, 1, -1)
# The first batch's producerId (RecordBatch v2 header, bytes 43-50): -1 for a producer that
# is not idempotent, whose batches skip the producer state checks entirely.
_PRODUCER_ID = struct.Struct(">q")
_PRODUCER_ID_END = 43 + 8
_BATCH_LENGTH = struct.Struct(">i")  # after the 8-byte base offset; excludes those 12 bytes
_BATCH_LENGTH_END = 12


def _error(index: int, error: ErrorCode, message: str | None = None) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index, error_code=error, base_offset=-1, error_message=message
    )


def _check_timestamps(records: memoryview, config: LogConfig, now_ms: int) -> None:
    """Kafka's message.timestamp.before/after.max.ms, on each batch's bounds: CreateTime
    batches must fall inside [now - before, now + after] (INVALID_TIMESTAMP otherwise)."""
    if config.message_timestamp_type == LOG_APPEND_TIME:
        return
    after = config.message_timestamp_after_max_ms
    before = min(config.message_timestamp_before_max_ms, config.message_timestamp_difference_max_ms)
    # The log verifies CRCs when it appends; here only the headers' timestamps matter.
    for batch in iter_batches(records, verify_crc=False):
        if batch.max_timestamp > now_ms + after or (
            batch.base_timestamp >= 0 and batch.base_timestamp < now_ms - before
        ):
            raise KafkaProtocolError(
                f"Timestamp of a batch is out of range: base {batch.base_timestamp}, "
                f"max {batch.max_timestamp}, broker time {now_ms}",
                ErrorCode.INVALID_TIMESTAMP,
            )


def _check_keys(records: memoryview) -> None:
    """Every record of a compacted topic needs a key (Kafka's LogValidator.validateKey):
    compaction keeps the latest record per key, and a keyless one has no latest."""
    for batch in iter_batches(records):
        for record in batch.iter_records():
            if record.key is None:
                raise KafkaProtocolError(
                    f"record at offset delta {record.offset - batch.base_offset} has no key, "
                    "and every record of a compacted topic needs one",
                    ErrorCode.INVALID_RECORD,
                )


def append_partition(
    broker: Broker, topic: Topic, index: int, records: memoryview | None, now_ms: int
) -> PartitionProduceResponse:
    if not 0 <= index < topic.partitions:
        return _error(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    log = topic.logs[index]
    if records is None:
        return _error(index, ErrorCode.CORRUPT_MESSAGE, "null records")
    if len(records) >= _BATCH_LENGTH_END and (
        _BATCH_LENGTH.unpack_from(records, 8)[0] + 12 < len(records)
    ):
        # Kafka's ProduceRequest.validateRecords: v3+ carry exactly one batch per partition.
        return _error(
            index,
            ErrorCode.INVALID_RECORD,
            "Produce requests with version 3 and above must have exactly one record batch",
        )
    config = topic.config
    try:
        if config.message_timestamp_after_max_ms < 2**62 or (
            config.message_timestamp_before_max_ms < 2**62
            or config.message_timestamp_difference_max_ms < 2**62
        ):
            _check_timestamps(records, config, now_ms)
        if config.compact:
            _check_keys(records)
        # Loaded for every append, idempotent or not, so that the state's view of the log
        # never falls behind it (a snapshot must not be trusted past writes it missed).
        directory = getattr(log, "directory", None)
        producers = broker.producer_states.get(
            topic.name, index, log, None if directory is None else Path(directory), now_ms
        )
        if len(records) >= _PRODUCER_ID_END and _PRODUCER_ID.unpack_from(records, 43)[0] >= 0:
            plan = producers.prepare_append(records)
            duplicate = plan.duplicate
            if duplicate is not None:
                # A retry of a batch already written: its original offsets, nothing appended.
                return PartitionProduceResponse(
                    index=index,
                    error_code=ErrorCode.NONE,
                    base_offset=duplicate.first_offset,
                    log_append_time_ms=duplicate.max_timestamp if config.log_append_time else -1,
                    log_start_offset=log.log_start_offset,
                )
            info = log.append(records, leader_epoch=LEADER_EPOCH, now_ms=now_ms)
            producers.complete_append(plan, info.base_offset, info.log_append_time)
        else:
            info = log.append(records, leader_epoch=LEADER_EPOCH, now_ms=now_ms)
    except KafkaProtocolError as exc:
        return _error(index, exc.error_code, str(exc))
    broker.append_waiters.notify((topic.name, index))
    return PartitionProduceResponse(
        index=index,
        error_code=ErrorCode.NONE,
        base_offset=info.base_offset,
        log_append_time_ms=info.log_append_time,
        log_start_offset=info.log_start_offset,
    )


async def handle(ctx: RequestContext, request: ProduceRequest) -> ProduceResponse | None:
    broker = ctx.broker
    acks = request.acks
    now_ms = broker.now_ms()
    topics = broker.logs.topics()
    responses: list[TopicProduceResponse] = []
    failed = False
    for topic_data in request.topic_data:
        name = topic_data.name
        partitions: list[PartitionProduceResponse] = []
        topic = topics.get(name)
        for partition in topic_data.partition_data:
            if acks not in _VALID_ACKS:
                result = _error(partition.index, ErrorCode.INVALID_REQUIRED_ACKS)
            elif topic is None:
                result = _error(partition.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            elif name in INTERNAL_TOPICS:
                # Only the broker's own coordinators write internal topics.
                result = _error(
                    partition.index,
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"Cannot append to internal topic {name}",
                )
            else:
                records = partition.records
                view = None if records is None else memoryview(records)
                if view is not None and view.readonly:
                    # The server hands over writable frames; anything else is copied once
                    # because the log stamps offsets into the batches in place.
                    view = memoryview(bytearray(view))
                result = append_partition(broker, topic, partition.index, view, now_ms)
            failed = failed or result.error_code != ErrorCode.NONE
            partitions.append(result)
        responses.append(TopicProduceResponse(name=name, partition_responses=partitions))
    if acks == 0:
        if failed:
            raise CloseConnection("an acks=0 produce failed")
        return None
    return ProduceResponse(responses=responses, throttle_time_ms=0)


HANDLES: dict[int, Handler] = {API_KEY: handle}
