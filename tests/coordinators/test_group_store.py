"""``__consumer_offsets``: Kafka's partitioning and record formats, and groups and offsets
surviving a restart (clean, or the process killed) through a real disk log."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.coordinators.group_coordinator import GroupConfig
from kafkacompat.coordinators.group_loader import latest_records
from kafkacompat.coordinators.group_metadata import GroupState, OffsetAndMetadata
from kafkacompat.coordinators.group_records import (
    OFFSETS_TOPIC,
    decode_group_metadata_value,
    decode_offset_commit_value,
    group_metadata_key,
    java_string_hash,
    offset_commit_key,
    offset_commit_value,
    partition_for,
)
from kafkacompat.coordinators.group_store import GroupStore
from kafkacompat.errors import ErrorCode
from kafkacompat.metadata.local_controller import LocalController
from kafkacompat.protocol.internal_topics.group_metadata_value import (
    GroupMetadataValue,
    MemberMetadata,
)
from kafkacompat.records import ControlRecordType, RecordBatchBuilder
from kafkacompat.records.control import build_end_transaction_marker_batch
from kafkacompat.storage.log_cleaner import clean
from kafkacompat.storage.log_cleaner_manager import LogCleanerManager, cleanable_range
from kafkacompat.storage.manager import Engine, LogManager
from tests.coordinators.test_group_coordinator import Harness, subscription
from tests.storage.stack import Stack

E = ErrorCode
S = GroupState
T0 = ("t", 0)


# -- partitioning and formats -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 99162322),
        ("polygenelubricants", -(2**31)),  # Java's famous Integer.MIN_VALUE hash
        ("\U0001f600", 0xD83D * 31 + 0xDE00),  # hashed as its UTF-16 surrogate pair
    ],
)
def test_java_string_hash(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_partition_for_uses_kafkas_abs() -> None:
    # Utils.abs(Integer.MIN_VALUE) is 0 (x & 0x7fffffff), not an overflow.
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert (
        partition_for("console-consumer", 7)
        == (java_string_hash("console-consumer") & 0x7FFFFFFF) % 7
    )


def test_offset_commit_record_layout() -> None:
    assert offset_commit_key("g", "t", 3) == (
        b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    )
    committed = OffsetAndMetadata(42, leader_epoch=5, metadata="m", commit_timestamp=1000)
    value = offset_commit_value(committed)
    assert value == (
        b"\x00\x03" + struct.pack(">qi", 42, 5) + b"\x00\x01m" + struct.pack(">q", 1000)
    )
    assert decode_offset_commit_value(value) == committed


def test_commits_with_their_own_retention_are_written_as_value_v1() -> None:
    committed = OffsetAndMetadata(1, metadata="", commit_timestamp=10, expire_timestamp=99)
    value = offset_commit_value(committed)
    assert value[:2] == b"\x00\x01"
    assert decode_offset_commit_value(value) == OffsetAndMetadata(
        1, leader_epoch=-1, metadata="", commit_timestamp=10, expire_timestamp=99
    )


def test_group_metadata_record_layout() -> None:
    assert group_metadata_key("grp") == b"\x00\x02\x00\x03grp"
    value = GroupMetadataValue(
        protocol_type="consumer",
        generation=3,
        protocol="range",
        leader="m1",
        current_state_timestamp=77,
        members=[
            MemberMetadata(
                member_id="m1",
                group_instance_id=None,
                client_id="c",
                client_host="/h",
                rebalance_timeout=300,
                session_timeout=100,
                subscription=b"s",
                assignment=b"a",
            )
        ],
    )
    from kafkacompat.coordinators.group_records import group_metadata_value

    encoded = group_metadata_value(value)
    assert encoded[:2] == b"\x00\x03"
    assert decode_group_metadata_value(encoded) == value


# -- replay -----------------------------------------------------------------------------------------


class FakeLog:
    """Just enough of a GroupStore to scan one partition: some batches, end to end."""

    def __init__(self, batches: list[bytes]) -> None:
        blob = bytearray()
        offset = 0
        for batch in batches:
            raw = bytearray(batch)
            struct.pack_into(">q", raw, 0, offset)
            count = struct.unpack_from(">i", raw, 57)[0]
            offset += count
            blob += raw
        self.blob = bytes(blob)
        self.log_end_offset = offset

    def log_start_offset(self, partition: int) -> int:
        return 0

    def read(self, partition: int, offset: int, max_bytes: int) -> tuple[bytes, int]:
        return self.blob if offset == 0 else b"", self.log_end_offset


def _batch(records: list[tuple[bytes, bytes | None]], **kwargs: object) -> bytes:
    builder = RecordBatchBuilder(**kwargs)  # type: ignore[arg-type]
    for key, value in records:
        builder.append(value, key=key, timestamp=1)
    return builder.build()


def test_replay_keeps_the_latest_value_per_key_and_counts_committed_transactions() -> None:
    key = offset_commit_key("g", "t", 0)
    other = offset_commit_key("g", "t", 1)
    old, new = b"old", b"new"
    txn = {"producer_id": 9, "producer_epoch": 0, "base_sequence": 0, "is_transactional": True}
    log = FakeLog(
        [
            _batch([(key, old), (other, old)]),
            _batch([(key, new)]),
            _batch([(other, b"committed-in-txn")], **txn),
            build_end_transaction_marker_batch(
                control_type=ControlRecordType.COMMIT,
                producer_id=9,
                producer_epoch=0,
                coordinator_epoch=0,
                timestamp=1,
            ),
            _batch([(key, b"aborted")], **txn),
            build_end_transaction_marker_batch(
                control_type=ControlRecordType.ABORT,
                producer_id=9,
                producer_epoch=0,
                coordinator_epoch=0,
                timestamp=1,
            ),
            _batch([(b"\x00\x05unknown-kind", b"x")]),
        ]
    )
    latest, count = latest_records(log, 0)
    assert latest[key] == new
    assert latest[other] == b"committed-in-txn"
    assert count == 6


# -- through a disk log and a restart ---------------------------------------------------------------


def _manager(data_dir: Path | None, engine: Engine = "disk") -> Any:
    manager = LogManager(data_dir, 1, {}, engine=engine, now_ms=lambda: int(time.time() * 1000))
    return Stack(manager, LocalController(data_dir))


def _store(stack: Stack, partitions: int = 5) -> GroupStore:
    return GroupStore(
        stack.log_manager,
        num_partitions=partitions,
        segment_bytes=1 << 20,
        now_ms=lambda: 1_000_000,
        create_topic=lambda name, count, configs: stack.create_topic(name, count, configs),
    )


def test_the_offsets_topic_is_created_as_kafka_creates_it(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    store = _store(manager, partitions=7)
    assert store.topic() is None
    topic = store.ensure_topic()
    assert (topic.name, topic.partitions) == (OFFSETS_TOPIC, 7)
    assert topic.config.compact and topic.config.segment_bytes == 1 << 20
    # An existing topic's partition count wins over the setting.
    assert _store(manager, partitions=50).num_partitions == 7
    manager.shutdown()


@pytest.mark.parametrize("clean", [True, False], ids=["sigterm", "sigkill"])
def test_groups_and_offsets_survive_a_restart(tmp_path: Path, clean: bool) -> None:
    manager = _manager(tmp_path)
    h = Harness(_store(manager))
    protocols = [("range", subscription("t"))]
    a, b = h.form_group(2, instances=[None, "static-1"], session=10_000, protocols=protocols)
    assert h.commit({T0: 5, ("t", 1): 6}, member_id=a.member_id, generation=1) == {
        T0: E.NONE,
        ("t", 1): E.NONE,
    }
    h.commit({T0: 1}, group="simple")
    h.commit({T0: 2}, group="doomed")
    assert h.coordinator.delete_groups(["doomed"]) == {"doomed": E.NONE}
    (c,) = h.form_group(1, group="emptied")
    h.commit({T0: 9}, group="emptied", member_id=c.member_id, generation=1)
    h.coordinator.leave_group("emptied", [(c.member_id, None)])
    if clean:
        h.coordinator.shutdown()
        manager.shutdown()
    # else: the process "dies": nothing is flushed or closed, the next start recovers.

    restarted = Harness(_store(_manager(tmp_path)))
    groups = restarted.coordinator.groups
    assert set(groups) == {"g", "simple", "emptied"}
    g = groups["g"]
    assert (g.state, g.generation_id, g.protocol_type, g.protocol_name, g.leader_id) == (
        S.STABLE,
        1,
        "consumer",
        "range",
        a.join.leader_id,
    )
    assert {m.member_id: m.assignment for m in g.members.values()} == {
        a.member_id: a.assignment,
        b.member_id: b.assignment,
    }
    assert g.static_members == {"static-1": b.member_id}
    assert g.subscribed_topics == frozenset({"t"})
    assert restarted.committed("g") == {T0: 5, ("t", 1): 6}
    assert restarted.committed("simple") == {T0: 1}
    assert restarted.committed("emptied") == {T0: 9}
    assert groups["emptied"].state is S.EMPTY and groups["emptied"].generation_id == 2
    assert groups["simple"].protocol_type is None
    # The members carry on where they were, as long as they heartbeat.
    assert restarted.heartbeat(a.member_id, 1) is E.NONE
    assert restarted.sync(b.member_id, 1, instance="static-1").value.assignment == b.assignment
    restarted.advance(9_000)
    assert restarted.heartbeat(a.member_id, 1) is E.NONE
    restarted.advance(1_000)  # b stopped heartbeating: its session ends, a rebalance starts
    assert restarted.state() is S.PREPARING_REBALANCE


def test_a_static_member_replacement_is_persisted(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    h = Harness(_store(manager))
    h.form_group(1, instances=["i-1"])
    new_id = h.join(instance="i-1").value.member_id
    manager.shutdown()
    restarted = Harness(_store(_manager(tmp_path)))
    assert restarted.coordinator.groups["g"].static_members == {"i-1": new_id}


def test_offset_delete_and_expiry_write_tombstones(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    h = Harness(_store(manager), offsets_retention_check_interval_ms=60_000)
    h.commit({T0: 1, ("t", 1): 2}, group="s")
    assert h.coordinator.delete_offsets("s", [T0]) == (E.NONE, {T0: E.NONE})
    h.commit({T0: 3}, group="expires")
    h.advance(GroupConfig().offsets_retention_ms // 2)
    h.commit({("t", 1): 4}, group="s")
    h.advance(GroupConfig().offsets_retention_ms // 2)
    manager.shutdown()
    restarted = Harness(_store(_manager(tmp_path)))
    assert set(restarted.coordinator.groups) == {"s"}
    assert restarted.committed("s") == {("t", 1): 4}


def test_memory_engine_keeps_groups_until_the_process_ends() -> None:
    manager = _manager(None, engine="memory")
    h = Harness(_store(manager))
    h.commit({T0: 1})
    assert Harness(_store(manager)).committed() == {T0: 1}  # same logs, replayed


# -- compaction -------------------------------------------------------------------------------------


def _compact_all(manager: Any, data_dir: Path, now: int) -> int:
    """Run the log cleaner until no log is dirty enough, as the broker's task does."""
    cleaner = LogCleanerManager(data_dir, dedupe_buffer_size=1 << 20)
    rounds = 0
    while (picked := cleaner.grab_filthiest(manager.logs(), now)) is not None:
        tp, plan = picked
        plan.open_files()
        result = clean(plan, now_ms=now, map_budget_bytes=cleaner.map_budget_bytes)
        assert cleaner.swap_in(tp, result, now, {key for key, _ in manager.logs()})
        rounds += 1
    return rounds


def test_compaction_keeps_every_offset_and_forgets_deleted_groups(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    store = GroupStore(
        manager.log_manager,
        num_partitions=1,
        segment_bytes=4096,
        now_ms=lambda: 1_000_000,
        create_topic=lambda name, count, configs: manager.create_topic(name, count, configs),
    )
    h = Harness(store)
    for i in range(200):
        h.commit({T0: i, ("t", 1): 1000 + i}, group="g")
        h.commit({T0: i}, group="doomed")
    h.commit({T0: 7}, group="simple")
    assert h.coordinator.delete_groups(["doomed"]) == {"doomed": E.NONE}
    for i in range(60):  # push the tombstones out of the active segment
        h.commit({("t", 2): i}, group="g")
    partition_log = store.topic().logs[0]  # type: ignore[union-attr]
    size_before = partition_log.size_in_bytes
    end_offset = partition_log.log_end_offset

    now = 2_000_000
    assert _compact_all(manager, tmp_path, now) >= 1
    assert partition_log.log_end_offset == end_offset
    # 400 commits of "g" and "doomed" keep one record per key; only the active segment and
    # the group deletion's tombstones (kept for delete.retention.ms) are more.
    assert partition_log.size_in_bytes < size_before / 3
    # A round past the delete horizon (delete.retention.ms, 24 h) drops the tombstones too.
    later = now + 86_400_001
    plan = cleanable_range(partition_log, None, later)  # type: ignore[arg-type]
    assert plan is not None
    plan.open_files()
    result = clean(plan, now_ms=later, map_budget_bytes=1 << 20)
    assert result.stats.tombstones_removed >= 1
    for cleaned in result.cleaned:
        assert partition_log.replace_segments(cleaned, later)  # type: ignore[attr-defined]
    latest, _ = latest_records(store, 0)
    assert None not in latest.values()  # no tombstone left

    expected = {"g": {T0: 199, ("t", 1): 1199, ("t", 2): 59}, "simple": {T0: 7}}
    assert {group: h.committed(group) for group in expected} == expected
    manager.shutdown()
    restarted = Harness(_store(_manager(tmp_path), partitions=1))
    assert set(restarted.coordinator.groups) == {"g", "simple"}
    assert {group: restarted.committed(group) for group in expected} == expected
