"""Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.

One broker is the whole cluster: it leads every partition in leader epoch 0, and is the only
replica and the whole ISR.  Which topics a request means (Kafka's rules): ``topics`` null
is all of them (v1+); an empty list is all of them in v0 and none after; entries name a topic
or, v10+, carry only its id.  An unknown topic is created when the request allows it (v4+;
always before), ``auto.create.topics.enable`` is on and its name is legal; Kafka answers such
a topic LEADER_NOT_AVAILABLE until its controller catches up, but here creation is
synchronous, so the new topic is returned ready and the client needs no retry.
"""

from __future__ import annotations

from kafkacompat.broker import LEADER_EPOCH, Broker
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from kafkacompat.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kafkacompat.protocol.primitives import ZERO_UUID
from kafkacompat.storage.manager import Topic, validate_topic_name

API_KEY = ApiKey.METADATA

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})

# AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
# CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.  With no
# authorizer every operation a resource type supports is allowed.
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))
OPERATIONS_NOT_REQUESTED = -(2**31)


def topic_metadata(broker: Broker, topic: Topic, operations: int) -> MetadataResponseTopic:
    node = broker.node_id
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.name in INTERNAL_TOPICS,
        partitions=[
            MetadataResponsePartition(
                error_code=ErrorCode.NONE,
                partition_index=partition,
                leader_id=node,
                leader_epoch=LEADER_EPOCH,
                replica_nodes=[node],
                isr_nodes=[node],
                offline_replicas=[],
            )
            for partition in range(topic.partitions)
        ],
        topic_authorized_operations=operations,
    )


def auto_create(broker: Broker, name: str) -> Topic:
    """Kafka's auto topic creation: ``num.partitions`` and no overrides."""
    return broker.logs.create_topic(name, broker.config.get("num.partitions"))


def _missing(name: str | None, error: ErrorCode) -> MetadataResponseTopic:
    return MetadataResponseTopic(error_code=error, name=name, topic_id=ZERO_UUID)


def _by_name(
    broker: Broker, name: str, allow_create: bool, operations: int
) -> MetadataResponseTopic:
    topic = broker.logs.topics().get(name)
    if topic is not None:
        return topic_metadata(broker, topic, operations)
    if not allow_create or name in INTERNAL_TOPICS:
        return _missing(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    try:
        validate_topic_name(name)
        return topic_metadata(broker, auto_create(broker, name), operations)
    except KafkaProtocolError as exc:
        return _missing(name, exc.error_code)


async def handle(ctx: RequestContext, request: MetadataRequest) -> MetadataResponse:
    broker = ctx.broker
    version = ctx.api_version
    host, port = broker.advertised_host_port
    topic_ops = (
        TOPIC_OPERATIONS
        if version >= 8 and request.include_topic_authorized_operations
        else OPERATIONS_NOT_REQUESTED
    )
    cluster_ops = (
        CLUSTER_OPERATIONS
        if 8 <= version <= 10 and request.include_cluster_authorized_operations
        else OPERATIONS_NOT_REQUESTED
    )
    allow_create = (version < 4 or request.allow_auto_topic_creation) and bool(
        broker.config.get("auto.create.topics.enable")
    )

    topics: list[MetadataResponseTopic] = []
    if request.topics is None or (version == 0 and not request.topics):
        topics = [
            topic_metadata(broker, topic, topic_ops)
            for topic in list(broker.logs.topics().values())
        ]
    else:
        for wanted in request.topics:
            if wanted.name is None:
                found = broker.logs.topic_by_id(wanted.topic_id)
                topics.append(
                    _missing(None, ErrorCode.UNKNOWN_TOPIC_ID)
                    if found is None
                    else topic_metadata(broker, found, topic_ops)
                )
            else:
                topics.append(_by_name(broker, wanted.name, allow_create, topic_ops))

    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponseBroker(node_id=broker.node_id, host=host, port=port, rack=None)],
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=topics,
        cluster_authorized_operations=cluster_ops,
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
