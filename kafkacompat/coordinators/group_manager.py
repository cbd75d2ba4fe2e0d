"""Kafka's GroupMetadataManager: the groups this coordinator holds and their committed offsets,
kept in ``__consumer_offsets`` (:mod:`kafkacompat.coordinators.group_store`).

It loads every group at start-up, writes group generations and offsets before they are
acknowledged, answers OffsetFetch, the admin APIs (DescribeGroups, ListGroups, DeleteGroups,
OffsetDelete), and expires offsets: every ``offsets.retention.check.interval.ms``, offsets past
``offsets.retention.minutes`` go (see :meth:`GroupMetadata.expired_offsets` for which), and a
group left Empty without offsets goes with them.  Deletions are written as tombstones; a lost
tombstone only delays a deletion to the next check, as in Kafka.

Membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) is the coordinator's business:
:mod:`kafkacompat.coordinators.group_coordinator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Final

from kafkacompat.config import BrokerConfig
from kafkacompat.coordinators.group_metadata import (
    GroupMetadata,
    GroupState,
    MemberMetadata,
    OffsetAndMetadata,
)
from kafkacompat.coordinators.group_store import (
    GroupStore,
    LoadedGroups,
    Record,
    StoreError,
    drain,
    group_metadata_key,
    group_metadata_value,
    member_record,
    offset_commit_key,
    offset_commit_value,
)
from kafkacompat.coordinators.group_timers import Scheduler, TimerHandle
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.internal_topics.group_metadata_value import GroupMetadataValue

log = logging.getLogger(__name__)

E = ErrorCode
S = GroupState
TopicPartition = tuple[str, int]

OFFSET_METADATA_MAX_BYTES: Final = 4096
"""Kafka's offset.metadata.max.bytes default (not a setting here yet)."""
CLASSIC_GROUP_TYPE: Final = "classic"


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The group.* and offsets.* settings, with Kafka's defaults."""

    min_session_timeout_ms: int = 6_000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3_000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = OFFSET_METADATA_MAX_BYTES

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> GroupConfig:
        return cls(
            min_session_timeout_ms=config.get("group.min.session.timeout.ms"),
            max_session_timeout_ms=config.get("group.max.session.timeout.ms"),
            initial_rebalance_delay_ms=config.get("group.initial.rebalance.delay.ms"),
            max_size=config.get("group.max.size"),
            offsets_retention_ms=config.get("offsets.retention.minutes") * 60_000,
            offsets_retention_check_interval_ms=config.get("offsets.retention.check.interval.ms"),
        )


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


def _convert_store_error_for_group(error: ErrorCode) -> ErrorCode:
    """Kafka's storeGroup answers for a failed group write."""
    if error in (
        E.UNKNOWN_TOPIC_OR_PARTITION,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ):
        return E.COORDINATOR_NOT_AVAILABLE
    if error in (E.NOT_LEADER_OR_FOLLOWER, E.KAFKA_STORAGE_ERROR):
        return E.NOT_COORDINATOR
    if error is E.REQUEST_TIMED_OUT:
        return E.REBALANCE_IN_PROGRESS
    return E.UNKNOWN_SERVER_ERROR


def _convert_store_error_for_offsets(error: ErrorCode) -> ErrorCode:
    """Kafka's maybeConvertOffsetCommitError."""
    if error in (
        E.UNKNOWN_TOPIC_OR_PARTITION,
        E.NOT_ENOUGH_REPLICAS,
        E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        E.REQUEST_TIMED_OUT,
    ):
        return E.COORDINATOR_NOT_AVAILABLE
    if error in (E.NOT_LEADER_OR_FOLLOWER, E.KAFKA_STORAGE_ERROR):
        return E.NOT_COORDINATOR
    if error in (E.MESSAGE_TOO_LARGE, E.RECORD_LIST_TOO_LARGE, E.INVALID_FETCH_SIZE):
        return E.INVALID_COMMIT_OFFSET_SIZE
    return error


class GroupMetadataManager:
    """The groups, their offsets, and their records in the log."""

    def __init__(
        self, config: GroupConfig, scheduler: Scheduler, store: GroupStore | None = None
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.store = store
        self.groups: dict[str, GroupMetadata] = {}
        self.active = False
        self.loading = False
        self._expiration_timer: TimerHandle | None = None

    def now(self) -> int:
        return self.scheduler.now_ms()

    # -- lifecycle --------------------------------------------------------------------------------

    def load(self) -> LoadedGroups:
        return drain(self.load_steps())

    def load_steps(self) -> Generator[None, None, LoadedGroups]:
        """Replay the log into groups: Stable with their members if the last generation had
        any, else Empty; offsets without group metadata make an Empty group with no
        protocol (one used only to store offsets).  Stepwise: while it runs, group requests
        get COORDINATOR_LOAD_IN_PROGRESS."""
        self.loading = True
        self.active = True
        loaded = (yield from self.store.load_steps()) if self.store is not None else LoadedGroups()
        for group_id, value in loaded.groups.items():
            self.groups[group_id] = _group_from_record(group_id, value)
        for group_id, offsets in loaded.offsets.items():
            group = self.groups.get(group_id)
            if group is None:
                group = self.add_group(group_id)
            group.offsets.update(offsets)
        self.loading = False
        self.active = True
        self._schedule_offset_expiration()
        return loaded

    def shutdown(self) -> None:
        self.active = False
        if self._expiration_timer is not None:
            self._expiration_timer.cancel()
            self._expiration_timer = None

    def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` if it is missing (FindCoordinator's first lookup)."""
        if self.store is not None:
            self.store.ensure_topic()

    def partition_for(self, group_id: str) -> int:
        return self.store.partition_for(group_id) if self.store is not None else 0

    # -- groups -----------------------------------------------------------------------------------

    def group_error(self, group_id: str | None, *, allow_empty: bool) -> ErrorCode | None:
        """Kafka's validateGroupStatus: INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE,
        COORDINATOR_LOAD_IN_PROGRESS, or None.  Offset and admin APIs accept the empty
        group id (for backward compatibility, as Kafka does); membership APIs do not."""
        if group_id is None or (not allow_empty and not group_id):
            return E.INVALID_GROUP_ID
        if not self.active:
            return E.COORDINATOR_NOT_AVAILABLE
        if self.loading:
            return E.COORDINATOR_LOAD_IN_PROGRESS
        return None

    def add_group(self, group_id: str) -> GroupMetadata:
        group = GroupMetadata(group_id, S.EMPTY, self.now())
        self.groups[group_id] = group
        return group

    def store_group(self, group: GroupMetadata, assignment: dict[str, bytes]) -> ErrorCode | None:
        """Write the group's generation (its members with ``assignment``); the error a
        member would be told if that failed."""
        if self.store is None:
            return None
        protocol = group.protocol_name
        members = [
            member_record(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(protocol) if protocol is not None else b"",
                assignment[m.member_id],
            )
            for m in group.members.values()
        ]
        value = GroupMetadataValue(
            protocol_type=group.protocol_type or "",
            generation=group.generation_id,
            protocol=protocol,
            leader=group.leader_id,
            current_state_timestamp=-1 if group.state_timestamp is None else group.state_timestamp,
            members=members,
        )
        try:
            self.store.append(
                group.group_id,
                [(group_metadata_key(group.group_id), group_metadata_value(value))],
            )
        except StoreError as exc:
            log.warning("cannot store group %s: %s", group.group_id, exc)
            return _convert_store_error_for_group(exc.error_code)
        return None

    def _append(self, group_id: str, records: list[Record]) -> ErrorCode | None:
        if self.store is None or not records:
            return None
        try:
            self.store.append(group_id, records)
        except StoreError as exc:
            return exc.error_code
        return None

    # -- offsets ----------------------------------------------------------------------------------

    def store_offsets(
        self, group: GroupMetadata, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> dict[TopicPartition, ErrorCode]:
        """Write the commits (all in one batch), then make them visible; metadata over
        offset.metadata.max.bytes fails only its own partition."""
        limit = self.config.offset_metadata_max_bytes
        errors: dict[TopicPartition, ErrorCode] = {}
        valid: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, committed in offsets.items():
            if len(committed.metadata) > limit:
                errors[tp] = E.OFFSET_METADATA_TOO_LARGE
            else:
                valid[tp] = committed
        if valid:
            records: list[Record] = [
                (offset_commit_key(group.group_id, *tp), offset_commit_value(committed))
                for tp, committed in valid.items()
            ]
            failure = self._append(group.group_id, records)
            if failure is None:
                if not group.is_in(S.DEAD):
                    group.offsets.update(valid)
                code = E.NONE
            else:
                code = _convert_store_error_for_offsets(failure)
            for tp in valid:
                errors[tp] = code
        return errors

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> tuple[ErrorCode, list[tuple[TopicPartition, OffsetAndMetadata | None]]]:
        """OffsetFetch: the committed offset per partition (None: nothing committed); every
        committed partition when ``partitions`` is None.  No transactions here, so nothing
        is ever pending and require_stable changes nothing."""
        error = self.group_error(group_id, allow_empty=True)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return E.NONE, [(tp, None) for tp in partitions or ()]
        wanted = list(group.offsets) if partitions is None else partitions
        return E.NONE, [(tp, group.offsets.get(tp)) for tp in wanted]

    def delete_offsets(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        """OffsetDelete: allowed for an Empty group, or for topics no member of a consumer
        group subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise)."""
        error = self.group_error(group_id, allow_empty=False)
        if error is not None:
            return error, {}
        group = self.groups.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return E.GROUP_ID_NOT_FOUND, {}
        errors: dict[TopicPartition, ErrorCode] = {}
        if group.is_in(S.EMPTY):
            eligible = list(partitions)
        elif group.is_consumer_group:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to_topic(tp[0]):
                    errors[tp] = E.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    eligible.append(tp)
        else:
            return E.NON_EMPTY_GROUP, {}
        if eligible:
            self.cleanup_group_metadata(
                [group], lambda g: [tp for tp in eligible if g.offsets.pop(tp, None) is not None]
            )
            errors.update(dict.fromkeys(eligible, E.NONE))
        return E.NONE, errors

    # -- admin ------------------------------------------------------------------------------------

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupSummary]:
        """DescribeGroups: members' metadata and assignments only for a Stable group; an
        unknown group is described as Dead."""
        error = self.group_error(group_id, allow_empty=True)
        if error is not None:
            return error, EMPTY_GROUP
        group = self.groups.get(group_id)
        if group is None:
            return E.NONE, DEAD_GROUP
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
            return E.NONE, GroupSummary(group.state.value, protocol_type, protocol, members)
        members = tuple(
            MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host, b"", b"")
            for m in group.members.values()
        )
        return E.NONE, GroupSummary(group.state.value, protocol_type, "", members)

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> tuple[ErrorCode, list[GroupOverview]]:
        """ListGroups, filtered by state and type (case-insensitive; empty: no filter).
        Every group here is a classic group."""
        if not self.active:
            return E.COORDINATOR_NOT_AVAILABLE, []
        error = E.COORDINATOR_LOAD_IN_PROGRESS if self.loading else E.NONE
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        if wanted_types and CLASSIC_GROUP_TYPE not in wanted_types:
            return error, []
        return error, [
            GroupOverview(g.group_id, g.protocol_type or "", g.state.value)
            for g in self.groups.values()
            if not wanted_states or g.in_states(wanted_states)
        ]

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        """DeleteGroups: only Empty groups go (NON_EMPTY_GROUP otherwise), with their
        offsets; tombstones are written for both."""
        errors: dict[str, ErrorCode] = {}
        eligible: list[GroupMetadata] = []
        for group_id in group_ids:
            if group_id in errors:
                continue
            error = self.group_error(group_id, allow_empty=True)
            if error is not None:
                errors[group_id] = error
                continue
            group = self.groups.get(group_id)
            if group is None or group.is_in(S.DEAD):
                errors[group_id] = E.GROUP_ID_NOT_FOUND
            elif group.is_in(S.EMPTY):
                group.transition_to(S.DEAD, self.now())
                eligible.append(group)
                errors[group_id] = E.NONE
            else:
                errors[group_id] = E.NON_EMPTY_GROUP
        if eligible:
            removed = self.cleanup_group_metadata(eligible, _remove_all_offsets)
            log.info(
                "deleted groups %s and %d offsets", ", ".join(g.group_id for g in eligible), removed
            )
        return errors

    # -- expiry -----------------------------------------------------------------------------------

    def expire_offsets(self) -> int:
        """The offsets retention check: expire offsets past retention; groups left Empty
        without offsets are removed."""
        now = self.now()
        retention = self.config.offsets_retention_ms

        def expired(group: GroupMetadata) -> list[TopicPartition]:
            gone = group.expired_offsets(now, retention)
            for tp in gone:
                del group.offsets[tp]
            return gone

        removed = self.cleanup_group_metadata(list(self.groups.values()), expired)
        if removed:
            log.info("removed %d expired offsets", removed)
        return removed

    def on_partitions_deleted(self, partitions: Iterable[TopicPartition]) -> int:
        """Drop every group's offsets of deleted partitions (DeleteTopics), as Kafka's
        onPartitionsDeleted does; returns how many went."""
        gone = set(partitions)

        def of_deleted(group: GroupMetadata) -> list[TopicPartition]:
            removed = [tp for tp in group.offsets if tp in gone]
            for tp in removed:
                del group.offsets[tp]
            return removed

        return self.cleanup_group_metadata(list(self.groups.values()), of_deleted)

    def _schedule_offset_expiration(self) -> None:
        def run() -> None:
            self._expiration_timer = None
            if not self.active:
                return
            try:
                self.expire_offsets()
            finally:
                self._schedule_offset_expiration()

        self._expiration_timer = self.scheduler.call_later(
            self.config.offsets_retention_check_interval_ms, run
        )

    def cleanup_group_metadata(
        self,
        groups: list[GroupMetadata],
        selector: Callable[[GroupMetadata], list[TopicPartition]],
    ) -> int:
        """Remove offsets (``selector`` picks and drops them), then groups that are Dead, or
        Empty with no offsets left, writing tombstones for both.  Returns how many offsets
        went."""
        removed_count = 0
        for group in groups:
            removed = selector(group)
            if group.is_in(S.EMPTY) and not group.offsets:
                log.info(
                    "group %s transitioned to Dead in generation %d",
                    group.group_id,
                    group.generation_id,
                )
                group.transition_to(S.DEAD, self.now())
            records: list[Record] = [
                (offset_commit_key(group.group_id, topic, partition), None)
                for topic, partition in removed
            ]
            if group.is_in(S.DEAD) and self.groups.get(group.group_id) is group:
                del self.groups[group.group_id]
                group.cancel_timers()
                # A group used only to store offsets never had a metadata record to delete.
                if group.generation_id > 0:
                    records.append((group_metadata_key(group.group_id), None))
            failure = self._append(group.group_id, records)
            if failure is not None:
                log.warning(
                    "could not write tombstones for group %s: %s", group.group_id, failure.name
                )
            else:
                removed_count += len(removed)
        return removed_count


def _remove_all_offsets(group: GroupMetadata) -> list[TopicPartition]:
    removed = list(group.offsets)
    group.offsets.clear()
    return removed


def _group_from_record(group_id: str, value: GroupMetadataValue) -> GroupMetadata:
    group = GroupMetadata(
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
