"""Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.

Partitions are answered as the replica manager holds them: leader, leader epoch, replicas
and ISR (one broker today: itself, in the epoch its log recorded).  Which topics a request means (Kafka's rules): ``topics`` null
is all of them (v1+); an empty list is all of them in v0 and none after; entries name a topic
or, v10+, carry only its id.  An unknown topic is created when the request allows it (v4+;
always before), ``auto.create.topics.enable`` is on and its name is legal; Kafka answers such
a topic LEADER_NOT_AVAILABLE until its controller catches up, but here creation is
synchronous, so the new topic is returned ready and the client needs no retry.
"""

from __future__ import annotations

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.metadata.image import TopicImage
from kafkacompat.metadata.local_controller import validate_topic_name
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from kafkacompat.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kafkacompat.protocol.primitives import ZERO_UUID
from kafkacompat.security.authorizer import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorized_operations,
)

API_KEY = ApiKey.METADATA

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})

OPERATIONS_NOT_REQUESTED = -(2**31)


def _partition_metadata(broker: Broker, topic: TopicImage, index: int) -> MetadataResponsePartition:
    partition = broker.replica_manager.get_partition(topic.name, index)
    if partition is None:  # cannot happen while the replica manager follows the image
        return MetadataResponsePartition(
            error_code=ErrorCode.LEADER_NOT_AVAILABLE, partition_index=index, leader_id=-1
        )
    if partition.is_offline:
        # As KRaft answers a partition whose only replica's log dir failed: no leader, the
        # replica kept in the ISR (it is never shrunk to empty) and listed offline. The epoch
        # is not bumped as KRaft's controller would: nothing persists it, so after the restart
        # the epoch would go back, and clients ignore metadata older than what they saw.
        return MetadataResponsePartition(
            error_code=ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=index,
            leader_id=-1,
            leader_epoch=partition.leader_epoch,
            replica_nodes=list(partition.replicas),
            isr_nodes=list(partition.isr),
            offline_replicas=list(partition.replicas),
        )
    return MetadataResponsePartition(
        error_code=ErrorCode.NONE,
        partition_index=index,
        leader_id=partition.leader_id,
        leader_epoch=partition.leader_epoch,
        replica_nodes=list(partition.replicas),
        isr_nodes=list(partition.isr),
        offline_replicas=[],
    )


def topic_metadata(broker: Broker, topic: TopicImage, operations: int) -> MetadataResponseTopic:
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.name in INTERNAL_TOPICS,
        partitions=[_partition_metadata(broker, topic, i) for i in range(topic.partitions)],
        topic_authorized_operations=operations,
    )


def auto_create(broker: Broker, name: str) -> TopicImage:
    """Kafka's auto topic creation: ``num.partitions`` and no overrides."""
    return broker.controller.create_topic(name, broker.config.get("num.partitions"))


def _missing(name: str | None, error: ErrorCode) -> MetadataResponseTopic:
    return MetadataResponseTopic(error_code=error, name=name, topic_id=ZERO_UUID)


def _by_name(
    broker: Broker, name: str, allow_create: bool, operations: int
) -> MetadataResponseTopic:
    topic = broker.metadata.topic(name)
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
    topic_ops_wanted = version >= 8 and request.include_topic_authorized_operations
    cluster_ops = (
        authorized_operations(broker.authorizer, ctx.session, ResourceType.CLUSTER, CLUSTER_NAME)
        if 8 <= version <= 10 and request.include_cluster_authorized_operations
        else OPERATIONS_NOT_REQUESTED
    )

    def topic_ops(name: str) -> int:
        if not topic_ops_wanted:
            return OPERATIONS_NOT_REQUESTED
        return authorized_operations(broker.authorizer, ctx.session, ResourceType.TOPIC, name)

    allow_create = (version < 4 or request.allow_auto_topic_creation) and bool(
        broker.config.get("auto.create.topics.enable")
    )

    topics: list[MetadataResponseTopic] = []
    if request.topics is None or (version == 0 and not request.topics):
        # All topics: only those the session may DESCRIBE, as Kafka filters them.
        listed = list(broker.metadata.topics.values())
        visible = ctx.authorized(
            AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in listed)
        )
        topics = [
            topic_metadata(broker, topic, topic_ops(topic.name))
            for topic in listed
            if topic.name in visible
        ]
    else:
        for wanted in request.topics:
            if wanted.name is None:
                found = broker.metadata.topic_by_id(wanted.topic_id)
                if found is None:
                    topics.append(_missing(None, ErrorCode.UNKNOWN_TOPIC_ID))
                elif not ctx.authorize(AclOperation.DESCRIBE, ResourceType.TOPIC, found.name):
                    topics.append(_missing(None, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                else:
                    topics.append(topic_metadata(broker, found, topic_ops(found.name)))
            elif not ctx.authorize(AclOperation.DESCRIBE, ResourceType.TOPIC, wanted.name):
                topics.append(_missing(wanted.name, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
            else:
                create = allow_create and ctx.authorize(
                    AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME
                )
                topics.append(_by_name(broker, wanted.name, create, topic_ops(wanted.name)))

    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponseBroker(node_id=broker.node_id, host=host, port=port, rack=None)],
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=topics,
        cluster_authorized_operations=cluster_ops,
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
