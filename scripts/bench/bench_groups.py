#!/usr/bin/env python3
"""Consumer groups over the wire: a raw-protocol client against ``kafkacompat serve``.

    python scripts/bench/bench_groups.py [--quick] [--json] [--rounds N] [--dir D]

The client is ``kafkacompat.protocol`` on asyncio sockets (encode_request / decode_response),
one connection per member, so that the figures are the broker's, not a client library's: its
members answer at once (a member told REBALANCE_IN_PROGRESS rejoins immediately, no
heartbeat interval to wait for).  Every figure is printed next to a baseline measured in the
same run, on the same broker, with the same connections, because the machine is shared:

1. Group formation: 10 members send JoinGroup at once (each on its own connection; KIP-394's
   MEMBER_ID_REQUIRED round included) and SyncGroup (the leader assigns a 10-partition topic
   round robin); done when every member holds an assignment and a Heartbeat of each is
   answered without error in one generation.  Baseline: the same connections making as many
   round trips each, concurrently, with ApiVersions (the broker's request floor).  A fresh
   group per round, best and median of ``--rounds``; the broker runs with
   group.initial.rebalance.delay.ms=0.
2. Rebalance after a member leaves: LeaveGroup from one of the 10, then the other 9 rejoin,
   sync, and heartbeat cleanly in the next generation.  Baseline as in 1.
3. OffsetCommit throughput: a member of a 1-member group commits 100 partitions per request,
   with one request in flight (commitSync) and with 16 pipelined.  Baseline: Produce acks=all
   of one 100-record batch (records about the size of an offset commit record) to a
   1-partition topic, the same ways.  Every commit writes 100 records to __consumer_offsets.
4. Start-up with 1,000,000 offset-commit records in __consumer_offsets (10,000 commits x
   100 partitions; ``--quick``: 100,000): SIGTERM, start again on the same data directory,
   and time Popen to the listening log line and to the group's offsets answered by
   OffsetFetch (no COORDINATOR_LOAD_IN_PROGRESS, the last commit's offsets).  Baseline: the
   same start-up with an empty data directory, until an OffsetFetch is answered.  Best of 3.
   Twice: with Kafka's default offsets.topic.segment.bytes (100 MiB: the 76 MB never roll,
   so nothing is compacted, on Kafka either), and with 4 MiB segments, which the log
   cleaner compacts during the fill.

Absolute figures describe this machine only; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn, TypeVar

from kafkacompat.protocol.framing import decode_response, encode_request
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.consumer_protocol_assignment import (
    ConsumerProtocolAssignment,
)
from kafkacompat.protocol.messages.consumer_protocol_assignment import (
    TopicPartition as AssignedPartitions,
)
from kafkacompat.protocol.messages.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from kafkacompat.protocol.messages.create_topics_request import (
    CreatableTopic,
    CreateTopicsRequest,
)
from kafkacompat.protocol.messages.find_coordinator_request import (
    FindCoordinatorRequest,
)
from kafkacompat.protocol.messages.heartbeat_request import HeartbeatRequest
from kafkacompat.protocol.messages.join_group_request import (
    JoinGroupRequest,
    JoinGroupRequestProtocol,
)
from kafkacompat.protocol.messages.leave_group_request import (
    LeaveGroupRequest,
    MemberIdentity,
)
from kafkacompat.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kafkacompat.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.messages.sync_group_request import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from kafkacompat.records.builder import RecordBatchBuilder

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "kafkacompat"
SERVE = (
    [str(_SCRIPT), "serve"] if _SCRIPT.exists() else [sys.executable, "-m", "kafkacompat", "serve"]
)
"""What a user runs: the venv's console script (``python -m kafkacompat`` where it is absent)."""
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
STARTUP_WAIT_S = 120.0
STOP_WAIT_S = 120.0
WAIT_S = 60.0
"""Ceiling of any one group operation (a formation, a rebalance, a fetch after start-up)."""
SESSION_TIMEOUT_MS = 10_000
REBALANCE_TIMEOUT_MS = 30_000

# Kafka's error codes met here.
NONE = 0
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
RETRIABLE_COORDINATOR = {COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE}

# The versions this client speaks, newest first choice; the broker's range narrows them.
PREFERRED = {
    "ApiVersions": (18, 0),
    "Produce": (0, 9),
    "OffsetCommit": (8, 8),
    "OffsetFetch": (9, 8),
    "FindCoordinator": (10, 4),
    "JoinGroup": (11, 9),
    "Heartbeat": (12, 4),
    "LeaveGroup": (13, 5),
    "SyncGroup": (14, 5),
    "CreateTopics": (19, 7),
}

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    mode: str
    members: int
    rounds: int
    commit_partitions: int
    commit_seconds: float
    load_commits: int
    startup_repeats: int


DEFAULT = Settings("default", 10, 5, 100, 3.0, 10_000, 3)
QUICK = Settings("quick", 10, 3, 100, 1.0, 1_000, 3)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench_groups: {message}")


# --- the broker ----------------------------------------------------------------------------

_LISTENING = re.compile(r"bootstrap\.servers=([^\s)]+):(\d+)")


class Broker:
    """``kafkacompat serve`` on port 0 with the benchmark's settings; stderr kept."""

    def __init__(
        self, data_dir: Path, storage: str = "disk", extra: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        command = [*SERVE, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)]
        command += ["--storage", storage, "--log-level", "info"]
        for key, value in {**BROKER_SETTINGS, **(extra or {})}.items():
            command += ["--set", f"{key}={value}"]
        self.lines: list[str] = []
        self.host = ""
        self.port = 0
        self._ready = threading.Event()
        self.started_at = perf_counter()
        self.listening_s = float("nan")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(STARTUP_WAIT_S) or not self.port:
            self.stop()
            fail("broker did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found and not self.port:
                self.listening_s = perf_counter() - self.started_at
                self.host, self.port = found.group(1), int(found.group(2))
                self._ready.set()
        self._ready.set()

    def problems(self) -> list[str]:
        return [
            line.rstrip()
            for line in self.lines
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.lines.append(f"(bench) no exit {STOP_WAIT_S:.0f} s after SIGTERM\n")
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


# --- a raw-protocol client -----------------------------------------------------------------


class Connection:
    """One socket; requests may be pipelined (the broker answers each connection in order)."""

    _ids = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: deque[tuple[int, int, asyncio.Future[Message]]] = deque()
        self.requests = 0
        self.versions: dict[str, int] = {}
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, host: str, port: int, versions: dict[str, int] | None = None) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        connection = cls(reader, writer)
        connection.versions = versions if versions is not None else await connection.negotiate()
        return connection

    async def negotiate(self) -> dict[str, int]:
        """The version of each API this client uses: its preferred one, within the broker's."""
        answer = await self.call(ApiVersionsRequest(), 18, 0)
        advertised = {a.api_key: (a.min_version, a.max_version) for a in answer.api_keys}
        versions: dict[str, int] = {}
        for name, (key, preferred) in PREFERRED.items():
            if key not in advertised:
                fail(f"the broker does not advertise {name} (api key {key})")
            low, high = advertised[key]
            if preferred < low:
                fail(f"the broker's {name} starts at v{low}, above this client's v{preferred}")
            versions[name] = min(preferred, high)
        return versions

    async def _read(self) -> None:
        while True:
            try:
                size = struct.unpack(">i", await self.reader.readexactly(4))[0]
                frame = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                while self.pending:
                    self.pending.popleft()[2].set_exception(ConnectionError(str(exc)))
                return
            api_key, version, future = self.pending.popleft()
            _, body = decode_response(api_key, version, frame)
            if not future.done():
                future.set_result(body)

    def send(self, body: Message, api_key: int, version: int) -> asyncio.Future[Message]:
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=next(self._ids),
            client_id="bench-groups",
        )
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.pending.append((api_key, version, future))
        self.writer.write(encode_request(header, body))
        self.requests += 1
        return future

    async def call(self, body: Message, api_key: int, version: int) -> Any:
        return await self.send(body, api_key, version)

    async def request(self, name: str, body: Message) -> Any:
        return await self.send(body, PREFERRED[name][0], self.versions[name])

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await self.writer.wait_closed()


async def within(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, WAIT_S)
    except TimeoutError:
        fail(f"{what}: no answer in {WAIT_S:.0f} s")


def subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0 with its int16 version prefix."""
    return struct.pack(">h", 0) + ConsumerProtocolSubscription(topics=[topic]).encode(0)


def assignment(topic: str, partitions: list[int]) -> bytes:
    body = ConsumerProtocolAssignment(
        assigned_partitions=[AssignedPartitions(topic=topic, partitions=partitions)]
    )
    return struct.pack(">h", 0) + body.encode(0)


async def create_topic(connection: Connection, topic: str, partitions: int) -> None:
    answer = await connection.request(
        "CreateTopics",
        CreateTopicsRequest(
            topics=[CreatableTopic(name=topic, num_partitions=partitions, replication_factor=1)],
            timeout_ms=30_000,
        ),
    )
    (created,) = answer.topics
    if created.error_code not in (NONE, 36):  # 36: TOPIC_ALREADY_EXISTS
        fail(f"CreateTopics {topic}: error {created.error_code}")


async def find_coordinator(connection: Connection, group: str) -> None:
    version = connection.versions["FindCoordinator"]
    if version >= 4:
        body = FindCoordinatorRequest(key_type=0, coordinator_keys=[group])
    else:
        body = FindCoordinatorRequest(key=group, key_type=0)
    answer = await connection.request("FindCoordinator", body)
    codes = [c.error_code for c in answer.coordinators] if version >= 4 else [answer.error_code]
    if any(codes):
        fail(f"FindCoordinator {group}: errors {codes}")


class Member:
    """A consumer-group member that does what a client does, minus the waiting."""

    def __init__(self, connection: Connection, group: str, topic: str, partitions: int) -> None:
        self.connection = connection
        self.group = group
        self.topic = topic
        self.partitions = partitions
        self.member_id = ""
        self.generation = -1
        self.assigned: list[int] = []

    async def join(self) -> Any:
        while True:
            answer = await self.connection.request(
                "JoinGroup",
                JoinGroupRequest(
                    group_id=self.group,
                    session_timeout_ms=SESSION_TIMEOUT_MS,
                    rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
                    member_id=self.member_id,
                    protocol_type="consumer",
                    protocols=[
                        JoinGroupRequestProtocol(name="range", metadata=subscription(self.topic))
                    ],
                ),
            )
            if answer.error_code == MEMBER_ID_REQUIRED:  # KIP-394: rejoin with the id given
                self.member_id = answer.member_id
                continue
            if answer.error_code in RETRIABLE_COORDINATOR:
                await asyncio.sleep(0.01)
                continue
            if answer.error_code != NONE:
                fail(f"JoinGroup {self.group}: error {answer.error_code}")
            self.member_id = answer.member_id
            self.generation = answer.generation_id
            return answer

    async def sync(self, joined: Any) -> int:
        assignments: list[SyncGroupRequestAssignment] = []
        if joined.leader == self.member_id and not joined.skip_assignment:
            ids = sorted(m.member_id for m in joined.members)
            shares: dict[str, list[int]] = {member_id: [] for member_id in ids}
            for partition in range(self.partitions):
                shares[ids[partition % len(ids)]].append(partition)
            assignments = [
                SyncGroupRequestAssignment(member_id=m, assignment=assignment(self.topic, parts))
                for m, parts in shares.items()
            ]
        answer = await self.connection.request(
            "SyncGroup",
            SyncGroupRequest(
                group_id=self.group,
                generation_id=self.generation,
                member_id=self.member_id,
                protocol_type="consumer",
                protocol_name=joined.protocol_name,
                assignments=assignments,
            ),
        )
        if answer.error_code == NONE:
            data = memoryview(answer.assignment)
            received = ConsumerProtocolAssignment.read(data, 2, 0)[0] if len(data) > 2 else None
            self.assigned = [
                p
                for tp in (received.assigned_partitions if received else [])
                for p in tp.partitions
            ]
        return int(answer.error_code)

    async def join_and_sync(self) -> None:
        while True:
            joined = await self.join()
            code = await self.sync(joined)
            if code == NONE:
                return
            if code != REBALANCE_IN_PROGRESS:
                fail(f"SyncGroup {self.group}: error {code}")

    async def heartbeat(self) -> int:
        answer = await self.connection.request(
            "Heartbeat",
            HeartbeatRequest(
                group_id=self.group, generation_id=self.generation, member_id=self.member_id
            ),
        )
        return int(answer.error_code)

    async def leave(self) -> None:
        if self.connection.versions["LeaveGroup"] >= 3:
            body = LeaveGroupRequest(
                group_id=self.group, members=[MemberIdentity(member_id=self.member_id)]
            )
        else:
            body = LeaveGroupRequest(group_id=self.group, member_id=self.member_id)
        answer = await self.connection.request("LeaveGroup", body)
        if answer.error_code != NONE:
            fail(f"LeaveGroup {self.group}: error {answer.error_code}")

    def commit_request(self, partitions: int, offset: int) -> OffsetCommitRequest:
        return OffsetCommitRequest(
            group_id=self.group,
            generation_id_or_member_epoch=self.generation,
            member_id=self.member_id,
            topics=[
                OffsetCommitRequestTopic(
                    name=self.topic,
                    partitions=[
                        OffsetCommitRequestPartition(
                            partition_index=p, committed_offset=offset, committed_metadata=""
                        )
                        for p in range(partitions)
                    ],
                )
            ],
        )


async def settle(members: list[Member]) -> int:
    """Rejoin until one Heartbeat round of every member is answered without error in a single
    generation; that generation."""
    deadline = perf_counter() + WAIT_S
    while True:
        codes = await asyncio.gather(*(m.heartbeat() for m in members))
        if all(c == NONE for c in codes) and len({m.generation for m in members}) == 1:
            return members[0].generation
        if perf_counter() > deadline:
            fail(f"group not stable after {WAIT_S:.0f} s: heartbeat errors {codes}")
        bad = [m for m, c in zip(members, codes, strict=True) if c != NONE]
        unexpected = {c for c in codes if c not in (NONE, REBALANCE_IN_PROGRESS)}
        if unexpected:
            fail(f"Heartbeat errors {unexpected}")
        await asyncio.gather(*(m.join_and_sync() for m in bad))


async def floor(connections: list[Connection], trips: list[int]) -> float:
    """Each connection makes its number of ApiVersions round trips in turn, all at once."""

    async def run(connection: Connection, count: int) -> None:
        for _ in range(count):
            await connection.call(ApiVersionsRequest(), 18, 0)

    start = perf_counter()
    await asyncio.gather(*(run(c, n) for c, n in zip(connections, trips, strict=True)))
    return perf_counter() - start


# --- 1 and 2: formation and rebalance ------------------------------------------------------


async def bench_membership(broker: Broker, settings: Settings) -> dict[str, Any]:
    topic = "bench-groups-members"
    admin = await Connection.open(broker.host, broker.port)
    versions = admin.versions
    await create_topic(admin, topic, settings.members)
    form: list[dict[str, float]] = []
    leave: list[dict[str, float]] = []
    generations: list[int] = []
    for round_ in range(settings.rounds):
        group = f"bench-group-{round_}"
        connections = [
            await Connection.open(broker.host, broker.port, versions)
            for _ in range(settings.members)
        ]
        for connection in connections:
            await find_coordinator(connection, group)
        members = [Member(c, group, topic, settings.members) for c in connections]
        before = [c.requests for c in connections]
        start = perf_counter()
        await within(asyncio.gather(*(m.join_and_sync() for m in members)), "formation")
        synced = perf_counter() - start
        generation = await within(settle(members), "formation heartbeats")
        formed = perf_counter() - start
        trips = [c.requests - b for c, b in zip(connections, before, strict=True)]
        assigned = sorted(p for m in members for p in m.assigned)
        if assigned != list(range(settings.members)):
            fail(f"assignments not disjoint and complete: {assigned}")
        baseline = await floor(connections, trips)
        form.append({"seconds": formed, "synced_s": synced, "floor_s": baseline,
                     "round_trips": statistics.fmean(trips)})  # fmt: skip
        generations.append(generation)

        leaver, rest = members[0], members[1:]
        before = [c.requests for c in connections]
        start = perf_counter()
        await within(leaver.leave(), "LeaveGroup")
        await within(settle(rest), "rebalance after a leave")
        rebalanced = perf_counter() - start
        trips = [c.requests - b for c, b in zip(connections, before, strict=True)]
        assigned = sorted(p for m in rest for p in m.assigned)
        if assigned != list(range(settings.members)):
            fail(f"assignments after the leave not disjoint and complete: {assigned}")
        baseline = await floor(connections, trips)
        leave.append({"seconds": rebalanced, "floor_s": baseline,
                      "round_trips": statistics.fmean(trips[1:])})  # fmt: skip
        for member in rest:
            await member.leave()
        for connection in connections:
            await connection.close()
    await admin.close()

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        best = min(rows, key=lambda r: r["seconds"])
        return {
            "best_ms": best["seconds"] * 1e3,
            "median_ms": statistics.median(r["seconds"] for r in rows) * 1e3,
            "floor_best_ms": min(r["floor_s"] for r in rows) * 1e3,
            "x_floor": best["seconds"] / min(r["floor_s"] for r in rows),
            "round_trips_per_member": statistics.fmean(r["round_trips"] for r in rows),
        }

    return {
        "formation": summary(form),
        "first_sync_best_ms": min(r["synced_s"] for r in form) * 1e3,
        "generations": generations,
        "rebalance": summary(leave),
    }


# --- 3: OffsetCommit throughput --------------------------------------------------------------


async def rate(send: Callable[[int], Awaitable[Any]], depth: int, seconds: float) -> float:
    """Requests per second with ``depth`` in flight for about ``seconds``."""
    done = 0
    stop_at = perf_counter() + seconds

    async def lane(lane_id: int) -> None:
        nonlocal done
        sequence = lane_id
        while perf_counter() < stop_at:
            await send(sequence)
            sequence += depth
            done += 1

    start = perf_counter()
    await asyncio.gather(*(lane(i) for i in range(depth)))
    return done / (perf_counter() - start)


async def bench_commits(broker: Broker, settings: Settings) -> dict[str, Any]:
    topic, produce_topic = "bench-groups-commits", "bench-groups-produce"
    connection = await Connection.open(broker.host, broker.port)
    await create_topic(connection, topic, settings.commit_partitions)
    await create_topic(connection, produce_topic, 1)
    group = "bench-group-commits"
    await find_coordinator(connection, group)
    member = Member(connection, group, topic, settings.commit_partitions)
    await within(member.join_and_sync(), "a one-member group")

    async def commit(sequence: int) -> None:
        answer = await connection.request(
            "OffsetCommit", member.commit_request(settings.commit_partitions, sequence)
        )
        codes = {p.error_code for t in answer.topics for p in t.partitions}
        if codes != {NONE}:
            fail(f"OffsetCommit errors {codes}")

    # The produce baseline: 100 records of about an offset commit record's size (key: group,
    # topic, partition; value: offset, metadata, timestamps).
    builder = RecordBatchBuilder()
    now = int(time.time() * 1000)
    for p in range(settings.commit_partitions):
        builder.append(b"v" * 28, key=f"{group}{topic}{p:04d}".encode(), timestamp=now)
    batch = builder.build()

    async def produce(sequence: int) -> None:
        answer = await connection.request(
            "Produce",
            ProduceRequest(
                acks=-1,
                timeout_ms=30_000,
                topic_data=[
                    TopicProduceData(
                        name=produce_topic,
                        partition_data=[PartitionProduceData(index=0, records=batch)],
                    )
                ],
            ),
        )
        codes = {p.error_code for r in answer.responses for p in r.partition_responses}
        if codes != {NONE}:
            fail(f"Produce errors {codes}")

    await rate(commit, 1, 0.2)  # warm both paths up
    await rate(produce, 1, 0.2)
    rows: dict[str, Any] = {}
    for depth in (1, 16):
        commits = await rate(commit, depth, settings.commit_seconds)
        produces = await rate(produce, depth, settings.commit_seconds)
        rows[str(depth)] = {
            "commits_per_s": commits,
            "offsets_per_s": commits * settings.commit_partitions,
            "produces_per_s": produces,
            "x_produce": commits / produces,
        }
    await connection.close()
    return rows


# --- 4: start-up with a full __consumer_offsets ------------------------------------------------


async def fill_offsets(broker: Broker, settings: Settings, topic: str, group: str) -> int:
    """``load_commits`` commits of every partition (generation -1: a group that only stores
    offsets), 32 in flight; the last commit's offset."""
    connection = await Connection.open(broker.host, broker.port)
    await create_topic(connection, topic, settings.commit_partitions)
    await find_coordinator(connection, group)
    committer = Member(connection, group, topic, settings.commit_partitions)
    in_flight: deque[asyncio.Future[Message]] = deque()
    for offset in range(settings.load_commits):
        request = committer.commit_request(settings.commit_partitions, offset)
        in_flight.append(connection.send(request, 8, connection.versions["OffsetCommit"]))
        if len(in_flight) >= 32:
            answer: Any = await within(in_flight.popleft(), "OffsetCommit")
            if {p.error_code for t in answer.topics for p in t.partitions} != {NONE}:
                fail("OffsetCommit failed while filling __consumer_offsets")
    while in_flight:
        await within(in_flight.popleft(), "OffsetCommit")
    await connection.close()
    return settings.load_commits - 1


async def offsets_fetchable(broker: Broker, group: str, topic: str, partitions: int,
                            expected: int) -> float:  # fmt: skip
    """Seconds from the broker's Popen until OffsetFetch answers the group with ``expected``
    on every partition (-1: nothing committed)."""
    deadline = perf_counter() + WAIT_S
    connection = await Connection.open(broker.host, broker.port)
    try:
        while True:
            version = connection.versions["OffsetFetch"]
            indexes = list(range(partitions))
            if version >= 8:
                body = OffsetFetchRequest(groups=[OffsetFetchRequestGroup(
                    group_id=group,
                    topics=[OffsetFetchRequestTopics(name=topic, partition_indexes=indexes)],
                )])  # fmt: skip
            else:
                body = OffsetFetchRequest(
                    group_id=group,
                    topics=[OffsetFetchRequestTopic(name=topic, partition_indexes=indexes)],
                )
            answer = await within(connection.request("OffsetFetch", body), "OffsetFetch")
            if version >= 8:
                (found,) = answer.groups
                code, topics = found.error_code, found.topics
            else:
                code, topics = answer.error_code, answer.topics
            offsets = {p.committed_offset for t in topics for p in t.partitions}
            if code == NONE and offsets == {expected}:
                return perf_counter() - broker.started_at
            if code not in (NONE, *RETRIABLE_COORDINATOR) or perf_counter() > deadline:
                fail(f"OffsetFetch after start-up: error {code}, offsets {sorted(offsets)[:5]}")
            await asyncio.sleep(0.001)
    finally:
        await connection.close()


def offsets_log_bytes(data_dir: Path) -> int:
    """Bytes of __consumer_offsets segments (files renamed for deletion excluded)."""
    return sum(f.stat().st_size for f in data_dir.glob("__consumer_offsets-*/*.log") if f.is_file())


def inactive_bytes(data_dir: Path) -> int:
    """Bytes of every __consumer_offsets segment but each partition's newest (active) one."""
    total = 0
    for partition in data_dir.glob("__consumer_offsets-*"):
        sizes = [f.stat().st_size for f in sorted(partition.glob("*.log")) if f.is_file()]
        total += sum(sizes[:-1])
    return total


def bench_startup(
    settings: Settings, work: Path, segment_bytes: int | None = None
) -> dict[str, Any]:
    """Case 4; with ``segment_bytes``, __consumer_offsets rolls at that size and the log
    cleaner (checked every 100 ms) compacts it while it fills; start-up then replays the
    compacted log."""
    topic, group = "bench-groups-load", "bench-group-load"
    extra: dict[str, str] = {}
    if segment_bytes is not None:
        extra = {"offsets.topic.segment.bytes": str(segment_bytes), "log.cleaner.backoff.ms": "100"}
    data_dir = work / ("load" if segment_bytes is None else "load-compacted")
    broker = Broker(data_dir, extra=extra)
    fill_start = perf_counter()
    expected = asyncio.run(fill_offsets(broker, settings, topic, group))
    fill_s = perf_counter() - fill_start
    compaction_wait_s = 0.0
    if segment_bytes is not None:
        # Let the cleaner finish with the segments rolled so far: caught up when everything
        # but the active segment is the compacted remainder (100 keys: a few KB).
        wait_start = perf_counter()
        while inactive_bytes(data_dir) > 64 << 10 and perf_counter() - wait_start < WAIT_S:
            time.sleep(0.05)
        compaction_wait_s = perf_counter() - wait_start
    problems = broker.problems()
    cleaner_rounds = sum(" cleaned __consumer_offsets-" in line for line in broker.lines)
    if broker.stop() != 0:
        fail("broker did not stop cleanly after filling __consumer_offsets")
    log_bytes = offsets_log_bytes(data_dir)
    records = settings.load_commits * settings.commit_partitions

    loaded: list[tuple[float, float]] = []
    empty: list[tuple[float, float]] = []
    for n in range(settings.startup_repeats):
        broker = Broker(data_dir, extra=extra)
        fetchable = asyncio.run(
            offsets_fetchable(broker, group, topic, settings.commit_partitions, expected)
        )
        loaded.append((broker.listening_s, fetchable))
        problems += broker.problems()
        broker.stop()
        fresh = Broker(work / f"empty-{n}")
        fetchable = asyncio.run(offsets_fetchable(fresh, group, topic, 1, -1))
        empty.append((fresh.listening_s, fetchable))
        problems += fresh.problems()
        fresh.stop()
        shutil.rmtree(work / f"empty-{n}", ignore_errors=True)
    best_loaded = min(loaded, key=lambda r: r[1])
    best_empty = min(empty, key=lambda r: r[1])
    extra = best_loaded[1] - best_empty[1]
    return {
        "records": records,
        "commits": settings.load_commits,
        "fill_s": fill_s,
        "fill_records_per_s": records / fill_s,
        "log_bytes": log_bytes,
        "segment_bytes": segment_bytes,
        "cleaner_rounds": cleaner_rounds,
        "compaction_wait_s": compaction_wait_s,
        "empty_listening_ms": best_empty[0] * 1e3,
        "empty_fetchable_ms": best_empty[1] * 1e3,
        "loaded_listening_ms": best_loaded[0] * 1e3,
        "loaded_fetchable_ms": best_loaded[1] * 1e3,
        "loaded_median_ms": statistics.median(r[1] for r in loaded) * 1e3,
        "x_empty": best_loaded[1] / best_empty[1],
        "load_records_per_s": records / extra if extra > 0 else float("inf"),
        "problems": problems,
    }


# --- output ----------------------------------------------------------------------------------


def print_results(results: dict[str, Any]) -> None:
    s = results["settings"]
    m = results["membership"]
    print(
        f"\n1-2. A group of {s['members']} raw-protocol members on one {s['members']}-partition "
        f"topic, best of {s['rounds']} (a new group each); baseline: the same connections making "
        "as many ApiVersions round trips, concurrently"
    )
    print(
        f"   {'what':<44} {'best':>9} {'median':>9} {'trips/member':>12} {'floor':>9} "
        f"{'x floor':>8}"
    )
    for key, label in (
        ("formation", f"formation: first JoinGroup to {s['members']} Stable"),
        ("rebalance", f"rebalance: LeaveGroup to {s['members'] - 1} Stable"),
    ):
        r = m[key]
        print(
            f"   {label:<44} {r['best_ms']:>6.1f} ms {r['median_ms']:>6.1f} ms "
            f"{r['round_trips_per_member']:>12.1f} {r['floor_best_ms']:>6.1f} ms "
            f"{r['x_floor']:>7.1f}x"
        )
    print(
        f"   - every member synced (before the confirming heartbeats) after "
        f"{m['first_sync_best_ms']:.1f} ms at best; generations at formation: {m['generations']}"
    )

    print(
        f"\n3. OffsetCommit of {s['commit_partitions']} partitions per request by a group member; "
        f"baseline: Produce acks=all of one {s['commit_partitions']}-record batch, ~"
        f"{s['commit_seconds']:.0f} s each"
    )
    print(
        f"   {'in flight':>9} {'commits/s':>10} {'offsets/s':>11} {'produces/s':>11} "
        f"{'x produce':>10}"
    )
    for depth, r in results["commits"].items():
        print(
            f"   {depth:>9} {r['commits_per_s']:>10,.0f} {r['offsets_per_s']:>11,.0f} "
            f"{r['produces_per_s']:>11,.0f} {r['x_produce']:>9.2f}x"
        )

    st = results["startup"]
    sc = results["startup_compacted"]
    print(
        f"\n4. Start-up after {st['records']:,} offset commit records to __consumer_offsets "
        f"({st['commits']:,} commits x {s['commit_partitions']} partitions; filled in "
        f"{st['fill_s']:.1f} s, {st['fill_records_per_s']:,.0f} records/s), best of "
        f"{s['startup_repeats']}"
    )
    print(
        f"   {'data dir':<44} {'log MB':>7} {'listening':>10} {'offsets fetchable':>18} "
        f"{'x empty':>8}"
    )
    print(
        f"   {'empty (baseline)':<44} {0:>7.1f} {st['empty_listening_ms']:>7.0f} ms "
        f"{st['empty_fetchable_ms']:>15.0f} ms {1:>7.2f}x"
    )
    for label, r in (
        ("default segments (100 MiB: nothing rolls)", st),
        (f"{sc['segment_bytes'] >> 20} MiB segments, compacted", sc),
    ):
        print(
            f"   {label:<44} {r['log_bytes'] / 1e6:>7.1f} {r['loaded_listening_ms']:>7.0f} ms "
            f"{r['loaded_fetchable_ms']:>15.0f} ms {r['x_empty']:>7.2f}x   "
            f"(median {r['loaded_median_ms']:.0f} ms)"
        )
    print(
        f"   - uncompacted replay rate over the empty start-up: {st['load_records_per_s']:,.0f} "
        f"records/s"
    )
    print(
        f"   - compacted case: {sc['cleaner_rounds']} cleaner rounds during the fill "
        f"({sc['fill_s']:.1f} s, vs {st['fill_s']:.1f} s without), caught up "
        f"{sc['compaction_wait_s'] * 1e3:.0f} ms after the last commit"
    )
    problems = results.get("broker_problems", []) + st["problems"] + sc["problems"]
    if problems:
        print("\nbroker stderr warnings/errors:")
        for line in problems[:20]:
            print(f"   {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller load, fewer rounds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--rounds", type=int, help="formation/rebalance rounds (best kept)")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    args = parser.parse_args()
    settings = QUICK if args.quick else DEFAULT
    if args.rounds:
        settings = Settings(**{**asdict(settings), "rounds": max(1, args.rounds)})
    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    if not args.json:
        print(
            f"kafkacompat group benchmark: Python {platform.python_version()}, "
            f"{settings.mode} mode, {os.cpu_count()} CPUs; raw-protocol client "
            "(kafkacompat.protocol) and broker share this machine: compare the ratios."
        )
        sys.stdout.flush()
    results: dict[str, Any] = {"settings": asdict(settings), "date": time.strftime("%Y-%m-%d")}
    work = Path(tempfile.mkdtemp(prefix="kafkacompat-bench-groups-", dir=base))
    try:
        broker = Broker(work / "data")
        try:
            results["membership"] = asyncio.run(bench_membership(broker, settings))
            results["commits"] = asyncio.run(bench_commits(broker, settings))
        finally:
            code = broker.stop()
        results["broker_problems"] = broker.problems() + (
            [f"(bench) exit code {code}"] if code not in (0, None) else []
        )
        results["startup"] = bench_startup(settings, work)
        results["startup_compacted"] = bench_startup(settings, work, segment_bytes=4 << 20)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)


if __name__ == "__main__":
    main()
