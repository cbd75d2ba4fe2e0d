"""Metadata as each client sees it: the one broker at the address it listens on, the cluster
id from its data directory, the controller, and topics with every partition led by it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from interop.clients import CLIENTS, Record, kcat_base, produce, require, run_kafkajs
from interop.conftest import BrokerProcess, new_broker, unique_topic

PARTITIONS = 3


@dataclass
class Partition:
    leader: int
    replicas: list[int] | None
    isr: list[int] | None
    """None where the client does not keep them."""


@dataclass
class MetadataView:
    brokers: dict[int, tuple[str, int]]
    topics: dict[str, dict[int, Partition]]
    cluster_id: str | None = None
    """None where the client does not report it."""
    controller_id: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def confluent_metadata(bootstrap: str, topics: list[str]) -> MetadataView:
    """list_topics() (Metadata for all topics), checked against describe_cluster()
    (DescribeCluster)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_cluster(request_timeout=10).result(timeout=15)
    cluster = admin.list_topics(timeout=10)
    brokers = {b.id: (b.host, b.port) for b in cluster.brokers.values()}
    assert {n.id: (n.host, n.port) for n in described.nodes} == brokers
    assert (described.cluster_id, described.controller.id) == (
        cluster.cluster_id,
        cluster.controller_id,
    )
    return MetadataView(
        brokers,
        {
            name: {
                p.id: Partition(p.leader, list(p.replicas), list(p.isrs))
                for p in topic.partitions.values()
            }
            for name, topic in cluster.topics.items()
            if topic.error is None
        },
        cluster.cluster_id,
        cluster.controller_id,
    )


def kafka_python_metadata(bootstrap: str, topics: list[str]) -> MetadataView:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        cluster = admin.describe_cluster()
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    return MetadataView(
        {b["broker_id"]: (b["host"], b["port"]) for b in cluster["brokers"]},
        {
            t["name"]: {
                p["partition_index"]: Partition(
                    p["leader_id"], list(p["replica_nodes"]), list(p["isr_nodes"])
                )
                for p in t["partitions"]
            }
            for t in described
            if t["error_code"] == 0
        },
        cluster["cluster_id"],
        cluster["controller_id"],
    )


def aiokafka_metadata(bootstrap: str, topics: list[str]) -> MetadataView:
    from aiokafka import TopicPartition
    from aiokafka.client import AIOKafkaClient

    async def run() -> MetadataView:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        await asyncio.wait_for(client.bootstrap(), 30)
        try:
            cluster = await asyncio.wait_for(client.fetch_all_metadata(), 30)
        finally:
            await client.close()
        view: dict[str, dict[int, Partition]] = {}
        for name in cluster.topics():
            view[name] = {}
            for index in cluster.partitions_for_topic(name) or ():
                leader = cluster.leader_for_partition(TopicPartition(name, index))
                view[name][index] = Partition(leader, None, None)
        return MetadataView(
            {b.nodeId: (b.host, b.port) for b in cluster.brokers()},
            view,
            None,
            cluster.controller.nodeId if cluster.controller else None,
        )

    return asyncio.run(run())


def kcat_metadata(bootstrap: str, topics: list[str]) -> MetadataView:
    done = subprocess.run(
        [*kcat_base(bootstrap), "-L", "-J"], capture_output=True, timeout=30, check=True
    )
    listing = json.loads(done.stdout)
    brokers = {}
    for b in listing["brokers"]:
        host, _, port = b["name"].rpartition(":")
        brokers[b["id"]] = (host, int(port))
    return MetadataView(
        brokers,
        {
            t["topic"]: {
                p["partition"]: Partition(
                    p["leader"], [r["id"] for r in p["replicas"]], [r["id"] for r in p["isrs"]]
                )
                for p in t["partitions"]
            }
            for t in listing["topics"]
            if "error" not in t
        },
        None,
        listing["controllerid"],
    )


def kafkajs_metadata(bootstrap: str, topics: list[str]) -> MetadataView:
    cluster, described = run_kafkajs(
        {
            "op": "admin",
            "brokers": [bootstrap],
            "calls": [
                {"method": "describeCluster"},
                {"method": "fetchTopicMetadata", "args": [{"topics": topics}]},
            ],
        }
    )
    return MetadataView(
        {b["nodeId"]: (b["host"], b["port"]) for b in cluster["brokers"]},
        {
            t["name"]: {
                p["partitionId"]: Partition(p["leader"], p["replicas"], p["isr"])
                for p in t["partitions"]
            }
            for t in described["topics"]
        },
        cluster["clusterId"],
        cluster["controller"],
    )


METADATA: dict[str, Callable[[str, list[str]], MetadataView]] = {
    "confluent": confluent_metadata,
    "kafka-python": kafka_python_metadata,
    "aiokafka": aiokafka_metadata,
    "kcat": kcat_metadata,
    "kafkajs": kafkajs_metadata,
}


@dataclass
class Cluster:
    broker: BrokerProcess
    cluster_id: str
    topics: list[str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A broker whose auto-created topics get three partitions, and two such topics."""
    process = new_broker(
        tmp_path_factory.mktemp("metadata-broker"), settings={"num.partitions": str(PARTITIONS)}
    )
    try:
        process.start()
        properties = (process.data_dir / "meta.properties").read_text()
        cluster_id = next(
            line.split("=", 1)[1]
            for line in properties.splitlines()
            if line.startswith("cluster.id=")
        )
        topics = [unique_topic("metadata-a"), unique_topic("metadata-b")]
        for name in topics:
            produce("confluent", process.bootstrap, name, [Record(b"k", b"v")], partition=2)
        yield Cluster(process, cluster_id, topics)
    finally:
        process.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_metadata(cluster: Cluster, client: str) -> None:
    require(client)
    view = METADATA[client](cluster.broker.bootstrap, cluster.topics)
    assert view.brokers == {1: ("127.0.0.1", cluster.broker.port)}
    if view.cluster_id is not None:
        assert view.cluster_id == cluster.cluster_id
    if view.controller_id is not None:
        assert view.controller_id == 1
    for name in cluster.topics:
        assert name in view.topics, f"{client} does not list {name}: {sorted(view.topics)}"
        partitions = view.topics[name]
        assert sorted(partitions) == list(range(PARTITIONS))
        for partition in partitions.values():
            assert partition.leader == 1
            assert partition.replicas in ([1], None)
            assert partition.isr in ([1], None)
