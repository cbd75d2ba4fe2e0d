"""A minimal fake Kafka broker for capturing what real clients send (scripts/capture_golden.py).

Theory of operation. One broker per capture scenario listens on 127.0.0.1 (a random port) on a
background asyncio loop and answers, with our own codec, just enough for confluent-kafka and
kafka-python to go through their ordinary flows:

* ApiVersions: every API a KRaft broker serves, with upstream's version ranges (minus versions
  upstream marks unstable), so each client picks the newest versions it knows. librdkafka only
  writes RecordBatch v2 when Fetch v4+ and Produce v3+ are advertised. A too-new ApiVersions gets
  the KIP-511 answer (v0, UNSUPPORTED_VERSION, our ranges).
* Metadata: itself as broker 1 and controller; any topic asked for exists with
  ``produced.PARTITION_COUNT`` partitions led by broker 1 at leader epoch 0, with a fixed topic id.
* Produce appends to a :class:`Log` shared by all brokers of a run; Fetch reads from it, by name
  or (v13+) by topic id, with a short stand-in for the long-poll; ListOffsets answers 0 for
  EARLIEST and the log end otherwise.
* FindCoordinator (itself), JoinGroup/SyncGroup (every joiner leads a group of one, each join a
  new generation), Heartbeat, OffsetFetch (nothing committed), OffsetCommit, LeaveGroup,
  InitProducerId (producer id 1000, epoch 0) and GetTelemetrySubscriptions (no metrics).
* Anything else gets its response class's defaults and is listed in ``unhandled``.

It records every request frame it receives (``frames``). Not a broker to build on: no
validation, no errors beyond the few above, one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.protocol import APIS, ApiKey, Message, response_class
from kafkacompat.protocol.framing import (
    FrameReader,
    UnsupportedApiVersionError,
    decode_request,
    encode_response,
)
from kafkacompat.protocol.messages import (
    api_versions_response,
    fetch_response,
    find_coordinator_response,
    get_telemetry_subscriptions_response,
    init_producer_id_response,
    join_group_response,
    leave_group_response,
    list_offsets_response,
    metadata_response,
    offset_commit_response,
    offset_fetch_response,
    produce_response,
    sync_group_response,
)
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.primitives import DecodeError
from kafkacompat.records import RecordBatch, iter_batches
from tests.golden import produced

HOST = "127.0.0.1"
BROKER_ID = 1
CLUSTER_ID = "kafkacompat-golden-00"
READ_TIMEOUT_S = 20.0
"""No socket read or write waits longer than this."""
FETCH_WAIT_CAP_S = 0.2

Handler = Callable[[RequestHeader, Any], Awaitable[Message | None]]


def topic_id(name: str) -> uuid.UUID:
    """Stable across runs, so Fetch v13+ fixtures (which name topics by id) are reproducible."""
    return produced.TOPIC_ID if name == produced.TOPIC else uuid.uuid5(produced.TOPIC_ID, name)


class Log:
    """Every partition's batches, as received, with base offsets stamped. Shared by brokers."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], list[bytearray]] = {}
        self.next_offset: dict[tuple[str, int], int] = {}
        self.refused: list[str] = []
        self._lock = threading.Lock()

    def append(self, topic: str, partition: int, records: bytes) -> tuple[int, int]:
        """(error code, base offset) of appending a Produce request's records."""
        key = (topic, partition)
        try:
            batches = [bytearray(b.buffer) for b in iter_batches(records)]
        except KafkaProtocolError as exc:
            self.refused.append(f"records for {topic}-{partition}: {exc}")
            return ErrorCode.CORRUPT_MESSAGE, -1
        with self._lock:
            base = self.next_offset.get(key, 0)
            offset = base
            for raw in batches:
                batch = RecordBatch(raw)
                batch.set_base_offset(offset)
                batch.set_partition_leader_epoch(0)
                offset += batch.last_offset_delta + 1
            self.partitions.setdefault(key, []).extend(batches)
            self.next_offset[key] = offset
        return ErrorCode.NONE, base

    def end_offset(self, topic: str, partition: int) -> int:
        with self._lock:
            return self.next_offset.get((topic, partition), 0)

    def read(self, topic: str, partition: int, offset: int) -> bytes:
        """Whole batches that hold ``offset`` or later (a fetch may start mid-batch, as in Kafka)."""
        with self._lock:
            batches = list(self.partitions.get((topic, partition), ()))
        return b"".join(
            b
            for b in batches
            if RecordBatch(b).base_offset + RecordBatch(b).last_offset_delta >= offset
        )


class FakeBroker:
    """One broker on a background asyncio loop; records every request frame it receives."""

    def __init__(self, data: Log) -> None:
        self.data = data
        self.frames: list[bytes] = []
        self.unhandled: set[str] = set()
        self.errors: list[str] = []
        self.port = 0
        self._groups: dict[str, tuple[int, str]] = {}  # group id -> (generation, protocol name)
        self._member_count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: self.api_versions,
            ApiKey.METADATA: self.metadata,
            ApiKey.PRODUCE: self.produce,
            ApiKey.FETCH: self.fetch,
            ApiKey.LIST_OFFSETS: self.list_offsets,
            ApiKey.FIND_COORDINATOR: self.find_coordinator,
            ApiKey.JOIN_GROUP: self.join_group,
            ApiKey.SYNC_GROUP: self.sync_group,
            ApiKey.HEARTBEAT: self.empty_response,
            ApiKey.OFFSET_FETCH: self.offset_fetch,
            ApiKey.OFFSET_COMMIT: self.offset_commit,
            ApiKey.LEAVE_GROUP: self.leave_group,
            ApiKey.INIT_PRODUCER_ID: self.init_producer_id,
            ApiKey.GET_TELEMETRY_SUBSCRIPTIONS: self.get_telemetry_subscriptions,
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> FakeBroker:
        self._thread.start()
        start = asyncio.start_server(self._serve, HOST, 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        frames = FrameReader(max_frame_size=16 * 1024 * 1024)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT_S)
                if not data:
                    return
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    self.frames.append(frame)
                    chunks = await self._answer(frame)
                    if chunks is not None:
                        writer.writelines(chunks)
                        await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass  # a client gone quiet or away: close, as a broker would
        except DecodeError as exc:
            self.errors.append(f"undecodable request: {exc}")
        except asyncio.CancelledError:
            return  # shutting down; ending quietly keeps asyncio from logging the cancellation
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, frame: bytes) -> list[Any] | None:
        try:
            header, request = decode_request(frame)
        except UnsupportedApiVersionError as exc:
            # KIP-511: answer a too-new ApiVersions with v0, UNSUPPORTED_VERSION and our ranges.
            if exc.header.request_api_key != ApiKey.API_VERSIONS:
                raise
            body = self._api_versions_body(ErrorCode.UNSUPPORTED_VERSION)
            return encode_response(ApiKey.API_VERSIONS, 0, exc.header.correlation_id, body)
        key, version = header.request_api_key, header.request_api_version
        handler = self._handlers.get(key)
        if handler is None:
            self.unhandled.add(f"{APIS[key].name} v{version}")
            response: Message | None = response_class(key)()
        else:
            response = await handler(header, request)
        if response is None:
            return None
        return encode_response(key, version, header.correlation_id, response)

    # -- handlers ------------------------------------------------------------------------------

    def _api_versions_body(self, error: int) -> Message:
        m = api_versions_response
        keys = [
            m.ApiVersion(
                api_key=info.key,
                min_version=info.min_version,
                # A broker does not advertise a version upstream still marks unstable.
                max_version=info.max_version - int(info.latest_version_unstable),
            )
            for info in APIS.values()
            if "broker" in info.listeners
        ]
        return m.ApiVersionsResponse(error_code=error, api_keys=keys)

    async def api_versions(self, header: RequestHeader, request: Any) -> Message:
        return self._api_versions_body(ErrorCode.NONE)

    def _metadata_topic(self, name: str) -> metadata_response.MetadataResponseTopic:
        m = metadata_response
        partitions = [
            m.MetadataResponsePartition(
                partition_index=i,
                leader_id=BROKER_ID,
                leader_epoch=0,
                replica_nodes=[BROKER_ID],
                isr_nodes=[BROKER_ID],
            )
            for i in range(produced.PARTITION_COUNT)
        ]
        return m.MetadataResponseTopic(name=name, topic_id=topic_id(name), partitions=partitions)

    async def metadata(self, header: RequestHeader, request: Any) -> Message:
        m = metadata_response
        if request.topics is None:
            names = [produced.TOPIC]
        else:
            names = [t.name for t in request.topics if t.name]
        return m.MetadataResponse(
            brokers=[m.MetadataResponseBroker(node_id=BROKER_ID, host=HOST, port=self.port)],
            cluster_id=CLUSTER_ID,
            controller_id=BROKER_ID,
            topics=[self._metadata_topic(name) for name in names],
        )

    async def produce(self, header: RequestHeader, request: Any) -> Message | None:
        m = produce_response
        topics = []
        for topic in request.topic_data:
            partitions = []
            for data in topic.partition_data:
                error, base = self.data.append(topic.name, data.index, bytes(data.records or b""))
                partitions.append(
                    m.PartitionProduceResponse(
                        index=data.index, error_code=error, base_offset=base, log_start_offset=0
                    )
                )
            topics.append(m.TopicProduceResponse(name=topic.name, partition_responses=partitions))
        if request.acks == 0:
            return None  # Kafka sends no response at all to acks=0
        return m.ProduceResponse(responses=topics)

    async def fetch(self, header: RequestHeader, request: Any) -> Message:
        m = fetch_response
        by_id = {produced.TOPIC_ID: produced.TOPIC}

        def answer() -> tuple[list[fetch_response.FetchableTopicResponse], int]:
            size = 0
            topics = []
            for topic in request.topics:
                name = topic.topic if header.request_api_version < 13 else by_id[topic.topic_id]
                partitions = []
                for p in topic.partitions:
                    end = self.data.end_offset(name, p.partition)
                    records = self.data.read(name, p.partition, p.fetch_offset)
                    size += len(records)
                    partitions.append(
                        m.PartitionData(
                            partition_index=p.partition,
                            error_code=ErrorCode.NONE
                            if p.fetch_offset <= end
                            else ErrorCode.OFFSET_OUT_OF_RANGE,
                            high_watermark=end,
                            last_stable_offset=end,
                            log_start_offset=0,
                            records=records,
                        )
                    )
                topics.append(
                    m.FetchableTopicResponse(
                        topic=name, topic_id=topic.topic_id, partitions=partitions
                    )
                )
            return topics, size

        topics, size = answer()
        if size == 0 and request.max_wait_ms > 0:
            # A short stand-in for the fetch long-poll, so idle consumers do not spin.
            await asyncio.sleep(min(request.max_wait_ms / 1000, FETCH_WAIT_CAP_S))
            topics, size = answer()
        return m.FetchResponse(responses=topics)

    async def list_offsets(self, header: RequestHeader, request: Any) -> Message:
        m = list_offsets_response
        topics = []
        for topic in request.topics:
            partitions = []
            for p in topic.partitions:
                # -2 is EARLIEST (log start offset 0 here); -1 LATEST and anything else: the end.
                offset = (
                    0 if p.timestamp == -2 else self.data.end_offset(topic.name, p.partition_index)
                )
                partitions.append(
                    m.ListOffsetsPartitionResponse(
                        partition_index=p.partition_index,
                        old_style_offsets=[offset],
                        offset=offset,
                        leader_epoch=0,
                    )
                )
            topics.append(m.ListOffsetsTopicResponse(name=topic.name, partitions=partitions))
        return m.ListOffsetsResponse(topics=topics)

    async def find_coordinator(self, header: RequestHeader, request: Any) -> Message:
        m = find_coordinator_response
        coordinators = [
            m.Coordinator(key=key, node_id=BROKER_ID, host=HOST, port=self.port, error_message=None)
            for key in request.coordinator_keys
        ]
        return m.FindCoordinatorResponse(
            error_message=None,
            node_id=BROKER_ID,
            host=HOST,
            port=self.port,
            coordinators=coordinators,
        )

    async def join_group(self, header: RequestHeader, request: Any) -> Message:
        # Single-member groups: whoever joins leads, with the first protocol it lists, and every
        # join starts a new generation as in Kafka. No MEMBER_ID_REQUIRED round (KIP-394): an
        # empty member id is given one at once, which clients accept.
        m = join_group_response
        member_id = request.member_id
        if not member_id:
            self._member_count += 1
            member_id = f"{header.client_id}-member-{self._member_count}"
        protocol = request.protocols[0]
        generation = self._groups.get(request.group_id, (0, ""))[0] + 1
        self._groups[request.group_id] = (generation, protocol.name)
        return m.JoinGroupResponse(
            generation_id=generation,
            protocol_type=request.protocol_type,
            protocol_name=protocol.name,
            leader=member_id,
            member_id=member_id,
            members=[
                m.JoinGroupResponseMember(
                    member_id=member_id,
                    group_instance_id=request.group_instance_id,
                    metadata=protocol.metadata,
                )
            ],
        )

    async def sync_group(self, header: RequestHeader, request: Any) -> Message:
        mine = [a.assignment for a in request.assignments if a.member_id == request.member_id]
        return sync_group_response.SyncGroupResponse(
            protocol_type="consumer",
            protocol_name=self._groups.get(request.group_id, (0, None))[1],
            assignment=mine[0] if mine else b"",
        )

    async def empty_response(self, header: RequestHeader, request: Any) -> Message:
        return response_class(header.request_api_key)()

    async def offset_fetch(self, header: RequestHeader, request: Any) -> Message:
        # Nothing is ever committed here: every partition answers offset -1.
        m = offset_fetch_response
        if header.request_api_version < 8:
            return m.OffsetFetchResponse(
                topics=[
                    m.OffsetFetchResponseTopic(
                        name=t.name,
                        partitions=[
                            m.OffsetFetchResponsePartition(partition_index=i, committed_offset=-1)
                            for i in t.partition_indexes
                        ],
                    )
                    for t in request.topics or ()
                ]
            )
        groups = [
            m.OffsetFetchResponseGroup(
                group_id=g.group_id,
                topics=[
                    m.OffsetFetchResponseTopics(
                        name=t.name,
                        partitions=[
                            m.OffsetFetchResponsePartitions(partition_index=i, committed_offset=-1)
                            for i in t.partition_indexes
                        ],
                    )
                    for t in g.topics or ()
                ],
            )
            for g in request.groups
        ]
        return m.OffsetFetchResponse(groups=groups)

    async def offset_commit(self, header: RequestHeader, request: Any) -> Message:
        m = offset_commit_response
        return m.OffsetCommitResponse(
            topics=[
                m.OffsetCommitResponseTopic(
                    name=t.name,
                    partitions=[
                        m.OffsetCommitResponsePartition(partition_index=p.partition_index)
                        for p in t.partitions
                    ],
                )
                for t in request.topics
            ]
        )

    async def leave_group(self, header: RequestHeader, request: Any) -> Message:
        m = leave_group_response
        return m.LeaveGroupResponse(
            members=[
                m.MemberResponse(member_id=x.member_id, group_instance_id=x.group_instance_id)
                for x in request.members
            ]
        )

    async def init_producer_id(self, header: RequestHeader, request: Any) -> Message:
        return init_producer_id_response.InitProducerIdResponse(
            producer_id=produced.PRODUCER_ID, producer_epoch=produced.PRODUCER_EPOCH
        )

    async def get_telemetry_subscriptions(self, header: RequestHeader, request: Any) -> Message:
        # KIP-714 with no metrics requested: the client pushes nothing.
        return get_telemetry_subscriptions_response.GetTelemetrySubscriptionsResponse(
            client_instance_id=uuid.UUID(int=1),
            subscription_id=1,
            push_interval_ms=60_000,
            telemetry_max_bytes=1 << 20,
        )
