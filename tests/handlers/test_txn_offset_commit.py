"""TxnOffsetCommit through the handlers: a transactional producer's offsets stay pending until
the transaction's marker, then show (COMMIT) or go (ABORT); OffsetFetch with require_stable
answers UNSTABLE_OFFSET_COMMIT meanwhile; fencing; a restart with the transaction open."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.broker import Broker
from kafkacompat.cluster.replica_manager import TransactionResult as MarkerResult
from kafkacompat.cluster.replica_manager import TxnMarker
from kafkacompat.coordinators.group_records import OFFSETS_TOPIC
from kafkacompat.errors import ErrorCode as E
from kafkacompat.handlers import HANDLERS
from kafkacompat.protocol import request_class, response_class
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from kafkacompat.protocol.messages.end_txn_request import EndTxnRequest
from kafkacompat.protocol.messages.init_producer_id_request import InitProducerIdRequest
from kafkacompat.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from kafkacompat.protocol.messages.txn_offset_commit_request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kafkacompat.security.authorizer import AclOperation, Action, ResourceType
from kafkacompat.security.session import Session
from tests.handlers.helpers import context, running_broker

TXN_ID = "tx"
GROUP = "g"


async def acall(broker: Broker, request: Message, version: int) -> Any:
    """helpers.call inside a running loop (the marker tasks of EndTxn must outlive a call)."""
    api_key = request.API_KEY
    assert api_key is not None
    wire = request_class(api_key).decode(bytearray(request.encode(version)), version)
    response = await HANDLERS[api_key](context(broker, api_key, version), wire)
    assert response is not None
    return response_class(api_key).decode(response.encode(version), version)


def run(broker: Broker, request: Message, version: int) -> Any:
    return asyncio.run(acall(broker, request, version))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path, offsets_topic_num_partitions="3") as started:
        started.controller.create_topic("t", 2)
        yield started


def _init_producer_id(broker: Broker, transactional_id: str) -> Any:
    """InitProducerId; while an open transaction of the id is being aborted, again (a client
    retries CONCURRENT_TRANSACTIONS), after the abort's markers."""

    async def scenario() -> Any:
        request = InitProducerIdRequest(
            transactional_id=transactional_id, transaction_timeout_ms=60_000
        )
        for _ in range(10):
            init = await acall(broker, request, 4)
            if init.error_code != E.CONCURRENT_TRANSACTIONS:
                break
            await broker.txn_coordinator.wait_for_markers()
        assert init.error_code == E.NONE
        return init

    return asyncio.run(scenario())


def begin(broker: Broker, transactional_id: str = TXN_ID) -> tuple[int, int]:
    """InitProducerId and AddOffsetsToTxn for GROUP: the producer id and epoch."""
    broker.ensure_transaction_state_topic()
    init = _init_producer_id(broker, transactional_id)
    added = run(
        broker,
        AddOffsetsToTxnRequest(
            transactional_id=transactional_id,
            producer_id=init.producer_id,
            producer_epoch=init.producer_epoch,
            group_id=GROUP,
        ),
        3,
    )
    assert added.error_code == E.NONE
    return init.producer_id, init.producer_epoch


def txn_commit(
    producer: tuple[int, int],
    offsets: dict[tuple[str, int], int],
    *,
    group_id: str = GROUP,
    metadata: str = "m",
    **fields: Any,
) -> TxnOffsetCommitRequest:
    topics: dict[str, list[TxnOffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            TxnOffsetCommitRequestPartition(
                partition_index=partition,
                committed_offset=offset,
                committed_leader_epoch=3,
                committed_metadata=metadata,
            )
        )
    return TxnOffsetCommitRequest(
        transactional_id=fields.pop("transactional_id", TXN_ID),
        group_id=group_id,
        producer_id=producer[0],
        producer_epoch=producer[1],
        topics=[TxnOffsetCommitRequestTopic(name=n, partitions=ps) for n, ps in topics.items()],
        **fields,
    )


def errors_of(response: Any) -> dict[tuple[str, int], int]:
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


def fetch(
    broker: Broker, partitions: list[int], *, require_stable: bool, version: int = 7
) -> list[tuple[int, int, int]]:
    """(partition, committed offset, error) of GROUP's partitions of "t"."""
    request = OffsetFetchRequest(
        group_id=GROUP,
        topics=[OffsetFetchRequestTopic(name="t", partition_indexes=partitions)],
        require_stable=require_stable,
    )
    response = run(broker, request, version)
    assert response.error_code == E.NONE
    return [
        (p.partition_index, p.committed_offset, p.error_code)
        for t in response.topics
        for p in t.partitions
    ]


def end(broker: Broker, producer: tuple[int, int], committed: bool) -> int:
    async def scenario() -> int:
        response = await acall(
            broker,
            EndTxnRequest(
                transactional_id=TXN_ID,
                producer_id=producer[0],
                producer_epoch=producer[1],
                committed=committed,
            ),
            3,
        )
        await broker.txn_coordinator.wait_for_markers()
        return int(response.error_code)

    return asyncio.run(scenario())


# -- commit, abort, require_stable -------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 3, 4])
def test_offsets_are_pending_until_the_commit_marker(broker: Broker, version: int) -> None:
    producer = begin(broker)
    response = run(broker, txn_commit(producer, {("t", 0): 7, ("t", 1): 9}), version)
    assert errors_of(response) == {("t", 0): E.NONE, ("t", 1): E.NONE}
    # Not visible while the transaction is open; require_stable asks the client to retry.
    assert fetch(broker, [0, 1], require_stable=False) == [(0, -1, E.NONE), (1, -1, E.NONE)]
    assert fetch(broker, [0, 1], require_stable=True) == [
        (0, -1, E.UNSTABLE_OFFSET_COMMIT),
        (1, -1, E.UNSTABLE_OFFSET_COMMIT),
    ]
    # The batch is the producer's, transactional: the partition's producer state has it open.
    partition = broker.replica_manager.get_partition(
        OFFSETS_TOPIC, broker.groups.partition_for(GROUP)
    )
    assert partition is not None
    entry = partition.log.producer_state(None).last_entry(producer[0])
    assert entry is not None and entry.current_txn_first_offset is not None
    assert end(broker, producer, committed=True) == E.NONE
    assert fetch(broker, [0, 1], require_stable=True) == [(0, 7, E.NONE), (1, 9, E.NONE)]
    assert partition.log.producer_state(None).ongoing_transactions == {}
    committed = dict(broker.groups.fetch_offsets(GROUP, None)[1])
    leader_epoch = committed[("t", 0)]
    assert leader_epoch is not None
    assert leader_epoch.leader_epoch == (3 if version >= 2 else -1)


def test_abort_drops_the_pending_offsets_and_keeps_the_committed_ones(broker: Broker) -> None:
    first = begin(broker)
    run(broker, txn_commit(first, {("t", 0): 5}), 4)
    assert end(broker, first, committed=True) == E.NONE
    second = begin(broker)
    run(broker, txn_commit(second, {("t", 0): 50, ("t", 1): 60}), 4)
    assert fetch(broker, [0, 1], require_stable=True) == [
        (0, -1, E.UNSTABLE_OFFSET_COMMIT),
        (1, -1, E.UNSTABLE_OFFSET_COMMIT),
    ]
    assert fetch(broker, [0, 1], require_stable=False) == [(0, 5, E.NONE), (1, -1, E.NONE)]
    assert end(broker, second, committed=False) == E.NONE
    assert fetch(broker, [0, 1], require_stable=True) == [(0, 5, E.NONE), (1, -1, E.NONE)]


def test_require_stable_in_the_per_group_shape_and_for_every_partition(broker: Broker) -> None:
    first = begin(broker)
    run(broker, txn_commit(first, {("t", 0): 5, ("t", 1): 6}), 4)
    assert end(broker, first, committed=True) == E.NONE
    second = begin(broker)
    run(broker, txn_commit(second, {("t", 1): 60}), 4)
    for version in (8, 9):
        response = run(
            broker,
            OffsetFetchRequest(
                groups=[
                    OffsetFetchRequestGroup(group_id=GROUP, topics=None),
                    OffsetFetchRequestGroup(
                        group_id=GROUP,
                        topics=[OffsetFetchRequestTopics(name="t", partition_indexes=[0, 1])],
                    ),
                ],
                require_stable=True,
            ),
            version,
        )
        for group in response.groups:
            assert group.error_code == E.NONE
            assert [
                (p.partition_index, p.committed_offset, p.error_code)
                for t in group.topics
                for p in t.partitions
            ] == [(0, 5, E.NONE), (1, -1, E.UNSTABLE_OFFSET_COMMIT)]
    # v6 has no require_stable: the committed offset.
    assert fetch(broker, [1], require_stable=False, version=6) == [(1, 6, E.NONE)]


def test_a_plain_commit_after_the_transactional_one_wins(broker: Broker) -> None:
    from kafkacompat.protocol.messages.offset_commit_request import (
        OffsetCommitRequest,
        OffsetCommitRequestPartition,
        OffsetCommitRequestTopic,
    )

    producer = begin(broker)
    run(broker, txn_commit(producer, {("t", 0): 5, ("t", 1): 6}), 4)
    plain = OffsetCommitRequest(
        group_id=GROUP,
        generation_id_or_member_epoch=-1,
        topics=[
            OffsetCommitRequestTopic(
                name="t",
                partitions=[OffsetCommitRequestPartition(partition_index=0, committed_offset=99)],
            )
        ],
    )
    assert run(broker, plain, 8).topics[0].partitions[0].error_code == E.NONE
    assert end(broker, producer, committed=True) == E.NONE
    # Kafka keeps the most recent record: the plain commit of partition 0 came later.
    assert fetch(broker, [0, 1], require_stable=True) == [(0, 99, E.NONE), (1, 6, E.NONE)]


# -- errors ------------------------------------------------------------------------------------------


def test_a_fenced_producer_hears_invalid_producer_epoch(broker: Broker) -> None:
    old = begin(broker)
    run(broker, txn_commit(old, {("t", 0): 1}), 4)
    new = begin(broker)  # InitProducerId again: the epoch is bumped, the old one aborted
    assert new[1] > old[1]
    response = run(broker, txn_commit(old, {("t", 0): 2}), 4)
    assert errors_of(response) == {("t", 0): E.INVALID_PRODUCER_EPOCH}
    assert fetch(broker, [0], require_stable=True) == [(0, -1, E.NONE)]


def test_the_partition_must_be_in_the_transaction(broker: Broker) -> None:
    broker.ensure_transaction_state_topic()
    init = _init_producer_id(broker, TXN_ID)
    producer = (init.producer_id, init.producer_epoch)
    # No AddOffsetsToTxn: KIP-890's verification refuses before anything is written.
    assert errors_of(run(broker, txn_commit(producer, {("t", 0): 1}), 4)) == {
        ("t", 0): E.TRANSACTION_ABORTABLE
    }
    assert errors_of(run(broker, txn_commit(producer, {("t", 0): 1}), 3)) == {
        ("t", 0): E.INVALID_TXN_STATE
    }
    assert broker.groups.pending_offsets(GROUP) == set()


def test_the_storage_checks_the_epoch_without_verification(tmp_path: Path) -> None:
    with running_broker(
        tmp_path,
        offsets_topic_num_partitions="3",
        transaction_partition_verification_enable="false",
    ) as broker:
        broker.controller.create_topic("t", 1)
        old = begin(broker)
        run(broker, txn_commit(old, {("t", 0): 1}), 4)
        begin(broker)
        # The marker of the bumped epoch is in the partition: its producer state refuses.
        response = run(broker, txn_commit(old, {("t", 0): 2}), 4)
        assert errors_of(response) == {("t", 0): E.INVALID_PRODUCER_EPOCH}


def test_member_and_generation_checks_from_v3(broker: Broker) -> None:
    producer = begin(broker)
    unknown_group = txn_commit(producer, {("t", 0): 1}, group_id="nobody", generation_id=3)
    assert errors_of(run(broker, unknown_group, 3)) == {("t", 0): E.ILLEGAL_GENERATION}
    # A simple group (generation -1) is accepted, then knows no members.
    assert errors_of(run(broker, txn_commit(producer, {("t", 0): 1}), 3)) == {("t", 0): E.NONE}
    stranger = txn_commit(producer, {("t", 0): 1}, member_id="m-1", generation_id=0)
    assert errors_of(run(broker, stranger, 3)) == {("t", 0): E.UNKNOWN_MEMBER_ID}
    static = txn_commit(
        producer, {("t", 0): 1}, member_id="m-1", group_instance_id="i-1", generation_id=0
    )
    assert errors_of(run(broker, static, 3)) == {("t", 0): E.UNKNOWN_MEMBER_ID}


def test_per_partition_errors(broker: Broker) -> None:
    producer = begin(broker)
    response = run(
        broker,
        txn_commit(producer, {("t", 0): 1, ("t", 5): 1, ("nope", 0): 1}, metadata="x" * 5000),
        4,
    )
    assert errors_of(response) == {
        ("t", 0): E.OFFSET_METADATA_TOO_LARGE,
        ("t", 5): E.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION,
    }
    empty_group = txn_commit(producer, {("t", 0): 1}, group_id="")
    assert errors_of(run(broker, empty_group, 4)) == {("t", 0): E.INVALID_GROUP_ID}


def test_loading_is_coordinator_not_available_before_v2(broker: Broker) -> None:
    producer = begin(broker)
    broker.groups.loading = True
    try:
        request = txn_commit(producer, {("t", 0): 1})
        assert errors_of(run(broker, request, 1)) == {("t", 0): E.COORDINATOR_NOT_AVAILABLE}
        assert errors_of(run(broker, request, 2)) == {("t", 0): E.COORDINATOR_LOAD_IN_PROGRESS}
    finally:
        broker.groups.loading = False


class _Deny:
    """Allows everything but one (operation, resource type, name)."""

    def __init__(self, operation: AclOperation, resource_type: ResourceType, name: str) -> None:
        self.denied = (operation, resource_type, name)

    def authorize(self, _session: Session, actions: Sequence[Action]) -> list[bool]:
        return [(a.operation, a.resource_type, a.resource_name) != self.denied for a in actions]


@pytest.mark.parametrize(
    ("denied", "error"),
    [
        (
            (AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, TXN_ID),
            E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ),
        ((AclOperation.READ, ResourceType.GROUP, GROUP), E.GROUP_AUTHORIZATION_FAILED),
        ((AclOperation.READ, ResourceType.TOPIC, "t"), E.TOPIC_AUTHORIZATION_FAILED),
    ],
)
def test_authorization(broker: Broker, denied: tuple[Any, Any, str], error: E) -> None:
    producer = begin(broker)
    allow = broker.authorizer
    broker.authorizer = _Deny(*denied)
    try:
        response = run(broker, txn_commit(producer, {("t", 0): 1}), 4)
    finally:
        broker.authorizer = allow
    assert errors_of(response) == {("t", 0): error}
    assert broker.groups.pending_offsets(GROUP) == set()


# -- a restart with the transaction open -------------------------------------------------------------


def test_an_open_transaction_stays_pending_across_a_restart(tmp_path: Path) -> None:
    props = {"offsets_topic_num_partitions": "3"}
    with running_broker(tmp_path, "disk", **props) as broker:
        broker.controller.create_topic("t", 2)
        done = begin(broker, "done")
        run(broker, txn_commit(done, {("t", 0): 4}, transactional_id="done"), 4)
        producer = begin(broker)
        run(broker, txn_commit(producer, {("t", 0): 40, ("t", 1): 41}), 4)
        partitions = (OFFSETS_TOPIC, broker.groups.partition_for(GROUP))
        marker = TxnMarker(done[0], done[1], 0, MarkerResult.COMMIT, (partitions,))
        assert broker.txn_markers.write([marker])[done[0]][partitions] == E.NONE
        assert fetch(broker, [0, 1], require_stable=False) == [(0, 4, E.NONE), (1, -1, E.NONE)]
    with running_broker(tmp_path, "disk", **props) as broker:
        # Not dropped, not materialised: still pending, for the marker still to come.
        assert broker.groups.pending_offsets(GROUP) == {("t", 0), ("t", 1)}
        assert fetch(broker, [0, 1], require_stable=False) == [(0, 4, E.NONE), (1, -1, E.NONE)]
        assert fetch(broker, [0, 1], require_stable=True) == [
            (0, -1, E.UNSTABLE_OFFSET_COMMIT),
            (1, -1, E.UNSTABLE_OFFSET_COMMIT),
        ]
        assert end(broker, producer, committed=True) == E.NONE
        assert fetch(broker, [0, 1], require_stable=True) == [(0, 40, E.NONE), (1, 41, E.NONE)]
    with running_broker(tmp_path, "disk", **props) as broker:
        assert fetch(broker, [0, 1], require_stable=True) == [(0, 40, E.NONE), (1, 41, E.NONE)]
