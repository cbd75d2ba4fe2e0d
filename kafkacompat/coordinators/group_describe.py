"""What DescribeGroups and ListGroups tell of a classic group (read operations: no records)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from kafkacompat.coordinators.group_metadata import GroupMetadata, GroupState

S = GroupState
CLASSIC_GROUP_TYPE: Final = "classic"


@dataclass(frozen=True, slots=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupSummary:
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberSummary, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupOverview:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = CLASSIC_GROUP_TYPE


EMPTY_GROUP: Final = GroupSummary("", "", "")
DEAD_GROUP: Final = GroupSummary(S.DEAD.value, "", "")


def describe_group(group: GroupMetadata | None) -> GroupSummary:
    """Members' metadata and assignments only for a Stable group; an unknown group is
    described as Dead."""
    if group is None:
        return DEAD_GROUP
    protocol_type = group.protocol_type or ""
    if group.is_in(S.STABLE):
        assert group.protocol_name is not None
        protocol = group.protocol_name
        members = tuple(
            MemberSummary(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(protocol),
                m.assignment,
            )
            for m in group.members.values()
        )
        return GroupSummary(group.state.value, protocol_type, protocol, members)
    members = tuple(
        MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host, b"", b"")
        for m in group.members.values()
    )
    return GroupSummary(group.state.value, protocol_type, "", members)


def list_groups(
    groups: Iterable[GroupMetadata], states: Iterable[str] = (), types: Iterable[str] = ()
) -> list[GroupOverview]:
    """Filtered by state and type (case-insensitive; empty: no filter).  Every group here is
    a classic group."""
    wanted_states = {s.lower() for s in states}
    wanted_types = {t.lower() for t in types}
    if wanted_types and CLASSIC_GROUP_TYPE not in wanted_types:
        return []
    return [
        GroupOverview(g.group_id, g.protocol_type or "", g.state.value)
        for g in groups
        if not wanted_states or g.in_states(wanted_states)
    ]
