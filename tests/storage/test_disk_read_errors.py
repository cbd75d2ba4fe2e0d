"""A read the disk refuses (EIO from ``pread``), injected at the storage's read calls: only
that partition answers KAFKA_STORAGE_ERROR and its log goes offline, as Kafka marks a log dir
offline on an IOException while reading; the same fetch's other partitions, the connection
and the broker go on. An offline partition has no leader in Metadata, as KRaft answers."""

from __future__ import annotations

import asyncio
import errno
import struct
from pathlib import Path
from typing import Any

import pytest

from kafkacompat.broker_server import BrokerServer
from kafkacompat.cluster.partition import FetchIsolation
from kafkacompat.cluster.replica_manager import FetchRead
from kafkacompat.config import BrokerConfig
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.protocol.framing import decode_response
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kafkacompat.records.batch import iter_batches
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE
from kafkacompat.storage.log import Log
from kafkacompat.storage.unified_log import UnifiedLog
from tests.coordinators.helpers import batch_bytes
from tests.handlers.helpers import call, running_broker
from tests.server.helpers import (
    FETCH_VERSION,
    PRODUCE_VERSION,
    TIMEOUT,
    batch,
    produce_request,
    request_frame,
)
from tests.storage.disk_faults import DiskFaults

NOW = 1_700_000_000_000
E = ErrorCode
HW = FetchIsolation.HIGH_WATERMARK
MB = 1 << 20


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> DiskFaults:
    return DiskFaults(monkeypatch)


def _sick(path: str) -> bool:
    return "/sick-0/" in path


def test_a_read_error_answers_that_partition_takes_its_log_offline_and_spares_the_rest(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("sick", 1)
        broker.controller.create_topic("fine", 1)
        replicas = broker.replica_manager
        sick, fine = replicas.get_partition_or_error("sick", 0), replicas.get_partition("fine", 0)
        assert fine is not None
        for partition in (sick, fine):
            replicas.append_records(partition, bytearray(batch_bytes(count=2)), now_ms=NOW)
        reads = [FetchRead(sick, E.NONE, 0, MB), FetchRead(fine, E.NONE, 0, MB)]
        with faults.failing_reads(_sick):
            results, total, failed = replicas.read_from_local_log(reads, MB, HW)
        assert faults.reads_refused >= 1
        assert [r.error for r in results] == [E.KAFKA_STORAGE_ERROR, E.NONE]
        assert failed and total == len(results[1].read.records) > 0  # type: ignore[union-attr]
        assert broker.logs.offline_logs == [("sick", 0)]
        # Offline until restart: the disk is healthy again, yet nothing is trusted.
        results, _, _ = replicas.read_from_local_log(reads, MB, HW)
        assert [r.error for r in results] == [E.KAFKA_STORAGE_ERROR, E.NONE]
        with pytest.raises(KafkaProtocolError) as refused:
            replicas.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)
        assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
        replicas.append_records(fine, bytearray(batch_bytes()), now_ms=NOW)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    with running_broker(tmp_path, engine="disk") as broker:
        sick = broker.replica_manager.get_partition_or_error("sick", 0)
        assert sick.log_end_offset == 2  # everything acknowledged is there after recovery
        assert len(sick.read_records(0, MB, HW).records) > 0


def test_a_shortage_of_descriptors_refuses_the_read_and_keeps_the_log_online(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("sick", 1)
        replicas = broker.replica_manager
        sick = replicas.get_partition_or_error("sick", 0)
        replicas.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)
        reads = [FetchRead(sick, E.NONE, 0, MB)]
        with faults.failing_reads(_sick, error=errno.EMFILE):
            results, _, _ = replicas.read_from_local_log(reads, MB, HW)
        assert [r.error for r in results] == [E.KAFKA_STORAGE_ERROR]
        assert broker.logs.offline_logs == []
        results, total, _ = replicas.read_from_local_log(reads, MB, HW)
        assert [r.error for r in results] == [E.NONE] and total > 0


def test_list_offsets_by_time_on_a_failing_read_answers_storage_error(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("sick", 1)
        replicas = broker.replica_manager
        sick = replicas.get_partition_or_error("sick", 0)
        replicas.append_records(sick, bytearray(batch_bytes(count=3)), now_ms=NOW)
        with faults.failing_reads(_sick), pytest.raises(KafkaProtocolError) as failed:
            sick.fetch_offset_for_timestamp(0, HW)  # decodes the batch found: a read
        assert failed.value.error_code == E.KAFKA_STORAGE_ERROR
        assert broker.logs.offline_logs == [("sick", 0)]


def test_a_failing_read_while_loading_producer_state_refuses_the_produce(
    tmp_path: Path, faults: DiskFaults
) -> None:
    config = LogConfig.from_props({})
    local = Log(str(tmp_path / "sick-0"), config, now_ms=NOW)
    local.append(bytearray(batch_bytes(count=2)), leader_epoch=0, now_ms=NOW)  # no snapshot
    log = UnifiedLog(("sick", 0), local, config, directory=tmp_path / "sick-0")
    with faults.failing_reads(_sick), pytest.raises(KafkaProtocolError) as refused:
        log.append_as_leader(bytearray(batch_bytes(7, 0, 0)), leader_epoch=0, now_ms=NOW)
    assert refused.value.error_code == E.KAFKA_STORAGE_ERROR
    assert faults.reads_refused >= 1 and log.offline
    assert local.log_end_offset == 2
    local.close()


def test_metadata_and_offset_for_leader_epoch_of_an_offline_partition(
    tmp_path: Path, faults: DiskFaults
) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        broker.controller.create_topic("sick", 1)
        broker.controller.create_topic("fine", 1)
        replicas = broker.replica_manager
        sick = replicas.get_partition_or_error("sick", 0)
        replicas.append_records(sick, bytearray(batch_bytes()), now_ms=NOW)
        with faults.failing_reads(_sick):
            replicas.read_from_local_log([FetchRead(sick, E.NONE, 0, MB)], MB, HW)
        assert sick.is_offline
        node = broker.node_id
        request = MetadataRequest(
            topics=[MetadataRequestTopic(name="sick"), MetadataRequestTopic(name="fine")]
        )
        for version in (1, 7, 12):  # no epoch before v7, offline replicas from v5
            topics = {t.name: t for t in call(broker, request, version).topics}
            assert [t.error_code for t in topics.values()] == [E.NONE, E.NONE]
            [offline] = topics["sick"].partitions
            assert offline.error_code == E.LEADER_NOT_AVAILABLE
            assert offline.leader_id == -1
            assert (offline.replica_nodes, offline.isr_nodes) == ([node], [node])
            assert offline.offline_replicas == ([node] if version >= 5 else [])
            if version >= 7:
                assert offline.leader_epoch == sick.leader_epoch
            [online] = topics["fine"].partitions
            assert (online.error_code, online.leader_id) == (E.NONE, node)
            assert online.offline_replicas == []
        epochs = OffsetForLeaderEpochRequest(
            topics=[
                OffsetForLeaderTopic(
                    topic=name,
                    partitions=[
                        OffsetForLeaderPartition(
                            partition=0, current_leader_epoch=current, leader_epoch=0
                        )
                    ],
                )
                # The offline check comes before the epoch's, as in Kafka.
                for name, current in (("sick", sick.leader_epoch + 3), ("fine", -1))
            ]
        )
        answered = call(broker, epochs, 4).topics
        assert [(t.topic, t.partitions[0].error_code) for t in answered] == [
            ("sick", E.KAFKA_STORAGE_ERROR),
            ("fine", E.NONE),
        ]
        assert (answered[0].partitions[0].leader_epoch, answered[0].partitions[0].end_offset) == (
            -1,
            -1,
        )


_SIZE = struct.Struct(">i")


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: Message, version: int
) -> Any:
    assert body.API_KEY is not None
    writer.write(request_frame(body, version, 7))
    size = _SIZE.unpack(await asyncio.wait_for(reader.readexactly(4), TIMEOUT))[0]
    frame = await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
    correlation_id, response = decode_response(body.API_KEY, version, frame)
    assert correlation_id == 7
    return response


def test_a_read_error_over_a_real_socket_keeps_the_connection_and_the_other_partition(
    tmp_path: Path, faults: DiskFaults
) -> None:
    async def scenario() -> None:
        config = BrokerConfig(
            {"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "data")}
        )
        broker_server = BrokerServer(config, engine="disk")
        await asyncio.wait_for(broker_server.startup(), TIMEOUT)
        try:
            host, port = broker_server.bound[0]
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
            for topic in ("sick", "fine"):
                await _request(
                    reader, writer, MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 12
                )
                produced = await _request(
                    reader, writer, produce_request(topic, batch(topic.encode())), PRODUCE_VERSION
                )
                assert produced.responses[0].partition_responses[0].error_code == E.NONE
            fetch = FetchRequest(
                max_wait_ms=0,
                min_bytes=1,
                max_bytes=MB,
                topics=[
                    FetchTopic(
                        topic=name,
                        partitions=[
                            FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=MB)
                        ],
                    )
                    for name in ("sick", "fine")
                ],
            )
            with faults.failing_reads(_sick):
                fetched = await _request(reader, writer, fetch, FETCH_VERSION)
            answers = {t.topic: t.partitions[0] for t in fetched.responses}
            assert answers["sick"].error_code == E.KAFKA_STORAGE_ERROR
            assert answers["fine"].error_code == E.NONE
            values = [
                r.value
                for b in iter_batches(bytes(answers["fine"].records))
                for r in b.iter_records()
            ]
            assert values == [b"fine"]
            # The same connection goes on serving, and Metadata shows the partition leaderless.
            metadata = await _request(reader, writer, MetadataRequest(topics=None), 12)
            leaders = {t.name: t.partitions[0].leader_id for t in metadata.topics}
            assert leaders == {"sick": -1, "fine": broker_server.broker.node_id}
            writer.close()
        finally:
            await asyncio.wait_for(broker_server.shutdown(), TIMEOUT)

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT * 2))
