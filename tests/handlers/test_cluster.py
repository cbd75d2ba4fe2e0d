"""DescribeCluster and DescribeLogDirs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages.describe_cluster_request import DescribeClusterRequest
from kafkacompat.protocol.messages.describe_log_dirs_request import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
)
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.manager import Engine
from tests.handlers.helpers import call, running_broker

ALL_CLUSTER_OPERATIONS = (
    8096  # CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, (DESCRIBE|ALTER)_CONFIGS, IDEMPOTENT_WRITE
)


@pytest.mark.parametrize("version", [0, 1])
def test_describe_cluster(tmp_path: Path, version: int) -> None:
    with running_broker(tmp_path, advertised_listeners="PLAINTEXT://kafka.local:19092") as broker:
        response = call(broker, DescribeClusterRequest(), version)
        assert (response.error_code, response.error_message) == (ErrorCode.NONE, None)
        assert response.cluster_id == broker.cluster_id
        assert response.controller_id == broker.node_id
        assert [(b.broker_id, b.host, b.port, b.rack) for b in response.brokers] == [
            (broker.node_id, "kafka.local", 19092, None)
        ]
        assert response.cluster_authorized_operations == -(2**31)
        assert response.endpoint_type == 1
        asked = call(
            broker, DescribeClusterRequest(include_cluster_authorized_operations=True), version
        )
        assert asked.cluster_authorized_operations == ALL_CLUSTER_OPERATIONS


def test_describe_cluster_reports_the_bound_port_and_rack(tmp_path: Path) -> None:
    with running_broker(tmp_path, broker_rack="r1") as broker:
        broker.bound = ("0.0.0.0", 40123)
        (only,) = call(broker, DescribeClusterRequest(), 1).brokers
        assert (only.host, only.port, only.rack) == (socket.getfqdn(), 40123, "r1")


def test_describe_cluster_endpoint_types(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker:
        controllers = call(broker, DescribeClusterRequest(endpoint_type=2), 1)
        assert controllers.error_code == ErrorCode.MISMATCHED_ENDPOINT_TYPE
        assert controllers.error_message == (
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of "
            "type CONTROLLER"
        )
        assert controllers.brokers == []
        unknown = call(broker, DescribeClusterRequest(endpoint_type=9), 1)
        assert unknown.error_code == ErrorCode.UNSUPPORTED_ENDPOINT_TYPE


def fill(broker, name: str, partitions: int) -> None:  # type: ignore[no-untyped-def]
    broker.controller.create_topic(name, partitions)
    now = broker.now_ms()
    for partition in range(partitions):
        for _ in range(partition + 1):
            builder = RecordBatchBuilder()
            builder.append(b"x" * 100, timestamp=now)
            broker.replica_manager.append_records(
                broker.replica_manager.get_partition_or_error(name, partition),
                bytearray(builder.build()),
                now_ms=now,
            )


@pytest.mark.parametrize("version", [0, 4])
@pytest.mark.parametrize("engine", ["disk", "memory"])
def test_describe_log_dirs_everything(tmp_path: Path, version: int, engine: Engine) -> None:
    with running_broker(tmp_path, engine=engine) as broker:
        fill(broker, "a", 2)
        fill(broker, "b", 1)
        response = call(broker, DescribeLogDirsRequest(topics=None), version)
        assert response.error_code == ErrorCode.NONE
        (result,) = response.results
        assert result.error_code == ErrorCode.NONE
        assert result.log_dir == os.path.abspath(tmp_path)
        sizes = {
            (t.name, p.partition_index): p.partition_size
            for t in result.topics
            for p in t.partitions
        }
        assert set(sizes) == {("a", 0), ("a", 1), ("b", 0)}
        assert sizes[("a", 1)] == 2 * sizes[("a", 0)] > 0
        assert all(
            (p.offset_lag, p.is_future_key) == (0, False)
            for t in result.topics
            for p in t.partitions
        )
        if version >= 4 and engine == "disk":
            assert result.total_bytes > 0 and 0 <= result.usable_bytes <= result.total_bytes
        elif version >= 4:
            assert (result.total_bytes, result.usable_bytes) == (-1, -1)


def test_describe_log_dirs_filters(tmp_path: Path) -> None:
    with running_broker(tmp_path, engine="disk") as broker:
        fill(broker, "a", 2)
        fill(broker, "b", 1)
        request = DescribeLogDirsRequest(
            topics=[
                DescribableLogDirTopic(topic="a", partitions=[1, 7]),
                DescribableLogDirTopic(topic="missing", partitions=[0]),
            ]
        )
        (result,) = call(broker, request, 2).results
        assert [(t.name, [p.partition_index for p in t.partitions]) for t in result.topics] == [
            ("a", [1])
        ]
        (empty,) = call(broker, DescribeLogDirsRequest(topics=[]), 3).results
        assert empty.topics == []
