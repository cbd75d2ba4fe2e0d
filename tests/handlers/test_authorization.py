"""Every data and admin handler asks the authorizer, with Kafka's operation and resource, and
answers Kafka's *_AUTHORIZATION_FAILED where it says no (the group APIs: test_groups.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.create_partitions_request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kafkacompat.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from kafkacompat.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from kafkacompat.protocol.messages.delete_topics_request import DeleteTopicsRequest
from kafkacompat.protocol.messages.describe_cluster_request import DescribeClusterRequest
from kafkacompat.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest
from kafkacompat.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.records.builder import RecordBatchBuilder
from kafkacompat.security.authorizer import AclOperation, Action, ResourceType
from kafkacompat.security.session import Session
from tests.handlers.helpers import call, running_broker

T = ResourceType.TOPIC
CLUSTER = ResourceType.CLUSTER


class Denying:
    """Says no to the listed (operation, resource type, name) triples, yes to all else, and
    remembers what it was asked."""

    def __init__(self, *denied: tuple[AclOperation, ResourceType, str]) -> None:
        self.denied = set(denied)
        self.asked: list[Action] = []

    def authorize(self, session: Session, actions: Sequence[Action]) -> list[bool]:
        self.asked.extend(actions)
        return [(a.operation, a.resource_type, a.resource_name) not in self.denied for a in actions]


@pytest.fixture
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        started.controller.create_topic("open", 1)
        started.controller.create_topic("secret", 1)
        yield started


def deny(broker: Broker, *denied: tuple[AclOperation, ResourceType, str]) -> Denying:
    authorizer = Denying(*denied)
    broker.authorizer = authorizer
    return authorizer


def records() -> bytes:
    builder = RecordBatchBuilder()
    builder.append(b"v", timestamp=1_700_000_000_000, key=b"k")
    return builder.build()


def test_produce_needs_write_on_each_topic(broker: Broker) -> None:
    deny(broker, (AclOperation.WRITE, T, "secret"))
    request = ProduceRequest(
        acks=1,
        timeout_ms=1000,
        topic_data=[
            TopicProduceData(name=name, partition_data=[PartitionProduceData(0, records())])
            for name in ("open", "secret")
        ],
    )
    response = call(broker, request, 11)
    codes = {t.name: t.partition_responses[0].error_code for t in response.responses}
    assert codes == {"open": ErrorCode.NONE, "secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}
    assert broker.replica_manager.get_partition_or_error("secret", 0).log_end_offset == 0


def test_fetch_and_list_offsets_need_read_and_describe(broker: Broker) -> None:
    deny(broker, (AclOperation.READ, T, "secret"), (AclOperation.DESCRIBE, T, "secret"))
    fetch = FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=1 << 20,
        topics=[
            FetchTopic(topic=name, partitions=[FetchPartition(0, fetch_offset=0)])
            for name in ("open", "secret")
        ],
    )
    response = call(broker, fetch, 12)
    codes = {t.topic: t.partitions[0].error_code for t in response.responses}
    assert codes == {"open": ErrorCode.NONE, "secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}
    listing = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(name=n, partitions=[ListOffsetsPartition(0, timestamp=-1)])
            for n in ("open", "secret")
        ],
    )
    response = call(broker, listing, 9)
    codes = {t.name: t.partitions[0].error_code for t in response.topics}
    assert codes == {"open": ErrorCode.NONE, "secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}


def test_metadata_hides_and_refuses_undescribable_topics(broker: Broker) -> None:
    authorizer = deny(broker, (AclOperation.DESCRIBE, T, "secret"))
    every = call(broker, MetadataRequest(topics=None), 12)
    assert [t.name for t in every.topics] == ["open"]
    named = call(broker, MetadataRequest(topics=[MetadataRequestTopic(name="secret")]), 12)
    assert named.topics[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    ops = call(
        broker,
        MetadataRequest(
            topics=[MetadataRequestTopic(name="open")], include_topic_authorized_operations=True
        ),
        10,
    )
    # Every operation a topic supports but none denied: READ WRITE CREATE DELETE ALTER
    # DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS.
    assert ops.topics[0].topic_authorized_operations == sum(
        1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11)
    )
    assert Action(AclOperation.DESCRIBE, T, "secret") in authorizer.asked


def test_auto_creation_needs_create_on_the_cluster(broker: Broker) -> None:
    deny(broker, (AclOperation.CREATE, CLUSTER, "kafka-cluster"))
    response = call(broker, MetadataRequest(topics=[MetadataRequestTopic(name="fresh")]), 12)
    assert response.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert broker.metadata.topic("fresh") is None


def test_admin_apis_ask_kafkas_questions(broker: Broker) -> None:
    deny(
        broker,
        (AclOperation.CREATE, CLUSTER, "kafka-cluster"),
        (AclOperation.CREATE, T, "new-secret"),
        (AclOperation.DELETE, T, "secret"),
        (AclOperation.ALTER, T, "secret"),
        (AclOperation.DESCRIBE_CONFIGS, T, "secret"),
        (AclOperation.DESCRIBE, CLUSTER, "kafka-cluster"),
        (AclOperation.IDEMPOTENT_WRITE, CLUSTER, "kafka-cluster"),
    )
    created = call(
        broker,
        CreateTopicsRequest(
            topics=[
                CreatableTopic(name=n, num_partitions=1, replication_factor=-1)
                for n in ("new-open", "new-secret")
            ],
            timeout_ms=1000,
        ),
        7,
    )
    codes = {t.name: t.error_code for t in created.topics}
    assert codes == {"new-open": ErrorCode.NONE, "new-secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}
    grown = call(
        broker,
        CreatePartitionsRequest(
            topics=[CreatePartitionsTopic(name="secret", count_=2)], timeout_ms=1000
        ),
        3,
    )
    assert grown.results[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    trimmed = call(
        broker,
        DeleteRecordsRequest(
            topics=[DeleteRecordsTopic(name="secret", partitions=[DeleteRecordsPartition(0, -1)])],
            timeout_ms=1000,
        ),
        2,
    )
    assert trimmed.topics[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    described = call(
        broker,
        DescribeConfigsRequest(
            resources=[DescribeConfigsResource(2, "secret"), DescribeConfigsResource(2, "open")]
        ),
        4,
    )
    assert [r.error_code for r in described.results] == [ErrorCode.TOPIC_AUTHORIZATION_FAILED, 0]
    cluster = call(broker, DescribeClusterRequest(), 1)
    assert cluster.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    producer = call(
        broker, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000), 5
    )
    assert producer.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    deleted = call(broker, DeleteTopicsRequest(topic_names=["secret"], timeout_ms=1000), 5)
    assert deleted.responses[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert broker.metadata.topic("secret") is not None
