"""What admin clients ask of transactions (KIP-664): DescribeProducers (key 61),
DescribeTransactions (65) and ListTransactions (66; v1 adds KIP-994's duration filter).

DescribeProducers reads each partition's producer state (the producers this partition still
remembers, with the first offset of an open transaction); the other two ask the transaction
coordinator.  Authorization as ``KafkaApis``: READ on each topic for DescribeProducers,
DESCRIBE on each transactional id (and topics the caller cannot DESCRIBE left out of the
partitions described); ListTransactions leaves out the ids the caller cannot DESCRIBE.
"""

from __future__ import annotations

from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
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
)
from kafkacompat.protocol.messages.describe_transactions_response import (
    TransactionState as DescribedState,
)
from kafkacompat.protocol.messages.list_transactions_request import ListTransactionsRequest
from kafkacompat.protocol.messages.list_transactions_response import (
    ListTransactionsResponse,
)
from kafkacompat.protocol.messages.list_transactions_response import (
    TransactionState as ListedState,
)
from kafkacompat.security.authorizer import AclOperation, ResourceType

_DESCRIBE = AclOperation.DESCRIBE
_TXN_ID = ResourceType.TRANSACTIONAL_ID


def _producers(ctx: RequestContext, topic: str, index: int) -> PartitionResponse:
    partition = ctx.broker.replica_manager.get_partition(topic, index)
    if partition is None:
        return PartitionResponse(
            partition_index=index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        )
    state = partition.log.producer_state(None)
    return PartitionResponse(
        partition_index=index,
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
    readable = ctx.authorized(
        AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    topics = []
    for topic in request.topics:
        if topic.name in readable:
            partitions = [_producers(ctx, topic.name, i) for i in topic.partition_indexes]
        else:
            partitions = [
                PartitionResponse(
                    partition_index=i, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED
                )
                for i in topic.partition_indexes
            ]
        topics.append(TopicResponse(name=topic.name, partitions=partitions))
    return DescribeProducersResponse(topics=topics)


async def describe_transactions(
    ctx: RequestContext, request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    coordinator = ctx.broker.txn_coordinator
    states = []
    for transactional_id in request.transactional_ids:
        if not ctx.authorize(_DESCRIBE, _TXN_ID, transactional_id):
            states.append(
                DescribedState(
                    error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    transactional_id=transactional_id,
                )
            )
            continue
        found = coordinator.handle_describe_transactions(transactional_id)
        visible = ctx.authorized(_DESCRIBE, ResourceType.TOPIC, (t for t, _ in found.topics))
        states.append(
            DescribedState(
                error_code=found.error_code,
                transactional_id=transactional_id,
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
        )
    return DescribeTransactionsResponse(transaction_states=states)


async def list_transactions(
    ctx: RequestContext, request: ListTransactionsRequest
) -> ListTransactionsResponse:
    result = ctx.broker.txn_coordinator.handle_list_transactions(
        request.producer_id_filters,
        request.state_filters,
        request.duration_filter if ctx.api_version >= 1 else -1,
    )
    visible = ctx.authorized(
        _DESCRIBE, _TXN_ID, (t.transactional_id for t in result.transaction_states)
    )
    return ListTransactionsResponse(
        error_code=result.error_code,
        unknown_state_filters=result.unknown_state_filters,
        transaction_states=[
            ListedState(
                transactional_id=t.transactional_id,
                producer_id=t.producer_id,
                transaction_state=t.transaction_state,
            )
            for t in result.transaction_states
            if t.transactional_id in visible
        ],
    )


HANDLES: dict[int, Handler] = {
    ApiKey.DESCRIBE_PRODUCERS: describe_producers,
    ApiKey.DESCRIBE_TRANSACTIONS: describe_transactions,
    ApiKey.LIST_TRANSACTIONS: list_transactions,
}
