"""ListOffsets (key 2) and OffsetForLeaderEpoch (key 23): offsets by time and by epoch.

ListOffsets special timestamps, Kafka's: -2 earliest (the log start offset), -1 latest (the
high watermark; the last stable offset under read_committed, the same here without
transactions), -3 the record with the largest timestamp (KIP-734, v7+), -4 earliest local
(KIP-405, v8+; everything is local here, so the log start offset), -5 earliest tiered (v9+;
nothing is tiered: not found).  Any other timestamp finds the first offset whose record
timestamp is at or after it, or -1 when there is none.  v0 (the old offsets-array form) was
removed in Kafka 4.0 (KIP-896) and is not advertised.
"""

from __future__ import annotations

from kafkacompat.broker import LEADER_EPOCH
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.handlers.fetch import check_leader_epoch
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.list_offsets_request import ListOffsetsRequest
from kafkacompat.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from kafkacompat.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
)
from kafkacompat.protocol.messages.offset_for_leader_epoch_response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from kafkacompat.storage.base import PartitionLog

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_TIERED = -5
_NO_TIMESTAMP = -1


def _lookup(log: PartitionLog, timestamp: int) -> tuple[int, int, int]:
    """(timestamp, offset, leader epoch) answering one partition; offset -1 when none."""
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return _NO_TIMESTAMP, log.log_start_offset, LEADER_EPOCH
    if timestamp == LATEST:
        return _NO_TIMESTAMP, log.high_watermark, LEADER_EPOCH
    if timestamp == EARLIEST_TIERED:
        return _NO_TIMESTAMP, -1, -1
    found = log.max_timestamp_offset() if timestamp == MAX_TIMESTAMP else None
    if timestamp != MAX_TIMESTAMP:
        if timestamp < 0:
            raise KafkaProtocolError(f"invalid timestamp {timestamp}", ErrorCode.INVALID_REQUEST)
        found = log.offset_for_timestamp(timestamp)
    if found is None:
        return _NO_TIMESTAMP, -1, -1
    return found.timestamp, found.offset, LEADER_EPOCH


async def list_offsets(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    topics = ctx.broker.logs.topics()
    responses: list[ListOffsetsTopicResponse] = []
    seen: set[tuple[str, int]] = set()
    for wanted in request.topics:
        topic = topics.get(wanted.name)
        partitions: list[ListOffsetsPartitionResponse] = []
        for partition in wanted.partitions:
            index = partition.partition_index
            answer = ListOffsetsPartitionResponse(
                partition_index=index, timestamp=_NO_TIMESTAMP, offset=-1, leader_epoch=-1
            )
            if (wanted.name, index) in seen:
                # Kafka refuses a partition asked for twice in one request.
                answer.error_code = ErrorCode.INVALID_REQUEST
            elif topic is None or not 0 <= index < topic.partitions:
                answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                answer.error_code = check_leader_epoch(partition.current_leader_epoch)
                if answer.error_code == ErrorCode.NONE:
                    try:
                        answer.timestamp, answer.offset, answer.leader_epoch = _lookup(
                            topic.logs[index], partition.timestamp
                        )
                    except KafkaProtocolError as exc:
                        answer.error_code = exc.error_code
            seen.add((wanted.name, index))
            partitions.append(answer)
        responses.append(ListOffsetsTopicResponse(name=wanted.name, partitions=partitions))
    return ListOffsetsResponse(throttle_time_ms=0, topics=responses)


async def offset_for_leader_epoch(
    ctx: RequestContext, request: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    """The end offset of the requested epoch (the largest epoch <= it that we know),
    which a consumer uses to detect log truncation after a leader change (KIP-320)."""
    topics = ctx.broker.logs.topics()
    results: list[OffsetForLeaderTopicResult] = []
    for wanted in request.topics:
        topic = topics.get(wanted.topic)
        partitions: list[EpochEndOffset] = []
        for partition in wanted.partitions:
            answer = EpochEndOffset(partition=partition.partition, leader_epoch=-1, end_offset=-1)
            if topic is None or not 0 <= partition.partition < topic.partitions:
                answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                answer.error_code = check_leader_epoch(partition.current_leader_epoch)
                if answer.error_code == ErrorCode.NONE:
                    answer.leader_epoch, answer.end_offset = topic.logs[
                        partition.partition
                    ].end_offset_for_epoch(partition.leader_epoch)
            partitions.append(answer)
        results.append(OffsetForLeaderTopicResult(topic=wanted.topic, partitions=partitions))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=results)


HANDLES: dict[int, Handler] = {
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: offset_for_leader_epoch,
}
