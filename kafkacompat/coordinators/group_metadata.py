"""A classic consumer group as its coordinator holds it: members, state, generation, offsets.

Kafka's ``GroupMetadata`` / ``MemberMetadata`` (the classic protocol; the new
group-coordinator module calls it ``ClassicGroup``).  Data and bookkeeping only: which member
awaits a JoinGroup or SyncGroup response, which protocols every member supports, which
static instance maps to which member id.  The rules of when to rebalance live in
:mod:`kafkacompat.coordinators.group_metadata_manager` and
:mod:`kafkacompat.coordinators.classic_group_rebalance`.

States and the transitions allowed into each (Kafka's ``GroupState.validPreviousStates``)::

    Empty               <- PreparingRebalance          (the last member left during a rebalance)
    PreparingRebalance  <- Empty, CompletingRebalance, Stable
    CompletingRebalance <- PreparingRebalance          (every member rejoined; awaiting the
                                                        leader's SyncGroup)
    Stable              <- CompletingRebalance         (the leader's assignment was stored)
    Dead                <- any                         (deleted, expired, or unloaded)
"""

from __future__ import annotations

import struct
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from kafkacompat.coordinators.group_timers import TimerHandle
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.internal_topics.group_metadata_value import GroupMetadataValue
from kafkacompat.protocol.messages.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from kafkacompat.protocol.primitives import DecodeError

CONSUMER_PROTOCOL_TYPE: Final = "consumer"
UNKNOWN_MEMBER_ID: Final = ""
NO_GENERATION: Final = -1
NO_LEADER_EPOCH: Final = -1


class GroupState(Enum):
    """Named as Kafka names them: these strings go on the wire (DescribeGroups, ListGroups)."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


S = GroupState
VALID_PREVIOUS_STATES: Final[dict[GroupState, frozenset[GroupState]]] = {
    S.EMPTY: frozenset({S.PREPARING_REBALANCE}),
    S.PREPARING_REBALANCE: frozenset({S.EMPTY, S.COMPLETING_REBALANCE, S.STABLE}),
    S.COMPLETING_REBALANCE: frozenset({S.PREPARING_REBALANCE}),
    S.STABLE: frozenset({S.COMPLETING_REBALANCE}),
    S.DEAD: frozenset(GroupState),
}


@dataclass(frozen=True, slots=True)
class JoinGroupMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinGroupResult:
    member_id: str
    error: ErrorCode
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    skip_assignment: bool = False
    members: tuple[JoinGroupMember, ...] = ()
    """Every member's metadata for the selected protocol: for the leader only."""


@dataclass(frozen=True, slots=True)
class SyncGroupResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinCallback = Callable[[JoinGroupResult], None]
SyncCallback = Callable[[SyncGroupResult], None]


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """A committed offset, as OffsetCommitValue stores it."""

    offset: int
    leader_epoch: int = NO_LEADER_EPOCH
    metadata: str = ""
    commit_timestamp: int = 0
    expire_timestamp: int | None = None
    """Only for commits that asked for their own retention (OffsetCommit v2-4)."""


class _NoHandle:
    def cancel(self) -> None:
        pass


NO_HANDLE: Final[TimerHandle] = _NoHandle()


class JoinTimer:
    """A group's pending DelayedJoin, or InitialDelayedJoin (``initial``: only time
    completes it; ``remaining_ms`` of the rebalance timeout is left for further waits)."""

    __slots__ = ("delay_ms", "handle", "initial", "remaining_ms")

    def __init__(self, *, initial: bool, delay_ms: int, remaining_ms: int) -> None:
        self.initial = initial
        self.delay_ms = delay_ms
        self.remaining_ms = remaining_ms
        self.handle: TimerHandle = NO_HANDLE


class SessionTimer:
    """The timer watching a member's session; armed for ``deadline`` or earlier."""

    __slots__ = ("deadline", "handle")

    def __init__(self, deadline: int) -> None:
        self.deadline = deadline
        self.handle: TimerHandle = NO_HANDLE


class MemberMetadata:
    """One member of a classic group."""

    __slots__ = (
        "assignment",
        "awaiting_join",
        "awaiting_sync",
        "client_host",
        "client_id",
        "group_instance_id",
        "is_new",
        "member_id",
        "protocol_type",
        "rebalance_timeout_ms",
        "session_deadline",
        "session_timeout_ms",
        "session_timer",
        "supported_protocols",
    )

    def __init__(
        self,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        supported_protocols: list[tuple[str, bytes]],
        assignment: bytes = b"",
    ) -> None:
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.protocol_type = protocol_type
        self.supported_protocols = supported_protocols
        self.assignment = assignment
        self.awaiting_join: JoinCallback | None = None
        self.awaiting_sync: SyncCallback | None = None
        self.is_new = False
        """Joined but not yet through a completed join: its session timer is the new-member
        join timeout, and being in a rebalance does not excuse it from expiring."""
        self.session_deadline: int | None = None
        """When the member expires unless it heartbeats (or is excused: see the coordinator)."""
        self.session_timer: SessionTimer | None = None

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def is_awaiting_join(self) -> bool:
        return self.awaiting_join is not None

    @property
    def is_awaiting_sync(self) -> bool:
        return self.awaiting_sync is not None

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.supported_protocols:
            if name == protocol:
                return metadata
        raise ValueError(f"member {self.member_id} does not support protocol {protocol}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.supported_protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for name, _ in self.supported_protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def __repr__(self) -> str:
        return (
            f"MemberMetadata(member_id={self.member_id!r}, "
            f"group_instance_id={self.group_instance_id!r}, client_id={self.client_id!r})"
        )


@dataclass(slots=True)
class GroupMetadata:
    """One group: its members and rebalance bookkeeping, and its committed offsets."""

    group_id: str
    state: GroupState
    state_timestamp: int | None
    """When the group entered its state (GroupMetadataValue's currentStateTimestamp):
    offsets of an Empty group expire this long after it emptied."""
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, MemberMetadata] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    """group.instance.id -> the member id currently holding it (KIP-345)."""
    pending_members: set[str] = field(default_factory=set)
    """Member ids handed out with MEMBER_ID_REQUIRED whose JoinGroup has not come back yet."""
    pending_sync_members: set[str] = field(default_factory=set)
    num_members_awaiting_join: int = 0
    supported_protocols: Counter[str] = field(default_factory=Counter)
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    subscribed_topics: frozenset[str] | None = None
    """The topics the members subscribe to (consumer groups only), or None if unknown."""
    new_member_added: bool = False
    """A member joined during the initial rebalance delay, which then waits once more."""
    join_timer: JoinTimer | None = None
    sync_timer: TimerHandle | None = None

    @classmethod
    def from_record(cls, group_id: str, value: GroupMetadataValue) -> GroupMetadata:
        """The group as its last stored generation left it (Kafka's ``ClassicGroup.fromRecord``):
        Stable if it had members, else Empty."""
        group = cls(
            group_id,
            S.STABLE if value.members else S.EMPTY,
            None if value.current_state_timestamp < 0 else value.current_state_timestamp,
            protocol_type=value.protocol_type or None,
            protocol_name=value.protocol,
            generation_id=value.generation,
            leader_id=value.leader,
        )
        protocol = value.protocol or ""
        for record in value.members:
            group.add(
                MemberMetadata(
                    record.member_id,
                    record.group_instance_id,
                    record.client_id,
                    record.client_host,
                    record.rebalance_timeout,
                    record.session_timeout,
                    value.protocol_type,
                    [(protocol, bytes(record.subscription))],
                    bytes(record.assignment),
                )
            )
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    # -- queries ----------------------------------------------------------------------------------

    def is_in(self, state: GroupState) -> bool:
        return self.state is state

    def has(self, member_id: str) -> bool:
        return member_id in self.members

    def get(self, member_id: str) -> MemberMetadata:
        return self.members[member_id]

    @property
    def size(self) -> int:
        return len(self.members)

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    @property
    def is_consumer_group(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    @property
    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS_STATES[GroupState.PREPARING_REBALANCE]

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    @property
    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_members_awaiting_join and not self.pending_members

    def not_yet_rejoined_members(self) -> list[MemberMetadata]:
        return [m for m in self.members.values() if not m.is_awaiting_join]

    def current_static_member_id(self, group_instance_id: str) -> str | None:
        return self.static_members.get(group_instance_id)

    def supports_protocols(self, protocol_type: str, protocols: Iterable[str]) -> bool:
        names = set(protocols)
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        size = len(self.members)
        return self.protocol_type == protocol_type and any(
            self.supported_protocols[name] == size for name in names
        )

    def select_protocol(self) -> str:
        """The protocol every member supports that most members prefer (each votes for its
        first choice among those)."""
        if not self.members:
            raise ValueError("cannot select a protocol for an empty group")
        size = len(self.members)
        candidates = {name for name, count in self.supported_protocols.items() if count == size}
        votes = Counter(member.vote(candidates) for member in self.members.values())
        # Ties go to the protocol that got its first vote earliest (Counter keeps that order).
        return max(votes, key=lambda name: votes[name])

    def current_member_metadata(self) -> tuple[JoinGroupMember, ...]:
        assert self.protocol_name is not None
        protocol = self.protocol_name
        return tuple(
            JoinGroupMember(m.member_id, m.group_instance_id, m.metadata(protocol))
            for m in self.members.values()
        )

    def is_subscribed_to_topic(self, topic: str) -> bool:
        # Unknown subscriptions count as subscribed: safer for OffsetDelete.
        return True if self.subscribed_topics is None else topic in self.subscribed_topics

    def in_states(self, lowercase_states: set[str]) -> bool:
        return self.state.value.lower() in lowercase_states

    # -- changes ----------------------------------------------------------------------------------

    def cancel_timers(self) -> None:
        if self.join_timer is not None:
            self.join_timer.handle.cancel()
            self.join_timer = None
        if self.sync_timer is not None:
            self.sync_timer.cancel()
            self.sync_timer = None
        for member in self.members.values():
            if member.session_timer is not None:
                member.session_timer.handle.cancel()
                member.session_timer = None

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise AssertionError(
                f"group {self.group_id} cannot go from {self.state.value} to {state.value}"
            )
        self.state = state
        self.state_timestamp = now_ms

    def add(self, member: MemberMetadata, callback: JoinCallback | None = None) -> None:
        if member.group_instance_id is not None:
            if member.group_instance_id in self.static_members:
                raise AssertionError(f"static member {member.group_instance_id} already present")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(name for name, _ in member.supported_protocols)
        member.awaiting_join = callback
        if callback is not None:
            self.num_members_awaiting_join += 1
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> MemberMetadata | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(name for name, _ in member.supported_protocols)
            if member.is_awaiting_join:
                self.num_members_awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync_members.discard(member_id)
        return member

    def update_member(
        self,
        member: MemberMetadata,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        callback: JoinCallback | None,
    ) -> None:
        self.supported_protocols.subtract(name for name, _ in member.supported_protocols)
        member.supported_protocols = protocols
        self.supported_protocols.update(name for name, _ in protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if callback is not None and not member.is_awaiting_join:
            self.num_members_awaiting_join += 1
        elif callback is None and member.is_awaiting_join:
            self.num_members_awaiting_join -= 1
        member.awaiting_join = callback

    def replace_static_member(
        self, group_instance_id: str, old_member_id: str, new_member_id: str
    ) -> MemberMetadata:
        """A static member rejoined with a new member id: same member, new id; whoever still
        waits under the old id is fenced."""
        member = self.members.pop(old_member_id)
        self.maybe_invoke_join_callback(
            member, JoinGroupResult(old_member_id, ErrorCode.FENCED_INSTANCE_ID)
        )
        self.maybe_invoke_sync_callback(member, SyncGroupResult(ErrorCode.FENCED_INSTANCE_ID))
        member.member_id = new_member_id
        self.members[new_member_id] = member
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[group_instance_id] = new_member_id
        if old_member_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_member_id)
            self.pending_sync_members.add(new_member_id)
        return member

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep a leader that rejoined, else make any rejoined member the leader; False when
        no member rejoined (or there is no leader at all)."""
        if self.leader_id is None:
            return False
        leader = self.members[self.leader_id]
        if leader.is_awaiting_join:
            return True
        for member in self.members.values():
            if member.is_awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def maybe_invoke_join_callback(self, member: MemberMetadata, result: JoinGroupResult) -> None:
        callback = member.awaiting_join
        if callback is not None:
            member.awaiting_join = None
            self.num_members_awaiting_join -= 1
            callback(result)

    def maybe_invoke_sync_callback(self, member: MemberMetadata, result: SyncGroupResult) -> bool:
        callback = member.awaiting_sync
        if callback is None:
            return False
        member.awaiting_sync = None
        callback(result)
        return True

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            found = subscribed_topics(member.metadata(self.protocol_name))
            if found is None:
                return None
            topics.update(found)
        return frozenset(topics)

    # -- offsets ----------------------------------------------------------------------------------

    def expired_offsets(self, now_ms: int, retention_ms: int) -> list[tuple[str, int]]:
        """Offsets past retention, by Kafka's rules: an Empty group's offsets expire
        ``retention_ms`` after it emptied (after their commit for groups that never recorded
        when); a Stable consumer group's offsets of topics no member subscribes to expire
        ``retention_ms`` after their commit; a group with no protocol (offsets only) likewise.
        Commits that carried their own retention (OffsetCommit v2-4) expire at that time."""
        if self.protocol_type is not None and self.state is GroupState.EMPTY:
            base_on_state = self.state_timestamp
            subscribed: frozenset[str] = frozenset()
        elif (
            self.protocol_type == CONSUMER_PROTOCOL_TYPE
            and self.subscribed_topics is not None
            and self.state is GroupState.STABLE
        ):
            base_on_state = None
            subscribed = self.subscribed_topics
        elif self.protocol_type is None:
            base_on_state = None
            subscribed = frozenset()
        else:
            return []
        expired = []
        for tp, committed in self.offsets.items():
            if tp[0] in subscribed:
                continue
            if committed.expire_timestamp is not None:
                if now_ms >= committed.expire_timestamp:
                    expired.append(tp)
                continue
            base = committed.commit_timestamp if base_on_state is None else base_on_state
            if now_ms - base >= retention_ms:
                expired.append(tp)
        return expired


def subscribed_topics(metadata: bytes) -> list[str] | None:
    """The topics of a ConsumerProtocolSubscription, read as v0 (the prefix of every version,
    as Kafka reads it), or None if the bytes are not one."""
    view = memoryview(metadata)
    try:
        (version,) = struct.unpack_from(">h", view, 0)
        if version < 0:
            return None
        subscription, _ = ConsumerProtocolSubscription.read(view, 2, 0)
    except (DecodeError, struct.error):
        return None
    return subscription.topics


def generate_member_id(client_id: str | None, group_instance_id: str | None) -> str:
    """``<client.id>-<uuid>``, or ``<group.instance.id>-<uuid>`` for a static member."""
    prefix = group_instance_id if group_instance_id is not None else client_id
    # Java's string concatenation turns a null client id into "null".
    return f"{'null' if prefix is None else prefix}-{uuid.uuid4()}"
