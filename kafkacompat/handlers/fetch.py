"""Fetch (key 1), v4+: consumers read whole record batches, with long polling.

Long poll: when the first read finds fewer than ``min_bytes`` and nothing went wrong, the
request parks on the partitions it reads until an append to one of them (Produce notifies
:class:`kafkacompat.broker.AppendWaiters`) or ``max_wait_ms`` passes, then reads again.
Only its own connection waits.

Size limits (KIP-74): ``max_bytes`` bounds the response and ``partition_max_bytes`` each
partition, but the first batch of the first partition with data is sent whole even when
larger, so a consumer can always make progress.

Fetch sessions (KIP-227) are declined: the response's session id is 0, which tells a client
to keep sending full fetch requests; a request naming a session id we never gave out gets
FETCH_SESSION_ID_NOT_FOUND, so the client resets to a full fetch.

Fetch v0-3 expect legacy message formats (removed in Kafka 4.0, KIP-896): not advertised.
There are no transactions, so the last stable offset is the high watermark and there are no
aborted transactions to list.
"""

from __future__ import annotations

import asyncio

from kafkacompat.broker import LEADER_EPOCH, Broker
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.fetch_request import FetchRequest
from kafkacompat.protocol.messages.fetch_response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kafkacompat.storage.base import FileRegion
from kafkacompat.storage.manager import Topic

API_KEY = ApiKey.FETCH

READ_COMMITTED = 1
_NO_SESSION = 0


def check_leader_epoch(current_leader_epoch: int) -> ErrorCode:
    """KIP-320 fencing: -1 skips the check; a newer epoch than ours is one we have not
    heard of yet, an older one means the client's metadata is stale."""
    if current_leader_epoch == -1 or current_leader_epoch == LEADER_EPOCH:
        return ErrorCode.NONE
    if current_leader_epoch > LEADER_EPOCH:
        return ErrorCode.UNKNOWN_LEADER_EPOCH
    return ErrorCode.FENCED_LEADER_EPOCH


def _partition_error(index: int, error: ErrorCode, read_committed: bool) -> PartitionData:
    return PartitionData(
        partition_index=index,
        error_code=error,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=[] if read_committed else None,
        records=b"",
    )


class _Plan:
    """The partitions one request reads, resolved once; re-read after each wake-up."""

    def __init__(self, broker: Broker, request: FetchRequest, version: int) -> None:
        self.version = version
        self.read_committed = version >= 4 and request.isolation_level == READ_COMMITTED
        self.items: list[tuple[FetchableTopicResponse, list[tuple[Topic | None, int, int, int]]]]
        self.items = []
        self.errors = False
        topics = broker.logs.topics()
        for fetch_topic in request.topics:
            topic: Topic | None
            if version >= 13:
                topic = broker.logs.topic_by_id(fetch_topic.topic_id)
                missing = ErrorCode.UNKNOWN_TOPIC_ID
            else:
                topic = topics.get(fetch_topic.topic)
                missing = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            response_topic = FetchableTopicResponse(
                topic=fetch_topic.topic, topic_id=fetch_topic.topic_id, partitions=[]
            )
            wanted: list[tuple[Topic | None, int, int, int]] = []
            for partition in fetch_topic.partitions:
                if topic is None or not 0 <= partition.partition < topic.partitions:
                    error = missing if topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    error = check_leader_epoch(partition.current_leader_epoch)
                if error != ErrorCode.NONE:
                    self.errors = True
                    wanted.append((None, partition.partition, int(error), 0))
                else:
                    wanted.append(
                        (topic, partition.partition, partition.fetch_offset,
                         partition.partition_max_bytes)
                    )  # fmt: skip
            self.items.append((response_topic, wanted))

    def partitions(self) -> list[tuple[str, int]]:
        return [
            (topic.name, index)
            for _, wanted in self.items
            for topic, index, _, _ in wanted
            if topic is not None
        ]

    def read(self, max_bytes: int) -> tuple[list[FetchableTopicResponse], int, bool]:
        """One pass over every partition: the response topics, bytes found, any error."""
        remaining = max_bytes
        total = 0
        errors = self.errors
        out: list[FetchableTopicResponse] = []
        for template, wanted in self.items:
            partitions: list[PartitionData] = []
            for topic, index, offset_or_error, partition_max in wanted:
                if topic is None:
                    partitions.append(
                        _partition_error(index, ErrorCode(offset_or_error), self.read_committed)
                    )
                    continue
                log = topic.logs[index]
                try:
                    if remaining <= 0 and total > 0:
                        result_records: bytes | memoryview = b""
                        high_watermark, log_start = log.high_watermark, log.log_start_offset
                        if not log.log_start_offset <= offset_or_error <= log.log_end_offset:
                            raise KafkaProtocolError(
                                "offset out of range", ErrorCode.OFFSET_OUT_OF_RANGE
                            )
                    else:
                        limit = min(partition_max, remaining) if total else partition_max
                        result = log.read(offset_or_error, max(limit, 1))
                        records = result.records
                        result_records = (
                            records.read() if isinstance(records, FileRegion) else records
                        )
                        high_watermark, log_start = result.high_watermark, result.log_start_offset
                except KafkaProtocolError as exc:
                    errors = True
                    partitions.append(
                        PartitionData(
                            partition_index=index,
                            error_code=exc.error_code,
                            high_watermark=log.high_watermark,
                            last_stable_offset=log.high_watermark,
                            log_start_offset=log.log_start_offset,
                            aborted_transactions=[] if self.read_committed else None,
                            records=b"",
                        )
                    )
                    continue
                size = len(result_records)
                total += size
                remaining -= size
                partitions.append(
                    PartitionData(
                        partition_index=index,
                        error_code=ErrorCode.NONE,
                        high_watermark=high_watermark,
                        last_stable_offset=high_watermark,
                        log_start_offset=log_start,
                        aborted_transactions=[] if self.read_committed else None,
                        records=result_records,
                    )
                )
            out.append(
                FetchableTopicResponse(
                    topic=template.topic, topic_id=template.topic_id, partitions=partitions
                )
            )
        return out, total, errors


async def handle(ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    broker = ctx.broker
    version = ctx.api_version
    if version >= 7 and request.session_id != _NO_SESSION:
        return FetchResponse(
            error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=_NO_SESSION, responses=[]
        )
    plan = _Plan(broker, request, version)
    max_bytes = request.max_bytes if version >= 3 else 2**31 - 1
    responses, total, errors = plan.read(max_bytes)
    wait_ms = request.max_wait_ms
    if total < request.min_bytes and wait_ms > 0 and not errors and broker.started:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        partitions = plan.partitions()
        while True:
            timeout = deadline - loop.time()
            if timeout <= 0 or not broker.started:
                break
            event = broker.append_waiters.register(partitions)
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                broker.append_waiters.unregister(partitions, event)
            responses, total, errors = plan.read(max_bytes)
            if total >= request.min_bytes or errors:
                break
    return FetchResponse(
        throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=_NO_SESSION, responses=responses
    )


HANDLES: dict[int, Handler] = {API_KEY: handle}
