"""The group APIs through the handler table, at their oldest and newest versions:
FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups,
DeleteGroups, OffsetCommit, OffsetFetch, OffsetDelete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.broker import Broker
from kafkacompat.config import BrokerConfig
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers import HANDLERS
from kafkacompat.protocol import request_class, response_class
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.delete_groups_request import DeleteGroupsRequest
from kafkacompat.protocol.messages.describe_groups_request import DescribeGroupsRequest
from kafkacompat.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from kafkacompat.protocol.messages.heartbeat_request import HeartbeatRequest
from kafkacompat.protocol.messages.join_group_request import (
    JoinGroupRequest,
    JoinGroupRequestProtocol,
)
from kafkacompat.protocol.messages.leave_group_request import LeaveGroupRequest, MemberIdentity
from kafkacompat.protocol.messages.list_groups_request import ListGroupsRequest
from kafkacompat.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kafkacompat.protocol.messages.offset_delete_request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from kafkacompat.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from kafkacompat.protocol.messages.sync_group_request import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from kafkacompat.storage.manager import Engine
from tests.handlers.helpers import call, context, running_broker

E = ErrorCode
PROTOCOLS = [JoinGroupRequestProtocol(name="range", metadata=b"\x00\x00sub")]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(
        tmp_path,
        group_initial_rebalance_delay_ms="0",
        offsets_topic_num_partitions="3",
        num_partitions="2",
    ) as started:
        started.controller.create_topic("t", 2)
        yield started


def call_together(broker: Broker, *calls: tuple[Message, int]) -> list[Any]:
    """Several requests in flight at once (as from several clients), each through the same
    encode/decode round trip as :func:`call`."""

    async def one(request: Message, version: int) -> Any:
        api_key = request.API_KEY
        assert api_key is not None
        wire = request_class(api_key).decode(bytearray(request.encode(version)), version)
        response = await HANDLERS[api_key](context(broker, api_key, version), wire)
        assert response is not None
        return response_class(api_key).decode(response.encode(version), version)

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(one(r, v) for r, v in calls)))

    return asyncio.run(run())


def join(broker: Broker, version: int, member_id: str = "", group: str = "g", **kwargs: Any) -> Any:
    request = JoinGroupRequest(
        group_id=group,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=30_000,
        member_id=member_id,
        protocol_type="consumer",
        protocols=PROTOCOLS,
        **kwargs,
    )
    return call(broker, request, version)


def joined(broker: Broker, version: int = 9, group: str = "g") -> Any:
    first = join(broker, version, group=group)
    if first.error_code == E.MEMBER_ID_REQUIRED:
        return join(broker, version, first.member_id, group=group)
    return first


def stable_member(broker: Broker, group: str = "g") -> str:
    """One member that joined and synced: the group is Stable."""
    result = joined(broker, group=group)
    member = result.member_id
    sync = call(
        broker,
        SyncGroupRequest(
            group_id=group,
            generation_id=result.generation_id,
            member_id=member,
            protocol_type="consumer",
            protocol_name="range",
            assignments=[SyncGroupRequestAssignment(member_id=member, assignment=b"mine")],
        ),
        5,
    )
    assert sync.error_code == E.NONE and sync.assignment == b"mine"
    return str(member)


# -- FindCoordinator --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3])
def test_find_coordinator_before_v4(broker: Broker, version: int) -> None:
    broker.bound = ("127.0.0.1", 9999)
    response = call(broker, FindCoordinatorRequest(key="g"), version)
    assert (response.error_code, response.node_id, response.host, response.port) == (
        E.NONE,
        broker.node_id,
        "127.0.0.1",
        9999,
    )
    if version >= 1:
        assert response.error_message == "NONE"  # Kafka's Errors.NONE.message()
    topic = broker.logs.topics()["__consumer_offsets"]  # created at the first lookup
    assert topic.partitions == 3 and topic.config.compact
    if version >= 1:
        txn = call(broker, FindCoordinatorRequest(key="txn", key_type=1), version)
        assert (txn.error_code, txn.node_id, txn.port) == (E.NONE, broker.node_id, 9999)
        # __transaction_state is created at the first lookup of a transactional id, compacted
        txn_topic = broker.logs.topics()["__transaction_state"]
        assert txn_topic.partitions == 50 and txn_topic.config.compact


def test_find_coordinator_batched(broker: Broker) -> None:
    response = call(broker, FindCoordinatorRequest(coordinator_keys=["a", "b"]), 6)
    assert [(c.key, c.error_code, c.node_id) for c in response.coordinators] == [
        ("a", E.NONE, broker.node_id),
        ("b", E.NONE, broker.node_id),
    ]
    assert response.coordinators[0].error_message is None
    txn = call(broker, FindCoordinatorRequest(key_type=1, coordinator_keys=["t1"]), 4)
    assert (txn.coordinators[0].error_code, txn.coordinators[0].node_id) == (
        E.NONE,
        broker.node_id,
    )
    share = call(broker, FindCoordinatorRequest(key_type=2, coordinator_keys=["s"]), 6)
    assert share.coordinators[0].error_code == E.COORDINATOR_NOT_AVAILABLE
    unknown = call(broker, FindCoordinatorRequest(key_type=7, coordinator_keys=["x"]), 6)
    assert unknown.coordinators[0].error_code == E.INVALID_REQUEST


# -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ----------------------------------------------------


def test_join_group_v0_joins_at_once(broker: Broker) -> None:
    result = join(broker, 0)
    assert result.error_code == E.NONE
    assert result.member_id.startswith("tests-")
    assert (result.generation_id, result.protocol_name, result.leader) == (
        1,
        "range",
        result.member_id,
    )
    assert [(m.member_id, m.metadata) for m in result.members] == [
        (result.member_id, b"\x00\x00sub")
    ]


def test_join_group_v9_asks_for_a_member_id_first(broker: Broker) -> None:
    first = join(broker, 9, reason="starting")
    assert (first.error_code, first.generation_id, first.protocol_name) == (
        E.MEMBER_ID_REQUIRED,
        -1,
        None,
    )
    result = join(broker, 9, first.member_id)
    assert result.error_code == E.NONE and result.member_id == first.member_id
    assert (result.protocol_type, result.protocol_name, result.skip_assignment) == (
        "consumer",
        "range",
        False,
    )


def test_join_group_errors(broker: Broker) -> None:
    assert join(broker, 9, group="").error_code == E.INVALID_GROUP_ID
    assert join(broker, 6, "ghost").error_code == E.UNKNOWN_MEMBER_ID
    bad = JoinGroupRequest(group_id="g", session_timeout_ms=1, protocol_type="consumer")
    assert call(broker, bad, 5).error_code == E.INVALID_SESSION_TIMEOUT


def test_two_members_join_and_sync_together(tmp_path: Path) -> None:
    # A delay long enough for both JoinGroups to arrive within the first rebalance.
    with running_broker(tmp_path, group_initial_rebalance_delay_ms="100") as broker:
        two_members_join_and_sync(broker)


def two_members_join_and_sync(broker: Broker) -> None:
    first_a, first_b = joined_ids = [join(broker, 9).member_id, join(broker, 9).member_id]
    a, b = call_together(broker, *((_join_request(m), 9) for m in joined_ids))
    leader = a if a.leader == a.member_id else b
    follower = b if leader is a else a
    assert len(leader.members) == 2 and follower.members == []
    assignments = [
        SyncGroupRequestAssignment(member_id=first_a, assignment=b"A"),
        SyncGroupRequestAssignment(member_id=first_b, assignment=b"B"),
    ]
    follower_sync, leader_sync = call_together(
        broker,
        (SyncGroupRequest(group_id="g", generation_id=1, member_id=follower.member_id), 0),
        (
            SyncGroupRequest(
                group_id="g",
                generation_id=1,
                member_id=leader.member_id,
                protocol_type="consumer",
                protocol_name="range",
                assignments=assignments,
            ),
            5,
        ),
    )
    mine = {first_a: b"A", first_b: b"B"}
    assert follower_sync.assignment == mine[follower.member_id]
    assert (leader_sync.protocol_type, leader_sync.assignment) == (
        "consumer",
        mine[leader.member_id],
    )


def _join_request(member_id: str) -> JoinGroupRequest:
    return JoinGroupRequest(
        group_id="g",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=30_000,
        member_id=member_id,
        protocol_type="consumer",
        protocols=PROTOCOLS,
    )


def test_sync_group_v5_requires_protocol_type_and_name(broker: Broker) -> None:
    member = joined(broker).member_id
    missing = SyncGroupRequest(group_id="g", generation_id=1, member_id=member)
    assert call(broker, missing, 5).error_code == E.INCONSISTENT_GROUP_PROTOCOL
    assert call(broker, missing, 4).error_code == E.NONE


@pytest.mark.parametrize("version", [0, 4])
def test_heartbeat(broker: Broker, version: int) -> None:
    member = stable_member(broker)
    beat = HeartbeatRequest(group_id="g", generation_id=1, member_id=member)
    assert call(broker, beat, version).error_code == E.NONE
    wrong = HeartbeatRequest(group_id="g", generation_id=2, member_id=member)
    assert call(broker, wrong, version).error_code == E.ILLEGAL_GENERATION
    unknown = HeartbeatRequest(group_id="g", generation_id=1, member_id="x")
    assert call(broker, unknown, version).error_code == E.UNKNOWN_MEMBER_ID


def test_leave_group_v0(broker: Broker) -> None:
    member = stable_member(broker)
    assert call(broker, LeaveGroupRequest(group_id="g", member_id="x"), 0).error_code == (
        E.UNKNOWN_MEMBER_ID
    )
    assert call(broker, LeaveGroupRequest(group_id="g", member_id=member), 0).error_code == E.NONE
    assert broker.groups.groups["g"].state.value == "Empty"


def test_leave_group_v5_batch(broker: Broker) -> None:
    member = stable_member(broker)
    response = call(
        broker,
        LeaveGroupRequest(
            group_id="g",
            members=[
                MemberIdentity(member_id=member, reason="bye"),
                MemberIdentity(member_id="", group_instance_id="nobody"),
            ],
        ),
        5,
    )
    assert response.error_code == E.NONE
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in response.members] == [
        (member, None, E.NONE),
        ("", "nobody", E.UNKNOWN_MEMBER_ID),
    ]


# -- DescribeGroups, ListGroups, DeleteGroups -------------------------------------------------------


@pytest.mark.parametrize("version", [0, 5])
def test_describe_groups(broker: Broker, version: int) -> None:
    member = stable_member(broker)
    response = call(
        broker,
        DescribeGroupsRequest(groups=["g", "nope"], include_authorized_operations=True),
        version,
    )
    stable, missing = response.groups
    assert (stable.error_code, stable.group_state, stable.protocol_type, stable.protocol_data) == (
        E.NONE,
        "Stable",
        "consumer",
        "range",
    )
    (described,) = stable.members
    assert (described.member_id, described.client_id, described.client_host) == (
        member,
        "tests",
        "/127.0.0.1",
    )
    assert (described.member_metadata, described.member_assignment) == (b"\x00\x00sub", b"mine")
    assert (missing.group_state, missing.members) == ("Dead", [])
    if version >= 3:
        assert stable.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)


@pytest.mark.parametrize("version", [0, 5])
def test_list_groups(broker: Broker, version: int) -> None:
    stable_member(broker, "busy")
    broker.groups.commit_offsets("idle", "", None, -1, {})
    response = call(broker, ListGroupsRequest(), version)
    assert response.error_code == E.NONE
    listed = sorted((g.group_id, g.protocol_type) for g in response.groups)
    assert listed == [("busy", "consumer"), ("idle", "")]
    if version >= 4:
        only = call(broker, ListGroupsRequest(states_filter=["stable"]), version)
        assert [(g.group_id, g.group_state) for g in only.groups] == [("busy", "Stable")]
    if version >= 5:
        assert {g.group_type for g in response.groups} == {"classic"}
        consumer = call(broker, ListGroupsRequest(types_filter=["consumer"]), version)
        assert consumer.groups == []


@pytest.mark.parametrize("version", [0, 2])
def test_delete_groups(broker: Broker, version: int) -> None:
    stable_member(broker, "busy")
    broker.groups.commit_offsets("idle", "", None, -1, {})
    response = call(
        broker, DeleteGroupsRequest(groups_names=["busy", "idle", "gone", "idle"]), version
    )
    assert [(r.group_id, r.error_code) for r in response.results] == [
        ("busy", E.NON_EMPTY_GROUP),
        ("idle", E.NONE),
        ("gone", E.GROUP_ID_NOT_FOUND),
    ]


# -- OffsetCommit, OffsetFetch, OffsetDelete --------------------------------------------------------


def _commit(
    group: str, offsets: dict[tuple[str, int], int], member: str = "", generation: int = -1
) -> OffsetCommitRequest:
    topics: dict[str, list[OffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            OffsetCommitRequestPartition(
                partition_index=partition,
                committed_offset=offset,
                committed_leader_epoch=4,
                committed_metadata=f"meta-{offset}",
            )
        )
    return OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member,
        topics=[OffsetCommitRequestTopic(name=t, partitions=p) for t, p in topics.items()],
    )


def _errors(response: Any) -> dict[tuple[str, int], int]:
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


@pytest.mark.parametrize("version", [2, 9])
def test_offset_commit(broker: Broker, version: int) -> None:
    member = stable_member(broker)
    response = call(
        broker,
        _commit("g", {("t", 0): 5, ("t", 1): 6, ("t", 7): 1, ("nope", 0): 1}, member, 1),
        version,
    )
    assert _errors(response) == {
        ("t", 0): E.NONE,
        ("t", 1): E.NONE,
        ("t", 7): E.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION,
    }
    stale = call(broker, _commit("g", {("t", 0): 9}, member, 0), version)
    assert _errors(stale) == {("t", 0): E.ILLEGAL_GENERATION}
    (found,) = broker.groups.fetch_offsets("g", [("t", 0)])[1]
    assert found[1] is not None
    assert (found[1].offset, found[1].metadata) == (5, "meta-5")
    assert found[1].leader_epoch == (4 if version >= 6 else -1)


def test_offset_commit_v2_retention(broker: Broker) -> None:
    request = _commit("simple", {("t", 0): 1})
    request.retention_time_ms = 60_000
    before = broker.now_ms()
    call(broker, request, 2)
    ((_, committed),) = broker.groups.fetch_offsets("simple", None)[1]
    assert committed is not None and committed.expire_timestamp is not None
    assert before + 60_000 <= committed.expire_timestamp <= broker.now_ms() + 60_000


@pytest.mark.parametrize("version", [1, 7])
def test_offset_fetch_one_group(broker: Broker, version: int) -> None:
    call(broker, _commit("g", {("t", 0): 5}), 8)
    request = OffsetFetchRequest(
        group_id="g", topics=[OffsetFetchRequestTopic(name="t", partition_indexes=[0, 1])]
    )
    response = call(broker, request, version)
    assert response.error_code == E.NONE
    ((topic,),) = [response.topics]
    assert topic.name == "t"
    assert [
        (p.partition_index, p.committed_offset, p.metadata, p.error_code) for p in topic.partitions
    ] == [
        (0, 5, "meta-5", E.NONE),
        (1, -1, "", E.NONE),
    ]
    if version >= 5:
        assert topic.partitions[0].committed_leader_epoch == 4
    if version >= 2:
        everything = call(broker, OffsetFetchRequest(group_id="g", topics=None), version)
        assert [(t.name, [p.partition_index for p in t.partitions]) for t in everything.topics] == [
            ("t", [0])
        ]


def test_offset_fetch_v1_puts_group_errors_on_each_partition(broker: Broker) -> None:
    broker.groups.loading = True
    request = OffsetFetchRequest(
        group_id="g", topics=[OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    )
    v1 = call(broker, request, 1)
    assert v1.topics[0].partitions[0].error_code == E.COORDINATOR_LOAD_IN_PROGRESS
    v2 = call(broker, request, 2)
    assert (v2.error_code, v2.topics) == (E.COORDINATOR_LOAD_IN_PROGRESS, [])


@pytest.mark.parametrize("version", [8, 9])
def test_offset_fetch_many_groups(broker: Broker, version: int) -> None:
    call(broker, _commit("a", {("t", 0): 1}), 9)
    call(broker, _commit("b", {("t", 1): 2}), 9)
    response = call(
        broker,
        OffsetFetchRequest(
            groups=[
                OffsetFetchRequestGroup(group_id="a", topics=None),
                OffsetFetchRequestGroup(
                    group_id="b",
                    topics=[OffsetFetchRequestTopics(name="t", partition_indexes=[0, 1])],
                ),
            ],
            require_stable=True,
        ),
        version,
    )
    found = {
        g.group_id: [
            (t.name, p.partition_index, p.committed_offset) for t in g.topics for p in t.partitions
        ]
        for g in response.groups
    }
    assert found == {"a": [("t", 0, 1)], "b": [("t", 0, -1), ("t", 1, 2)]}


def test_offset_delete(broker: Broker) -> None:
    call(broker, _commit("s", {("t", 0): 1, ("t", 1): 2}), 9)
    request = OffsetDeleteRequest(
        group_id="s",
        topics=[
            OffsetDeleteRequestTopic(
                name="t",
                partitions=[
                    OffsetDeleteRequestPartition(partition_index=0),
                    OffsetDeleteRequestPartition(partition_index=9),
                ],
            )
        ],
    )
    response = call(broker, request, 0)
    assert response.error_code == E.NONE
    assert _errors(response) == {("t", 0): E.NONE, ("t", 9): E.UNKNOWN_TOPIC_OR_PARTITION}
    assert [tp for tp, _ in broker.groups.fetch_offsets("s", None)[1]] == [("t", 1)]
    request.group_id = "missing"
    assert call(broker, request, 0).error_code == E.GROUP_ID_NOT_FOUND


@pytest.mark.parametrize("engine", ["disk", "memory"])
def test_commits_survive_a_broker_restart_on_disk(tmp_path: Path, engine: Engine) -> None:
    settings = {"offsets_topic_num_partitions": "3", "group_initial_rebalance_delay_ms": "0"}
    with running_broker(tmp_path, engine=engine, **settings) as broker:
        broker.controller.create_topic("t", 1)
        assert _errors(call(broker, _commit("g", {("t", 0): 42}), 9)) == {("t", 0): E.NONE}
    with running_broker(tmp_path, engine=engine, **settings) as broker:
        response = call(
            broker,
            OffsetFetchRequest(
                group_id="g", topics=[OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
            ),
            7,
        )
        expected = 42 if engine == "disk" else -1  # the memory engine keeps nothing
        assert response.topics[0].partitions[0].committed_offset == expected


def test_group_timers_run_on_the_event_loop_between_requests(tmp_path: Path) -> None:
    """A session expires with no request arriving: the broker's loop timer runs it."""
    settings = {"group_initial_rebalance_delay_ms": "0", "group_min_session_timeout_ms": "50"}
    with running_broker(tmp_path, **settings) as broker:

        async def scenario() -> str:
            request = JoinGroupRequest(
                group_id="g",
                session_timeout_ms=100,
                member_id="",
                protocol_type="consumer",
                protocols=PROTOCOLS,
            )
            joined = await HANDLERS[request.API_KEY](context(broker, request.API_KEY, 0), request)
            assert joined is not None and joined.error_code == E.NONE
            await asyncio.sleep(0.4)  # no SyncGroup, no heartbeat: the session lapses
            return broker.groups.groups["g"].state.value

        assert asyncio.run(scenario()) == "Empty"


def test_replay_after_listening_answers_load_in_progress(tmp_path: Path) -> None:
    """A server starts listening before __consumer_offsets is replayed (as Kafka): group
    requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS, then the replay finishes on the loop."""
    settings = {"offsets_topic_num_partitions": "1", "group_initial_rebalance_delay_ms": "0"}
    with running_broker(tmp_path, engine="disk", **settings) as broker:
        broker.controller.create_topic("t", 1)
        # More commit batches than one replay step takes.
        for offset in range(2100):
            call(broker, _commit("g", {("t", 0): offset}), 9)
    fetch = OffsetFetchRequest(
        group_id="g", topics=[OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    )
    broker = Broker(
        BrokerConfig({k.replace("_", "."): v for k, v in settings.items()}),
        engine="disk",
        data_dir=tmp_path,
    )
    broker.start(load_groups=False)
    try:
        broker.begin_group_load()  # as the server does once it listens
        assert call(broker, fetch, 7).error_code == E.COORDINATOR_LOAD_IN_PROGRESS
        asyncio.run(broker.load_groups())
        answer = call(broker, fetch, 7)
        assert answer.error_code == E.NONE
        assert answer.topics[0].partitions[0].committed_offset == 2099
    finally:
        broker.shutdown()


def test_coordinator_writes_move_the_offsets_partitions_high_watermark(broker: Broker) -> None:
    # The coordinator appends through the replica manager, as Kafka's does: a consumer of
    # __consumer_offsets (kcat, a monitoring tool) sees every record below the watermark.
    member = stable_member(broker)
    call(broker, _commit("g", {("t", 0): 5}, member, 1), 9)
    partition = broker.replica_manager.get_partition_or_error(
        "__consumer_offsets", broker.groups.partition_for("g")
    )
    assert partition.log_end_offset > 0
    assert partition.high_watermark == partition.log_end_offset
