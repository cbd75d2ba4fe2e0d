"""Committed offsets and the admin side of the group coordinator: commit/fetch, expiry,
DeleteGroups, OffsetDelete, ListGroups and DescribeGroups."""

from __future__ import annotations

from kafkacompat.coordinators.group_coordinator import GroupOverview
from kafkacompat.coordinators.group_metadata import GroupState, OffsetAndMetadata
from kafkacompat.errors import ErrorCode
from tests.coordinators.test_group_coordinator import Harness, subscription

E = ErrorCode
S = GroupState
MINUTE = 60_000
RETENTION = 7 * 24 * 60 * MINUTE
T0 = ("t", 0)
T1 = ("t", 1)
U0 = ("u", 0)


# -- OffsetCommit / OffsetFetch ---------------------------------------------------------------------


def test_members_commit_with_their_generation() -> None:
    h = Harness()
    (a,) = h.form_group(1)
    assert h.commit({T0: 5, T1: 7}, member_id=a.member_id, generation=1, metadata="m") == {
        T0: E.NONE,
        T1: E.NONE,
    }
    error, found = h.coordinator.fetch_offsets("g", [T0, T1, U0])
    assert error is E.NONE
    assert [(tp, None if c is None else (c.offset, c.metadata)) for tp, c in found] == [
        (T0, (5, "m")),
        (T1, (7, "m")),
        (U0, None),
    ]
    assert h.committed() == {T0: 5, T1: 7}


def test_commit_validation() -> None:
    h = Harness()
    (a,) = h.form_group(1)
    assert h.commit({T0: 1}, member_id=a.member_id, generation=2) == {T0: E.ILLEGAL_GENERATION}
    assert h.commit({T0: 1}, member_id="x", generation=1) == {T0: E.UNKNOWN_MEMBER_ID}
    # Standalone commits (generation -1, no member) are refused while the group has members.
    assert h.commit({T0: 1}) == {T0: E.UNKNOWN_MEMBER_ID}
    assert h.commit({T0: 1}, generation=3, group="unknown") == {T0: E.ILLEGAL_GENERATION}
    assert h.commit({T0: 1}, group=None) == {T0: E.INVALID_GROUP_ID}  # type: ignore[arg-type]
    assert h.committed() == {}


def test_commit_while_completing_a_rebalance_is_refused() -> None:
    h = Harness()
    joined = h.join_new()
    h.advance(0)
    member = joined.value.member_id
    assert h.commit({T0: 1}, member_id=member, generation=1) == {T0: E.REBALANCE_IN_PROGRESS}


def test_commits_during_preparing_rebalance_are_accepted() -> None:
    h = Harness()
    a, b = h.form_group(2)
    h.join(a.member_id)
    assert h.state() is S.PREPARING_REBALANCE
    assert h.commit({T0: 3}, member_id=b.member_id, generation=1) == {T0: E.NONE}


def test_standalone_consumers_commit_to_unknown_or_empty_groups() -> None:
    h = Harness()
    assert h.commit({T0: 10}, group="simple") == {T0: E.NONE}
    group = h.coordinator.groups["simple"]
    assert (group.state, group.protocol_type, group.generation_id) == (S.EMPTY, None, 0)
    assert h.commit({T0: 11}, group="simple") == {T0: E.NONE}
    assert h.committed("simple") == {T0: 11}
    assert h.commit({T0: 1}, group="") == {T0: E.NONE}  # the empty id is allowed for offsets


def test_metadata_too_large_fails_only_its_partition() -> None:
    h = Harness(offset_metadata_max_bytes=4)
    result = h.coordinator.commit_offsets(
        "g",
        "",
        None,
        -1,
        {T0: OffsetAndMetadata(1, metadata="ok"), T1: OffsetAndMetadata(2, metadata="toolong")},
    )
    assert result == {T0: E.NONE, T1: E.OFFSET_METADATA_TOO_LARGE}
    assert h.committed() == {T0: 1}


def test_fetch_of_unknown_groups_and_partitions() -> None:
    h = Harness()
    assert h.coordinator.fetch_offsets("nope", [T0]) == (E.NONE, [(T0, None)])
    assert h.coordinator.fetch_offsets("nope", None) == (E.NONE, [])
    assert h.coordinator.fetch_offsets("", None) == (E.NONE, [])


def test_fetch_keeps_the_leader_epoch() -> None:
    h = Harness()
    h.coordinator.commit_offsets("g", "", None, -1, {T0: OffsetAndMetadata(4, leader_epoch=3)})
    (found,) = h.coordinator.fetch_offsets("g", [T0])[1]
    assert found[1] is not None and found[1].leader_epoch == 3


# -- expiry -----------------------------------------------------------------------------------------


def test_offsets_of_an_empty_group_expire_after_retention_and_the_group_goes() -> None:
    h = Harness(offsets_retention_check_interval_ms=MINUTE)
    (a,) = h.form_group(1)
    h.commit({T0: 5}, member_id=a.member_id, generation=1)
    h.coordinator.leave_group("g", [(a.member_id, None)])
    assert h.state() is S.EMPTY
    h.advance(RETENTION - MINUTE)
    assert h.committed() == {T0: 5}
    h.advance(MINUTE)
    assert "g" not in h.coordinator.groups
    assert h.coordinator.describe_group("g")[1].state == "Dead"


def test_offsets_of_a_stable_group_do_not_expire_while_subscribed() -> None:
    h = Harness(offsets_retention_check_interval_ms=MINUTE)
    (a,) = h.form_group(1, session=30 * MINUTE, protocols=[("range", subscription("t"))])
    h.commit({T0: 5, U0: 9}, member_id=a.member_id, generation=1)
    for _ in range(7 * 24 * 3 + 2):  # a week and 40 minutes, heartbeating
        h.advance(20 * MINUTE)
        assert h.heartbeat(a.member_id, 1) is E.NONE
    # "u" is no member's subscription: its offset expired after retention since its commit.
    assert h.committed() == {T0: 5}


def test_standalone_offsets_expire_from_their_commit() -> None:
    h = Harness(offsets_retention_check_interval_ms=MINUTE)
    h.commit({T0: 1}, group="simple")
    h.advance(RETENTION // 2)
    h.commit({T1: 1}, group="simple")
    h.advance(RETENTION // 2)
    assert h.committed("simple") == {T1: 1}
    h.advance(RETENTION // 2)
    assert "simple" not in h.coordinator.groups


def test_a_commit_with_its_own_retention_expires_then() -> None:
    h = Harness(offsets_retention_check_interval_ms=MINUTE)
    now = h.now
    h.coordinator.commit_offsets(
        "g",
        "",
        None,
        -1,
        {T0: OffsetAndMetadata(1, commit_timestamp=now, expire_timestamp=now + 5 * MINUTE)},
    )
    h.advance(4 * MINUTE)
    assert h.committed() == {T0: 1}
    h.advance(MINUTE)
    assert "g" not in h.coordinator.groups


# -- DeleteGroups, OffsetDelete ---------------------------------------------------------------------


def test_delete_groups() -> None:
    h = Harness()
    h.form_group(1, group="busy")
    h.commit({T0: 1}, group="idle")
    errors = h.coordinator.delete_groups(["busy", "idle", "missing", "idle"])
    assert errors == {
        "busy": E.NON_EMPTY_GROUP,
        "idle": E.NONE,
        "missing": E.GROUP_ID_NOT_FOUND,
    }
    assert "idle" not in h.coordinator.groups
    assert h.committed("idle") == {}
    assert h.coordinator.delete_groups([""]) == {"": E.GROUP_ID_NOT_FOUND}


def test_offset_delete() -> None:
    h = Harness()
    (a,) = h.form_group(1, protocols=[("range", subscription("t"))])
    h.commit({T0: 1, U0: 2}, member_id=a.member_id, generation=1)
    assert h.coordinator.delete_offsets("g", [T0, U0]) == (
        E.NONE,
        {T0: E.GROUP_SUBSCRIBED_TO_TOPIC, U0: E.NONE},
    )
    assert h.committed() == {T0: 1}
    assert h.coordinator.delete_offsets("missing", [T0]) == (E.GROUP_ID_NOT_FOUND, {})
    assert h.coordinator.delete_offsets("", [T0]) == (E.INVALID_GROUP_ID, {})
    h.coordinator.leave_group("g", [(a.member_id, None)])
    assert h.coordinator.delete_offsets("g", [T0]) == (E.NONE, {T0: E.NONE})
    assert h.committed() == {}


def test_offset_delete_in_a_non_consumer_group_with_members() -> None:
    h = Harness()
    h.join_new(protocol_type="connect")
    assert h.coordinator.delete_offsets("g", [T0]) == (E.NON_EMPTY_GROUP, {})


# -- ListGroups, DescribeGroups ---------------------------------------------------------------------


def test_list_groups_with_filters() -> None:
    h = Harness()
    h.form_group(1, group="stable")
    h.commit({T0: 1}, group="simple")
    error, groups = h.coordinator.list_groups()
    assert error is E.NONE
    assert sorted(groups, key=lambda g: g.group_id) == [
        GroupOverview("simple", "", "Empty"),
        GroupOverview("stable", "consumer", "Stable"),
    ]
    assert [g.group_id for g in h.coordinator.list_groups(["STABLE"])[1]] == ["stable"]
    assert [g.group_id for g in h.coordinator.list_groups(["empty", "dead"])[1]] == ["simple"]
    assert len(h.coordinator.list_groups(types=["Classic"])[1]) == 2
    assert h.coordinator.list_groups(types=["consumer"])[1] == []


def test_describe_groups() -> None:
    h = Harness()
    (a,) = h.form_group(1, protocols=[("range", b"meta")])
    error, summary = h.coordinator.describe_group("g")
    assert (error, summary.state, summary.protocol_type, summary.protocol) == (
        E.NONE,
        "Stable",
        "consumer",
        "range",
    )
    (member,) = summary.members
    assert (member.member_id, member.client_id, member.client_host) == (
        a.member_id,
        "client",
        "/127.0.0.1",
    )
    assert (member.metadata, member.assignment) == (b"meta", a.assignment)
    h.join(a.member_id, protocols=[("range", b"meta2")], rebalance=1)
    # Only a Stable group shows its protocol and member metadata.
    assert h.state() is S.COMPLETING_REBALANCE
    summary = h.coordinator.describe_group("g")[1]
    assert (summary.state, summary.protocol) == ("CompletingRebalance", "")
    assert (summary.members[0].metadata, summary.members[0].assignment) == (b"", b"")
    assert h.coordinator.describe_group("nope")[1].state == "Dead"


def test_offsets_of_deleted_partitions_go() -> None:
    h = Harness()
    h.commit({T0: 1, U0: 2}, group="a")
    h.commit({T0: 3}, group="b")
    assert h.coordinator.on_partitions_deleted([T0, T1]) == 2
    assert h.committed("a") == {U0: 2}
    assert "b" not in h.coordinator.groups  # Empty with no offsets left
