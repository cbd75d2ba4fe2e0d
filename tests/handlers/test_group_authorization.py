"""The group APIs ask the authorizer as Kafka's KafkaApis does, and answer its refusals with
GROUP_AUTHORIZATION_FAILED / TOPIC_AUTHORIZATION_FAILED before the coordinator is asked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.delete_groups_request import DeleteGroupsRequest
from kafkacompat.protocol.messages.describe_groups_request import DescribeGroupsRequest
from kafkacompat.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from kafkacompat.protocol.messages.heartbeat_request import HeartbeatRequest
from kafkacompat.protocol.messages.leave_group_request import LeaveGroupRequest
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
from kafkacompat.protocol.messages.sync_group_request import SyncGroupRequest
from kafkacompat.security.authorizer import CLUSTER_NAME, AclOperation, Action, ResourceType
from kafkacompat.security.session import Session
from tests.handlers.helpers import call, running_broker
from tests.handlers.test_groups import join, stable_member

E = ErrorCode
A = AclOperation
R = ResourceType


class DenyByName:
    """Allows everything but the (operation, resource type, name) it was given."""

    def __init__(self) -> None:
        self.denied: set[tuple[AclOperation, ResourceType, str]] = set()
        self.asked: list[Action] = []

    def deny(self, operation: AclOperation, resource_type: ResourceType, name: str) -> None:
        self.denied.add((operation, resource_type, name))

    def authorize(self, session: Session, actions: Sequence[Action]) -> list[bool]:
        self.asked += actions
        return [(a.operation, a.resource_type, a.resource_name) not in self.denied for a in actions]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(
        tmp_path, group_initial_rebalance_delay_ms="0", offsets_topic_num_partitions="3"
    ) as started:
        started.controller.create_topic("t", 1)
        started.controller.create_topic("secret", 1)
        yield started


@pytest.fixture
def acl(broker: Broker) -> DenyByName:
    authorizer = DenyByName()
    broker.authorizer = authorizer
    return authorizer


def test_find_coordinator_needs_describe_on_the_group(broker: Broker, acl: DenyByName) -> None:
    acl.deny(A.DESCRIBE, R.GROUP, "private")
    old = call(broker, FindCoordinatorRequest(key="private"), 3)
    assert (old.error_code, old.node_id, old.error_message) == (
        E.GROUP_AUTHORIZATION_FAILED,
        -1,
        "Group authorization failed.",
    )
    batched = call(broker, FindCoordinatorRequest(coordinator_keys=["private", "open"]), 4)
    assert [(c.key, c.error_code) for c in batched.coordinators] == [
        ("private", E.GROUP_AUTHORIZATION_FAILED),
        ("open", E.NONE),
    ]


def test_membership_needs_read_on_the_group(broker: Broker, acl: DenyByName) -> None:
    member = stable_member(broker)
    acl.deny(A.READ, R.GROUP, "g")
    refused = join(broker, 9, member)
    assert (refused.error_code, refused.member_id, refused.generation_id) == (
        E.GROUP_AUTHORIZATION_FAILED,
        "",
        -1,
    )
    sync = SyncGroupRequest(group_id="g", generation_id=1, member_id=member)
    assert call(broker, sync, 3).error_code == E.GROUP_AUTHORIZATION_FAILED
    beat = HeartbeatRequest(group_id="g", generation_id=1, member_id=member)
    assert call(broker, beat, 4).error_code == E.GROUP_AUTHORIZATION_FAILED
    leave = call(broker, LeaveGroupRequest(group_id="g", member_id=member), 0)
    assert leave.error_code == E.GROUP_AUTHORIZATION_FAILED
    assert member in broker.groups.groups["g"].members  # the coordinator never heard of it
    acl.deny(A.READ, R.GROUP, "new")
    assert join(broker, 9, group="new").error_code == E.GROUP_AUTHORIZATION_FAILED
    assert "new" not in broker.groups.groups


def _commit(broker: Broker, group: str, *topics: str) -> dict[str, int]:
    request = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            OffsetCommitRequestTopic(
                name=name,
                partitions=[OffsetCommitRequestPartition(partition_index=0, committed_offset=5)],
            )
            for name in topics
        ],
    )
    response = call(broker, request, 8)
    return {t.name: t.partitions[0].error_code for t in response.topics}


def test_offset_commit_needs_read_on_the_group_and_each_topic(
    broker: Broker, acl: DenyByName
) -> None:
    acl.deny(A.READ, R.GROUP, "private")
    assert _commit(broker, "private", "t", "secret") == {
        "t": E.GROUP_AUTHORIZATION_FAILED,
        "secret": E.GROUP_AUTHORIZATION_FAILED,
    }
    acl.deny(A.READ, R.TOPIC, "secret")
    acl.deny(A.READ, R.TOPIC, "missing")
    # Authorization first: a refused topic's existence is not revealed.
    assert _commit(broker, "g", "t", "secret", "missing") == {
        "t": E.NONE,
        "secret": E.TOPIC_AUTHORIZATION_FAILED,
        "missing": E.TOPIC_AUTHORIZATION_FAILED,
    }
    assert _commit(broker, "g", "gone") == {"gone": E.UNKNOWN_TOPIC_OR_PARTITION}


def test_offset_fetch_needs_describe_on_the_group_and_each_topic(
    broker: Broker, acl: DenyByName
) -> None:
    assert _commit(broker, "g", "t", "secret") == {"t": E.NONE, "secret": E.NONE}
    acl.deny(A.DESCRIBE, R.TOPIC, "secret")
    asked = [
        OffsetFetchRequestTopic(name="t", partition_indexes=[0]),
        OffsetFetchRequestTopic(name="secret", partition_indexes=[0]),
    ]
    response = call(broker, OffsetFetchRequest(group_id="g", topics=asked), 5)
    assert response.error_code == E.NONE
    assert [
        (t.name, p.committed_offset, p.error_code) for t in response.topics for p in t.partitions
    ] == [("t", 5, E.NONE), ("secret", -1, E.TOPIC_AUTHORIZATION_FAILED)]
    every = call(broker, OffsetFetchRequest(group_id="g", topics=None), 5)
    assert [t.name for t in every.topics] == ["t"]  # refused topics are left out

    acl.deny(A.DESCRIBE, R.GROUP, "g")
    v1 = call(broker, OffsetFetchRequest(group_id="g", topics=asked), 1)
    assert {p.error_code for t in v1.topics for p in t.partitions} == {E.GROUP_AUTHORIZATION_FAILED}
    v5 = call(broker, OffsetFetchRequest(group_id="g", topics=asked), 5)
    assert (v5.error_code, v5.topics) == (E.GROUP_AUTHORIZATION_FAILED, [])
    v8 = call(
        broker,
        OffsetFetchRequest(
            groups=[
                OffsetFetchRequestGroup(
                    group_id="g",
                    topics=[OffsetFetchRequestTopics(name="t", partition_indexes=[0])],
                )
            ]
        ),
        8,
    )
    assert v8.groups[0].error_code == E.GROUP_AUTHORIZATION_FAILED


def test_describe_groups_needs_describe_and_reports_the_authorized_operations(
    broker: Broker, acl: DenyByName
) -> None:
    stable_member(broker)
    stable_member(broker, group="other")
    acl.deny(A.DESCRIBE, R.GROUP, "other")
    acl.deny(A.DELETE, R.GROUP, "g")
    response = call(
        broker,
        DescribeGroupsRequest(groups=["g", "other"], include_authorized_operations=True),
        5,
    )
    allowed, refused = response.groups
    assert (allowed.error_code, allowed.group_state) == (E.NONE, "Stable")
    assert allowed.authorized_operations == (1 << A.READ) | (1 << A.DESCRIBE)
    assert (refused.error_code, refused.group_state, refused.members) == (
        E.GROUP_AUTHORIZATION_FAILED,
        "",
        [],
    )


def test_list_groups_without_describe_on_the_cluster_lists_the_describable_groups(
    broker: Broker, acl: DenyByName
) -> None:
    for group in ("a", "b"):
        stable_member(broker, group=group)
    assert {g.group_id for g in call(broker, ListGroupsRequest(), 4).groups} == {"a", "b"}
    acl.deny(A.DESCRIBE, R.CLUSTER, CLUSTER_NAME)
    acl.deny(A.DESCRIBE, R.GROUP, "b")
    assert [g.group_id for g in call(broker, ListGroupsRequest(), 4).groups] == ["a"]


def test_delete_groups_needs_delete_on_each_group(broker: Broker, acl: DenyByName) -> None:
    _commit(broker, "kept", "t")
    _commit(broker, "gone", "t")
    acl.deny(A.DELETE, R.GROUP, "kept")
    response = call(broker, DeleteGroupsRequest(groups_names=["kept", "gone"]), 2)
    assert {r.group_id: r.error_code for r in response.results} == {
        "kept": E.GROUP_AUTHORIZATION_FAILED,
        "gone": E.NONE,
    }
    assert "kept" in broker.groups.groups and "gone" not in broker.groups.groups


def test_offset_delete_needs_delete_on_the_group_and_read_on_each_topic(
    broker: Broker, acl: DenyByName
) -> None:
    _commit(broker, "g", "t", "secret")

    def delete(*topics: str) -> tuple[int, dict[str, int]]:
        request = OffsetDeleteRequest(
            group_id="g",
            topics=[
                OffsetDeleteRequestTopic(
                    name=name, partitions=[OffsetDeleteRequestPartition(partition_index=0)]
                )
                for name in topics
            ],
        )
        response = call(broker, request, 0)
        return response.error_code, {t.name: t.partitions[0].error_code for t in response.topics}

    acl.deny(A.READ, R.TOPIC, "secret")
    assert delete("t", "secret") == (
        E.NONE,
        {"t": E.NONE, "secret": E.TOPIC_AUTHORIZATION_FAILED},
    )
    acl.deny(A.DELETE, R.GROUP, "g")
    assert delete("secret") == (E.GROUP_AUTHORIZATION_FAILED, {})
    _, committed = broker.groups.fetch_offsets("g", None)
    assert [tp for tp, c in committed if c is not None] == [("secret", 0)]


def test_with_allow_all_nothing_is_refused(broker: Broker) -> None:
    stable_member(broker)
    assert _commit(broker, "g2", "t", "secret") == {"t": E.NONE, "secret": E.NONE}
    response = call(
        broker, DescribeGroupsRequest(groups=["g"], include_authorized_operations=True), 3
    )
    assert response.groups[0].authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)
