"""DescribeProducers (key 61, v0), DescribeTransactions (65, v0), ListTransactions (66, v0-1):
the KIP-664 tooling that finds hanging transactions (``kafka-transactions.sh``).

DescribeProducers reads a partition's producer state as its leader holds it: every active
producer with its epoch, last sequence, last timestamp, the epoch of the coordinator that wrote
its last marker, and the first offset of its open transaction here (-1 outside one).  Errors
follow KafkaApis: an invalid topic name, then READ on the topic, then an unknown topic, for
every partition of the topic; then per partition ReplicaManager's ``getPartitionOrError``
(an offline log is KAFKA_STORAGE_ERROR, a partition not hosted is NOT_LEADER_OR_FOLLOWER if
the metadata has it, else UNKNOWN_TOPIC_OR_PARTITION).

DescribeTransactions and ListTransactions ask the transaction coordinator, then hide what
the caller may not DESCRIBE, as KafkaApis does: an id it may not describe is
TRANSACTIONAL_ID_AUTHORIZATION_FAILED in DescribeTransactions and left out of
ListTransactions; a topic it may not describe is left out of a described transaction.
ListTransactions v1 adds KIP-994's duration filter (transactions open longer than it).
"""

from __future__ import annotations

from typing import Final

from kafkacompat.coordinators.transaction_coordinator import DescribedTransaction
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.metadata.local_controller import validate_topic_name
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.describe_producers_request import DescribeProducersRequest
from kafkacompat.protocol.messages.describe_producers_response import (
    DescribeProducersResponse,
    PartitionResponse,
    ProducerState,
    TopicResponse,
)
from kafkacompat.protocol.messages.describe_transactions_request import (
    DescribeTransactionsRequest,
)
from kafkacompat.protocol.messages.describe_transactions_response import (
    DescribeTransactionsResponse,
    TopicData,
    TransactionState,
)
from kafkacompat.protocol.messages.list_transactions_request import ListTransactionsRequest
from kafkacompat.protocol.messages.list_transactions_response import (
    ListTransactionsResponse,
)
from kafkacompat.protocol.messages.list_transactions_response import (
    TransactionState as ListedState,
)
from kafkacompat.security.authorizer import AclOperation, ResourceType

# Kafka puts an error's default message in a topic-level DescribeProducers error
# (``new ApiError(Errors.X)``); per-partition errors carry none.
_DEFAULT_MESSAGES: Final = {
    ErrorCode.TOPIC_AUTHORIZATION_FAILED: "Topic authorization failed.",
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: "This server does not host this topic-partition.",
}


def _topic_error(ctx: RequestContext, name: str) -> tuple[ErrorCode, str | None] | None:
    try:
        validate_topic_name(name)
    except KafkaProtocolError as exc:
        return exc.error_code, str(exc)
    if not ctx.authorize(AclOperation.READ, ResourceType.TOPIC, name):
        error = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    elif name not in ctx.broker.metadata.topics:
        error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    else:
        return None
    return error, _DEFAULT_MESSAGES[error]


def _active_producer_state(ctx: RequestContext, topic: str, index: int) -> PartitionResponse:
    """Kafka's ``ReplicaManager.activeProducerState`` for one partition."""
    broker = ctx.broker
    partition = broker.replica_manager.get_partition(topic, index)
    if partition is None:
        image = broker.metadata.topics.get(topic)
        hosted_elsewhere = image is not None and 0 <= index < image.partitions
        return PartitionResponse(
            partition_index=index,
            error_code=(
                ErrorCode.NOT_LEADER_OR_FOLLOWER
                if hosted_elsewhere
                else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            ),
        )
    if partition.is_offline:
        return PartitionResponse(partition_index=index, error_code=ErrorCode.KAFKA_STORAGE_ERROR)
    try:
        # Loading (on first use) drops producers already expired, as Kafka's load at start-up.
        state = partition.log.producer_state(broker.replica_manager.now_ms())
    except KafkaProtocolError as exc:  # the log tail could not be read: it went offline
        return PartitionResponse(partition_index=index, error_code=exc.error_code)
    return PartitionResponse(
        partition_index=index,
        error_code=ErrorCode.NONE,
        active_producers=[
            ProducerState(
                producer_id=producer_id,
                producer_epoch=entry.producer_epoch,
                last_sequence=entry.last_seq,
                last_timestamp=entry.last_timestamp,
                coordinator_epoch=entry.coordinator_epoch,
                current_txn_start_offset=(
                    -1 if entry.current_txn_first_offset is None else entry.current_txn_first_offset
                ),
            )
            for producer_id, entry in sorted(state.active_producers.items())
        ],
    )


async def describe_producers(
    ctx: RequestContext, request: DescribeProducersRequest
) -> DescribeProducersResponse:
    topics = []
    for topic in request.topics:
        error = _topic_error(ctx, topic.name)
        if error is None:
            partitions = [
                _active_producer_state(ctx, topic.name, index) for index in topic.partition_indexes
            ]
        else:
            code, message = error
            partitions = [
                PartitionResponse(partition_index=index, error_code=code, error_message=message)
                for index in topic.partition_indexes
            ]
        topics.append(TopicResponse(name=topic.name, partitions=partitions))
    return DescribeProducersResponse(throttle_time_ms=0, topics=topics)


def _described(ctx: RequestContext, found: DescribedTransaction) -> TransactionState:
    if found.error_code != ErrorCode.NONE:
        # Kafka sets only the id and the error: the other fields keep the schema's defaults.
        return TransactionState(
            error_code=found.error_code, transactional_id=found.transactional_id
        )
    # Only the topics the caller may describe (KafkaApis asks topic by topic).
    visible = ctx.authorized(
        AclOperation.DESCRIBE, ResourceType.TOPIC, (topic for topic, _ in found.topics)
    )
    return TransactionState(
        error_code=ErrorCode.NONE,
        transactional_id=found.transactional_id,
        transaction_state=found.transaction_state,
        transaction_timeout_ms=found.transaction_timeout_ms,
        transaction_start_time_ms=found.transaction_start_time_ms,
        producer_id=found.producer_id,
        producer_epoch=found.producer_epoch,
        topics=[
            TopicData(topic=topic, partitions=list(partitions))
            for topic, partitions in found.topics
            if topic in visible
        ],
    )


async def describe_transactions(
    ctx: RequestContext, request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    allowed = ctx.authorized(
        AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, request.transactional_ids
    )
    states = []
    for transactional_id in request.transactional_ids:
        if transactional_id not in allowed:
            states.append(
                TransactionState(
                    error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    transactional_id=transactional_id,
                )
            )
        else:
            found = ctx.broker.txn_coordinator.handle_describe_transactions(transactional_id)
            states.append(_described(ctx, found))
    return DescribeTransactionsResponse(throttle_time_ms=0, transaction_states=states)


async def list_transactions(
    ctx: RequestContext, request: ListTransactionsRequest
) -> ListTransactionsResponse:
    result = ctx.broker.txn_coordinator.handle_list_transactions(
        request.producer_id_filters,
        request.state_filters,
        # v0 has no duration filter: -1 filters nothing.
        request.duration_filter if ctx.api_version >= 1 else -1,
    )
    visible = ctx.authorized(
        AclOperation.DESCRIBE,
        ResourceType.TRANSACTIONAL_ID,
        (listed.transactional_id for listed in result.transaction_states),
    )
    return ListTransactionsResponse(
        throttle_time_ms=0,
        error_code=result.error_code,
        unknown_state_filters=list(result.unknown_state_filters),
        transaction_states=[
            ListedState(
                transactional_id=listed.transactional_id,
                producer_id=listed.producer_id,
                transaction_state=listed.transaction_state,
            )
            for listed in result.transaction_states
            if listed.transactional_id in visible
        ],
    )


HANDLES: dict[int, Handler] = {
    ApiKey.DESCRIBE_PRODUCERS: describe_producers,
    ApiKey.DESCRIBE_TRANSACTIONS: describe_transactions,
    ApiKey.LIST_TRANSACTIONS: list_transactions,
}
