"""CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords through the handler table,
at the oldest and newest versions, on the memory and disk engines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.create_partitions_request import (
    CreatePartitionsAssignment,
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kafkacompat.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from kafkacompat.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from kafkacompat.protocol.messages.delete_topics_request import (
    DeleteTopicsRequest,
    DeleteTopicState,
)
from kafkacompat.protocol.primitives import ZERO_UUID
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.config import TOPIC_CONFIGS, ConfigSource
from kafkacompat.storage.manager import Engine
from tests.handlers.helpers import call, running_broker


@pytest.fixture(params=["memory", "disk"])
def engine(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.param
    return engine


@pytest.fixture
def broker(tmp_path: Path, engine: Engine) -> Iterator[Broker]:
    with running_broker(tmp_path, engine=engine, num_partitions="3") as started:
        yield started


def topic(
    name: str,
    partitions: int = 1,
    replication: int = 1,
    configs: dict[str, str | None] | None = None,
    assignments: list[list[int]] | None = None,
) -> CreatableTopic:
    return CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=replication,
        assignments=[
            CreatableReplicaAssignment(partition_index=i, broker_ids=ids)
            for i, ids in enumerate(assignments or [])
        ],
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )


def create(broker: Broker, version: int, *topics: CreatableTopic, validate_only: bool = False):  # type: ignore[no-untyped-def]
    request = CreateTopicsRequest(topics=list(topics), timeout_ms=1000, validate_only=validate_only)
    return {t.name: t for t in call(broker, request, version).topics}


def produce(broker: Broker, name: str, partition: int, batches: int, per_batch: int = 2) -> None:
    replicas = broker.replica_manager
    leader = replicas.get_partition_or_error(name, partition)
    now = broker.now_ms()
    for b in range(batches):
        builder = RecordBatchBuilder()
        for i in range(per_batch):
            builder.append(b"value-%d-%d" % (b, i), timestamp=now, key=None)
        replicas.append_records(leader, bytearray(builder.build()), now_ms=now)


# -- CreateTopics -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(8))
def test_create_topics_every_version(broker: Broker, version: int) -> None:
    result = create(broker, version, topic("t", 2, configs={"retention.ms": "1000"}))["t"]
    assert result.error_code == ErrorCode.NONE
    created = broker.logs.topic("t")
    assert created.partitions == 2
    assert created.config.retention_ms == 1000
    if version >= 5:
        assert result.num_partitions == 2
        assert result.replication_factor == 1
        rows = {c.name: c for c in result.configs or []}
        assert list(rows) == sorted(TOPIC_CONFIGS)
        assert rows["retention.ms"].value == "1000"
        assert rows["retention.ms"].config_source == ConfigSource.TOPIC_CONFIG
        assert rows["segment.bytes"].config_source == ConfigSource.DEFAULT_CONFIG
        assert not rows["segment.bytes"].read_only and not rows["segment.bytes"].is_sensitive
    else:
        assert result.num_partitions == -1 and not result.configs
    assert result.topic_id == (created.topic_id if version >= 7 else ZERO_UUID)


def test_minus_one_takes_the_broker_defaults(broker: Broker) -> None:
    result = create(broker, 7, topic("d", -1, -1))["d"]
    assert (result.error_code, result.num_partitions, result.replication_factor) == (0, 3, 1)
    assert broker.logs.topic("d").partitions == 3


def test_static_broker_config_shows_as_the_source(tmp_path: Path) -> None:
    with running_broker(tmp_path, log_retention_hours="1") as broker:
        rows = {c.name: c for c in create(broker, 5, topic("s"))["s"].configs or []}
        assert rows["retention.ms"].value == "3600000"
        assert rows["retention.ms"].config_source == ConfigSource.STATIC_BROKER_CONFIG


def test_replication_beyond_one_broker_is_refused(broker: Broker) -> None:
    results = create(broker, 7, topic("r3", 1, 3), topic("r0", 1, 0), topic("p0", 0, 1))
    assert results["r3"].error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert results["r3"].error_message == (
        "Unable to replicate the partition 3 time(s): The target replication factor of 3 "
        "cannot be reached because only 1 broker(s) are registered."
    )
    assert results["r0"].error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert results["r0"].error_message == (
        "Replication factor must be larger than 0, or -1 to use the default value."
    )
    assert results["p0"].error_code == ErrorCode.INVALID_PARTITIONS
    assert results["r3"].num_partitions == -1 and results["r3"].configs == []
    assert not broker.logs.topics()


def test_default_replication_factor_above_one_is_refused(tmp_path: Path) -> None:
    with running_broker(tmp_path, default_replication_factor="2") as broker:
        result = create(broker, 4, topic("x", 1, -1))["x"]
        assert result.error_code == ErrorCode.INVALID_REPLICATION_FACTOR


def test_manual_assignments(broker: Broker) -> None:
    node = broker.node_id
    results = create(
        broker,
        7,
        topic("ok", -1, -1, assignments=[[node], [node]]),
        topic("other", -1, -1, assignments=[[node, node + 1]]),
        topic("twice", -1, -1, assignments=[[node, node]]),
        topic("rf", -1, 1, assignments=[[node]]),
        topic("empty", -1, -1, assignments=[[]]),
    )
    assert results["ok"].error_code == ErrorCode.NONE and results["ok"].num_partitions == 2
    assert broker.logs.topic("ok").partitions == 2
    assert results["other"].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert results["other"].error_message == (
        f"The manual partition assignment includes broker {node + 1}, but no such broker "
        "is registered."
    )
    assert results["twice"].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert results["rf"].error_code == ErrorCode.INVALID_REQUEST
    assert results["empty"].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT


def test_assignments_must_number_partitions_from_zero(broker: Broker) -> None:
    gap = topic("gap", -1, -1)
    gap.assignments = [
        CreatableReplicaAssignment(partition_index=0, broker_ids=[broker.node_id]),
        CreatableReplicaAssignment(partition_index=2, broker_ids=[broker.node_id]),
    ]
    result = create(broker, 5, gap)["gap"]
    assert result.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert result.error_message == "partitions should be a consecutive 0-based integer sequence"


def test_names(broker: Broker) -> None:
    create(broker, 7, topic("taken"), topic("a.b"))
    results = create(
        broker, 7, topic("taken"), topic("bad name"), topic("__cluster_metadata"), topic("a_b")
    )
    assert results["taken"].error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    assert results["taken"].error_message == "Topic 'taken' already exists."
    assert results["bad name"].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert results["__cluster_metadata"].error_code == ErrorCode.INVALID_REQUEST
    assert results["a_b"].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_bad_configs(broker: Broker) -> None:
    results = create(
        broker,
        7,
        topic("unknown", configs={"no.such.config": "1"}),
        topic("value", configs={"retention.ms": "soon"}),
        topic("null", configs={"retention.ms": None}),
    )
    for name in ("unknown", "value", "null"):
        assert results[name].error_code == ErrorCode.INVALID_CONFIG, name
    assert (
        results["null"].error_message == "Null value not supported for topic configs: retention.ms"
    )
    assert not broker.logs.topics()


@pytest.mark.parametrize("version", [1, 7])
def test_validate_only_creates_nothing(broker: Broker, version: int) -> None:
    result = create(broker, version, topic("v", 4), validate_only=True)["v"]
    assert result.error_code == ErrorCode.NONE
    assert "v" not in broker.logs.topics()
    if version >= 5:
        assert result.num_partitions == 4 and result.configs


def test_duplicate_names_are_each_refused_once(broker: Broker) -> None:
    request = CreateTopicsRequest(topics=[topic("dup"), topic("dup", 2), topic("one")])
    results = call(broker, request, 7).topics
    assert [(r.name, r.error_code) for r in results] == [
        ("one", ErrorCode.NONE),
        ("dup", ErrorCode.INVALID_REQUEST),
    ]
    assert results[1].error_message == "Duplicate topic name."
    assert "dup" not in broker.logs.topics()


def test_created_topic_survives_a_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        result = create(broker, 7, topic("kept", 2, configs={"cleanup.policy": "compact"}))
        topic_id = result["kept"].topic_id
    with running_broker(tmp_path, engine="disk") as broker:
        kept = broker.logs.topic("kept")
        assert (kept.topic_id, kept.partitions, kept.config.compact) == (topic_id, 2, True)


# -- DeleteTopics -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 5])
def test_delete_by_name(broker: Broker, version: int) -> None:
    create(broker, 7, topic("gone"), topic("stays"))
    request = DeleteTopicsRequest(topic_names=["gone", "never"], timeout_ms=1000)
    results = {r.name: r for r in call(broker, request, version).responses}
    assert results["gone"].error_code == ErrorCode.NONE
    assert results["never"].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert set(broker.logs.topics()) == {"stays"}


def test_delete_by_id_v6(broker: Broker) -> None:
    created = create(broker, 7, topic("byid"), topic("byname"), topic("both"))
    unknown = uuid.uuid4()
    request = DeleteTopicsRequest(
        topics=[
            DeleteTopicState(name=None, topic_id=created["byid"].topic_id),
            DeleteTopicState(name="byname", topic_id=ZERO_UUID),
            DeleteTopicState(name=None, topic_id=unknown),
            DeleteTopicState(name="both", topic_id=created["both"].topic_id),
            DeleteTopicState(name=None, topic_id=ZERO_UUID),
        ]
    )
    results = call(broker, request, 6).responses
    by_id = {r.topic_id: r for r in results if r.name is None}
    by_name = {r.name: r for r in results if r.name is not None}
    assert by_name["byid"].error_code == ErrorCode.NONE
    assert by_name["byid"].topic_id == created["byid"].topic_id
    assert by_name["byname"].error_code == ErrorCode.NONE
    assert by_name["byname"].topic_id == created["byname"].topic_id
    assert by_id[unknown].error_code == ErrorCode.UNKNOWN_TOPIC_ID
    assert by_name["both"].error_code == ErrorCode.INVALID_REQUEST
    assert by_id[ZERO_UUID].error_code == ErrorCode.INVALID_REQUEST
    assert set(broker.logs.topics()) == {"both"}


def test_delete_duplicates(broker: Broker) -> None:
    create(broker, 7, topic("twice"))
    request = DeleteTopicsRequest(topic_names=["twice", "twice"])
    (result,) = call(broker, request, 5).responses
    assert (result.name, result.error_code) == ("twice", ErrorCode.INVALID_REQUEST)
    assert result.error_message == "Duplicate topic name."
    assert "twice" in broker.logs.topics()


@pytest.mark.parametrize(
    ("version", "code"),
    [(0, ErrorCode.INVALID_REQUEST), (2, ErrorCode.INVALID_REQUEST),
     (3, ErrorCode.TOPIC_DELETION_DISABLED), (6, ErrorCode.TOPIC_DELETION_DISABLED)],
)  # fmt: skip
def test_deletion_disabled(tmp_path: Path, version: int, code: ErrorCode) -> None:
    with running_broker(tmp_path, delete_topic_enable="false") as broker:
        created = create(broker, 7, topic("kept"))
        if version >= 6:
            request = DeleteTopicsRequest(topics=[DeleteTopicState(name="kept")])
        else:
            request = DeleteTopicsRequest(topic_names=["kept"])
        del created
        (result,) = call(broker, request, version).responses
        assert (result.name, result.error_code) == ("kept", code)
        assert "kept" in broker.logs.topics()


def test_deleted_topic_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        create(broker, 7, topic("gone", 2))
        produce(broker, "gone", 0, 1)
        call(broker, DeleteTopicsRequest(topic_names=["gone"]), 4)
    assert not list(tmp_path.glob("gone-*"))
    with running_broker(tmp_path, engine="disk") as broker:
        assert "gone" not in broker.logs.topics()


# -- CreatePartitions ---------------------------------------------------------------------------


def grow(
    name: str, count: int, assignments: list[list[int]] | None = None
) -> CreatePartitionsTopic:
    return CreatePartitionsTopic(
        name=name,
        count_=count,
        assignments=None
        if assignments is None
        else [CreatePartitionsAssignment(broker_ids=ids) for ids in assignments],
    )


@pytest.mark.parametrize("version", [0, 3])
def test_create_partitions(broker: Broker, version: int) -> None:
    create(broker, 7, topic("grows"), topic("same", 2), topic("shrinks", 3))
    request = CreatePartitionsRequest(
        topics=[grow("grows", 3), grow("same", 2), grow("shrinks", 1), grow("nope", 4)],
        timeout_ms=1000,
    )
    results = {r.name: r for r in call(broker, request, version).results}
    assert results["grows"].error_code == ErrorCode.NONE
    assert results["grows"].error_message is None
    assert broker.logs.topic("grows").partitions == 3
    assert results["same"].error_code == ErrorCode.INVALID_PARTITIONS
    assert results["same"].error_message == "Topic already has 2 partition(s)."
    assert results["shrinks"].error_code == ErrorCode.INVALID_PARTITIONS
    assert results["shrinks"].error_message == (
        "The topic shrinks currently has 3 partition(s); 1 would not be an increase."
    )
    assert results["nope"].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_create_partitions_assignments(broker: Broker) -> None:
    node = broker.node_id
    create(broker, 7, topic("a"), topic("b"), topic("c"))
    request = CreatePartitionsRequest(
        topics=[grow("a", 3, [[node], [node]]), grow("b", 3, [[node]]), grow("c", 2, [[node + 1]])]
    )
    results = {r.name: r for r in call(broker, request, 3).results}
    assert results["a"].error_code == ErrorCode.NONE
    assert broker.logs.topic("a").partitions == 3
    assert results["b"].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert results["b"].error_message == (
        "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
    )
    assert results["c"].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert broker.logs.topic("c").partitions == 1


def test_create_partitions_validate_only_and_duplicates(broker: Broker) -> None:
    create(broker, 7, topic("v"), topic("d"))
    request = CreatePartitionsRequest(
        topics=[grow("v", 5), grow("d", 2), grow("d", 3)], validate_only=True
    )
    results = {r.name: r for r in call(broker, request, 1).results}
    assert results["v"].error_code == ErrorCode.NONE
    assert results["d"].error_code == ErrorCode.INVALID_REQUEST
    assert broker.logs.topic("v").partitions == 1
    assert broker.logs.topic("d").partitions == 1


def test_added_partitions_survive_a_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        create(broker, 7, topic("g"))
        call(broker, CreatePartitionsRequest(topics=[grow("g", 4)]), 2)
    with running_broker(tmp_path, engine="disk") as broker:
        assert broker.logs.topic("g").partitions == 4


# -- DeleteRecords ------------------------------------------------------------------------------


def delete_records(broker: Broker, version: int, name: str, *offsets: tuple[int, int]):  # type: ignore[no-untyped-def]
    request = DeleteRecordsRequest(
        topics=[
            DeleteRecordsTopic(
                name=name,
                partitions=[
                    DeleteRecordsPartition(partition_index=p, offset=o) for p, o in offsets
                ],
            )
        ],
        timeout_ms=1000,
    )
    (result,) = call(broker, request, version).topics
    assert result.name == name
    return {p.partition_index: p for p in result.partitions}


@pytest.mark.parametrize("version", [0, 2])
def test_delete_records(broker: Broker, version: int) -> None:
    create(broker, 7, topic("r", 3))
    for partition in range(3):
        produce(broker, "r", partition, 3)  # offsets 0-5
    results = delete_records(broker, version, "r", (0, 2), (1, -1), (2, 7), (9, 0))
    assert (results[0].error_code, results[0].low_watermark) == (ErrorCode.NONE, 2)
    assert (results[1].error_code, results[1].low_watermark) == (ErrorCode.NONE, 6)
    assert (results[2].error_code, results[2].low_watermark) == (ErrorCode.OFFSET_OUT_OF_RANGE, -1)
    assert results[9].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert broker.logs.get_log("r", 0).log_start_offset == 2
    assert broker.logs.get_log("r", 2).log_start_offset == 0
    # Deleting below the current start changes nothing and reports where the log starts.
    again = delete_records(broker, version, "r", (0, 1))
    assert (again[0].error_code, again[0].low_watermark) == (ErrorCode.NONE, 2)


def test_delete_records_refusals(broker: Broker) -> None:
    create(broker, 7, topic("compacted", configs={"cleanup.policy": "compact"}))
    assert delete_records(broker, 2, "compacted", (0, 0))[0].error_code == (
        ErrorCode.POLICY_VIOLATION
    )
    assert delete_records(broker, 2, "__consumer_offsets", (0, 0))[0].error_code == (
        ErrorCode.INVALID_TOPIC_EXCEPTION
    )
    assert delete_records(broker, 2, "missing", (0, 0))[0].error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )


def test_deleted_records_stay_deleted_after_a_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        create(broker, 7, topic("r"))
        produce(broker, "r", 0, 3)
        assert delete_records(broker, 2, "r", (0, 4))[0].low_watermark == 4
    with running_broker(tmp_path, engine="disk") as broker:
        assert broker.logs.get_log("r", 0).log_start_offset == 4
