"""The coordinator runtime: write operations append what they return, replay it, then answer;
a failed append changes nothing and answers Kafka's error; a load replays the same records.

A toy shard tests the runtime alone; the group coordinator's own operations run against a
memory log whose appends can be made to fail."""

from __future__ import annotations

import ast
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.coordinators.coordinator_runtime import (
    EMPTY_RESULT,
    CoordinatorResult,
    CoordinatorRuntime,
)
from kafkacompat.coordinators.group_metadata import GroupMetadata, GroupState, OffsetAndMetadata
from kafkacompat.coordinators.group_records import (
    CoordinatorRecord,
    GroupMetadataRecord,
    OffsetCommitRecord,
    Record,
    decode_record,
    encode_record,
)
from kafkacompat.coordinators.group_store import GroupStore, StoreError
from kafkacompat.coordinators.group_timers import ManualClock
from kafkacompat.errors import ErrorCode
from kafkacompat.records import RecordBatch
from kafkacompat.storage.kafka_uuid import random_kafka_uuid
from kafkacompat.storage.manager import LogManager
from kafkacompat.storage.topic_records import TopicRecord
from tests.coordinators.test_group_coordinator import Harness

E = ErrorCode
S = GroupState
T0 = ("t", 0)


class FlakyStore(GroupStore):
    """A memory-log GroupStore that remembers every append and fails them while ``failing``
    holds an error code."""

    def __init__(self, logs: LogManager, partitions: int = 1) -> None:
        super().__init__(
            logs,
            num_partitions=partitions,
            segment_bytes=1 << 20,
            now_ms=lambda: 0,
            # No controller here: the topic's logs straight from the log manager.
            create_topic=lambda name, count, configs: logs.create_logs(
                TopicRecord(name, random_kafka_uuid(), count, configs)
            ),
        )
        self.failing: ErrorCode | None = None
        self.appended: list[tuple[int, list[Record]]] = []

    def append(self, partition: int, records: Iterable[Record], **producer: int) -> int:
        records = list(records)
        if self.failing is not None:
            raise StoreError("injected", self.failing)
        offset = super().append(partition, records, **producer)
        self.appended.append((partition, records))
        return offset


def _logs() -> LogManager:
    logs = LogManager(None, 1, {}, engine="memory", now_ms=lambda: 0)
    logs.start()
    return logs


def _persisted(store: GroupStore, partition: int) -> list[Record]:
    """Every record in the partition's log, in order, as (key, value) bytes."""
    data, _ = store.read(partition, store.log_start_offset(partition), 1 << 30)
    records: list[Record] = []
    position = 0
    while position < len(data):
        size = struct.unpack_from(">i", data, position + 8)[0] + 12
        batch = RecordBatch(bytearray(data[position : position + size]))
        records += [
            (bytes(r.key or b""), None if r.value is None else bytes(r.value))
            for r in batch.iter_records()
        ]
        position += size
    return records


# -- the runtime alone, with a toy shard ------------------------------------------------------------


class CounterShard:
    """Commits count up by replaying offset records; nothing else."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}
        self.loaded = False

    def replay(
        self, record: CoordinatorRecord, producer_id: int = -1, record_offset: int = -1
    ) -> None:
        assert isinstance(record, OffsetCommitRecord)
        tp = (record.topic, record.partition)
        if record.value is None:
            self.offsets.pop(tp, None)
        else:
            self.offsets[tp] = record.value.offset

    def on_loaded(self) -> CoordinatorResult[None]:
        self.loaded = True
        return EMPTY_RESULT

    def on_unloaded(self) -> None:
        pass


def _commit(offset: int, **kwargs: Any) -> CoordinatorResult[str]:
    record = OffsetCommitRecord("g", *T0, OffsetAndMetadata(offset))
    return CoordinatorResult([record], f"committed {offset}", **kwargs)


def _encoded(records: Iterable[CoordinatorRecord]) -> list[Record]:
    return [encode_record(r) for r in records]


def _runtime(store: GroupStore | None) -> CoordinatorRuntime[CounterShard]:
    runtime: CoordinatorRuntime[CounterShard] = CoordinatorRuntime(
        ManualClock().timers, store, lambda _runtime, _p: CounterShard()
    )
    for _ in runtime.load_steps():
        pass
    return runtime


def test_a_write_appends_its_records_then_replays_them_then_answers() -> None:
    store = FlakyStore(_logs())
    runtime = _runtime(store)
    seen: list[ErrorCode | None] = []
    result = _commit(5, append_future=(seen.append,))
    assert runtime.schedule_write_operation(0, lambda _shard, _now: result) == "committed 5"
    assert runtime.shard(0).offsets == {T0: 5}
    assert seen == [None]
    assert store.appended == [(0, _encoded(result.records))]
    assert _persisted(store, 0) == _encoded(result.records)


def test_a_failed_append_replays_nothing_and_answers_what_on_error_makes_of_it() -> None:
    store = FlakyStore(_logs())
    runtime = _runtime(store)
    runtime.schedule_write_operation(0, lambda _shard, _now: _commit(1))
    store.failing = E.NOT_LEADER_OR_FOLLOWER
    seen: list[ErrorCode | None] = []
    result = _commit(2, append_future=(seen.append,))
    answer = runtime.schedule_write_operation(
        0, lambda _shard, _now: result, lambda error, response: f"{error.name} for {response}"
    )
    assert answer == "NOT_LEADER_OR_FOLLOWER for committed 2"
    assert runtime.shard(0).offsets == {T0: 1}
    assert seen == [E.NOT_LEADER_OR_FOLLOWER]
    assert len(_persisted(store, 0)) == 1


def test_records_of_a_result_that_does_not_replay_are_only_written() -> None:
    store = FlakyStore(_logs())
    runtime = _runtime(store)
    result = _commit(3, replay_records=False)
    runtime.schedule_write_operation(0, lambda _shard, _now: result)
    assert runtime.shard(0).offsets == {}
    assert _persisted(store, 0) == _encoded(result.records)


def test_an_append_future_may_return_a_follow_up_which_is_written_too() -> None:
    store = FlakyStore(_logs())
    runtime = _runtime(store)
    second: CoordinatorResult[None] = CoordinatorResult(_commit(2).records, None)
    first = _commit(1, append_future=(lambda _error: second,))
    runtime.schedule_write_operation(0, lambda _shard, _now: first)
    assert [records for _, records in store.appended] == [
        _encoded(first.records),
        _encoded(second.records),
    ]
    assert runtime.shard(0).offsets == {T0: 2}


def test_the_load_replays_the_log_into_fresh_shards_then_calls_on_loaded() -> None:
    logs = _logs()
    runtime = _runtime(FlakyStore(logs))
    for offset in (1, 2, 3):
        runtime.schedule_write_operation(0, lambda _shard, _now, o=offset: _commit(o))  # type: ignore[misc]
    reloaded = _runtime(FlakyStore(logs))
    assert reloaded.shard(0).offsets == {T0: 3}
    assert reloaded.shard(0).loaded


def test_mixing_replayed_and_applied_records_in_one_result_is_refused() -> None:
    applied = _commit(1, replay_records=False)
    with pytest.raises(ValueError):
        applied.then(_commit(2))


# -- the group coordinator's operations -------------------------------------------------------------


def _harness(partitions: int = 1) -> tuple[Harness, FlakyStore]:
    store = FlakyStore(_logs(), partitions)
    return Harness(store), store


@pytest.mark.parametrize(
    ("storage_error", "answer"),
    [
        (E.NOT_ENOUGH_REPLICAS, E.COORDINATOR_NOT_AVAILABLE),
        (E.KAFKA_STORAGE_ERROR, E.NOT_COORDINATOR),
        (E.NOT_LEADER_OR_FOLLOWER, E.NOT_COORDINATOR),
        (E.RECORD_LIST_TOO_LARGE, E.INVALID_COMMIT_OFFSET_SIZE),
    ],
)
def test_a_failed_offset_commit_keeps_the_old_offsets_and_answers_kafkas_error(
    storage_error: ErrorCode, answer: ErrorCode
) -> None:
    h, store = _harness()
    assert h.commit({T0: 1}) == {T0: E.NONE}
    store.failing = storage_error
    big = "x" * 5000  # over offset.metadata.max.bytes: refused on its own, before any append
    assert h.commit({T0: 2, ("t", 1): 3}) == {T0: answer, ("t", 1): answer}
    assert h.coordinator.commit_offsets(
        "g", "", None, -1, {("t", 2): OffsetAndMetadata(9, metadata=big)}
    ) == {("t", 2): E.OFFSET_METADATA_TOO_LARGE}
    assert h.committed() == {T0: 1}
    store.failing = None
    assert Harness(store).committed() == {T0: 1}


def test_a_failed_assignment_write_tells_every_member_and_rebalances() -> None:
    h, store = _harness()
    first = [h.join_new(), h.join_new()]
    h.advance(0)
    a, b = (r.value for r in first)
    leader = a if a.member_id == a.leader_id else b
    follower = b if leader is a else a
    follower_sync = h.sync(follower.member_id, 1)
    store.failing = E.UNKNOWN_TOPIC_OR_PARTITION
    leader_sync = h.sync(leader.member_id, 1, {a.member_id: b"x", b.member_id: b"y"})
    assert leader_sync.value.error is E.COORDINATOR_NOT_AVAILABLE
    assert follower_sync.value.error is E.COORDINATOR_NOT_AVAILABLE
    assert h.state() is S.PREPARING_REBALANCE
    group = h.coordinator.groups["g"]
    assert all(m.assignment == b"" for m in group.members.values())
    assert [records for _, records in store.appended] == []


def test_a_failed_static_member_replacement_keeps_the_old_member_id() -> None:
    h, store = _harness()
    (member,) = h.form_group(1, instances=["i-1"])
    store.failing = E.KAFKA_STORAGE_ERROR
    rejoin = h.join(instance="i-1")
    assert rejoin.value.error is E.NOT_COORDINATOR
    group = h.coordinator.groups["g"]
    assert group.static_members == {"i-1": member.member_id}
    assert h.heartbeat(member.member_id, 1, instance="i-1") is E.NONE


def test_the_records_an_operation_returns_are_exactly_the_ones_persisted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, store = _harness(partitions=3)
    runtime = h.coordinator.runtime
    returned: dict[int, list[CoordinatorRecord]] = {}
    write = runtime.schedule_write_operation

    def spy(partition: int, op: Any, on_error: Any = None) -> Any:
        def recording(shard: Any, now: int) -> Any:
            result = op(shard, now)
            returned.setdefault(partition, []).extend(result.records)
            return result

        return write(partition, recording, on_error)

    monkeypatch.setattr(runtime, "schedule_write_operation", spy)
    h.form_group(2, group="g")
    h.commit({T0: 4, ("t", 1): 5}, group="s")
    h.coordinator.delete_groups(["s"])
    assert returned and sum(len(r) for r in returned.values()) == 5
    for partition in range(3):
        assert _persisted(store, partition) == _encoded(returned.get(partition, []))
    kinds = [type(r).__name__ for rs in returned.values() for r in rs]
    # g's generation; s only stored offsets, so its deletion is two offset tombstones.
    assert sorted(kinds) == ["GroupMetadataRecord"] + ["OffsetCommitRecord"] * 4


def test_a_session_expiring_on_a_timer_writes_the_emptied_group() -> None:
    h, store = _harness()
    (member,) = h.form_group(1, session=10_000)
    store.appended.clear()
    h.advance(10_000)
    assert h.state() is S.EMPTY
    ((_, records),) = store.appended
    (record,) = [decode_record(k, v) for k, v in records]
    assert isinstance(record, GroupMetadataRecord) and record.value is not None
    assert (record.value.generation, record.value.members) == (2, [])
    assert member.member_id not in h.coordinator.groups["g"].members


def _state(groups: Iterable[GroupMetadata]) -> dict[str, object]:
    return {
        g.group_id: (
            g.state,
            g.generation_id,
            g.protocol_type,
            g.protocol_name,
            g.leader_id,
            sorted(
                (m.member_id, m.group_instance_id, m.client_id, m.assignment, m.session_timeout_ms)
                for m in g.members.values()
            ),
            dict(g.offsets),
        )
        for g in groups
    }


def test_loading_by_replay_gives_the_state_the_operations_left() -> None:
    h, store = _harness(partitions=4)
    members = h.form_group(2, group="stable", instances=[None, "s-1"])
    h.commit({T0: 7}, group="stable", member_id=members[0].member_id, generation=1)
    h.join(group="stable", instance="s-1")  # a static restart: a new member id, persisted
    h.commit({T0: 1, ("t", 1): 2}, group="standalone")
    h.coordinator.delete_offsets("standalone", [("t", 1)])
    (leaver,) = h.form_group(1, group="emptied")
    h.commit({T0: 3}, group="emptied", member_id=leaver.member_id, generation=1)
    h.coordinator.leave_group("emptied", [(leaver.member_id, None)])
    h.commit({T0: 9}, group="doomed")
    h.coordinator.delete_groups(["doomed"])
    h.coordinator.on_partitions_deleted([("gone", 0)])
    before = _state(h.coordinator.groups.values())
    assert set(before) == {"stable", "standalone", "emptied"}

    after = _state(Harness(store).coordinator.groups.values())
    assert after == before


# -- the storage seam -------------------------------------------------------------------------------

_GROUP_MODULES = [
    "classic_group_rebalance",
    "coordinator_runtime",
    "group_config",
    "group_coordinator",
    "group_coordinator_shard",
    "group_describe",
    "group_loader",
    "group_metadata",
    "group_metadata_manager",
    "group_records",
    "group_timers",
    "offset_metadata_manager",
]


@pytest.mark.parametrize("module", _GROUP_MODULES)
def test_only_the_group_store_reaches_storage(module: str) -> None:
    """Every read and write of __consumer_offsets goes through group_store, so that a
    replica manager can take its place."""
    path = Path(__file__).parents[2] / "kafkacompat" / "coordinators" / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    ]
    assert not [name for name in imported if name.startswith("kafkacompat.storage")]
