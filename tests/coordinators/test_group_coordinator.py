"""The classic group coordinator's state machine, driven with a manual clock (no sleeps).

Also home of :class:`Harness`, which the other group tests use."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pytest

from kafkacompat.coordinators.group_coordinator import (
    NEW_MEMBER_JOIN_TIMEOUT_MS,
    GroupConfig,
    GroupCoordinator,
)
from kafkacompat.coordinators.group_metadata import (
    GroupState,
    JoinGroupResult,
    OffsetAndMetadata,
    SyncGroupResult,
)
from kafkacompat.coordinators.group_store import GroupStore
from kafkacompat.coordinators.group_timers import ManualClock
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)

E = ErrorCode
S = GroupState
T = TypeVar("T")


class Reply(Generic[T]):
    """A response callback that remembers what it was called with (exactly once)."""

    def __init__(self) -> None:
        self.values: list[T] = []

    def __call__(self, value: T) -> None:
        self.values.append(value)

    @property
    def done(self) -> bool:
        return bool(self.values)

    @property
    def value(self) -> T:
        assert len(self.values) == 1, f"answered {len(self.values)} times: {self.values}"
        return self.values[0]


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0, as consumers put in their JoinGroup metadata."""
    return struct.pack(">h", 0) + ConsumerProtocolSubscription(topics=list(topics)).encode(0)


RANGE = [("range", subscription("t"))]


@dataclass
class Member:
    member_id: str
    generation: int
    join: JoinGroupResult
    instance: str | None = None
    assignment: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)


class Harness:
    def __init__(self, store: GroupStore | None = None, **config: int) -> None:
        self.clock = ManualClock()
        settings = {"initial_rebalance_delay_ms": 0, **config}
        self.coordinator = GroupCoordinator(GroupConfig(**settings), self.clock.timers, store)
        self.coordinator.startup()

    @property
    def now(self) -> int:
        return self.clock.now

    def advance(self, ms: int = 0) -> None:
        self.clock.advance(ms)

    def group(self, group: str = "g") -> object:
        return self.coordinator.groups[group]

    def state(self, group: str = "g") -> GroupState:
        return self.coordinator.groups[group].state

    def join(
        self,
        member_id: str = "",
        *,
        group: str = "g",
        instance: str | None = None,
        protocols: list[tuple[str, bytes]] | None = None,
        protocol_type: str = "consumer",
        session: int = 10_000,
        rebalance: int = 30_000,
        client_id: str | None = "client",
        require_known_member_id: bool = True,
        skip_assignment: bool = False,
    ) -> Reply[JoinGroupResult]:
        reply: Reply[JoinGroupResult] = Reply()
        self.coordinator.join_group(
            group,
            member_id,
            instance,
            require_known_member_id=require_known_member_id,
            support_skip_assignment=skip_assignment,
            client_id=client_id,
            client_host="/127.0.0.1",
            rebalance_timeout_ms=rebalance,
            session_timeout_ms=session,
            protocol_type=protocol_type,
            protocols=RANGE if protocols is None else protocols,
            respond=reply,
        )
        return reply

    def join_new(self, **kwargs: object) -> Reply[JoinGroupResult]:
        """A new member's JoinGroup: for a dynamic member, MEMBER_ID_REQUIRED then the real
        JoinGroup with the id it was given (KIP-394)."""
        first = self.join(**kwargs)  # type: ignore[arg-type]
        if kwargs.get("instance") is not None or not kwargs.get("require_known_member_id", True):
            return first
        assert first.value.error is E.MEMBER_ID_REQUIRED, first.value
        return self.join(first.value.member_id, **kwargs)  # type: ignore[arg-type]

    def sync(
        self,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        *,
        group: str = "g",
        instance: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Reply[SyncGroupResult]:
        reply: Reply[SyncGroupResult] = Reply()
        self.coordinator.sync_group(
            group,
            generation,
            member_id,
            instance,
            protocol_type,
            protocol_name,
            assignments or {},
            reply,
        )
        return reply

    def heartbeat(
        self, member_id: str, generation: int, *, group: str = "g", instance: str | None = None
    ) -> ErrorCode:
        return self.coordinator.heartbeat(group, member_id, instance, generation)

    def commit(
        self,
        offsets: dict[tuple[str, int], int],
        *,
        group: str = "g",
        member_id: str = "",
        generation: int = -1,
        instance: str | None = None,
        metadata: str = "",
    ) -> dict[tuple[str, int], ErrorCode]:
        now = self.now
        return self.coordinator.commit_offsets(
            group,
            member_id,
            instance,
            generation,
            {
                tp: OffsetAndMetadata(offset, metadata=metadata, commit_timestamp=now)
                for tp, offset in offsets.items()
            },
        )

    def committed(self, group: str = "g") -> dict[tuple[str, int], int]:
        error, found = self.coordinator.fetch_offsets(group, None)
        assert error is E.NONE
        return {tp: c.offset for tp, c in found if c is not None}

    def form_group(
        self,
        count: int,
        *,
        group: str = "g",
        instances: list[str | None] | None = None,
        session: int = 10_000,
        rebalance: int = 30_000,
        protocols: list[tuple[str, bytes]] | None = None,
    ) -> list[Member]:
        """``count`` members joined and synced (the leader assigns ``b"a-<id>"``); Stable."""
        instances = instances or [None] * count
        replies = [
            self.join_new(
                group=group,
                instance=instance,
                session=session,
                rebalance=rebalance,
                protocols=protocols,
            )
            for instance in instances
        ]
        self.advance(0)
        members = [
            Member(r.value.member_id, r.value.generation_id, r.value, instance)
            for r, instance in zip(replies, instances, strict=True)
        ]
        leader = next(m for m in members if m.member_id == m.join.leader_id)
        assignments = {m.member_id: f"a-{m.member_id}".encode() for m in members}
        syncs = [
            self.sync(
                m.member_id,
                m.generation,
                assignments if m is leader else None,
                group=group,
                instance=m.instance,
            )
            for m in members
        ]
        for m, s in zip(members, syncs, strict=True):
            assert s.value.error is E.NONE, s.value
            m.assignment = s.value.assignment
        assert self.state(group) is S.STABLE
        return members


# -- joining ----------------------------------------------------------------------------------------


def test_first_join_gets_a_member_id_then_joins_with_it() -> None:
    h = Harness()
    first = h.join(client_id="my-client")
    assert first.value.error is E.MEMBER_ID_REQUIRED
    assert first.value.member_id.startswith("my-client-")
    assert first.value.generation_id == -1
    assert h.state() is S.EMPTY
    second = h.join(first.value.member_id)
    assert not second.done  # parked until the rebalance completes
    assert h.state() is S.PREPARING_REBALANCE
    h.advance(0)
    result = second.value
    assert result.error is E.NONE
    assert (result.generation_id, result.member_id, result.leader_id) == (
        1,
        first.value.member_id,
        first.value.member_id,
    )
    assert (result.protocol_type, result.protocol_name) == ("consumer", "range")
    assert [(m.member_id, m.metadata) for m in result.members] == [
        (first.value.member_id, RANGE[0][1])
    ]
    assert h.state() is S.COMPLETING_REBALANCE


def test_old_clients_join_without_the_member_id_round_trip() -> None:
    h = Harness()
    reply = h.join(require_known_member_id=False, client_id=None)
    h.advance(0)
    assert reply.value.error is E.NONE
    assert reply.value.member_id.startswith("null-")  # Java's "null" + "-" + uuid


def test_leader_gets_all_metadata_and_followers_wait_for_its_assignment() -> None:
    h = Harness()
    a = h.join_new(protocols=[("range", b"A")])
    b = h.join_new(protocols=[("range", b"B")])
    h.advance(0)
    leader, follower = a.value, b.value
    assert leader.leader_id == leader.member_id == follower.leader_id
    assert {m.member_id: m.metadata for m in leader.members} == {
        leader.member_id: b"A",
        follower.member_id: b"B",
    }
    assert follower.members == ()
    follower_sync = h.sync(follower.member_id, 1)
    assert not follower_sync.done
    leader_sync = h.sync(leader.member_id, 1, {leader.member_id: b"x", follower.member_id: b"y"})
    assert leader_sync.value == SyncGroupResult(E.NONE, "consumer", "range", b"x")
    assert follower_sync.value == SyncGroupResult(E.NONE, "consumer", "range", b"y")
    assert h.state() is S.STABLE


def test_members_the_leader_leaves_out_get_an_empty_assignment() -> None:
    h = Harness()
    a, b = h.join_new(), h.join_new()
    h.advance(0)
    follower_sync = h.sync(b.value.member_id, 1)
    h.sync(a.value.member_id, 1, {a.value.member_id: b"x", "stranger": b"z"})
    assert follower_sync.value.assignment == b""


def test_initial_rebalance_delay_waits_again_while_members_keep_arriving() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    first = h.join_new(rebalance=30_000)
    h.advance(1_000)
    second = h.join_new(rebalance=30_000)
    h.advance(2_000)  # t=3000: a member arrived during the delay, so wait once more
    assert not first.done and not second.done
    h.advance(2_999)
    assert not first.done
    h.advance(1)  # t=6000
    assert first.value.generation_id == second.value.generation_id == 1


def test_initial_delay_is_bounded_by_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    first = h.join_new(rebalance=4_000)
    for _ in range(5):
        h.advance(1_000)
        h.join_new(rebalance=4_000)
    # 3000 ms, then min(3000, 1000 left) more: done by 4000 ms whatever keeps arriving.
    assert first.done
    assert first.value.error is E.NONE


def test_protocol_is_the_common_one_most_members_prefer() -> None:
    h = Harness()
    replies = [
        h.join_new(protocols=[("range", b""), ("roundrobin", b""), ("sticky", b"")]),
        h.join_new(protocols=[("roundrobin", b""), ("range", b"")]),
        h.join_new(protocols=[("roundrobin", b""), ("range", b"")]),
    ]
    h.advance(0)
    assert {r.value.protocol_name for r in replies} == {"roundrobin"}


def test_inconsistent_protocols_are_refused() -> None:
    h = Harness()
    h.form_group(1)
    other_type = h.join(protocol_type="connect")
    assert other_type.value.error is E.INCONSISTENT_GROUP_PROTOCOL
    no_common = h.join(protocols=[("sticky", b"")])
    assert no_common.value.error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.join(protocol_type="").value.error is E.INCONSISTENT_GROUP_PROTOCOL
    empty = Harness()
    assert empty.join(protocols=[]).value.error is E.INCONSISTENT_GROUP_PROTOCOL


@pytest.mark.parametrize("session", [5_999, 1_800_001])
def test_session_timeout_must_be_within_the_broker_bounds(session: int) -> None:
    h = Harness(min_session_timeout_ms=6_000, max_session_timeout_ms=1_800_000)
    assert h.join(session=session).value.error is E.INVALID_SESSION_TIMEOUT


def test_invalid_group_id_and_unknown_member() -> None:
    h = Harness()
    assert h.join(group="").value.error is E.INVALID_GROUP_ID
    assert h.join("nobody").value == JoinGroupResult("nobody", E.UNKNOWN_MEMBER_ID)
    h.form_group(1)
    assert h.join("nobody").value.error is E.UNKNOWN_MEMBER_ID


def test_coordinator_not_started_or_loading() -> None:
    h = Harness()
    h.coordinator.loading = True
    assert h.join().value.error is E.COORDINATOR_LOAD_IN_PROGRESS
    assert h.heartbeat("m", 1) is E.NONE  # answered blindly while loading
    assert h.sync("m", 1).value.error is E.REBALANCE_IN_PROGRESS
    assert h.commit({("t", 0): 1})[("t", 0)] is E.COORDINATOR_LOAD_IN_PROGRESS
    assert h.coordinator.list_groups()[0] is E.COORDINATOR_LOAD_IN_PROGRESS
    h.coordinator.loading = False
    h.coordinator.active = False
    assert h.join().value.error is E.COORDINATOR_NOT_AVAILABLE
    assert h.coordinator.fetch_offsets("g", None)[0] is E.COORDINATOR_NOT_AVAILABLE


def test_group_max_size() -> None:
    h = Harness(max_size=2)
    h.form_group(2)
    refused = h.join()
    assert refused.value == JoinGroupResult("", E.GROUP_MAX_SIZE_REACHED)


def test_group_max_size_counts_rejoined_members_during_a_rebalance() -> None:
    h = Harness(max_size=1)
    first = h.join_new()
    second = h.join()  # turned away before it even gets a member id
    assert second.value.error is E.GROUP_MAX_SIZE_REACHED
    h.advance(0)
    assert first.value.error is E.NONE


def test_completing_rebalance_retry_gets_the_same_answer() -> None:
    h = Harness()
    a = h.join_new()
    h.advance(0)
    again = h.join(a.value.member_id)
    assert again.value.generation_id == 1
    assert again.value.members == a.value.members  # still the leader's view
    assert h.state() is S.COMPLETING_REBALANCE


def test_follower_rejoining_a_stable_group_unchanged_gets_the_current_generation() -> None:
    h = Harness()
    leader, follower = h.form_group(2)
    same = h.join(follower.member_id)
    assert same.value.generation_id == 1 and same.value.members == ()
    assert h.state() is S.STABLE
    # The leader rejoining forces a rebalance (it may have seen metadata change).
    again = h.join(leader.member_id)
    assert not again.done and h.state() is S.PREPARING_REBALANCE


def test_changed_metadata_triggers_a_rebalance() -> None:
    h = Harness()
    _, follower = h.form_group(2)
    h.join(follower.member_id, protocols=[("range", subscription("t", "u"))])
    assert h.state() is S.PREPARING_REBALANCE


# -- rebalances -------------------------------------------------------------------------------------


def test_rebalance_timeout_removes_dynamic_members_that_do_not_rejoin() -> None:
    h = Harness()
    leader, follower = h.form_group(2, session=10_000, rebalance=5_000)
    rejoin = h.join(leader.member_id, session=10_000, rebalance=5_000)
    assert h.heartbeat(follower.member_id, 1) is E.REBALANCE_IN_PROGRESS
    h.advance(4_999)
    assert not rejoin.done
    h.advance(1)
    assert rejoin.value.generation_id == 2
    assert [m.member_id for m in rejoin.value.members] == [leader.member_id]
    assert h.heartbeat(follower.member_id, 1) is E.UNKNOWN_MEMBER_ID
    assert h.heartbeat(leader.member_id, 1) is E.ILLEGAL_GENERATION


def test_a_new_leader_is_elected_when_the_leader_does_not_rejoin() -> None:
    h = Harness()
    leader, follower = h.form_group(2, rebalance=5_000)
    third = h.join_new(rebalance=5_000)  # starts a rebalance
    rejoin = h.join(follower.member_id, rebalance=5_000)
    h.advance(5_000)
    assert rejoin.value.leader_id == follower.member_id
    assert third.value.leader_id == follower.member_id
    assert leader.member_id not in h.coordinator.groups["g"].members


def test_a_rebalance_completes_as_soon_as_everyone_rejoined() -> None:
    h = Harness()
    a, b = h.form_group(2)
    ra = h.join(a.member_id)
    assert not ra.done
    rb = h.join(b.member_id)
    assert ra.value.generation_id == rb.value.generation_id == 2


def test_followers_waiting_for_the_assignment_hear_of_a_new_rebalance() -> None:
    h = Harness()
    a, b = h.join_new(), h.join_new()
    h.advance(0)
    leader_id = a.value.leader_id
    follower_id = b.value.member_id if a.value.member_id == leader_id else a.value.member_id
    waiting = h.sync(follower_id, 1)
    h.join_new()  # a member arrives before the leader's SyncGroup
    assert waiting.value == SyncGroupResult(E.REBALANCE_IN_PROGRESS)
    assert h.state() is S.PREPARING_REBALANCE
    assert h.sync(leader_id, 1).value.error is E.REBALANCE_IN_PROGRESS


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    a, b = h.join_new(rebalance=5_000), h.join_new(rebalance=5_000)
    h.advance(0)
    leader_id = a.value.leader_id
    lazy = b.value.member_id if a.value.member_id == leader_id else a.value.member_id
    assert h.sync(leader_id, 1, {}).value.error is E.NONE
    assert h.state() is S.STABLE
    h.heartbeat(leader_id, 1)
    h.advance(5_000)
    assert h.state() is S.PREPARING_REBALANCE
    assert lazy not in h.coordinator.groups["g"].members


def test_cooperative_rounds_are_plain_rebalances() -> None:
    """cooperative-sticky: after a rebalance that revokes partitions, the members rejoin
    straight away for a second round; nothing special happens on the broker."""
    coop = [("cooperative-sticky", subscription("t"))]
    h = Harness()
    a, b = h.form_group(2, protocols=coop)
    c = h.join_new(protocols=coop)
    ra, rb = h.join(a.member_id, protocols=coop), h.join(b.member_id, protocols=coop)
    for reply in (c, ra, rb):
        assert reply.value.generation_id == 2
    members = {r.value.member_id: r.value for r in (c, ra, rb)}
    leader = next(iter(members.values())).leader_id
    syncs = {m: h.sync(m, 2, {m: b"r1"} if m == leader else None) for m in members}
    assert all(s.value.error is E.NONE for s in syncs.values())
    # Second round: everyone rejoins with its revocations done (its owned partitions, in
    # its metadata, changed).
    revoked = [("cooperative-sticky", subscription("t") + b"owned")]
    second = {m: h.join(m, protocols=revoked) for m in members}
    assert all(r.value.generation_id == 3 for r in second.values())
    assert h.state() is S.COMPLETING_REBALANCE


# -- sessions ---------------------------------------------------------------------------------------


def test_session_expiry_removes_a_member_and_starts_a_rebalance() -> None:
    h = Harness()
    a, b = h.form_group(2, session=10_000)
    for _ in range(2):
        h.advance(4_000)
        assert h.heartbeat(a.member_id, 1) is E.NONE
    h.advance(1_999)
    assert b.member_id in h.coordinator.groups["g"].members
    h.advance(1)
    assert b.member_id not in h.coordinator.groups["g"].members  # expired at 10 s
    assert h.heartbeat(a.member_id, 1) is E.REBALANCE_IN_PROGRESS
    again = h.join(a.member_id)
    assert again.value.generation_id == 2 and len(again.value.members) == 1


def test_heartbeats_keep_a_member_alive_and_commits_count_as_heartbeats() -> None:
    h = Harness()
    (a,) = h.form_group(1, session=10_000)
    for i in range(10):
        h.advance(6_000)
        if i % 2:
            assert h.heartbeat(a.member_id, 1) is E.NONE
        else:
            assert h.commit({("t", 0): i}, member_id=a.member_id, generation=1) == {
                ("t", 0): E.NONE
            }
    assert h.state() is S.STABLE


def test_last_member_expiring_empties_the_group() -> None:
    h = Harness()
    h.form_group(1, session=10_000)
    h.advance(10_000)
    assert h.state() is S.EMPTY
    assert h.coordinator.groups["g"].generation_id == 2


def test_members_waiting_in_a_rebalance_do_not_expire() -> None:
    h = Harness()
    a, b = h.form_group(2, session=10_000, rebalance=60_000)
    rejoin_a = h.join(a.member_id, session=10_000, rebalance=60_000)
    for _ in range(5):  # a waits in the rebalance for 25 s; b heartbeats, then rejoins
        h.advance(5_000)
        assert h.heartbeat(b.member_id, 1) is E.REBALANCE_IN_PROGRESS
    assert not rejoin_a.done
    rejoin_b = h.join(b.member_id, session=10_000, rebalance=60_000)
    assert rejoin_a.value.generation_id == rejoin_b.value.generation_id == 2
    assert len(rejoin_a.value.members) == 2


def test_a_member_that_stops_heartbeating_while_others_rejoin_is_removed() -> None:
    h = Harness()
    a, b = h.form_group(2, session=10_000, rebalance=60_000)
    rejoin_a = h.join(a.member_id, session=10_000, rebalance=60_000)
    h.advance(10_000)  # b neither heartbeats nor rejoins: its expiry ends the rebalance
    assert rejoin_a.value.generation_id == 2
    assert b.member_id not in h.coordinator.groups["g"].members


def test_a_new_member_parked_too_long_is_removed() -> None:
    h = Harness()
    (a,) = h.form_group(1, session=10_000, rebalance=600_000)
    parked = h.join_new(session=10_000, rebalance=600_000)
    for _ in range(NEW_MEMBER_JOIN_TIMEOUT_MS // 5_000):
        h.advance(5_000)
        h.heartbeat(a.member_id, 1)
    assert parked.value == JoinGroupResult("", E.UNKNOWN_MEMBER_ID)


def test_pending_member_that_never_rejoins_expires(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    (a,) = h.form_group(1, session=10_000)
    pending = h.join(session=10_000)
    assert pending.value.error is E.MEMBER_ID_REQUIRED
    h.heartbeat(a.member_id, 1)
    rejoin = h.join(a.member_id)  # the rebalance also waits for the pending member
    assert not rejoin.done
    with caplog.at_level("INFO", logger="kafkacompat.coordinators"):
        h.advance(10_000)
    assert rejoin.value.generation_id == 2
    assert h.join(pending.value.member_id).value.error is E.UNKNOWN_MEMBER_ID
    # The stall is visible in the broker's log (librdkafka test 0113 waited 45 s on one).
    assert any(
        f"pending member {pending.value.member_id} in group g has been removed" in r.message
        for r in caplog.records
    )


# -- static membership (KIP-345) --------------------------------------------------------------------


def test_static_member_restart_gets_a_new_id_without_a_rebalance() -> None:
    h = Harness()
    leader, follower = h.form_group(2, instances=["i-1", "i-2"])
    assert follower.member_id.startswith("i-2-")
    restarted = h.join(instance="i-2")
    result = restarted.value
    assert result.error is E.NONE
    assert result.member_id != follower.member_id and result.member_id.startswith("i-2-")
    assert (result.generation_id, result.leader_id) == (1, leader.member_id)
    assert h.state() is S.STABLE
    sync = h.sync(result.member_id, 1, instance="i-2")
    assert sync.value.assignment == follower.assignment
    assert h.heartbeat(follower.member_id, 1, instance="i-2") is E.FENCED_INSTANCE_ID
    assert h.heartbeat(result.member_id, 1, instance="i-2") is E.NONE


def test_restarted_static_leader_skips_the_assignment_from_join_group_v9() -> None:
    h = Harness()
    leader, _ = h.form_group(2, instances=["i-1", "i-2"])
    old_client = h.join(instance="i-1")
    assert old_client.value.leader_id == leader.member_id  # not the new id: no assignment
    assert old_client.value.members == ()
    new_client = h.join(instance="i-1", skip_assignment=True)
    result = new_client.value
    assert result.leader_id == result.member_id and result.skip_assignment
    assert len(result.members) == 2
    assert h.state() is S.STABLE


def test_static_member_with_other_protocols_triggers_a_rebalance() -> None:
    h = Harness()
    both = [("range", b""), ("roundrobin", b"")]
    h.form_group(3, instances=["i-1", "i-2", "i-3"], protocols=both)
    flipped = [("roundrobin", b""), ("range", b"")]
    # New metadata alone does not rebalance: only a change of the selected protocol does.
    assert h.join(instance="i-2", protocols=flipped).value.error is E.NONE
    assert h.state() is S.STABLE
    h.join(instance="i-3", protocols=flipped)  # now most prefer roundrobin
    assert h.state() is S.PREPARING_REBALANCE


def test_static_members_that_do_not_rejoin_are_kept_through_a_rebalance() -> None:
    h = Harness()
    a, b = h.form_group(2, instances=["i-1", "i-2"], rebalance=5_000)
    rejoin = h.join(a.member_id, instance="i-1", rebalance=5_000)
    h.advance(5_000)
    assert {m.member_id for m in rejoin.value.members} == {a.member_id, b.member_id}


def test_fenced_and_unknown_instances() -> None:
    h = Harness()
    (a,) = h.form_group(1, instances=["i-1"])
    assert h.join("other-id", instance="i-1").value.error is E.FENCED_INSTANCE_ID
    assert h.join(a.member_id, instance="i-9").value.error is E.UNKNOWN_MEMBER_ID
    assert h.sync("other-id", 1, instance="i-1").value.error is E.FENCED_INSTANCE_ID
    error, errors = h.coordinator.leave_group("g", [("other-id", "i-1")])
    assert (error, errors) == (E.NONE, [E.FENCED_INSTANCE_ID])


def test_a_static_member_replaced_while_waiting_is_fenced() -> None:
    h = Harness()
    a, _ = h.form_group(2, instances=["i-1", "i-2"])
    parked = h.join(a.member_id, instance="i-1")  # leader rejoins: rebalance
    h.join(instance="i-1")  # the same instance starts again elsewhere
    assert parked.value.error is E.FENCED_INSTANCE_ID


# -- SyncGroup, Heartbeat, LeaveGroup errors --------------------------------------------------------


def test_sync_group_errors() -> None:
    h = Harness()
    assert h.sync("m", 1, group="nope").value.error is E.UNKNOWN_MEMBER_ID
    (a,) = h.form_group(1)
    assert h.sync(a.member_id, 7).value.error is E.ILLEGAL_GENERATION
    assert h.sync("x", 1).value.error is E.UNKNOWN_MEMBER_ID
    assert h.sync(a.member_id, 1, protocol_name="roundrobin").value.error is (
        E.INCONSISTENT_GROUP_PROTOCOL
    )
    assert h.sync(a.member_id, 1, protocol_type="connect").value.error is (
        E.INCONSISTENT_GROUP_PROTOCOL
    )
    stable = h.sync(a.member_id, 1, protocol_type="consumer", protocol_name="range")
    assert stable.value == SyncGroupResult(E.NONE, "consumer", "range", a.assignment)
    h.join(a.member_id)  # the only member rejoins: generation 2 at once
    assert h.sync(a.member_id, 1).value.error is E.ILLEGAL_GENERATION
    h2 = Harness()
    leader, follower = h2.form_group(2)
    h2.join(leader.member_id)
    assert h2.sync(follower.member_id, 1).value.error is E.REBALANCE_IN_PROGRESS


def test_heartbeat_errors() -> None:
    h = Harness()
    assert h.heartbeat("m", 1) is E.UNKNOWN_MEMBER_ID
    assert h.heartbeat("m", 1, group="") is E.INVALID_GROUP_ID
    (a,) = h.form_group(1)
    assert h.heartbeat(a.member_id, 2) is E.ILLEGAL_GENERATION
    assert h.heartbeat("x", 1) is E.UNKNOWN_MEMBER_ID
    assert h.heartbeat(a.member_id, 1) is E.NONE


def test_leave_group_rebalances_the_rest() -> None:
    h = Harness()
    a, b = h.form_group(2)
    assert h.coordinator.leave_group("g", [(b.member_id, None)]) == (E.NONE, [E.NONE])
    assert h.state() is S.PREPARING_REBALANCE
    rejoin = h.join(a.member_id)
    assert rejoin.value.generation_id == 2 and len(rejoin.value.members) == 1


def test_batch_leave_by_instance_id_and_unknown_members() -> None:
    h = Harness()
    h.form_group(3, instances=["i-1", "i-2", None])
    error, errors = h.coordinator.leave_group(
        "g", [("", "i-1"), ("", "i-2"), ("", "i-9"), ("ghost", None)]
    )
    assert error is E.NONE
    assert errors == [E.NONE, E.NONE, E.UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID]
    assert h.coordinator.groups["g"].size == 1
    assert h.coordinator.leave_group("nope", [("m", None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
    assert h.coordinator.leave_group("", [("m", None)]) == (E.INVALID_GROUP_ID, [])


def test_last_member_leaving_empties_the_group() -> None:
    h = Harness()
    (a,) = h.form_group(1)
    h.coordinator.leave_group("g", [(a.member_id, None)])
    assert h.state() is S.EMPTY
    assert h.coordinator.groups["g"].generation_id == 2


def test_pending_member_leaving() -> None:
    h = Harness()
    pending = h.join()
    assert h.coordinator.leave_group("g", [(pending.value.member_id, None)]) == (E.NONE, [E.NONE])
    assert not h.coordinator.groups["g"].pending_members


def test_shutdown_answers_parked_requests_not_coordinator() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    parked = h.join_new()
    h.coordinator.shutdown()
    assert parked.value.error is E.NOT_COORDINATOR
    assert not h.coordinator.active
