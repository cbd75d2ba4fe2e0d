"""A full disk and a failed fsync, injected at the storage's write and fsync calls: an append
that fails leaves the log as it was and succeeds once space is back; a failed fsync takes the
partition's log offline until a restart, whose recovery gives a consistent log; everything
acknowledged stays readable."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from kafkacompat.broker import Broker
from kafkacompat.cluster.partition import FetchIsolation
from kafkacompat.cluster.replica_manager import FetchRead
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.scheduler import KafkaScheduler
from kafkacompat.storage.base import KafkaStorageError
from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE
from kafkacompat.storage.log import Log
from tests.coordinators.helpers import batch_bytes
from tests.handlers.helpers import running_broker
from tests.storage.disk_faults import DiskFaults
from tests.storage.log_helpers import make_batch, read_all_values, settings

NOW = 1_700_000_000_000
E = ErrorCode
HW = FetchIsolation.HIGH_WATERMARK


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> DiskFaults:
    return DiskFaults(monkeypatch)


def _append(log: Log, tag: bytes) -> int:
    return log.append(
        bytearray(make_batch([tag, tag + b"!"])), leader_epoch=0, now_ms=NOW
    ).base_offset


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_refused_write_is_cut_back_and_the_same_append_succeeds_later(
    tmp_path: Path, faults: DiskFaults, error: int
) -> None:
    log = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW)
    for i in range(3):
        _append(log, b"acked-%d" % i)
    before = read_all_values(log)
    size, end = log.active_segment.size, log.log_end_offset
    faults.partial = True  # half the batch reaches the file before the disk refuses
    with faults.full(error=error), pytest.raises(KafkaStorageError) as refused:
        _append(log, b"refused")
    assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
    assert faults.writes_refused == 2  # the torn half, then the refusal
    assert os.path.getsize(log.active_segment.log_path) == size
    assert (log.log_end_offset, log.active_segment.size) == (end, size)
    assert read_all_values(log) == before
    assert log.offline_reason is None  # retriable: nothing is lost or unknown
    assert _append(log, b"later") == end  # the offsets the refused append would have had
    log.close()
    reopened = Log(str(tmp_path / "t-0"), settings(), now_ms=NOW, clean_shutdown=False)
    assert reopened.recovered_bytes_truncated == 0
    assert [v for _, v in read_all_values(reopened)] == [v for _, v in before] + [
        b"later",
        b"later!",
    ]
    reopened.close()


def test_a_refused_roll_leaves_the_old_segment_active(tmp_path: Path, faults: DiskFaults) -> None:
    log = Log(str(tmp_path / "t-0"), settings(segment_bytes=600), now_ms=NOW)
    _append(log, b"a" * 200)
    assert len(log.segments) == 1
    with faults.full(), pytest.raises(KafkaStorageError):
        _append(log, b"b" * 200)  # rolls first: the new segment's first write is refused
    assert log.log_end_offset == 2
    assert [v for _, v in read_all_values(log)] == [b"a" * 200, b"a" * 200 + b"!"]
    assert _append(log, b"c" * 200) == 2
    assert log.segments[-1].base_offset == 2
    log.close()


def test_a_failed_fsync_takes_the_log_offline_until_restart(
    tmp_path: Path, faults: DiskFaults, caplog: pytest.LogCaptureFixture
) -> None:
    directory = str(tmp_path / "t-0")
    log = Log(directory, settings(flush_messages=1), now_ms=NOW)
    _append(log, b"durable")
    recovery_point = log.recovery_point
    assert recovery_point == 2
    with caplog.at_level(logging.ERROR), faults.failing_fsync(), pytest.raises(KafkaStorageError):
        _append(log, b"never-acked")
    offline = [r for r in caplog.records if "OFFLINE" in r.getMessage()]
    assert len(offline) == 1 and "EIO" in offline[0].getMessage()
    # Offline stays offline, even though the next fsync would succeed: it may lie.
    for attempt in (lambda: _append(log, b"x"), lambda: log.read(0, 1 << 20)):
        with pytest.raises(KafkaStorageError):
            attempt()
    log.flush()
    assert log.recovery_point == recovery_point  # never vouches for what the fsync covered
    log.close()
    # Restart: recovery from the recovery point gives a consistent log holding the acked data.
    reopened = Log(
        directory,
        settings(flush_messages=1),
        now_ms=NOW,
        recovery_point=recovery_point,
        clean_shutdown=False,
    )
    values = [v for _, v in read_all_values(reopened)]
    assert values[:2] == [b"durable", b"durable!"]
    assert values[2:] in ([], [b"never-acked", b"never-acked!"])  # a whole batch or none
    assert _append(reopened, b"after") == reopened.log_end_offset - 2
    reopened.close()


def test_the_broker_answers_storage_errors_per_partition_and_serves_the_rest(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("full", 1)
        broker.controller.create_topic("fine", 1)
        replicas = broker.replica_manager
        full, fine = replicas.get_partition_or_error("full", 0), replicas.get_partition("fine", 0)
        assert fine is not None
        replicas.append_records(full, bytearray(batch_bytes(count=2)), now_ms=NOW)
        with faults.full(lambda path: "/full-0/" in path):
            with pytest.raises(KafkaProtocolError) as refused:
                replicas.append_records(full, bytearray(batch_bytes(count=2)), now_ms=NOW)
            assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
            assert (
                replicas.append_records(fine, bytearray(batch_bytes()), now_ms=NOW).base_offset == 0
            )
            results, _, _ = replicas.read_from_local_log(
                [
                    FetchRead(full, E.NONE, 0, 1 << 20),
                    FetchRead(fine, E.NONE, 0, 1 << 20),
                ],
                1 << 20,
                FetchIsolation.HIGH_WATERMARK,
            )
            assert [r.error for r in results] == [E.NONE, E.NONE]
            assert results[0].read is not None and results[0].read.high_watermark == 2
        assert full.high_watermark == 2
        info = replicas.append_records(full, bytearray(batch_bytes(count=2)), now_ms=NOW)
        assert (info.base_offset, full.high_watermark) == (2, 4)


def test_an_offline_partition_answers_storage_errors_and_the_shutdown_is_not_clean(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("sick", 1, {"flush.messages": "1"})
        broker.controller.create_topic("fine", 1)
        replicas = broker.replica_manager
        sick, fine = replicas.get_partition_or_error("sick", 0), replicas.get_partition("fine", 0)
        assert fine is not None
        replicas.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)
        with (
            faults.failing_fsync(lambda path: "/sick-0/" in path),
            pytest.raises(KafkaProtocolError) as failed,
        ):
            replicas.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)
        assert failed.value.error_code == E.KAFKA_STORAGE_ERROR
        assert sick.high_watermark == 1  # the unacknowledged batch is not offered to consumers
        results, _, _ = replicas.read_from_local_log(
            [FetchRead(sick, E.NONE, 0, 1 << 20), FetchRead(fine, E.NONE, 0, 1 << 20)],
            1 << 20,
            FetchIsolation.HIGH_WATERMARK,
        )
        assert [r.error for r in results] == [E.KAFKA_STORAGE_ERROR, E.NONE]
        for timestamp in (-1, -2, 0):  # ListOffsets: latest, earliest, by time
            with pytest.raises(KafkaProtocolError) as listed:
                sick.fetch_offset_for_timestamp(timestamp, HW)
            assert listed.value.error_code == E.KAFKA_STORAGE_ERROR
        caught_up = FetchRead(sick, E.NONE, sick.high_watermark, 1 << 20)
        results, _, _ = replicas.read_from_local_log([caught_up], 1 << 20, HW)
        assert [r.error for r in results] == [E.KAFKA_STORAGE_ERROR]
        replicas.append_records(fine, bytearray(batch_bytes()), now_ms=NOW)
        assert broker.logs.offline_logs == [("sick", 0)]
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    with running_broker(tmp_path, engine="disk") as broker:
        sick = broker.replica_manager.get_partition_or_error("sick", 0)
        assert sick.log_end_offset in (1, 2)  # recovery kept the acked batch, whole
        assert broker.replica_manager.get_partition_or_error("fine", 0).log_end_offset == 1
        broker.replica_manager.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)


def test_a_failed_roll_fsync_takes_that_log_offline(tmp_path: Path, faults: DiskFaults) -> None:
    async def scenario(broker: Broker) -> None:
        broker.controller.create_topic("rolled", 1, {"segment.bytes": "1024"})
        broker.controller.create_topic("fine", 1, {"segment.bytes": "1024"})
        replicas = broker.replica_manager
        for name in ("rolled", "fine"):
            partition = replicas.get_partition_or_error(name, 0)
            for _ in range(30):
                replicas.append_records(partition, bytearray(batch_bytes(count=5)), now_ms=NOW)
        with faults.failing_fsync(lambda path: "/rolled-0/" in path):
            await broker.flush_due()
        assert faults.fsyncs_refused >= 1
        assert broker.logs.offline_logs == [("rolled", 0)]
        fine_log = broker.logs.get_log("fine", 0)
        assert isinstance(fine_log, Log) and fine_log.recovery_point > 0

    with running_broker(tmp_path, engine="disk") as broker:
        asyncio.run(scenario(broker))


def test_create_topics_on_a_full_disk_leaves_no_half_created_topic(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        for doomed in ("partition.metadata", "topics"):  # the logs' files, then the commit
            with (
                faults.full(lambda path, d=doomed: d in path),  # type: ignore[misc]
                pytest.raises(KafkaProtocolError) as refused,
            ):
                broker.controller.create_topic("t", 3)
            assert faults.writes_refused >= 1
            assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
            assert "t" not in broker.metadata.topics and "t" not in broker.logs.topics()
            assert broker.replica_manager.get_partition("t", 0) is None
            assert not [p for p in tmp_path.iterdir() if p.name.startswith("t-")]
        broker.controller.create_topic("t", 3)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t-")) == [
            "t-0",
            "t-1",
            "t-2",
        ]
    with running_broker(tmp_path, engine="disk") as broker:
        assert broker.metadata.topics["t"].partitions == 3


def test_an_offset_commit_on_a_full_disk_gets_not_coordinator(
    tmp_path: Path, faults: DiskFaults
) -> None:
    from tests.handlers.helpers import call
    from tests.handlers.test_groups import _commit, _errors

    with running_broker(tmp_path, engine="disk", offsets_topic_num_partitions="1") as broker:
        broker.controller.create_topic("t", 1)
        assert _errors(call(broker, _commit("g", {("t", 0): 1}), 9)) == {("t", 0): E.NONE}
        with faults.full(lambda path: "__consumer_offsets" in path):
            answer = _errors(call(broker, _commit("g", {("t", 0): 2}), 9))
        # Kafka's coordinator turns the append's KAFKA_STORAGE_ERROR into NOT_COORDINATOR,
        # which sends the client to find the coordinator again and retry.
        assert faults.writes_refused >= 1
        assert answer == {("t", 0): E.NOT_COORDINATOR}
        assert _errors(call(broker, _commit("g", {("t", 0): 3}), 9)) == {("t", 0): E.NONE}
    with running_broker(tmp_path, engine="disk", offsets_topic_num_partitions="1") as broker:
        assert broker.groups is not None
        from kafkacompat.protocol.messages.offset_fetch_request import (
            OffsetFetchRequest,
            OffsetFetchRequestTopic,
        )

        fetched = call(
            broker,
            OffsetFetchRequest(
                group_id="g", topics=[OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
            ),
            7,
        )
        assert fetched.topics[0].partitions[0].committed_offset == 3


def test_a_failing_job_is_retried_with_back_off_and_reported_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    def job() -> None:
        runs.append("run")
        if len(runs) <= 4:
            raise OSError(errno.ENOSPC, "No space left on device")

    async def scenario() -> None:
        scheduler = KafkaScheduler()
        scheduler.schedule("kafka-test-job", job, 0.001)
        for _ in range(2000):  # bounded: about 5 s at most
            if len(runs) >= 7:
                break
            await asyncio.sleep(0.0025)
        await scheduler.shutdown()

    with caplog.at_level(logging.DEBUG, logger="kafkacompat.scheduler"):
        asyncio.run(scenario())
    assert len(runs) >= 7  # never dropped: it ran again after every failure, and after success
    infos = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in infos] == [logging.ERROR, logging.WARNING]
    assert "No space left" in infos[0].getMessage() and "back-off" in infos[0].getMessage()
    assert "succeeds again after 4 failures" in infos[1].getMessage()


def test_a_cleaning_that_hits_a_full_disk_leaves_the_original_segments(
    tmp_path: Path, faults: DiskFaults
) -> None:
    from tests.storage.test_cleaner import (
        clean_only,
        compact_config,
        file_bytes,
        fill,
        leftovers,
        rows,
        run_round,
    )

    log = Log(str(tmp_path / "c-0"), compact_config(), now_ms=NOW)
    fill(log, 200, keys=10)
    before = rows(log)
    files = {s.log_path: file_bytes(s.log_path) for s in log.segments}
    with faults.full(lambda path: path.endswith(".cleaned")), pytest.raises(OSError):
        clean_only(log)
    assert faults.writes_refused >= 1
    assert leftovers(log.directory) == []
    assert {s.log_path: file_bytes(s.log_path) for s in log.segments} == files
    assert rows(log) == before
    run_round(log)  # space back: the next round cleans
    assert len(rows(log)) < len(before)
    log.close()


def test_a_refused_producer_snapshot_at_roll_moves_no_producer_state(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 1, {"segment.bytes": "600"})
        replicas = broker.replica_manager
        partition = replicas.get_partition_or_error("t", 0)

        def send(sequence: int) -> int:
            blob = bytearray(batch_bytes(producer_id=7, producer_epoch=0, base_sequence=sequence))
            return replicas.append_records(partition, blob, now_ms=NOW).base_offset

        offsets = [send(i) for i in range(3)]
        segments = len(partition.log.local.segments)  # type: ignore[attr-defined]
        refused = None
        with faults.full(lambda path: ".snapshot" in path):
            for sequence in range(3, 20):  # the roll comes within a few batches
                try:
                    offsets.append(send(sequence))
                except KafkaProtocolError as exc:
                    refused = exc
                    break
        assert refused is not None and refused.error_code == E.KAFKA_STORAGE_ERROR
        assert len(partition.log.local.segments) == segments  # type: ignore[attr-defined]
        # The refused roll wrote nothing and the state did not count the batch: the
        # producer's retry of the same sequence is appended, and a duplicate of it is not.
        offsets.append(send(sequence))
        assert send(sequence) == offsets[-1]
        assert len(partition.log.local.segments) == segments + 1  # type: ignore[attr-defined]
        assert offsets == list(range(len(offsets)))
        assert not [p for p in (tmp_path / "t-0").iterdir() if p.name.endswith(".tmp")]


def test_a_refused_checkpoint_keeps_the_previous_file(tmp_path: Path, faults: DiskFaults) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 1)
        replicas = broker.replica_manager
        replicas.append_records(
            replicas.get_partition_or_error("t", 0), bytearray(batch_bytes()), now_ms=NOW
        )
        broker.checkpoint()
        path = tmp_path / "replication-offset-checkpoint"
        written = path.read_bytes()
        replicas.append_records(
            replicas.get_partition_or_error("t", 0), bytearray(batch_bytes()), now_ms=NOW
        )
        with faults.full(lambda p: "checkpoint" in p), pytest.raises(OSError):
            broker.checkpoint()
        assert path.read_bytes() == written
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        broker.checkpoint()
        assert path.read_bytes() != written


def test_a_refused_index_write_at_flush_keeps_the_acked_data_and_a_whole_index(
    tmp_path: Path, faults: DiskFaults, caplog: pytest.LogCaptureFixture
) -> None:
    directory = str(tmp_path / "t-0")
    log = Log(directory, settings(flush_messages=1, index_interval_bytes=1), now_ms=NOW)
    for i in range(3):
        _append(log, b"before-%d" % i)
    index_path = log.active_segment.offset_index.path
    faults.partial = True
    with caplog.at_level(logging.WARNING), faults.full(lambda path: path.endswith(".index")):
        # The .log fsync succeeded: durable, so acknowledged; the index waits for space.
        for i in range(3):
            _append(log, b"during-%d" % i)
    assert faults.writes_refused >= 2
    assert len([r for r in caplog.records if "cannot flush" in r.getMessage()]) == 1
    assert log.recovery_point < log.log_end_offset
    assert os.path.getsize(index_path) % 8 == 0  # the torn entry was cut off
    _append(log, b"after")
    assert log.recovery_point == log.log_end_offset
    log.close()
    reopened = Log(directory, settings(index_interval_bytes=1), now_ms=NOW)
    reopened.active_segment.deep_check_indexes()  # raises if the entries were torn or doubled
    assert len(read_all_values(reopened)) == 14
    reopened.close()


def test_create_partitions_on_a_full_disk_adds_none(tmp_path: Path, faults: DiskFaults) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("t", 1)
        with (
            faults.full(lambda path: "/t-2/" in path),
            pytest.raises(KafkaProtocolError) as refused,
        ):
            broker.controller.create_partitions("t", 3)
        assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
        assert broker.metadata.topics["t"].partitions == 1
        assert broker.logs.topic("t").partitions == 1
        assert broker.replica_manager.get_partition("t", 1) is None
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t-")) == ["t-0"]
        broker.controller.create_partitions("t", 3)
    with running_broker(tmp_path, engine="disk") as broker:
        assert broker.metadata.topics["t"].partitions == 3
