"""Consumer groups through the admin clients: confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient and kafkajs's admin list and describe a running group (state, members,
assignments, as the members themselves report them), list, alter and delete its committed
offsets, and delete it, with Kafka's errors for misuse: NON_EMPTY_GROUP for deleting a group
with members, UNKNOWN_MEMBER_ID for committing outside the group while it has members,
GROUP_SUBSCRIBED_TO_TOPIC for deleting the offsets of a topic its members read,
GROUP_ID_NOT_FOUND for a group that is not there."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.clients import ClientError, require
from interop.conftest import BrokerProcess, new_broker
from interop.group_clients import (
    BROKER_SETTINGS,
    TP,
    GroupView,
    Key,
    Member,
    MemberPool,
    MemberSpec,
    committed_offsets,
    create_topic,
    decode_assignment,
    describe_group,
    ends_of,
    kafkajs_admin,
    member_pool,
    missing_group_apis,
    partitions_of,
    poll_until,
    produce_batch,
    wait_consumed,
    wait_settled,
)

PARTITIONS = 4
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
UNKNOWN_MEMBER_ID = 25
GROUP_SUBSCRIBED_TO_TOPIC = 86
OFFSET_INVALID = -1001
"""What confluent-kafka reports for a partition without a committed offset."""


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = new_broker(tmp_path_factory.mktemp("group-admin-broker"), settings=BROKER_SETTINGS)
    try:
        process.start()
        missing = missing_group_apis(process.bootstrap)
        if missing:
            pytest.fail(f"the broker does not advertise {', '.join(missing)}", pytrace=False)
        yield process
    finally:
        code = process.stop()
    assert code == 0, f"group broker exit code {code}:\n{process.log_tail()}"


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[MemberPool]:
    with member_pool(tmp_path / "members") as members:
        yield members


class RunningGroup:
    """Two members of ``client`` in a group on a 4-partition topic, every record read and
    committed."""

    def __init__(self, client: str, bootstrap: str, topic: str, pool: MemberPool) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = f"{topic}-group"
        self.pool = pool
        self.partitions: set[TP] = partitions_of(topic, PARTITIONS)
        create_topic(bootstrap, topic, PARTITIONS)
        self.records: list[Key] = produce_batch(bootstrap, topic, range(PARTITIONS), 3, "a")
        self.spec = MemberSpec(client, bootstrap, self.group, (topic,), "a1")
        self.members: list[Member] = [
            pool.start(self.spec),
            pool.start(MemberSpec(client, bootstrap, self.group, (topic,), "a2")),
        ]
        wait_settled(self.members, self.partitions, pool)
        wait_consumed(self.members, self.records, pool)
        self.ends = ends_of(self.records)

    def own_view(self) -> dict[str, frozenset[TP]]:
        return {m.name: frozenset(m.assignment) for m in self.members}

    def stable(self) -> GroupView:
        expected = self.own_view()
        return poll_until(
            lambda: (
                v
                if (v := describe_group(self.bootstrap, self.group)).state == "STABLE"
                and v.assignments() == expected
                else None
            ),
            f"{self.group} Stable as its members see it",
            self.pool,
        )

    def stop_members(self) -> GroupView:
        """Close the members; the group's view once it is Empty."""
        self.pool.close_all(self.members)
        return poll_until(
            lambda: (
                v if (v := describe_group(self.bootstrap, self.group)).state == "EMPTY" else None
            ),
            f"{self.group} Empty",
            self.pool,
        )

    def read_from(self, offsets: dict[TP, int]) -> None:
        """A new member of the group reads from ``offsets`` on, exactly."""
        member = self.pool.start(
            MemberSpec(self.spec.client, self.bootstrap, self.group, (self.topic,), "a3")
        )
        expected = [(t, p, o) for t, p, o in self.records if o >= offsets[(t, p)]]
        wait_settled([member], self.partitions, self.pool)
        wait_consumed([member], expected, self.pool)
        assert sorted(member.read_keys()) == expected
        member.close()


def test_confluent_admin(group_broker: BrokerProcess, pool: MemberPool, topic: str) -> None:
    from confluent_kafka import (
        ConsumerGroupState,
        ConsumerGroupTopicPartitions,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient

    running = RunningGroup("confluent", group_broker.bootstrap, topic, pool)
    group = running.group
    admin = AdminClient({"bootstrap.servers": group_broker.bootstrap})

    def listed(**options: Any) -> dict[str, Any]:
        result = admin.list_consumer_groups(request_timeout=10, **options).result(timeout=15)
        assert not result.errors, result.errors
        return {g.group_id: g for g in result.valid}

    def describe() -> Any:
        (future,) = admin.describe_consumer_groups([group], request_timeout=10).values()
        return future.result(timeout=15)

    def code_of(future: Any) -> int:
        with pytest.raises(KafkaException) as raised:
            future.result(timeout=15)
        return int(raised.value.args[0].code())

    def offsets_request(offset: int | None = None) -> list[Any]:
        tps = [
            TopicPartition(t, p) if offset is None else TopicPartition(t, p, offset)
            for t, p in sorted(running.partitions)
        ]
        return [ConsumerGroupTopicPartitions(group, tps)]

    running.stable()
    mine = listed()[group]
    assert mine.state == ConsumerGroupState.STABLE
    assert not mine.is_simple_consumer_group
    assert group in listed(states={ConsumerGroupState.STABLE})
    assert group not in listed(states={ConsumerGroupState.EMPTY})

    described = describe()
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"  # librdkafka's first choice
    assert (described.coordinator.host, described.coordinator.port) == (
        group_broker.host,
        group_broker.port,
    )
    assert {
        m.client_id: frozenset((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
        for m in described.members
    } == running.own_view()
    assert {m.member_id for m in described.members} == {m.member_id for m in running.members}
    assert all(m.host for m in described.members)

    (future,) = admin.list_consumer_group_offsets(offsets_request()).values()
    found = future.result(timeout=15)
    assert {(tp.topic, tp.partition): tp.offset for tp in found.topic_partitions} == running.ends

    (future,) = admin.delete_consumer_groups([group], request_timeout=10).values()
    assert code_of(future) == NON_EMPTY_GROUP

    # Committing from outside the group while it has members: UNKNOWN_MEMBER_ID.
    (future,) = admin.alter_consumer_group_offsets(offsets_request(0)).values()
    try:
        result = future.result(timeout=15)
    except KafkaException as exc:
        codes = {int(exc.args[0].code())}
    else:
        codes = {tp.error.code() if tp.error else 0 for tp in result.topic_partitions}
    assert codes == {UNKNOWN_MEMBER_ID}
    assert committed_offsets(running.bootstrap, group, running.partitions) == running.ends

    empty = running.stop_members()
    assert empty.members == ()
    assert listed()[group].state == ConsumerGroupState.EMPTY
    (future,) = admin.alter_consumer_group_offsets(offsets_request(1)).values()
    altered = future.result(timeout=15)
    assert all(tp.error is None and tp.offset == 1 for tp in altered.topic_partitions)
    assert committed_offsets(running.bootstrap, group, running.partitions) == dict.fromkeys(
        running.partitions, 1
    )
    running.read_from(dict.fromkeys(running.partitions, 1))

    poll_until(
        lambda: True if describe_group(running.bootstrap, group).state == "EMPTY" else None,
        "Empty again",
        pool,
    )
    (future,) = admin.delete_consumer_groups([group], request_timeout=10).values()
    future.result(timeout=15)
    assert group not in listed()
    assert committed_offsets(running.bootstrap, group, running.partitions) == dict.fromkeys(
        running.partitions, OFFSET_INVALID
    )
    (future,) = admin.delete_consumer_groups([group], request_timeout=10).values()
    assert code_of(future) == GROUP_ID_NOT_FOUND


def _kafka_python_assignment(value: Any) -> frozenset[TP]:
    """kafka-python decodes the assignment into a dict (raw bytes if it could not)."""
    if isinstance(value, bytes | bytearray):
        return decode_assignment(bytes(value))
    return frozenset(
        (entry["topic"], int(p))
        for entry in value["assigned_partitions"]
        for p in entry["partitions"]
    )


def test_kafka_python_admin(group_broker: BrokerProcess, pool: MemberPool, topic: str) -> None:
    import kafka.errors
    from kafka import OffsetAndMetadata, TopicPartition
    from kafka.admin import KafkaAdminClient

    running = RunningGroup("kafka-python", group_broker.bootstrap, topic, pool)
    group = running.group
    admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap, request_timeout_ms=10000)
    try:
        running.stable()
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Stable"
        assert group in {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
        assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}

        described = admin.describe_groups([group])[group]
        assert described["error"] is None
        assert described["group_state"] == "Stable"
        assert described["protocol_type"] == "consumer"
        assert described["protocol_data"] == "range"  # kafka-python's first choice
        assert {
            m["client_id"]: _kafka_python_assignment(m["member_assignment"])
            for m in described["members"]
        } == running.own_view()
        assert {m["member_id"] for m in described["members"]} == {
            m.member_id for m in running.members
        }
        for m in described["members"]:
            assert m["member_metadata"]["topics"] == [topic]

        def offsets() -> dict[TP, int]:
            found = admin.list_group_offsets({group: None})[group]
            return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}

        assert offsets() == running.ends
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
        tps = [TopicPartition(t, p) for t, p in sorted(running.partitions)]
        errors = admin.delete_group_offsets(group, tps[:1])
        assert {e.errno for e in errors.values()} == {GROUP_SUBSCRIBED_TO_TOPIC}
        errors = admin.alter_group_offsets(group, {tp: OffsetAndMetadata(0, "", -1) for tp in tps})
        assert {e.errno for e in errors.values()} == {UNKNOWN_MEMBER_ID}
        assert offsets() == running.ends

        running.stop_members()
        errors = admin.alter_group_offsets(group, {tp: OffsetAndMetadata(1, "", -1) for tp in tps})
        assert set(errors.values()) == {kafka.errors.NoError}
        assert offsets() == dict.fromkeys(running.partitions, 1)
        # OffsetDelete: the first partition's commit goes, the others stay.
        errors = admin.delete_group_offsets(group, tps[:1])
        assert set(errors.values()) == {kafka.errors.NoError}
        assert offsets() == {(tp.topic, tp.partition): 1 for tp in tps[1:]}

        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.delete_groups([group]) == {group: "GroupIdNotFoundError"}
    finally:
        admin.close()


def test_kafkajs_admin(group_broker: BrokerProcess, pool: MemberPool, topic: str) -> None:
    require("kafkajs")
    running = RunningGroup("kafkajs", group_broker.bootstrap, topic, pool)
    group = running.group
    bootstrap = group_broker.bootstrap
    running.stable()

    listed, described, fetched = kafkajs_admin(
        bootstrap,
        [
            {"method": "listGroups"},
            {"method": "describeGroups", "args": [[group]]},
            {"method": "fetchOffsets", "args": [{"groupId": group, "topics": [topic]}]},
        ],
    )
    assert [g["protocolType"] for g in listed["groups"] if g["groupId"] == group] == ["consumer"]
    (description,) = described["groups"]
    assert description["errorCode"] == 0
    assert description["state"] == "Stable"
    assert description["protocolType"] == "consumer"
    assert description["protocol"] == "RoundRobinAssigner"  # kafkajs's assigner
    assert {
        m["clientId"]: decode_assignment(base64.b64decode(m["memberAssignment"]))
        for m in description["members"]
    } == running.own_view()

    def offsets(answer: list[dict[str, Any]]) -> dict[TP, int]:
        (entry,) = answer
        return {(entry["topic"], p["partition"]): int(p["offset"]) for p in entry["partitions"]}

    assert offsets(fetched) == running.ends
    with pytest.raises(ClientError) as raised:
        kafkajs_admin(bootstrap, [{"method": "deleteGroups", "args": [[group]]}])
    assert raised.value.code == NON_EMPTY_GROUP

    running.stop_members()
    partitions = [{"partition": p, "offset": "1"} for p in range(PARTITIONS)]
    _set, after_set, deleted = kafkajs_admin(
        bootstrap,
        [
            {"method": "setOffsets", "args": [{"groupId": group, "topic": topic,
                                               "partitions": partitions}]},
            {"method": "fetchOffsets", "args": [{"groupId": group, "topics": [topic]}]},
            {"method": "deleteGroups", "args": [[group]]},
        ],
    )  # fmt: skip
    assert offsets(after_set) == dict.fromkeys(running.partitions, 1)
    assert deleted == [{"groupId": group, "errorCode": 0}]
    (listed,) = kafkajs_admin(bootstrap, [{"method": "listGroups"}])
    assert group not in {g["groupId"] for g in listed["groups"]}
