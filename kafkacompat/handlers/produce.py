"""Produce (key 0), v3+: append producers' record batches to partition logs.

Each partition's records blob is appended whole or not at all, and answered on its own: one
bad partition does not fail the others.  The append is the replica manager's, down the log's
one leader path (:mod:`kafkacompat.storage.unified_log`): the validator (CRC, sizes,
timestamps, keys on compacted topics, recompression), the producer state (a retried batch is
answered with its original offsets and written nothing; a gap or an old epoch is refused),
the engine.  Records the validator refuses by name come back as KIP-467 ``record_errors``.
Authorization: WRITE on each topic (TOPIC_AUTHORIZATION_FAILED), as Kafka's.

acks: 0 sends no response (an error then closes the connection, as Kafka does, so the
client notices); 1 and -1 answer after the append; with one replica they mean the same.
Produce v0-2 carry legacy message formats that Kafka 4.0 dropped (KIP-896): not advertised.
"""

from __future__ import annotations

import struct
from typing import Final

from kafkacompat.cluster.partition import Partition
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import CloseConnection, Handler, RequestContext
from kafkacompat.handlers.metadata import INTERNAL_TOPICS
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.produce_request import ProduceRequest
from kafkacompat.protocol.messages.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from kafkacompat.security.authorizer import AclOperation, ResourceType

API_KEY = ApiKey.PRODUCE

_VALID_ACKS = (0, 1, -1)
_BATCH_LENGTH = struct.Struct(">i")  # after the 8-byte base offset; excludes those 12 bytes
_BATCH_LENGTH_END = 12
_ATTRIBUTES = struct.Struct(">h")
_ATTRIBUTES_AT = 21  # base offset 8, length 4, leader epoch 4, magic 1, crc 4
_TRANSACTIONAL = 0x10
_PRODUCER = struct.Struct(">qh")  # producer id and epoch
_PRODUCER_AT = 43


def _has_transactional_records(request: ProduceRequest) -> bool:
    for topic_data in request.topic_data:
        for partition_data in topic_data.partition_data:
            records = partition_data.records
            if records is not None and len(records) > _ATTRIBUTES_AT + 1:
                (attributes,) = _ATTRIBUTES.unpack_from(records, _ATTRIBUTES_AT)
                if attributes & _TRANSACTIONAL:
                    return True
    return False


def _is_transactional(records: memoryview) -> bool:
    if len(records) <= _ATTRIBUTES_AT + 1:
        return False
    (attributes,) = _ATTRIBUTES.unpack_from(records, _ATTRIBUTES_AT)
    return bool(attributes & _TRANSACTIONAL)


# What Kafka's ReplicaManager answers when a transaction's partition cannot be verified.
_VERIFY_RETRIABLE: Final = frozenset(
    {
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
    }
)
_VERIFY_MESSAGES: Final = {
    ErrorCode.INVALID_TXN_STATE: "Partition was not added to the transaction",
}


def verify_transaction(
    ctx: RequestContext, transactional_id: str, partition: Partition, records: memoryview
) -> ErrorCode:
    """KIP-890's server-side defence: a transactional batch that would start a transaction in
    this partition is appended only if the coordinator has the partition in the producer's
    transaction, so a late or hanging write cannot open a transaction no marker will close.
    The coordinator is local and the answer synchronous, so nothing can change between this
    check and the append (Kafka's verification guard closes that window across brokers)."""
    producer_id, producer_epoch = _PRODUCER.unpack_from(records, _PRODUCER_AT)
    entry = partition.log.producer_state(None).last_entry(producer_id)
    if (
        entry is not None
        and entry.producer_epoch == producer_epoch
        and entry.current_txn_first_offset is not None
    ):
        return ErrorCode.NONE  # already in an open transaction here
    tp = (partition.topic, partition.index)
    error = ctx.broker.txn_coordinator.handle_verify_partitions_in_transaction(
        transactional_id, producer_id, producer_epoch, [tp]
    ).get(tp, ErrorCode.NONE)
    if error == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if error == ErrorCode.TRANSACTION_ABORTABLE and ctx.api_version <= 10:
        return ErrorCode.INVALID_TXN_STATE  # clients before produce v11 do not know it
    if error in _VERIFY_RETRIABLE:
        # Older clients may not retry these; this one they retry without a metadata refresh.
        return ErrorCode.NOT_ENOUGH_REPLICAS
    return error


def _error(index: int, error: ErrorCode, message: str | None = None) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index, error_code=error, base_offset=-1, error_message=message
    )


def append_partition(
    ctx: RequestContext, partition: Partition, records: memoryview | None, now_ms: int
) -> PartitionProduceResponse:
    index = partition.index
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
    try:
        info = ctx.broker.replica_manager.append_records(partition, records, now_ms=now_ms)
    except KafkaProtocolError as exc:
        if not exc.record_errors:
            return _error(index, exc.error_code, str(exc))
        # KIP-467: the records that failed, each with its index in the batch.
        return PartitionProduceResponse(
            index=index,
            error_code=exc.error_code,
            base_offset=-1,
            log_start_offset=partition.log_start_offset,
            record_errors=[
                BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=why)
                for i, why in exc.record_errors
            ],
            error_message=str(exc),
        )
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
    replicas = broker.replica_manager
    writable = ctx.authorized(
        AclOperation.WRITE, ResourceType.TOPIC, (t.name for t in request.topic_data)
    )
    responses: list[TopicProduceResponse] = []
    failed = False
    transactional_id = request.transactional_id
    if _has_transactional_records(request) and (
        transactional_id is None
        or not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id)
    ):
        # Kafka's handleProduceRequest answers the whole request with this.
        responses = [
            TopicProduceResponse(
                name=t.name,
                partition_responses=[
                    _error(p.index, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                    for p in t.partition_data
                ],
            )
            for t in request.topic_data
        ]
        if acks == 0:
            raise CloseConnection("an acks=0 produce failed")
        return ProduceResponse(responses=responses, throttle_time_ms=0)
    verify = transactional_id is not None and broker.config.get(
        "transaction.partition.verification.enable"
    )
    for topic_data in request.topic_data:
        name = topic_data.name
        partitions: list[PartitionProduceResponse] = []
        for partition_data in topic_data.partition_data:
            index = partition_data.index
            partition = replicas.get_partition(name, index)
            if acks not in _VALID_ACKS:
                result = _error(index, ErrorCode.INVALID_REQUIRED_ACKS)
            elif name not in writable:
                result = _error(index, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            elif partition is None:
                result = _error(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            elif name in INTERNAL_TOPICS:
                # Only the broker's own coordinators write internal topics.
                result = _error(
                    index,
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"Cannot append to internal topic {name}",
                )
            else:
                records = partition_data.records
                view = None if records is None else memoryview(records)
                if view is not None and view.readonly:
                    # The server hands over writable frames; anything else is copied once
                    # because the log stamps offsets into the batches in place.
                    view = memoryview(bytearray(view))
                error = ErrorCode.NONE
                if verify and view is not None and _is_transactional(view):
                    assert transactional_id is not None
                    error = verify_transaction(ctx, transactional_id, partition, view)
                if error != ErrorCode.NONE:
                    result = _error(index, error, _VERIFY_MESSAGES.get(error))
                else:
                    result = append_partition(ctx, partition, view, now_ms)
            failed = failed or result.error_code != ErrorCode.NONE
            partitions.append(result)
        responses.append(TopicProduceResponse(name=name, partition_responses=partitions))
    if acks == 0:
        if failed:
            raise CloseConnection("an acks=0 produce failed")
        return None
    return ProduceResponse(responses=responses, throttle_time_ms=0)


HANDLES: dict[int, Handler] = {API_KEY: handle}
