"""Transactions (KIP-98): AddPartitionsToTxn (key 24), AddOffsetsToTxn (25), EndTxn (26) and
WriteTxnMarkers (27).  InitProducerId is :mod:`kafkacompat.handlers.init_producer_id`,
TxnOffsetCommit is with the other offset APIs in :mod:`kafkacompat.handlers.group_offsets`.

The rules are the transaction coordinator's
(:mod:`kafkacompat.coordinators.transaction_coordinator`); this module checks what
``KafkaApis`` checks before asking it:

- AddPartitionsToTxn v0-3 (from producers): WRITE on the transactional id, then WRITE on each
  topic; an unauthorized or unknown partition fails the whole request, the others answered
  OPERATION_NOT_ATTEMPTED.  One error for every partition otherwise.
- AddPartitionsToTxn v4+ (KIP-890, sent by brokers to verify or add for a producer):
  CLUSTER_ACTION on the cluster; each transaction answered on its own, verify-only ones with an
  error per partition and nothing written.
- AddOffsetsToTxn: WRITE on the transactional id, READ on the group; the group's partition of
  ``__consumer_offsets`` joins the transaction.
- EndTxn: WRITE on the transactional id.  v5 is a transaction-version-2 client's (the epoch is
  bumped at every end, and the response carries the producer id and epoch to go on with).
- WriteTxnMarkers: CLUSTER_ACTION on the cluster; markers written here as the coordinator's
  own are, an error per partition.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafkacompat.cluster.replica_manager import TransactionResult as MarkerResult
from kafkacompat.cluster.replica_manager import TxnMarker
from kafkacompat.coordinators.group_records import OFFSETS_TOPIC
from kafkacompat.coordinators.transaction_coordinator import TransactionResult
from kafkacompat.coordinators.transaction_metadata import TV_2
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from kafkacompat.protocol.messages.add_offsets_to_txn_response import AddOffsetsToTxnResponse
from kafkacompat.protocol.messages.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from kafkacompat.protocol.messages.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
)
from kafkacompat.protocol.messages.end_txn_request import EndTxnRequest
from kafkacompat.protocol.messages.end_txn_response import EndTxnResponse
from kafkacompat.protocol.messages.write_txn_markers_request import WriteTxnMarkersRequest
from kafkacompat.protocol.messages.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

TopicPartition = tuple[str, int]

_WRITE, _READ = AclOperation.WRITE, AclOperation.READ
_TXN_ID = ResourceType.TRANSACTIONAL_ID


def _by_topic(errors: dict[TopicPartition, ErrorCode]) -> list[AddPartitionsToTxnTopicResult]:
    topics: dict[str, list[AddPartitionsToTxnPartitionResult]] = {}
    for (topic, partition), error in errors.items():
        topics.setdefault(topic, []).append(
            AddPartitionsToTxnPartitionResult(partition_index=partition, partition_error_code=error)
        )
    return [
        AddPartitionsToTxnTopicResult(name=name, results_by_partition=results)
        for name, results in topics.items()
    ]


def _partitions(topics: Iterable[AddPartitionsToTxnTopic]) -> list[TopicPartition]:
    return list(dict.fromkeys((t.name, p) for t in topics for p in t.partitions))


# -- AddPartitionsToTxn -----------------------------------------------------------------------------


async def _add_for_producer(
    ctx: RequestContext,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    partitions: list[TopicPartition],
) -> dict[TopicPartition, ErrorCode]:
    """v0-3: a producer adds partitions to its own transaction."""
    if not ctx.authorize(_WRITE, _TXN_ID, transactional_id):
        return dict.fromkeys(partitions, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    writable = ctx.authorized(_WRITE, ResourceType.TOPIC, (topic for topic, _ in partitions))
    image = ctx.broker.metadata
    failed: dict[TopicPartition, ErrorCode] = {}
    for topic, partition in partitions:
        if topic not in writable:
            failed[(topic, partition)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        else:
            found = image.topic(topic)
            if found is None or not 0 <= partition < found.partitions:
                failed[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if failed:
        # Any failed partition fails the whole request; the rest were not attempted.
        return {tp: failed.get(tp, ErrorCode.OPERATION_NOT_ATTEMPTED) for tp in partitions}
    error = await ctx.broker.txn_coordinator.handle_add_partitions_to_transaction(
        transactional_id, producer_id, producer_epoch, partitions
    )
    return dict.fromkeys(partitions, error)


async def _add_for_broker(
    ctx: RequestContext, transaction: AddPartitionsToTxnTransaction
) -> dict[TopicPartition, ErrorCode]:
    """v4+: one transaction of a broker's batched request (KIP-890)."""
    coordinator = ctx.broker.txn_coordinator
    partitions = _partitions(transaction.topics)
    if transaction.verify_only:
        return coordinator.handle_verify_partitions_in_transaction(
            transaction.transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            partitions,
        )
    error = await coordinator.handle_add_partitions_to_transaction(
        transaction.transactional_id,
        transaction.producer_id,
        transaction.producer_epoch,
        partitions,
    )
    return dict.fromkeys(partitions, error)


async def add_partitions_to_txn(
    ctx: RequestContext, request: AddPartitionsToTxnRequest
) -> AddPartitionsToTxnResponse:
    if ctx.api_version < 4:
        errors = await _add_for_producer(
            ctx,
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            _partitions(request.v3_and_below_topics),
        )
        return AddPartitionsToTxnResponse(results_by_topic_v3_and_below=_by_topic(errors))
    if not ctx.authorize(AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME):
        return AddPartitionsToTxnResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    results = []
    for transaction in request.transactions:
        errors = await _add_for_broker(ctx, transaction)
        results.append(
            AddPartitionsToTxnResult(
                transactional_id=transaction.transactional_id, topic_results=_by_topic(errors)
            )
        )
    return AddPartitionsToTxnResponse(results_by_transaction=results)


# -- AddOffsetsToTxn --------------------------------------------------------------------------------


async def add_offsets_to_txn(
    ctx: RequestContext, request: AddOffsetsToTxnRequest
) -> AddOffsetsToTxnResponse:
    if not ctx.authorize(_WRITE, _TXN_ID, request.transactional_id):
        return AddOffsetsToTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if not ctx.authorize(_READ, ResourceType.GROUP, request.group_id):
        return AddOffsetsToTxnResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    groups = ctx.broker.groups
    try:
        groups.ensure_offsets_topic()
    except KafkaProtocolError:
        return AddOffsetsToTxnResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    offsets_partition = (OFFSETS_TOPIC, groups.partition_for(request.group_id))
    error = await ctx.broker.txn_coordinator.handle_add_partitions_to_transaction(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        [offsets_partition],
    )
    return AddOffsetsToTxnResponse(error_code=error)


# -- EndTxn -----------------------------------------------------------------------------------------


async def end_txn(ctx: RequestContext, request: EndTxnRequest) -> EndTxnResponse:
    if not ctx.authorize(_WRITE, _TXN_ID, request.transactional_id):
        return EndTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    result = await ctx.broker.txn_coordinator.handle_end_transaction(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        TransactionResult.COMMIT if request.committed else TransactionResult.ABORT,
        client_transaction_version=TV_2 if ctx.api_version > 4 else 0,
    )
    return EndTxnResponse(
        error_code=result.error_code,
        producer_id=result.producer_id,
        producer_epoch=result.producer_epoch,
    )


# -- WriteTxnMarkers --------------------------------------------------------------------------------


async def write_txn_markers(
    ctx: RequestContext, request: WriteTxnMarkersRequest
) -> WriteTxnMarkersResponse:
    allowed = ctx.authorize(AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME)
    markers = [
        TxnMarker(
            m.producer_id,
            m.producer_epoch,
            m.coordinator_epoch,
            MarkerResult.COMMIT if m.transaction_result else MarkerResult.ABORT,
            tuple((t.name, p) for t in m.topics for p in t.partition_indexes),
        )
        for m in request.markers
    ]
    if allowed:
        written = ctx.broker.txn_markers.write(markers)
    else:
        written = {
            m.producer_id: dict.fromkeys(m.partitions, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
            for m in markers
        }
    results = []
    for marker in markers:
        errors = written.get(marker.producer_id, {})
        topics: dict[str, list[WritableTxnMarkerPartitionResult]] = {}
        for topic, partition in marker.partitions:
            topics.setdefault(topic, []).append(
                WritableTxnMarkerPartitionResult(
                    partition_index=partition,
                    error_code=errors.get((topic, partition), ErrorCode.UNKNOWN_SERVER_ERROR),
                )
            )
        results.append(
            WritableTxnMarkerResult(
                producer_id=marker.producer_id,
                topics=[
                    WritableTxnMarkerTopicResult(name=name, partitions=partitions)
                    for name, partitions in topics.items()
                ],
            )
        )
    return WriteTxnMarkersResponse(markers=results)


HANDLES: dict[int, Handler] = {
    ApiKey.ADD_PARTITIONS_TO_TXN: add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: add_offsets_to_txn,
    ApiKey.END_TXN: end_txn,
    ApiKey.WRITE_TXN_MARKERS: write_txn_markers,
}
