"""Fetch (key 1), v4+: consumers read whole record batches, with long polling.

The handler resolves names (v13+: topic ids) against the metadata image, asks the authorizer
(READ on each topic, TOPIC_AUTHORIZATION_FAILED) and each partition's leader epoch (KIP-320),
and hands the rest to :meth:`ReplicaManager.fetch_messages
<kafkacompat.cluster.replica_manager.ReplicaManager.fetch_messages>`: the KIP-74 size rules
and the long poll (the fetch purgatory) live there.  Only the fetch's own connection waits.

Fetch sessions (KIP-227) are declined: the response's session id is 0, which tells a client
to keep sending full fetch requests; a request naming a session id we never gave out gets
FETCH_SESSION_ID_NOT_FOUND, so the client resets to a full fetch.

Fetch v0-3 expect legacy message formats (removed in Kafka 4.0, KIP-896): not advertised.
read_committed (isolation level 1) reads up to the last stable offset and gets the aborted
transactions overlapping its records (producer id, first offset), as Kafka answers.
"""

from __future__ import annotations

from kafkacompat.cluster.partition import FetchIsolation
from kafkacompat.cluster.replica_manager import FetchPartitionResult, FetchRead
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.fetch_request import FetchRequest
from kafkacompat.protocol.messages.fetch_response import (
    AbortedTransaction,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kafkacompat.security.authorizer import AclOperation, ResourceType

API_KEY = ApiKey.FETCH

READ_COMMITTED = 1
_NO_SESSION = 0


def _partition_data(
    index: int, result: FetchPartitionResult, read_committed: bool
) -> PartitionData:
    read = result.read
    aborted = None
    if read_committed:
        found = () if read is None else read.aborted_transactions or ()
        aborted = [
            AbortedTransaction(producer_id=a.producer_id, first_offset=a.first_offset)
            for a in found
        ]
    return PartitionData(
        partition_index=index,
        error_code=result.error,
        high_watermark=-1 if read is None else read.high_watermark,
        last_stable_offset=-1 if read is None else read.last_stable_offset,
        log_start_offset=-1 if read is None else read.log_start_offset,
        aborted_transactions=aborted,
        records=b"" if read is None or result.error != ErrorCode.NONE else read.records,
    )


async def handle(ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    broker = ctx.broker
    version = ctx.api_version
    if version >= 7 and request.session_id != _NO_SESSION:
        return FetchResponse(
            error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=_NO_SESSION, responses=[]
        )
    read_committed = version >= 4 and request.isolation_level == READ_COMMITTED
    image = broker.metadata
    replicas = broker.replica_manager
    names: list[str] = []
    for t in request.topics:
        found = image.topic_by_id(t.topic_id) if version >= 13 else None
        names.append(t.topic if version < 13 else "" if found is None else found.name)
    readable = ctx.authorized(AclOperation.READ, ResourceType.TOPIC, (n for n in names if n))
    reads: list[FetchRead] = []
    for fetch_topic, name in zip(request.topics, names, strict=True):
        if version >= 13 and not name:
            missing = ErrorCode.UNKNOWN_TOPIC_ID
        elif name not in readable:
            missing = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        else:
            missing = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        for wanted in fetch_topic.partitions:
            partition = replicas.get_partition(name, wanted.partition) if name in readable else None
            error = (
                missing
                if partition is None
                else partition.check_leader_epoch(wanted.current_leader_epoch)
            )
            reads.append(
                FetchRead(
                    partition if error == ErrorCode.NONE else None,
                    error,
                    wanted.fetch_offset,
                    wanted.partition_max_bytes,
                )
            )
    results = await replicas.fetch_messages(
        reads,
        max_bytes=request.max_bytes if version >= 3 else 2**31 - 1,
        min_bytes=request.min_bytes,
        max_wait_ms=request.max_wait_ms if broker.started else 0,
        isolation=FetchIsolation.TXN_COMMITTED if read_committed else FetchIsolation.HIGH_WATERMARK,
    )
    responses: list[FetchableTopicResponse] = []
    position = 0
    for fetch_topic in request.topics:
        partitions = []
        for wanted in fetch_topic.partitions:
            partitions.append(_partition_data(wanted.partition, results[position], read_committed))
            position += 1
        responses.append(
            FetchableTopicResponse(
                topic=fetch_topic.topic, topic_id=fetch_topic.topic_id, partitions=partitions
            )
        )
    return FetchResponse(
        throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=_NO_SESSION, responses=responses
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
