"""InitProducerId (key 22): producer ids for idempotent producers.

Without a transactional id, every call gets a fresh producer id with epoch 0 (Kafka's
TransactionCoordinator does the same; KIP-360's epoch bump applies only to transactional
producers), from blocks persisted so that ids never repeat across restarts.  Transactions
are not implemented: a transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
which clients treat as fatal instead of retrying forever.
"""

from __future__ import annotations

import logging

from kafkacompat.coordinators.producer_ids import init_producer_id
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest
from kafkacompat.protocol.messages.init_producer_id_response import InitProducerIdResponse
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

log = logging.getLogger(__name__)

API_KEY = ApiKey.INIT_PRODUCER_ID


async def handle(ctx: RequestContext, request: InitProducerIdRequest) -> InitProducerIdResponse:
    if request.transactional_id:
        log.warning(
            "client %s asked for transactional id %r: transactions are not supported",
            ctx.client_id,
            request.transactional_id,
        )
        return InitProducerIdResponse(
            error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id=-1,
            producer_epoch=-1,
        )
    if not ctx.authorize(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME):
        return InitProducerIdResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1
        )
    producer_id, producer_epoch = -1, -1
    if ctx.api_version >= 3:
        producer_id, producer_epoch = request.producer_id, request.producer_epoch
    result = init_producer_id(
        ctx.broker.producer_ids,
        transactional_id=request.transactional_id,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )
    return InitProducerIdResponse(
        error_code=result.error_code,
        producer_id=result.producer_id,
        producer_epoch=result.producer_epoch,
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
