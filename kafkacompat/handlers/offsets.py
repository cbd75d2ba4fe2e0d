"""ListOffsets (key 2) and OffsetForLeaderEpoch (key 23): offsets by time and by epoch.

ListOffsets special timestamps, Kafka's: -2 earliest (the log start offset), -1 latest (the
high watermark; the last stable offset under read_committed), -3 the record with the largest
timestamp (KIP-734, v7+), -4 earliest local (KIP-405, v8+; everything is local here, so the
log start offset), -5 earliest tiered (v9+; nothing is tiered: not found).  Any other
timestamp finds the first offset whose record timestamp is at or after it, or -1 when there
is none.  The leader epoch answered is the one the log stored for that offset
(:meth:`Partition.fetch_offset_for_timestamp
<kafkacompat.cluster.partition.Partition.fetch_offset_for_timestamp>`).  Authorization:
DESCRIBE on each topic, as Kafka's.  v0 (the old offsets-array form) was
removed in Kafka 4.0 (KIP-896) and is not advertised.
"""

from __future__ import annotations

from kafkacompat.cluster.partition import FetchIsolation
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
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
from kafkacompat.security.authorizer import AclOperation, ResourceType

_NO_TIMESTAMP = -1
_READ_COMMITTED = 1


async def list_offsets(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    replicas = ctx.broker.replica_manager
    isolation = (
        FetchIsolation.TXN_COMMITTED
        if ctx.api_version >= 2 and request.isolation_level == _READ_COMMITTED
        else FetchIsolation.HIGH_WATERMARK
    )
    described = ctx.authorized(
        AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    responses: list[ListOffsetsTopicResponse] = []
    seen: set[tuple[str, int]] = set()
    for wanted in request.topics:
        partitions: list[ListOffsetsPartitionResponse] = []
        for requested in wanted.partitions:
            index = requested.partition_index
            answer = ListOffsetsPartitionResponse(
                partition_index=index, timestamp=_NO_TIMESTAMP, offset=-1, leader_epoch=-1
            )
            partition = replicas.get_partition(wanted.name, index)
            if (wanted.name, index) in seen:
                # Kafka refuses a partition asked for twice in one request.
                answer.error_code = ErrorCode.INVALID_REQUEST
            elif wanted.name not in described:
                answer.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif partition is None:
                answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                answer.error_code = partition.check_leader_epoch(requested.current_leader_epoch)
                if answer.error_code == ErrorCode.NONE:
                    try:
                        answer.timestamp, answer.offset, answer.leader_epoch = (
                            partition.fetch_offset_for_timestamp(requested.timestamp, isolation)
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
    replicas = ctx.broker.replica_manager
    described = ctx.authorized(
        AclOperation.DESCRIBE, ResourceType.TOPIC, (t.topic for t in request.topics)
    )
    results: list[OffsetForLeaderTopicResult] = []
    for wanted in request.topics:
        partitions: list[EpochEndOffset] = []
        for requested in wanted.partitions:
            answer = EpochEndOffset(partition=requested.partition, leader_epoch=-1, end_offset=-1)
            partition = replicas.get_partition(wanted.topic, requested.partition)
            if wanted.topic not in described:
                answer.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif partition is None:
                answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                answer.error_code = partition.check_leader_epoch(requested.current_leader_epoch)
                if answer.error_code == ErrorCode.NONE:
                    answer.leader_epoch, answer.end_offset = partition.last_offset_for_leader_epoch(
                        requested.leader_epoch
                    )
            partitions.append(answer)
        results.append(OffsetForLeaderTopicResult(topic=wanted.topic, partitions=partitions))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=results)


HANDLES: dict[int, Handler] = {
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: offset_for_leader_epoch,
}
