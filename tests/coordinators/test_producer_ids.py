"""Producer id allocation: unique across restarts, durable before use; InitProducerId answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkacompat.coordinators.producer_ids import (
    PRODUCER_IDS_FILE,
    InitProducerIdResult,
    ProducerIdManager,
    init_producer_id,
)
from kafkacompat.errors import ErrorCode
from kafkacompat.storage.atomic_file import CorruptFileError
from kafkacompat.storage.properties_file import read_properties

_MAX_ID = (1 << 63) - 1


def test_memory_only_ids_are_consecutive_and_write_nothing(tmp_path: Path) -> None:
    manager = ProducerIdManager(None, block_size=3)
    assert [manager.next_producer_id() for _ in range(7)] == list(range(7))
    assert manager.path is None
    assert list(tmp_path.iterdir()) == []


def test_block_is_durable_before_its_first_id_is_returned(tmp_path: Path) -> None:
    manager = ProducerIdManager(tmp_path, block_size=10)
    assert not (tmp_path / PRODUCER_IDS_FILE).exists()  # nothing reserved until asked
    assert manager.next_producer_id() == 0
    props = read_properties(tmp_path / PRODUCER_IDS_FILE)
    assert props == {"version": "0", "next.producer.id.block.start": "10"}


def test_restart_skips_the_rest_of_the_block(tmp_path: Path) -> None:
    first = ProducerIdManager(tmp_path, block_size=10)
    handed_out = [first.next_producer_id() for _ in range(3)]
    # A crash here loses ids 3..9, but a new process must not hand them out either.
    second = ProducerIdManager(tmp_path, block_size=10)
    assert second.next_producer_id() == 10
    assert handed_out == [0, 1, 2]


def test_crossing_blocks_reserves_the_next_one(tmp_path: Path) -> None:
    manager = ProducerIdManager(tmp_path, block_size=3)
    ids = [manager.next_producer_id() for _ in range(7)]
    assert ids == list(range(7))
    assert read_properties(tmp_path / PRODUCER_IDS_FILE)["next.producer.id.block.start"] == "9"
    assert ProducerIdManager(tmp_path, block_size=3).next_producer_id() == 9


@settings(max_examples=40, deadline=None)
@given(
    block_size=st.integers(1, 20),
    runs=st.lists(st.integers(0, 30), min_size=1, max_size=8),
)
def test_ids_never_repeat_across_restarts(
    tmp_path_factory: pytest.TempPathFactory, block_size: int, runs: list[int]
) -> None:
    directory = tmp_path_factory.mktemp("ids")
    seen: list[int] = []
    for count in runs:  # each run is one broker process
        manager = ProducerIdManager(directory, block_size=block_size)
        seen += [manager.next_producer_id() for _ in range(count)]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)


@pytest.mark.parametrize(
    "content",
    [
        "version=0\n",
        "version=7\nnext.producer.id.block.start=5\n",
        "version=0\nnext.producer.id.block.start=lots\n",
        "version=0\nnext.producer.id.block.start=-5\n",
        "garbage without equals\n",
    ],
)
def test_corrupt_file_stops_start_up(tmp_path: Path, content: str) -> None:
    (tmp_path / PRODUCER_IDS_FILE).write_text(content)
    with pytest.raises(CorruptFileError):
        ProducerIdManager(tmp_path)


def test_exhausted_ids(tmp_path: Path) -> None:
    (tmp_path / PRODUCER_IDS_FILE).write_text(
        f"version=0\nnext.producer.id.block.start={_MAX_ID}\n"
    )
    manager = ProducerIdManager(tmp_path)
    assert manager.next_producer_id() == _MAX_ID
    result = init_producer_id(manager, transactional_id=None)
    assert result == InitProducerIdResult(-1, -1, ErrorCode.UNKNOWN_SERVER_ERROR)


def test_init_producer_id_gives_a_new_id_and_epoch_zero() -> None:
    manager = ProducerIdManager(None)
    first = init_producer_id(manager, transactional_id=None)
    second = init_producer_id(manager, transactional_id=None)
    assert first == (0, 0, ErrorCode.NONE)
    assert second == (1, 0, ErrorCode.NONE)


@pytest.mark.parametrize("epoch", [0, 5, 32_766, 32_767])
def test_init_producer_id_ignores_the_existing_id_without_a_transactional_id(epoch: int) -> None:
    # KIP-360 (v3+): an idempotent producer passes its id and epoch; Kafka still answers a new
    # id with epoch 0, which also covers an exhausted epoch (Short.MAX_VALUE).
    manager = ProducerIdManager(None)
    old = manager.next_producer_id()
    producer_id, producer_epoch, error = init_producer_id(
        manager, transactional_id=None, producer_id=old, producer_epoch=epoch
    )
    assert (producer_epoch, error) == (0, ErrorCode.NONE)
    assert producer_id != old


@pytest.mark.parametrize(("producer_id", "producer_epoch"), [(-1, 0), (7, -1)])
def test_init_producer_id_refuses_half_a_producer(producer_id: int, producer_epoch: int) -> None:
    manager = ProducerIdManager(None)
    result = init_producer_id(
        manager, transactional_id=None, producer_id=producer_id, producer_epoch=producer_epoch
    )
    assert result == (-1, -1, ErrorCode.INVALID_REQUEST)
    assert manager.next_producer_id() == 0  # no id was spent on the refused request


def test_init_producer_id_refuses_an_empty_transactional_id() -> None:
    result = init_producer_id(ProducerIdManager(None), transactional_id="")
    assert result.error_code == ErrorCode.INVALID_REQUEST


def test_init_producer_id_leaves_transactional_ids_to_the_transaction_coordinator() -> None:
    with pytest.raises(ValueError, match="transaction coordinator"):
        init_producer_id(ProducerIdManager(None), transactional_id="txn")


def test_exhaustion_survives_a_restart(tmp_path: Path) -> None:
    (tmp_path / PRODUCER_IDS_FILE).write_text(
        f"version=0\nnext.producer.id.block.start={_MAX_ID}\n"
    )
    ProducerIdManager(tmp_path).next_producer_id()
    restarted = ProducerIdManager(tmp_path)
    assert init_producer_id(restarted, transactional_id=None).error_code == (
        ErrorCode.UNKNOWN_SERVER_ERROR
    )
