"""DescribeCluster (key 60, v0-1) and DescribeLogDirs (35, v0-4).

DescribeCluster answers as a broker listener does: this node is the only broker and, since a
broker reports a live broker as the controller to clients (KRaft controllers are not
reachable by them), the controller.  Asking a broker listener for controllers
(endpoint type 2) is MISMATCHED_ENDPOINT_TYPE, as in Kafka's ``AuthHelper``.

DescribeLogDirs reports one log directory, the data directory's absolute path, with every
hosted partition's size; the only replica is the leader, so the offset lag is 0 and there are
no future logs.  The memory and null engines have no volume: total and usable bytes are -1.
"""

from __future__ import annotations

import os

from kafkacompat.broker import Broker
from kafkacompat.errors import ErrorCode
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.describe_cluster_request import DescribeClusterRequest
from kafkacompat.protocol.messages.describe_cluster_response import (
    DescribeClusterBroker,
    DescribeClusterResponse,
)
from kafkacompat.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from kafkacompat.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from kafkacompat.security.authorizer import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorized_operations,
)

ENDPOINT_BROKERS = 1
ENDPOINT_CONTROLLERS = 2
_ENDPOINT_NAMES = {ENDPOINT_BROKERS: "BROKER", ENDPOINT_CONTROLLERS: "CONTROLLER"}

OPERATIONS_NOT_REQUESTED = -(2**31)


async def describe_cluster(
    ctx: RequestContext, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    broker = ctx.broker
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return DescribeClusterResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, cluster_id="", controller_id=-1
        )
    wanted = request.endpoint_type if ctx.api_version >= 1 else ENDPOINT_BROKERS
    if wanted not in _ENDPOINT_NAMES:
        return DescribeClusterResponse(
            error_code=(
                ErrorCode.INVALID_REQUEST
                if ctx.api_version == 0
                else ErrorCode.UNSUPPORTED_ENDPOINT_TYPE
            ),
            error_message=f"Unsupported endpoint type {wanted}",
        )
    if wanted != ENDPOINT_BROKERS:
        return DescribeClusterResponse(
            error_code=ErrorCode.MISMATCHED_ENDPOINT_TYPE,
            error_message=(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint "
                f"of type {_ENDPOINT_NAMES[wanted]}"
            ),
        )
    host, port = broker.advertised_host_port
    return DescribeClusterResponse(
        throttle_time_ms=0,
        error_code=ErrorCode.NONE,
        error_message=None,
        endpoint_type=ENDPOINT_BROKERS,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        brokers=[
            DescribeClusterBroker(
                broker_id=broker.node_id,
                host=host,
                port=port,
                rack=broker.config.get("broker.rack"),
            )
        ],
        cluster_authorized_operations=(
            authorized_operations(
                broker.authorizer, ctx.session, ResourceType.CLUSTER, CLUSTER_NAME
            )
            if request.include_cluster_authorized_operations
            else OPERATIONS_NOT_REQUESTED
        ),
    )


def _volume(broker: Broker, path: str) -> tuple[int, int]:
    """(total, usable) bytes of the file system holding ``path``, as Java's FileStore reports
    getTotalSpace and getUsableSpace."""
    if broker.engine != "disk":
        return -1, -1
    try:
        stats = os.statvfs(path)
    except OSError:
        return -1, -1
    return stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize


async def describe_log_dirs(
    ctx: RequestContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    broker = ctx.broker
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return DescribeLogDirsResponse(
            throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results=[]
        )
    wanted: set[tuple[str, int]] | None = None
    if request.topics is not None:
        wanted = {(t.topic, p) for t in request.topics for p in t.partitions}
    topics = []
    replicas = broker.replica_manager
    for name, topic in sorted(broker.metadata.topics.items()):
        partitions = [
            DescribeLogDirsPartition(
                partition_index=index,
                partition_size=partition.log.size_in_bytes,
                offset_lag=0,
                is_future_key=False,
            )
            for index in range(topic.partitions)
            if (wanted is None or (name, index) in wanted)
            and (partition := replicas.get_partition(name, index)) is not None
        ]
        # ReplicaManager.describeLogDirs leaves out topics with no partition asked for.
        if partitions:
            topics.append(DescribeLogDirsTopic(name=name, partitions=partitions))
    path = os.path.abspath(broker.data_dir)
    total, usable = _volume(broker, path)
    return DescribeLogDirsResponse(
        throttle_time_ms=0,
        error_code=ErrorCode.NONE,
        results=[
            DescribeLogDirsResult(
                error_code=ErrorCode.NONE,
                log_dir=path,
                topics=topics,
                total_bytes=total,
                usable_bytes=usable,
            )
        ],
    )


HANDLES: dict[int, Handler] = {
    ApiKey.DESCRIBE_CLUSTER: describe_cluster,
    ApiKey.DESCRIBE_LOG_DIRS: describe_log_dirs,
}
