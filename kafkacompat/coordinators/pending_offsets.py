"""Transactional offset commits not yet decided: Kafka's ``pendingTransactionalOffsets`` and
``openTransactionsByGroup`` of one shard.

A TxnOffsetCommit writes its offsets to ``__consumer_offsets`` in a transactional batch of the
producer's; replaying those records puts them here, by producer id, invisible to OffsetFetch.
The transaction coordinator's marker then decides them: COMMIT moves them to the group's
committed offsets, ABORT drops them.  Until then OffsetFetch with ``require_stable`` answers
UNSTABLE_OFFSET_COMMIT for their partitions, retention does not expire those partitions, and
a group with an open transaction is not removed for being empty.

*Which offset wins.*  Kafka keeps the most recent commit when a transactional commit and a
plain one (or two transactions) touch the same partition: at COMMIT a pending offset replaces
the committed one only if its record is later in the log (compaction of
``__consumer_offsets`` may otherwise resurrect the wrong one).  Record offsets matter only
while a group has an open transaction (any pending record is later than every commit made
before that), so the committed offsets' record offsets are kept here only for such groups,
and forgotten once the group's last transaction is decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from kafkacompat.coordinators.coordinator_runtime import UNKNOWN_RECORD_OFFSET
from kafkacompat.coordinators.group_metadata import OffsetAndMetadata

TopicPartition = tuple[str, int]


class PendingOffset(NamedTuple):
    value: OffsetAndMetadata
    record_offset: int


class DecidedOffset(NamedTuple):
    """One offset of a transaction the marker just decided."""

    group_id: str
    partition: TopicPartition
    value: OffsetAndMetadata
    record_offset: int


class PendingTransactionalOffsets:
    """One shard's undecided transactional offsets, by producer id and by group."""

    def __init__(self) -> None:
        self._by_producer: dict[int, dict[str, dict[TopicPartition, PendingOffset]]] = {}
        self.open_by_group: dict[str, set[int]] = {}
        """The producers with an open transaction, by group: read it, never change it (the
        managers' hot paths test it directly, cheaper than a method call)."""
        # Record offsets of committed offsets written while their group had an open
        # transaction: a later marker compares them with the pending ones'.
        self._committed_record_offsets: dict[str, dict[TopicPartition, int]] = {}

    # -- replay ------------------------------------------------------------------------------------

    def add(
        self,
        producer_id: int,
        group_id: str,
        partition: TopicPartition,
        value: OffsetAndMetadata,
        record_offset: int,
    ) -> None:
        """A transactional offset commit record was replayed (the latest per partition wins)."""
        groups = self._by_producer.setdefault(producer_id, {})
        groups.setdefault(group_id, {})[partition] = PendingOffset(value, record_offset)
        self.open_by_group.setdefault(group_id, set()).add(producer_id)

    def on_committed(self, group_id: str, partition: TopicPartition, record_offset: int) -> None:
        """A plain offset commit record was replayed for ``partition``."""
        if group_id in self.open_by_group and record_offset != UNKNOWN_RECORD_OFFSET:
            self._committed_record_offsets.setdefault(group_id, {})[partition] = record_offset

    def on_tombstone(self, group_id: str, partition: TopicPartition) -> bool:
        """An offset tombstone was replayed: it removes the partition's pending offsets too, as
        in Kafka.  Whether there were any."""
        removed = False
        for producer_id in self.open_by_group.get(group_id, ()):
            offsets = self._by_producer[producer_id].get(group_id)
            if offsets is not None and offsets.pop(partition, None) is not None:
                removed = True
        committed = self._committed_record_offsets.get(group_id)
        if committed is not None:
            committed.pop(partition, None)
        return removed

    def complete(self, producer_id: int) -> list[DecidedOffset]:
        """The marker of ``producer_id``'s transaction: its offsets leave the pending state
        (the caller materialises them on COMMIT); none if it committed none here."""
        groups = self._by_producer.pop(producer_id, None)
        if groups is None:
            return []
        decided = [
            DecidedOffset(group_id, tp, pending.value, pending.record_offset)
            for group_id, offsets in groups.items()
            for tp, pending in offsets.items()
        ]
        for group_id in groups:
            open_ids = self.open_by_group.get(group_id)
            if open_ids is not None:
                open_ids.discard(producer_id)
                if not open_ids:
                    del self.open_by_group[group_id]
        return decided

    def forget_record_offsets(self, group_id: str) -> None:
        """Once a group has no open transaction, no pending record can be older than any of
        its commits: their record offsets are no longer needed."""
        if group_id not in self.open_by_group:
            self._committed_record_offsets.pop(group_id, None)

    def committed_record_offset(self, group_id: str, partition: TopicPartition) -> int:
        return self._committed_record_offsets.get(group_id, {}).get(
            partition, UNKNOWN_RECORD_OFFSET
        )

    # -- queries -----------------------------------------------------------------------------------

    def has_open_transactions(self, group_id: str) -> bool:
        return group_id in self.open_by_group

    def has_pending(self, group_id: str, partition: TopicPartition) -> bool:
        """Kafka's ``hasPendingTransactionalOffsets``."""
        return any(
            partition in self._by_producer[producer_id].get(group_id, {})
            for producer_id in self.open_by_group.get(group_id, ())
        )

    def pending_partitions(self, group_id: str) -> set[TopicPartition]:
        """Every partition of the group with a pending offset, of any open transaction."""
        found: set[TopicPartition] = set()
        for producer_id in self.open_by_group.get(group_id, ()):
            found.update(self._by_producer[producer_id].get(group_id, ()))
        return found

    def pending_offset(
        self, producer_id: int, group_id: str, partition: TopicPartition
    ) -> OffsetAndMetadata | None:
        pending = self._by_producer.get(producer_id, {}).get(group_id, {}).get(partition)
        return None if pending is None else pending.value

    def producers(self) -> Iterator[int]:
        """The producer ids with an open transaction that committed offsets here."""
        return iter(self._by_producer)

    # -- removal (the records that go with them are tombstones) -----------------------------------

    def remove_group(self, group_id: str) -> set[TopicPartition]:
        """DeleteGroups: drop every pending offset of the group; their partitions.  The
        producers' transactions stay open (their markers will find nothing left here)."""
        removed: set[TopicPartition] = set()
        for producer_id in self.open_by_group.get(group_id, ()):
            offsets = self._by_producer[producer_id].get(group_id)
            if offsets:
                removed.update(offsets)
                offsets.clear()
        self._committed_record_offsets.pop(group_id, None)
        return removed

    def remove_partitions(
        self, deleted: Iterable[TopicPartition]
    ) -> dict[str, set[TopicPartition]]:
        """Deleted topics: drop their pending offsets in every group; the partitions, by group."""
        gone = set(deleted)
        removed: dict[str, set[TopicPartition]] = {}
        for groups in self._by_producer.values():
            for group_id, offsets in groups.items():
                for tp in [tp for tp in offsets if tp in gone]:
                    del offsets[tp]
                    removed.setdefault(group_id, set()).add(tp)
        return removed
