"""InitProducerId (key 22): producer ids for idempotent and transactional producers.

Without a transactional id, every call gets a fresh producer id with epoch 0 (Kafka's
TransactionCoordinator does the same; KIP-360's epoch bump applies only to transactional
producers), from blocks persisted so that ids never repeat across restarts; IDEMPOTENT_WRITE
on the cluster is asked, as Kafka asks it.

With one, the transaction coordinator answers: the id's producer id with its epoch bumped
(fencing any older instance), an open transaction aborted first (CONCURRENT_TRANSACTIONS until
that is done), ``transaction.timeout.ms`` checked against ``transaction.max.timeout.ms``, and
(v3+, KIP-360) a producer that still knows its id and epoch recovering them after an abort.
WRITE on the transactional id is asked (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from kafkacompat.coordinators.producer_ids import init_producer_id
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest
from kafkacompat.protocol.messages.init_producer_id_response import InitProducerIdResponse
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

API_KEY = ApiKey.INIT_PRODUCER_ID


def _error(error: ErrorCode) -> InitProducerIdResponse:
    return InitProducerIdResponse(
        error_code=error, producer_id=NO_PRODUCER_ID, producer_epoch=NO_PRODUCER_EPOCH
    )


async def _transactional(
    ctx: RequestContext, request: InitProducerIdRequest, transactional_id: str
) -> InitProducerIdResponse:
    if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
        return _error(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    expected: tuple[int, int] | None = None
    if ctx.api_version >= 3:
        producer_id, producer_epoch = request.producer_id, request.producer_epoch
        if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
            return _error(ErrorCode.INVALID_REQUEST)  # both or neither, as Kafka's
        if producer_id != NO_PRODUCER_ID:
            expected = (producer_id, producer_epoch)
    result = await ctx.broker.txn_coordinator.handle_init_producer_id(
        transactional_id, request.transaction_timeout_ms, expected
    )
    return InitProducerIdResponse(
        error_code=result.error_code,
        producer_id=result.producer_id,
        producer_epoch=result.producer_epoch,
    )


async def handle(ctx: RequestContext, request: InitProducerIdRequest) -> InitProducerIdResponse:
    if request.transactional_id is not None:
        return await _transactional(ctx, request, request.transactional_id)
    if not ctx.authorize(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME):
        return _error(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    producer_id, producer_epoch = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
    if ctx.api_version >= 3:
        producer_id, producer_epoch = request.producer_id, request.producer_epoch
    result = init_producer_id(
        ctx.broker.producer_ids,
        transactional_id=None,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )
    return InitProducerIdResponse(
        error_code=result.error_code,
        producer_id=result.producer_id,
        producer_epoch=result.producer_epoch,
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
