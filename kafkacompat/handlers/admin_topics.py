"""CreateTopics (key 19, v0-7), DeleteTopics (20, v0-6), CreatePartitions (37, v0-3) and
DeleteRecords (21, v0-2), answered as a single-node KRaft cluster answers them.

This broker is the controller and the only replica, so a replication factor above one, or a
manual assignment naming any other broker, is refused with the controller's own messages
(``ReplicationControlManager``, ``ControllerApis``).  Checks run in the controller's order:
duplicate names in the request, the name, existence, then partitions and replicas, then
configs.  Topic changes are synchronous, so ``timeout_ms`` never expires.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

from kafkacompat.broker import Broker
from kafkacompat.dynamic_config import load_dynamic_broker_configs
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.configs import Refused, topic_config_rows
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.metadata.image import TopicImage
from kafkacompat.metadata.local_controller import collision_key, validate_topic_name
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.create_partitions_request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kafkacompat.protocol.messages.create_partitions_response import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from kafkacompat.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from kafkacompat.protocol.messages.create_topics_response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from kafkacompat.protocol.messages.delete_records_request import DeleteRecordsRequest
from kafkacompat.protocol.messages.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from kafkacompat.protocol.messages.delete_topics_request import DeleteTopicsRequest
from kafkacompat.protocol.messages.delete_topics_response import (
    DeletableTopicResult,
    DeleteTopicsResponse,
)
from kafkacompat.protocol.primitives import ZERO_UUID
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType
from kafkacompat.storage.config import LogConfig

CLUSTER_METADATA_TOPIC = "__cluster_metadata"
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})
HIGH_WATERMARK = -1
"""DeleteRecords' offset meaning "up to the high watermark"."""
INVALID_LOW_WATERMARK = -1

DUPLICATE_NAME = "Duplicate topic name."


def _duplicates(names: Iterable[str | None]) -> list[str]:
    counts = Counter(names)
    return [name for name, n in counts.items() if n > 1 and name is not None]


# -- CreateTopics -------------------------------------------------------------------------------


def _check_assignment(node_id: int, broker_ids: Sequence[int], replicas: int | None) -> None:
    """ReplicationControlManager.validateManualPartitionAssignment with one registered broker."""
    if not broker_ids:
        raise Refused(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        )
    previous = None
    for broker_id in sorted(broker_ids):
        if broker_id != node_id:
            raise Refused(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {broker_id}, but no such "
                "broker is registered.",
            )
        if broker_id == previous:
            raise Refused(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes the broker {broker_id} more than once.",
            )
        previous = broker_id
    if replicas is not None and len(broker_ids) != replicas:
        raise Refused(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes a partition with {len(broker_ids)} "
            "replica(s), but this is not consistent with previous partitions, which have "
            f"{replicas} replica(s).",
        )


def _unreplicable(replicas: int) -> Refused:
    return Refused(
        ErrorCode.INVALID_REPLICATION_FACTOR,
        f"Unable to replicate the partition {replicas} time(s): The target replication factor "
        f"of {replicas} cannot be reached because only 1 broker(s) are registered.",
    )


def _partition_count(broker: Broker, topic: CreatableTopic) -> int:
    if topic.assignments:
        if topic.replication_factor != -1:
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but replication factor was not "
                "set to -1.",
            )
        if topic.num_partitions != -1:
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            )
        seen: set[int] = set()
        replicas: int | None = None
        for assignment in topic.assignments:
            if assignment.partition_index in seen:
                raise Refused(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    "Found multiple manual partition assignments for partition "
                    f"{assignment.partition_index}",
                )
            _check_assignment(broker.node_id, assignment.broker_ids, replicas)
            replicas = len(assignment.broker_ids)
            seen.add(assignment.partition_index)
        if seen != set(range(len(seen))):
            raise Refused(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "partitions should be a consecutive 0-based integer sequence",
            )
        return len(seen)
    if topic.replication_factor < -1 or topic.replication_factor == 0:
        raise Refused(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        )
    if topic.num_partitions < -1 or topic.num_partitions == 0:
        raise Refused(
            ErrorCode.INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive value.",
        )
    replication = topic.replication_factor
    if replication == -1:
        replication = int(broker.config.get("default.replication.factor"))
    if replication > 1:
        raise _unreplicable(replication)
    if topic.num_partitions == -1:
        return int(broker.config.get("num.partitions"))
    return topic.num_partitions


def _create(broker: Broker, topic: CreatableTopic, validate_only: bool) -> tuple[TopicImage, int]:
    name = topic.name
    if name == CLUSTER_METADATA_TOPIC:
        raise Refused(
            ErrorCode.INVALID_REQUEST, f"Creation of internal topic {name} is prohibited."
        )
    try:
        validate_topic_name(name)
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None
    if name in broker.metadata.topics:
        raise Refused(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
    # '.' and '_' collide in metric names; the controller checks this with the name, before
    # the partitions.
    key = collision_key(name)
    colliding = next((t for t in broker.metadata.topics if collision_key(t) == key), None)
    if colliding is not None:
        raise Refused(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic '{name}' collides with existing topic: {colliding}",
        )
    partitions = _partition_count(broker, topic)
    nulls = [c.name for c in topic.configs if c.value is None]
    if nulls:
        raise Refused(
            ErrorCode.INVALID_CONFIG,
            "Null value not supported for topic configs: " + ",".join(nulls),
        )
    configs = {c.name: c.value for c in topic.configs if c.value is not None}
    try:
        created = broker.controller.create_topic(
            name, partitions, configs, validate_only=validate_only
        )
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None
    return created, partitions


def _created(broker: Broker, topic: TopicImage, partitions: int) -> CreatableTopicResult:
    config = LogConfig.from_props(topic.configs, broker.controller.broker_config)
    return CreatableTopicResult(
        name=topic.name,
        topic_id=topic.topic_id,
        error_code=ErrorCode.NONE,
        error_message=None,
        num_partitions=partitions,
        replication_factor=1,
        configs=[
            CreatableTopicConfigs(
                name=row.name,
                value=row.value,
                read_only=row.read_only,
                config_source=row.config_source,
                is_sensitive=row.is_sensitive,
            )
            for row in topic_config_rows(broker, config, include_synonyms=False, for_create=True)
        ],
    )


async def create_topics(ctx: RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse:
    broker = ctx.broker
    load_dynamic_broker_configs(broker)
    validate_only = ctx.api_version >= 1 and request.validate_only
    duplicates = _duplicates(t.name for t in request.topics)
    # Kafka's rule: CREATE on the cluster, or else CREATE on each topic.
    creatable = (
        {t.name for t in request.topics}
        if ctx.authorize(AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME)
        else ctx.authorized(
            AclOperation.CREATE, ResourceType.TOPIC, (t.name for t in request.topics)
        )
    )
    results = []
    for topic in request.topics:
        if topic.name in duplicates:
            continue
        if topic.name not in creatable:
            results.append(
                CreatableTopicResult(
                    name=topic.name,
                    error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                    error_message="Authorization failed.",
                )
            )
            continue
        try:
            created, partitions = _create(broker, topic, validate_only)
        except Refused as refusal:
            results.append(
                CreatableTopicResult(
                    name=topic.name, error_code=refusal.code, error_message=refusal.message
                )
            )
        else:
            results.append(_created(broker, created, partitions))
    # ControllerApis answers the duplicates after the topics it passed to the controller.
    results += [
        CreatableTopicResult(
            name=name, error_code=ErrorCode.INVALID_REQUEST, error_message=DUPLICATE_NAME
        )
        for name in duplicates
    ]
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


# -- DeleteTopics -------------------------------------------------------------------------------


def _deletion_result(
    name: str | None, topic_id: uuid.UUID, code: ErrorCode, message: str | None = None
) -> DeletableTopicResult:
    return DeletableTopicResult(
        name=name, topic_id=topic_id, error_code=code, error_message=message
    )


async def delete_topics(ctx: RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse:
    """ControllerApis.deleteTopics: duplicates and malformed entries first, then ids resolved to
    names, then names; what is left is deleted."""
    broker = ctx.broker
    if ctx.api_version >= 6:
        entries = [(t.name, t.topic_id) for t in request.topics]
    else:
        entries = [(name, ZERO_UUID) for name in request.topic_names]
    if not broker.config.get("delete.topic.enable"):
        # Thrown for the whole request; every topic gets the same error.
        if ctx.api_version < 3:
            code, message = ErrorCode.INVALID_REQUEST, "Topic deletion is disabled."
        else:
            code, message = ErrorCode.TOPIC_DELETION_DISABLED, None
        return DeleteTopicsResponse(
            throttle_time_ms=0,
            responses=[_deletion_result(n, i, code, message) for n, i in entries],
        )
    responses: list[DeletableTopicResult] = []
    names: list[str] = []
    ids: list[uuid.UUID] = []
    for name, topic_id in entries:
        if name is None and topic_id == ZERO_UUID:
            responses.append(
                _deletion_result(
                    None, ZERO_UUID, ErrorCode.INVALID_REQUEST,
                    "Neither topic name nor id were specified.",
                )
            )  # fmt: skip
        elif name is not None and topic_id != ZERO_UUID:
            responses.append(
                _deletion_result(
                    name, topic_id, ErrorCode.INVALID_REQUEST,
                    "You may not specify both topic name and topic id.",
                )
            )  # fmt: skip
        elif name is not None:
            names.append(name)
        else:
            ids.append(topic_id)
    duplicate_names = set(_duplicates(names))
    duplicate_ids = {i for i, n in Counter(ids).items() if n > 1}
    responses += [
        _deletion_result(n, ZERO_UUID, ErrorCode.INVALID_REQUEST, DUPLICATE_NAME)
        for n in dict.fromkeys(n for n in names if n in duplicate_names)
    ]
    responses += [
        _deletion_result(None, i, ErrorCode.INVALID_REQUEST, "Duplicate topic id.")
        for i in dict.fromkeys(i for i in ids if i in duplicate_ids)
    ]
    to_delete: dict[uuid.UUID, str] = {}
    for topic_id in dict.fromkeys(i for i in ids if i not in duplicate_ids):
        found = broker.metadata.topic_by_id(topic_id)
        if found is None:
            responses.append(
                _deletion_result(
                    None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID,
                    "This server does not host this topic ID.",
                )
            )  # fmt: skip
        else:
            to_delete[topic_id] = found.name
    for name in dict.fromkeys(n for n in names if n not in duplicate_names):
        found_topic = broker.metadata.topic(name)
        if found_topic is None:
            responses.append(
                _deletion_result(
                    name, ZERO_UUID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    "This server does not host this topic-partition.",
                )
            )  # fmt: skip
        elif found_topic.topic_id in to_delete:
            # Kafka drops the id's own entry too and answers only this one.
            del to_delete[found_topic.topic_id]
            responses.append(
                _deletion_result(
                    name, found_topic.topic_id, ErrorCode.INVALID_REQUEST,
                    "The provided topic name maps to an ID that was already supplied.",
                )
            )  # fmt: skip
        else:
            to_delete[found_topic.topic_id] = name
    deletable = ctx.authorized(AclOperation.DELETE, ResourceType.TOPIC, to_delete.values())
    for topic_id, name in to_delete.items():
        if name not in deletable:
            responses.append(_deletion_result(name, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
            continue
        # The replica manager drops the logs; the group coordinator the committed offsets.
        broker.controller.delete_topic(name)
        responses.append(_deletion_result(name, topic_id, ErrorCode.NONE))
    return DeleteTopicsResponse(throttle_time_ms=0, responses=responses)


# -- CreatePartitions ---------------------------------------------------------------------------


def _grow(broker: Broker, request: CreatePartitionsTopic, validate_only: bool) -> None:
    topic = broker.metadata.topic(request.name)
    if topic is None:
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    current, wanted = topic.partitions, request.count_
    if wanted == current:
        raise Refused(ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s).")
    if wanted < current:
        raise Refused(
            ErrorCode.INVALID_PARTITIONS,
            f"The topic {request.name} currently has {current} partition(s); {wanted} would "
            "not be an increase.",
        )
    additional = wanted - current
    if request.assignments is not None:
        if len(request.assignments) != additional:
            raise Refused(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Attempted to add {additional} additional partition(s), but only "
                f"{len(request.assignments)} assignment(s) were specified.",
            )
        for assignment in request.assignments:
            _check_assignment(broker.node_id, assignment.broker_ids, 1)
    try:
        broker.controller.create_partitions(request.name, wanted, validate_only=validate_only)
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None


async def create_partitions(
    ctx: RequestContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    duplicates = _duplicates(t.name for t in request.topics)
    # ControllerApis answers the duplicates first, then what the controller did.
    results = [
        CreatePartitionsTopicResult(
            name=name, error_code=ErrorCode.INVALID_REQUEST, error_message=DUPLICATE_NAME
        )
        for name in duplicates
    ]
    alterable = ctx.authorized(
        AclOperation.ALTER, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    for topic in request.topics:
        if topic.name in duplicates:
            continue
        result = CreatePartitionsTopicResult(
            name=topic.name, error_code=ErrorCode.NONE, error_message=None
        )
        if topic.name not in alterable:
            result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            result.error_message = "Authorization failed."
            results.append(result)
            continue
        try:
            _grow(ctx.broker, topic, request.validate_only)
        except Refused as refusal:
            result.error_code, result.error_message = refusal.code, refusal.message
        results.append(result)
    return CreatePartitionsResponse(throttle_time_ms=0, results=results)


# -- DeleteRecords ------------------------------------------------------------------------------


def _delete_before(broker: Broker, topic: str, partition: int, offset: int) -> int:
    """Partition.deleteRecordsOnLeader: returns the new low watermark (log start offset)."""
    if topic in INTERNAL_TOPICS:
        raise Refused(
            ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot delete records of internal topic {topic}"
        )
    found = broker.replica_manager.get_partition(topic, partition)
    if found is None:
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if not found.log.config.delete:
        raise Refused(
            ErrorCode.POLICY_VIOLATION,
            f"Records of partition {topic}-{partition} can not be deleted due to the "
            "configured policy",
        )
    if offset == HIGH_WATERMARK:
        offset = found.high_watermark
    if offset < 0:
        raise Refused(
            ErrorCode.OFFSET_OUT_OF_RANGE,
            f"The offset {offset} for partition {topic}-{partition} is not valid",
        )
    try:
        return found.delete_records_on_leader(offset)
    except KafkaProtocolError as exc:
        raise Refused.of(exc) from None


async def delete_records(
    ctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    topics = []
    deletable = ctx.authorized(
        AclOperation.DELETE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            result = DeleteRecordsPartitionResult(
                partition_index=p.partition_index,
                low_watermark=INVALID_LOW_WATERMARK,
                error_code=ErrorCode.NONE,
            )
            if topic.name not in deletable:
                result.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                partitions.append(result)
                continue
            try:
                result.low_watermark = _delete_before(
                    ctx.broker, topic.name, p.partition_index, p.offset
                )
            except Refused as refusal:
                result.error_code = refusal.code
            partitions.append(result)
        topics.append(DeleteRecordsTopicResult(name=topic.name, partitions=partitions))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)


HANDLES: dict[int, Handler] = {
    ApiKey.CREATE_TOPICS: create_topics,
    ApiKey.DELETE_TOPICS: delete_topics,
    ApiKey.CREATE_PARTITIONS: create_partitions,
    ApiKey.DELETE_RECORDS: delete_records,
}
