"""Committed offsets: OffsetCommit (key 8, v2+), OffsetFetch (9, v1+), OffsetDelete (47),
TxnOffsetCommit (28, v0-4).

OffsetCommit checks each partition exists (UNKNOWN_TOPIC_OR_PARTITION otherwise, before the
group is even looked at, as Kafka's KafkaApis does), then the coordinator validates the
group, generation and member and writes the offsets to ``__consumer_offsets`` before this
answers.  The commit time is the broker's; v2-4 may ask for their own retention.  OffsetCommit
v0 (offsets in ZooKeeper) and v1 (client-chosen commit timestamps), and OffsetFetch v0
(ZooKeeper), were deprecated and removed in Kafka 4.0 (KIP-896) and are not advertised.

OffsetFetch answers -1 for partitions without a committed offset, and every committed
partition when ``topics`` is null (v2+); v8+ fetch for several groups at once.
``require_stable`` (v7+) asks to wait out pending transactional commits: a partition with
one answers UNSTABLE_OFFSET_COMMIT (and no offset) until its transaction's marker, and the
client retries.  The v9 member id and epoch belong to KIP-848 groups, which this broker does
not run, and are ignored.

TxnOffsetCommit is a transactional producer's commit of its consumer's position
(``sendOffsetsToTransaction``), after AddOffsetsToTxn put the group's ``__consumer_offsets``
partition in the transaction.  KIP-890's verification asks the transaction coordinator that
the partition is in the producer's transaction before anything is written (unless the
producer has one open there already), then the coordinator validates the group (v3+ member
id, generation and instance id, as OffsetCommit but without the group-state checks) and
writes the offsets in one transactional batch of the producer's.  They stay pending, unseen
by OffsetFetch, until the transaction coordinator's marker commits or aborts them.  The
producer's epoch is checked by the partition's producer state (INVALID_PRODUCER_EPOCH); a
fenced producer hears INVALID_PRODUCER_EPOCH too, as from Kafka; before v4, which knows no
TRANSACTION_ABORTABLE, a partition outside the transaction is INVALID_TXN_STATE; before
v2, COORDINATOR_LOAD_IN_PROGRESS is answered as COORDINATOR_NOT_AVAILABLE (KAFKA-7296).

Authorization, as Kafka's ``KafkaApis`` asks it: OffsetCommit READ on the group (every
partition answers GROUP_AUTHORIZATION_FAILED otherwise) and READ on each topic
(TOPIC_AUTHORIZATION_FAILED, checked before whether the topic exists, so that a session learns
nothing of topics it may not read); OffsetFetch DESCRIBE on the group and DESCRIBE on each
topic (asked partitions of other topics answer TOPIC_AUTHORIZATION_FAILED with no offset; a
fetch of every partition leaves those topics out); OffsetDelete DELETE on the group and READ
on each topic; TxnOffsetCommit WRITE on the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on the group and READ on each topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from kafkacompat.coordinators.group_metadata import (
    NO_GENERATION,
    UNKNOWN_MEMBER_ID,
    OffsetAndMetadata,
)
from kafkacompat.coordinators.group_records import OFFSETS_TOPIC
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.handlers.groups import coordinator
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.offset_commit_request import OffsetCommitRequest
from kafkacompat.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from kafkacompat.protocol.messages.offset_delete_request import OffsetDeleteRequest
from kafkacompat.protocol.messages.offset_delete_response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from kafkacompat.protocol.messages.offset_fetch_request import OffsetFetchRequest
from kafkacompat.protocol.messages.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from kafkacompat.protocol.messages.txn_offset_commit_request import TxnOffsetCommitRequest
from kafkacompat.protocol.messages.txn_offset_commit_response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)
from kafkacompat.security.authorizer import AclOperation, ResourceType

TopicPartition = tuple[str, int]
Fetched = tuple[int, OffsetAndMetadata | None, ErrorCode]
"""One OffsetFetch partition: its index, its committed offset, its error."""
DEFAULT_RETENTION_TIME = -1
INVALID_OFFSET = -1
READ, DELETE, DESCRIBE = AclOperation.READ, AclOperation.DELETE, AclOperation.DESCRIBE
WRITE = AclOperation.WRITE
GROUP, TOPIC = ResourceType.GROUP, ResourceType.TOPIC
TRANSACTIONAL_ID = ResourceType.TRANSACTIONAL_ID


def _partition_exists(ctx: RequestContext, topic: str, partition: int) -> bool:
    return ctx.broker.replica_manager.get_partition(topic, partition) is not None


# -- OffsetCommit -----------------------------------------------------------------------------------


async def offset_commit(ctx: RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse:
    version = ctx.api_version
    now = ctx.broker.now_ms()
    retention = request.retention_time_ms if 2 <= version <= 4 else DEFAULT_RETENTION_TIME
    expire = None if retention == DEFAULT_RETENTION_TIME else now + retention
    errors: dict[TopicPartition, ErrorCode] = {}
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    if not ctx.authorize(READ, GROUP, request.group_id):
        readable: set[str] = set()
        group_error: ErrorCode | None = ErrorCode.GROUP_AUTHORIZATION_FAILED
    else:
        readable = ctx.authorized(READ, TOPIC, (t.name for t in request.topics))
        group_error = None
    for topic in request.topics:
        for partition in topic.partitions:
            tp = (topic.name, partition.partition_index)
            if group_error is not None:
                errors[tp] = group_error
                continue
            if topic.name not in readable:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not _partition_exists(ctx, *tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets[tp] = OffsetAndMetadata(
                offset=partition.committed_offset,
                leader_epoch=partition.committed_leader_epoch if version >= 6 else -1,
                metadata=partition.committed_metadata or "",
                commit_timestamp=now,
                expire_timestamp=expire,
            )
    if offsets:
        errors.update(
            coordinator(ctx).commit_offsets(
                request.group_id,
                request.member_id,
                request.group_instance_id if version >= 7 else None,
                request.generation_id_or_member_epoch,
                offsets,
            )
        )
    return OffsetCommitResponse(
        topics=[
            OffsetCommitResponseTopic(
                name=topic.name,
                partitions=[
                    OffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=errors[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )


# -- TxnOffsetCommit --------------------------------------------------------------------------------


def _verify_transaction(
    ctx: RequestContext, request: TxnOffsetCommitRequest, group_partition: int
) -> ErrorCode:
    """KIP-890's check before the coordinator writes a transaction's offsets (Kafka's
    ``maybeStartTransactionVerification`` of the group's ``__consumer_offsets`` partition):
    the partition must be in the producer's transaction (AddOffsetsToTxn put it there),
    unless the producer already has a transaction open in it.  The transaction coordinator
    is local and answers at once."""
    broker = ctx.broker
    if not broker.config.get("transaction.partition.verification.enable"):
        return ErrorCode.NONE
    partition = broker.replica_manager.get_partition(OFFSETS_TOPIC, group_partition)
    if partition is not None:
        entry = partition.log.producer_state(None).last_entry(request.producer_id)
        if (
            entry is not None
            and entry.producer_epoch == request.producer_epoch
            and entry.current_txn_first_offset is not None
        ):
            return ErrorCode.NONE
    tp = (OFFSETS_TOPIC, group_partition)
    error = broker.txn_coordinator.handle_verify_partitions_in_transaction(
        request.transactional_id, request.producer_id, request.producer_epoch, [tp]
    ).get(tp, ErrorCode.NONE)
    # As Kafka's AddPartitionsToTxnManager and handleOperationException map them.
    if error == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if error == ErrorCode.TRANSACTION_ABORTABLE and ctx.api_version < 4:
        return ErrorCode.INVALID_TXN_STATE  # TRANSACTION_ABORTABLE is known from v4 (KIP-890)
    if error == ErrorCode.NETWORK_EXCEPTION:
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    return error


async def txn_offset_commit(
    ctx: RequestContext, request: TxnOffsetCommitRequest
) -> TxnOffsetCommitResponse:
    version = ctx.api_version
    now = ctx.broker.now_ms()
    errors: dict[TopicPartition, ErrorCode] = {}
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    request_error: ErrorCode | None = None
    readable: set[str] = set()
    if not ctx.authorize(WRITE, TRANSACTIONAL_ID, request.transactional_id):
        # The producer id needs no check of its own: the transactional id implies it.
        request_error = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not ctx.authorize(READ, GROUP, request.group_id):
        request_error = ErrorCode.GROUP_AUTHORIZATION_FAILED
    else:
        readable = ctx.authorized(READ, TOPIC, (t.name for t in request.topics))
    for topic in request.topics:
        for partition in topic.partitions:
            tp = (topic.name, partition.partition_index)
            if request_error is not None:
                errors[tp] = request_error
            elif topic.name not in readable:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif not _partition_exists(ctx, *tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                offsets[tp] = OffsetAndMetadata(
                    offset=partition.committed_offset,
                    leader_epoch=partition.committed_leader_epoch if version >= 2 else -1,
                    metadata=partition.committed_metadata or "",
                    commit_timestamp=now,
                )
    if offsets:
        groups = coordinator(ctx)
        error = groups.group_error(request.group_id, allow_empty=False)
        if error is None:
            verified = _verify_transaction(ctx, request, groups.partition_for(request.group_id))
            error = None if verified == ErrorCode.NONE else verified
        if error is not None:
            errors.update(dict.fromkeys(offsets, error))
        else:
            errors.update(
                groups.commit_transactional_offsets(
                    request.group_id,
                    request.producer_id,
                    request.producer_epoch,
                    request.member_id if version >= 3 else UNKNOWN_MEMBER_ID,
                    request.group_instance_id if version >= 3 else None,
                    request.generation_id if version >= 3 else NO_GENERATION,
                    offsets,
                )
            )
    if version < 2:
        # Producers before 2.0 (KAFKA-7296) could crash on the loading error; they retry on
        # this one, as Kafka answers them.
        for tp, code in errors.items():
            if code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                errors[tp] = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return TxnOffsetCommitResponse(
        topics=[
            TxnOffsetCommitResponseTopic(
                name=topic.name,
                partitions=[
                    TxnOffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=errors[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )


# -- OffsetFetch ------------------------------------------------------------------------------------


def _by_topic(
    found: Iterable[tuple[TopicPartition, OffsetAndMetadata | None, ErrorCode]],
) -> dict[str, list[Fetched]]:
    topics: dict[str, list[Fetched]] = {}
    for (topic, partition), committed, error in found:
        topics.setdefault(topic, []).append((partition, committed, error))
    return topics


def _stable(
    found: Iterable[tuple[TopicPartition, OffsetAndMetadata | None]], unstable: set[TopicPartition]
) -> Iterator[tuple[TopicPartition, OffsetAndMetadata | None, ErrorCode]]:
    """require_stable: a partition with a pending transactional offset has no answer yet."""
    for tp, committed in found:
        if tp in unstable:
            yield tp, None, ErrorCode.UNSTABLE_OFFSET_COMMIT
        else:
            yield tp, committed, ErrorCode.NONE


def _fetch(
    ctx: RequestContext,
    group_id: str,
    wanted: list[TopicPartition] | None,
    require_stable: bool = False,
) -> tuple[ErrorCode, dict[str, list[Fetched]]]:
    if not ctx.authorize(DESCRIBE, GROUP, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, {}
    groups = coordinator(ctx)
    if wanted is None:
        error, found = groups.fetch_offsets(group_id, None)
        unstable = groups.pending_offsets(group_id) if require_stable else set()
        visible = ctx.authorized(DESCRIBE, TOPIC, {tp[0] for tp, _ in found})
        return error, _by_topic(_stable(((tp, c) for tp, c in found if tp[0] in visible), unstable))
    visible = ctx.authorized(DESCRIBE, TOPIC, (tp[0] for tp in wanted))
    error, found = groups.fetch_offsets(group_id, [tp for tp in wanted if tp[0] in visible])
    if error != ErrorCode.NONE:
        return error, {}
    unstable = groups.pending_offsets(group_id) if require_stable else set()
    committed = dict(found)
    return error, _by_topic(
        next(_stable([(tp, committed.get(tp))], unstable))
        if tp[0] in visible
        else (tp, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        for tp in wanted
    )


async def offset_fetch(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    version = ctx.api_version
    if version >= 8:
        groups = []
        for group in request.groups:
            wanted = (
                None
                if group.topics is None
                else [(t.name, p) for t in group.topics for p in t.partition_indexes]
            )
            error, topics = _fetch(ctx, group.group_id, wanted, request.require_stable)
            groups.append(
                OffsetFetchResponseGroup(
                    group_id=group.group_id,
                    error_code=error,
                    topics=[
                        OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                OffsetFetchResponsePartitions(
                                    partition_index=p,
                                    committed_offset=INVALID_OFFSET if c is None else c.offset,
                                    committed_leader_epoch=-1 if c is None else c.leader_epoch,
                                    metadata="" if c is None else c.metadata,
                                    error_code=e,
                                )
                                for p, c, e in partitions
                            ],
                        )
                        for name, partitions in topics.items()
                    ],
                )
            )
        return OffsetFetchResponse(groups=groups)

    asked = (
        None
        if request.topics is None
        else [(t.name, p) for t in request.topics for p in t.partition_indexes]
    )
    error, topics = _fetch(ctx, request.group_id, asked, version >= 7 and request.require_stable)
    if error != ErrorCode.NONE and version < 2 and asked is not None:
        # v1 has no top-level error: every asked partition carries it.
        topics = _by_topic((tp, None, error) for tp in asked)
    return OffsetFetchResponse(
        error_code=error,
        topics=[
            OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    OffsetFetchResponsePartition(
                        partition_index=p,
                        committed_offset=INVALID_OFFSET if c is None else c.offset,
                        committed_leader_epoch=-1 if c is None else c.leader_epoch,
                        metadata="" if c is None else c.metadata,
                        error_code=e,
                    )
                    for p, c, e in partitions
                ],
            )
            for name, partitions in topics.items()
        ],
    )


# -- OffsetDelete -----------------------------------------------------------------------------------


async def offset_delete(ctx: RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse:
    if not ctx.authorize(DELETE, GROUP, request.group_id):
        return OffsetDeleteResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    errors: dict[TopicPartition, ErrorCode] = {}
    wanted: list[TopicPartition] = []
    readable = ctx.authorized(READ, TOPIC, (t.name for t in request.topics))
    for topic in request.topics:
        for partition in topic.partitions:
            tp = (topic.name, partition.partition_index)
            if topic.name not in readable:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif _partition_exists(ctx, *tp):
                wanted.append(tp)
            else:
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    error, deleted = coordinator(ctx).delete_offsets(request.group_id, wanted)
    if error != ErrorCode.NONE:
        return OffsetDeleteResponse(error_code=error)
    errors.update(deleted)
    return OffsetDeleteResponse(
        error_code=ErrorCode.NONE,
        topics=[
            OffsetDeleteResponseTopic(
                name=topic.name,
                partitions=[
                    OffsetDeleteResponsePartition(
                        partition_index=p.partition_index,
                        error_code=errors[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ],
    )


HANDLES: dict[int, Handler] = {
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.OFFSET_DELETE: offset_delete,
    ApiKey.TXN_OFFSET_COMMIT: txn_offset_commit,
}
