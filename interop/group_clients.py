"""Consumer-group members of every client, each in a child process, behind one interface.

    pool = MemberPool(folder)
    member = pool.start(MemberSpec("kafka-python", bootstrap, group, [topic], "m1"))
    wait_until(lambda: ..., "what we wait for", pool)
    member.close()      # LeaveGroup, as the client does it
    member.kill()       # SIGKILL: the broker learns of it only when the session times out

A member is a real consumer of confluent-kafka, kafka-python or aiokafka
(``python -m interop.group_clients SPEC``) or kafkajs (``node js/groups.js SPEC``) that
subscribes to its topics in its group and then, until told to close (``{"cmd": "close"}`` on
stdin, or stdin closing), polls, reports what it read and commits after processing: the
offsets after the records of each poll are committed synchronously, so a record is read again
only when its commit did not happen.  It reports on stdout, one JSON object per line:

    {"event": "assigned", "partitions": [[topic, p], ...], "incremental": bool,
     "generation": int|null, "member_id": str|null}
    {"event": "revoked"|"lost", "partitions": [...], "incremental": bool}
    {"event": "generation", "generation": int}        (kafkajs: seen in a heartbeat)
    {"event": "records", "records": [[topic, p, offset, value], ...]}
    {"event": "committed", "offsets": [[topic, p, next offset], ...]}
    {"event": "commit_failed"|"error", "message": str, "code": int|null}
    {"event": "closed"} | {"event": "fatal", "message": str}

``incremental`` says how to read an assignment event: eager protocols hand a member its whole
assignment in each "assigned" (and revoke everything first), cooperative ones (KIP-429) only
what is added or taken away.  kafkajs has no revocation callback: each of its group joins
reports the whole assignment.

Every wait here is bounded; a timeout names what was awaited and dumps each member's view
(assignment, records, commits, errors, the tail of its stderr).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from interop.clients import JS_DIR, ClientError, node_path

ROOT = Path(__file__).resolve().parents[1]
GROUPS_JS = JS_DIR / "groups.js"

GROUP_CLIENTS = ("confluent", "kafka-python", "aiokafka", "kafkajs")

BROKER_SETTINGS = {
    "group.min.session.timeout.ms": "1000",
    "group.initial.rebalance.delay.ms": "0",
}
"""Broker settings of the group tests: sessions as short as 1 s allowed, and a group's
first rebalance completes as soon as its members have joined (Kafka waits 3 s for more)."""

SESSION_TIMEOUT_MS = 2500
HEARTBEAT_INTERVAL_MS = 250
REBALANCE_TIMEOUT_MS = 8000
"""max.poll.interval.ms, which the clients send as JoinGroup's rebalance timeout: how long the
coordinator waits for known members to rejoin.  Short, so that no wait can hang on it."""

WAIT_S = 25.0
"""Ceiling of any one wait on the group (a rebalance, records arriving)."""
CLOSE_S = 15.0

TP = tuple[str, int]
Key = tuple[str, int, int]
"""A record's identity: topic, partition, offset."""
T = TypeVar("T")


@dataclass(frozen=True)
class MemberSpec:
    client: str
    bootstrap: str
    group: str
    topics: Sequence[str]
    client_id: str
    """Also the member's name in failure messages, and its client.id in DescribeGroups."""
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    rebalance_timeout_ms: int = REBALANCE_TIMEOUT_MS
    group_instance_id: str | None = None
    assignor: str | None = None
    """"range", "roundrobin" or "cooperative-sticky"; None keeps the client's default."""

    def to_json(self) -> str:
        data = asdict(self)
        data["topics"] = list(self.topics)
        return json.dumps(data)


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    value: str | None

    @property
    def key(self) -> Key:
        return (self.topic, self.partition, self.offset)


_CHANGED = threading.Condition()
"""Notified whenever any member reports anything: what every wait sleeps on."""


class Member:
    """One member process, and everything it reported so far."""

    def __init__(self, spec: MemberSpec, log_path: Path) -> None:
        self.spec = spec
        self.name = spec.client_id
        self.log_path = log_path
        if spec.client == "kafkajs":
            node = node_path()
            assert node is not None, "node is not installed"
            argv = [node, str(GROUPS_JS), spec.to_json()]
        else:
            argv = [sys.executable, "-m", "interop.group_clients", spec.to_json()]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.assignment: set[TP] = set()
        self.assignment_events = 0
        """"assigned", "revoked" and "lost" events: a rebalance that touched this member."""
        self.generation: int | None = None
        self.member_id: str | None = None
        self.records: list[Consumed] = []
        self.committed: dict[TP, int] = {}
        self.problems: list[str] = []
        """Errors and failed commits the client reported (not fatal by themselves)."""
        self.closed = False
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"member-{self.name}")
        self._reader.start()

    # -- the child's reports ---------------------------------------------------------------

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "error", "message": f"unparsable line {line[:200]!r}"}
            with _CHANGED:
                self._apply(event)
                _CHANGED.notify_all()
        with _CHANGED:
            _CHANGED.notify_all()

    def _apply(self, event: dict[str, Any]) -> None:
        event["at"] = time.monotonic()
        self.events.append(event)
        kind = event["event"]
        if kind in ("assigned", "revoked", "lost"):
            self.assignment_events += 1
            partitions = {(t, int(p)) for t, p in event["partitions"]}
            if kind == "assigned":
                if not event.get("incremental"):
                    self.assignment = set()
                self.assignment |= partitions
                if event.get("generation") is not None:
                    self.generation = int(event["generation"])
                if event.get("member_id"):
                    self.member_id = str(event["member_id"])
            else:
                self.assignment -= partitions
        elif kind == "generation":
            self.generation = int(event["generation"])
        elif kind == "records":
            self.records.extend(Consumed(t, int(p), int(o), v) for t, p, o, v in event["records"])
        elif kind == "committed":
            for t, p, o in event["offsets"]:
                self.committed[(t, int(p))] = max(int(o), self.committed.get((t, int(p)), -1))
        elif kind in ("error", "commit_failed", "fatal"):
            self.problems.append(f"{kind}: {event.get('message')}")
        elif kind == "closed":
            self.closed = True

    # -- control ---------------------------------------------------------------------------

    def running(self) -> bool:
        return self.process.poll() is None

    def close(self, timeout_s: float = CLOSE_S) -> None:
        """Ask the client to close (it leaves the group as it normally does) and wait."""
        self.request_close()
        self.wait_exit(timeout_s)

    def request_close(self) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(b'{"cmd": "close"}\n')
                stdin.flush()
            with contextlib.suppress(OSError):
                stdin.close()

    def wait_exit(self, timeout_s: float = CLOSE_S) -> None:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"member {self.name} ({self.spec.client}) did not close in {timeout_s}s\n"
                + self.describe()
            ) from None
        self._reader.join(5)
        assert code == 0 and self.closed, (
            f"member {self.name} ({self.spec.client}) exited {code}\n" + self.describe()
        )

    def kill(self) -> None:
        """SIGKILL: no LeaveGroup, no commit, the connections just drop."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    # -- views -----------------------------------------------------------------------------

    def read_keys(self) -> list[Key]:
        return [r.key for r in self.records]

    def since(self, index: int) -> list[dict[str, Any]]:
        return self.events[index:]

    def stderr_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        with _CHANGED:
            assignment = sorted(self.assignment)
            committed = dict(sorted(self.committed.items()))
            problems = self.problems[-5:]
            last = [
                {k: v for k, v in e.items() if k not in ("records", "at")} for e in self.events[-6:]
            ]
        return (
            f"  member {self.name} ({self.spec.client}, group {self.spec.group}, "
            f"exit {self.process.poll()}): assignment {assignment}, generation "
            f"{self.generation}, {len(self.records)} records, committed {committed}\n"
            f"    problems: {problems}\n    last events: {last}\n"
            f"    stderr tail:\n      " + self.stderr_tail().replace("\n", "\n      ")
        )


class MemberPool:
    """The members of one test: started here, SIGKILLed at the end if still running."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.members: list[Member] = []
        self._numbers = itertools.count()

    def start(self, spec: MemberSpec) -> Member:
        log = self.folder / f"{next(self._numbers):02d}-{spec.client_id}.log"
        member = Member(spec, log)
        self.members.append(member)
        return member

    def start_all(self, specs: Iterable[MemberSpec]) -> list[Member]:
        return [self.start(spec) for spec in specs]

    def close_all(self, members: Sequence[Member], timeout_s: float = CLOSE_S) -> None:
        """Close several at once: their LeaveGroups race, as in a real shutdown."""
        for member in members:
            member.request_close()
        for member in members:
            member.wait_exit(timeout_s)

    def shutdown(self) -> None:
        for member in self.members:
            member.kill()

    def describe(self) -> str:
        return "\n".join(member.describe() for member in self.members)


@contextlib.contextmanager
def member_pool(folder: Path) -> Iterator[MemberPool]:
    pool = MemberPool(folder)
    try:
        yield pool
    finally:
        pool.shutdown()


# -- waiting and checking ------------------------------------------------------------------


def wait_until(
    check: Callable[[], bool], what: str, pool: MemberPool | None = None, timeout_s: float = WAIT_S
) -> float:
    """Wait for ``check()`` (evaluated under the members' lock); the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout_s
    with _CHANGED:
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = "" if pool is None else "\n" + pool.describe()
                raise AssertionError(f"not {what} after {timeout_s:.0f}s{state}")
            _CHANGED.wait(min(remaining, 0.05))
    return time.monotonic() - start


def happened(check: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``check()`` became true within ``timeout_s`` (no failure if not)."""
    deadline = time.monotonic() + timeout_s
    with _CHANGED:
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _CHANGED.wait(min(remaining, 0.05))
    return True


def poll_until(
    probe: Callable[[], T | None],
    what: str,
    pool: MemberPool | None = None,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.1,
) -> T:
    """Call ``probe`` (an admin request, say) until it returns something other than None, and
    return that; its exceptions count as None until the deadline, then are reported."""
    deadline = time.monotonic() + timeout_s
    last: str = "never called"
    while True:
        try:
            found = probe()
        except Exception as exc:
            found, last = None, f"last error: {exc!r}"
        else:
            last = "last probe: no"
        if found is not None:
            return found
        if time.monotonic() > deadline:
            state = "" if pool is None else "\n" + pool.describe()
            raise AssertionError(f"not {what} after {timeout_s:.0f}s ({last}){state}")
        time.sleep(interval_s)


def run_for_clients(clients: Sequence[str], scenario: Callable[[str], None]) -> None:
    """Run ``scenario(client)`` for every client at once, each in a thread (so that waits on
    session timeouts and restarts overlap), and fail naming every client that failed."""
    failures: dict[str, BaseException] = {}

    def run(client: str) -> None:
        try:
            scenario(client)
        except BaseException as exc:
            failures[client] = exc

    threads = [threading.Thread(target=run, args=(c,), name=f"scenario-{c}") for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        report = "\n\n".join(
            f"[{client}] {''.join(traceback.format_exception(exc)).strip()}"
            for client, exc in failures.items()
        )
        raise AssertionError(f"failed for {', '.join(failures)}:\n{report}")


def partitions_of(topic: str, count: int) -> set[TP]:
    return {(topic, p) for p in range(count)}


def settled(members: Sequence[Member], partitions: set[TP]) -> bool:
    """Every member holds something, no partition is held twice, and together they hold
    exactly ``partitions``."""
    held = [m.assignment for m in members]
    union = set().union(*held)
    return (
        all(held)
        and sum(len(h) for h in held) == len(union)
        and union == partitions
        and all(m.running() for m in members)
    )


def wait_settled(
    members: Sequence[Member], partitions: set[TP], pool: MemberPool, what: str = ""
) -> float:
    names = ", ".join(m.name for m in members)
    return wait_until(
        lambda: settled(members, partitions),
        f"{len(partitions)} partitions shared by {names} {what}".rstrip(),
        pool,
    )


def wait_consumed(members: Sequence[Member], expected: Iterable[Key], pool: MemberPool) -> None:
    """Wait until every ``expected`` record was read by one of ``members`` and its offset
    committed."""
    wanted = set(expected)
    ends: dict[TP, int] = {}
    for topic, partition, offset in wanted:
        ends[(topic, partition)] = max(offset + 1, ends.get((topic, partition), 0))

    def done() -> bool:
        read = {key for m in members for key in m.read_keys()}
        committed: dict[TP, int] = {}
        for m in members:
            for tp, offset in m.committed.items():
                committed[tp] = max(offset, committed.get(tp, -1))
        return wanted <= read and all(committed.get(tp, -1) >= end for tp, end in ends.items())

    wait_until(done, f"{len(wanted)} records read and committed", pool)


def duplicates_and_missing(
    members: Sequence[Member], expected: Iterable[Key]
) -> tuple[dict[Key, int], set[Key], set[Key]]:
    """Records read more than once (with counts), expected records not read, and records
    read that were not expected."""
    counts = collections.Counter(key for m in members for key in m.read_keys())
    wanted = set(expected)
    twice = {key: n for key, n in counts.items() if n > 1}
    return twice, wanted - set(counts), set(counts) - wanted


def assert_exactly_once(members: Sequence[Member], expected: Iterable[Key]) -> None:
    twice, missing, extra = duplicates_and_missing(members, expected)
    assert not (twice or missing or extra), (
        f"not exactly once: read twice {sorted(twice.items())[:20]}, missing "
        f"{sorted(missing)[:20]}, unexpected {sorted(extra)[:20]}"
    )


GROUP_APIS = {
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    8: "OffsetCommit",
    9: "OffsetFetch",
    15: "DescribeGroups",
    16: "ListGroups",
    42: "DeleteGroups",
    47: "OffsetDelete",
}


def advertised_api_keys(bootstrap: str) -> set[int]:
    """The api keys the broker lists in ApiVersions (v0, through kafkacompat's codec)."""
    import socket
    import struct

    from kafkacompat.protocol.framing import decode_response, encode_request
    from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
    from kafkacompat.protocol.messages.api_versions_response import ApiVersionsResponse
    from kafkacompat.protocol.messages.request_header import RequestHeader

    host, port = bootstrap.rsplit(":", 1)
    header = RequestHeader(
        request_api_key=18, request_api_version=0, correlation_id=1, client_id="interop"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(encode_request(header, ApiVersionsRequest()))
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
    _, body = decode_response(18, 0, data[4:])
    assert isinstance(body, ApiVersionsResponse)
    return {api.api_key for api in body.api_keys}


def missing_group_apis(bootstrap: str) -> list[str]:
    """The group APIs the broker does not advertise (none, once the coordinator is there)."""
    advertised = advertised_api_keys(bootstrap)
    return [name for key, name in GROUP_APIS.items() if key not in advertised]


# -- topics, records and the group as an admin client sees it -------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=15).values()
    future.result(timeout=15)
    deadline = time.monotonic() + 15
    while True:
        described = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            described is not None
            and described.error is None
            and len(described.partitions) == partitions
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} not visible with {partitions} partitions")
        time.sleep(0.05)


def produce_batch(
    bootstrap: str, topic: str, partitions: Iterable[int], per_partition: int, tag: str
) -> list[Key]:
    """``per_partition`` records to each partition, acks=all; the keys of all of them."""
    from confluent_kafka import KafkaError, Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
         "message.timeout.ms": 15000}
    )  # fmt: skip
    keys: list[Key] = []
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            keys.append((message.topic(), message.partition(), message.offset()))

    for partition in partitions:
        for i in range(per_partition):
            producer.produce(
                topic, value=f"{tag}-{partition}-{i}".encode(), partition=partition,
                on_delivery=delivered,
            )  # fmt: skip
    remaining = producer.flush(20)
    assert not errors and remaining == 0, f"produce failed: {errors[:3]}, {remaining} left"
    return sorted(keys)


@dataclass(frozen=True)
class MemberView:
    member_id: str
    client_id: str
    group_instance_id: str | None
    assignment: frozenset[TP]


@dataclass(frozen=True)
class GroupView:
    state: str
    """Kafka's name: STABLE, EMPTY, PREPARING_REBALANCE, COMPLETING_REBALANCE, DEAD."""
    assignor: str
    members: tuple[MemberView, ...] = field(default=())

    def assignments(self) -> dict[str, frozenset[TP]]:
        return {m.client_id: m.assignment for m in self.members}


def describe_group(bootstrap: str, group: str) -> GroupView:
    """The group as confluent-kafka's AdminClient describes it (DescribeGroups)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.describe_consumer_groups([group], request_timeout=10).values()
    description = future.result(timeout=15)
    members = tuple(
        MemberView(
            m.member_id,
            m.client_id,
            m.group_instance_id,
            frozenset((tp.topic, tp.partition) for tp in m.assignment.topic_partitions),
        )
        for m in description.members
    )
    return GroupView(description.state.name, description.partition_assignor, members)


def committed_offsets(bootstrap: str, group: str, tps: Iterable[TP]) -> dict[TP, int]:
    """The group's committed offsets (OffsetFetch through confluent-kafka's AdminClient);
    -1001 (librdkafka's OFFSET_INVALID) where none is committed."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
    (future,) = admin.list_consumer_group_offsets([request], request_timeout=10).values()
    result = future.result(timeout=15)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def ends_of(keys: Iterable[Key]) -> dict[TP, int]:
    """The offset after the last of ``keys`` in each partition."""
    ends: dict[TP, int] = {}
    for topic, partition, offset in keys:
        ends[(topic, partition)] = max(offset + 1, ends.get((topic, partition), 0))
    return ends


def kafkajs_admin(bootstrap: str, calls: Sequence[dict[str, Any]]) -> list[Any]:
    """kafkajs admin calls (``js/groups.js admin``): their results, or ClientError with the
    Kafka error code (of the first failed group, for deleteGroups)."""
    node = node_path()
    assert node is not None, "node is not installed"
    command = json.dumps({"brokers": [bootstrap], "calls": list(calls)})
    done = subprocess.run(
        [node, str(GROUPS_JS), "admin", command], capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"groups.js admin exited {done.returncode}: {done.stderr.decode()}")
    answer = json.loads(done.stdout.strip().split(b"\n")[-1])
    if answer["ok"]:
        return list(answer["result"])
    error = answer["error"]
    raise ClientError("kafkajs", _kafkajs_code(error), str(error.get("message")), error)


def _kafkajs_code(error: dict[str, Any] | None) -> int | None:
    if not error:
        return None
    for group in error.get("groups") or []:
        if group.get("errorCode"):
            return int(group["errorCode"])
    if isinstance(error.get("code"), int):
        return int(error["code"])
    for inner in [*(error.get("errors") or []), error.get("cause"), error.get("originalError")]:
        code = _kafkajs_code(inner)
        if code is not None:
            return code
    return None


def decode_assignment(data: bytes) -> frozenset[TP]:
    """The partitions in a "consumer" protocol assignment (ConsumerProtocolAssignment: int16
    version, [topic string, [int32 partition]], user data), as DescribeGroups returns it."""
    import struct

    pos = 2
    (topics,) = struct.unpack_from(">i", data, pos)
    pos += 4
    out: set[TP] = set()
    for _ in range(max(topics, 0)):
        (length,) = struct.unpack_from(">h", data, pos)
        topic = data[pos + 2 : pos + 2 + length].decode()
        pos += 2 + length
        (count,) = struct.unpack_from(">i", data, pos)
        pos += 4
        for partition in struct.unpack_from(f">{max(count, 0)}i", data, pos):
            out.add((topic, partition))
        pos += 4 * max(count, 0)
    return frozenset(out)


# -- the member process (child side) ---------------------------------------------------------


class _Events:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _watch_stdin(stop: threading.Event) -> None:
    """Close on {"cmd": "close"} or when the parent goes away (stdin ends)."""
    for line in sys.stdin:
        with contextlib.suppress(ValueError):
            if json.loads(line).get("cmd") == "close":
                break
    stop.set()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _run_confluent(spec: MemberSpec, out: _Events, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    config: dict[str, Any] = {
        "bootstrap.servers": spec.bootstrap,
        "group.id": spec.group,
        "client.id": spec.client_id,
        "session.timeout.ms": spec.session_timeout_ms,
        "heartbeat.interval.ms": spec.heartbeat_interval_ms,
        "max.poll.interval.ms": spec.rebalance_timeout_ms,
        "auto.offset.reset": spec.auto_offset_reset,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        # librdkafka backs off up to 10 s between reconnects by default: a restarted broker
        # would look unreachable for that long.
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    if spec.group_instance_id is not None:
        config["group.instance.id"] = spec.group_instance_id
    if spec.assignor is not None:
        config["partition.assignment.strategy"] = spec.assignor
    incremental = spec.assignor == "cooperative-sticky"
    consumer = Consumer(config)

    def tps(parts: list[Any]) -> list[list[Any]]:
        return [[p.topic, p.partition] for p in parts]

    def on_assign(c: Any, parts: list[Any]) -> None:
        out.emit("assigned", partitions=tps(parts), incremental=incremental,
                 generation=None, member_id=c.memberid())  # fmt: skip

    def on_revoke(c: Any, parts: list[Any]) -> None:
        out.emit("revoked", partitions=tps(parts), incremental=incremental)

    def on_lost(c: Any, parts: list[Any]) -> None:
        out.emit("lost", partitions=tps(parts), incremental=incremental)

    consumer.subscribe(list(spec.topics), on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=on_lost)  # fmt: skip
    try:
        while not stop.is_set():
            batch: list[list[Any]] = []
            ends: dict[TP, int] = {}
            for message in consumer.consume(500, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        out.emit("error", code=error.code(), message=str(error))
                    continue
                topic, partition, offset = (
                    str(message.topic()),
                    message.partition(),
                    message.offset(),
                )
                assert partition is not None and offset is not None
                batch.append([topic, partition, offset, _text(message.value())])
                ends[(topic, partition)] = offset + 1
            if not batch:
                continue
            out.emit("records", records=batch)
            try:
                done = consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                    asynchronous=False,
                )
            except KafkaException as exc:
                out.emit("commit_failed", code=exc.args[0].code(), message=str(exc))
                continue
            failed = [tp.error for tp in done or [] if tp.error is not None]
            if failed:
                out.emit("commit_failed", code=failed[0].code(), message=str(failed))
            else:
                out.emit("committed", offsets=[[t, p, o] for (t, p), o in ends.items()])
    finally:
        consumer.close()


def _kafka_python_assignors(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    classes = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }
    return {"partition_assignment_strategy": [classes[name]]}


def _run_kafka_python(spec: MemberSpec, out: _Events, stop: threading.Event) -> None:
    import kafka.errors
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=spec.bootstrap,
        group_id=spec.group,
        client_id=spec.client_id,
        group_instance_id=spec.group_instance_id,
        session_timeout_ms=spec.session_timeout_ms,
        heartbeat_interval_ms=spec.heartbeat_interval_ms,
        max_poll_interval_ms=spec.rebalance_timeout_ms,
        auto_offset_reset=spec.auto_offset_reset,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        reconnect_backoff_max_ms=500,
        request_timeout_ms=10000,
        **_kafka_python_assignors(spec.assignor),
    )
    incremental = spec.assignor == "cooperative-sticky"

    def generation() -> tuple[int | None, str | None]:
        # Read without the coordinator's lock: callbacks run while it may be held.
        current = getattr(consumer._coordinator, "_generation", None)
        if current is None:
            return None, None
        return current.generation_id, current.member_id

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            out.emit("revoked", partitions=[[tp.topic, tp.partition] for tp in revoked],
                     incremental=incremental)  # fmt: skip

        def on_partitions_assigned(self, assigned: Any) -> None:
            gen, member_id = generation()
            out.emit("assigned", partitions=[[tp.topic, tp.partition] for tp in assigned],
                     incremental=incremental, generation=gen, member_id=member_id)  # fmt: skip

        def on_partitions_lost(self, lost: Any) -> None:
            out.emit("lost", partitions=[[tp.topic, tp.partition] for tp in lost],
                     incremental=incremental)  # fmt: skip

    consumer.subscribe(list(spec.topics), listener=Listener())

    # Let the subscription's metadata arrive (kafka-python fetches it in the background)
    # before the first poll() joins.  Otherwise a leader assigns nothing, rejoins when the
    # metadata comes, and kafka-python 3.0.12 can lose that rejoin: when poll()'s timeout ends
    # while its JoinGroup/SyncGroup is in flight, the next poll() finds need_rejoin() False
    # (the new assignment matches the metadata) and never completes the join, so heartbeats
    # stay off and the session expires.
    def metadata_known() -> bool:
        snapshot = getattr(consumer._coordinator, "_metadata_snapshot", None) or {}
        return set(spec.topics) <= set(snapshot)

    deadline = time.monotonic() + 10
    while not metadata_known() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=100)
            batch = [
                [m.topic, m.partition, m.offset, _text(m.value)]
                for messages in polled.values()
                for m in messages
            ]
            if not batch:
                continue
            out.emit("records", records=batch)
            ends = {tp: messages[-1].offset + 1 for tp, messages in polled.items() if messages}
            try:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in ends.items()})
            except kafka.errors.KafkaError as exc:
                out.emit("commit_failed", code=getattr(exc, "errno", None), message=repr(exc))
                continue
            out.emit("committed", offsets=[[tp.topic, tp.partition, o] for tp, o in ends.items()])
    finally:
        consumer.close(autocommit=False)


def _run_aiokafka(spec: MemberSpec, out: _Events, stop: threading.Event) -> None:
    import asyncio

    import aiokafka.errors
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    strategies: dict[str, Any] = {}
    if spec.assignor is not None:
        assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
        strategies["partition_assignment_strategy"] = (assignors[spec.assignor],)

    async def run() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=spec.bootstrap,
            group_id=spec.group,
            client_id=spec.client_id,
            group_instance_id=spec.group_instance_id,
            session_timeout_ms=spec.session_timeout_ms,
            heartbeat_interval_ms=spec.heartbeat_interval_ms,
            max_poll_interval_ms=spec.rebalance_timeout_ms,
            rebalance_timeout_ms=spec.rebalance_timeout_ms,
            auto_offset_reset=spec.auto_offset_reset,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            retry_backoff_ms=100,
            **strategies,
        )

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                out.emit("revoked", partitions=[[tp.topic, tp.partition] for tp in revoked],
                         incremental=False)  # fmt: skip

            def on_partitions_assigned(self, assigned: Any) -> None:
                coordinator = consumer._coordinator
                out.emit(
                    "assigned",
                    partitions=[[tp.topic, tp.partition] for tp in assigned],
                    incremental=False,
                    generation=getattr(coordinator, "generation", None),
                    member_id=getattr(coordinator, "member_id", None),
                )

        await asyncio.wait_for(consumer.start(), 30)
        try:
            consumer.subscribe(list(spec.topics), listener=Listener())
            while not stop.is_set():
                polled = await consumer.getmany(timeout_ms=100)
                batch = [
                    [m.topic, m.partition, m.offset, _text(m.value)]
                    for messages in polled.values()
                    for m in messages
                ]
                if not batch:
                    continue
                out.emit("records", records=batch)
                ends = {tp: messages[-1].offset + 1 for tp, messages in polled.items() if messages}
                try:
                    await consumer.commit(ends)
                except aiokafka.errors.KafkaError as exc:
                    code = getattr(exc, "errno", None)
                    out.emit("commit_failed", code=code, message=repr(exc))
                    continue
                out.emit(
                    "committed", offsets=[[tp.topic, tp.partition, o] for tp, o in ends.items()]
                )
        finally:
            await asyncio.wait_for(consumer.stop(), CLOSE_S)

    asyncio.run(run())


_RUNNERS: dict[str, Callable[[MemberSpec, _Events, threading.Event], None]] = {
    "confluent": _run_confluent,
    "kafka-python": _run_kafka_python,
    "aiokafka": _run_aiokafka,
}


def member_main(argv: Sequence[str]) -> int:
    import logging

    # The client libraries' own logs go to the member's stderr (its log file); raise the level
    # with INTEROP_MEMBER_LOG=DEBUG to see their protocol exchanges.
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("INTEROP_MEMBER_LOG", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    out = _Events(sys.stdout)
    spec_data = json.loads(argv[0])
    spec_data["topics"] = tuple(spec_data["topics"])
    spec = MemberSpec(**spec_data)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        _RUNNERS[spec.client](spec, out, stop)
    except Exception as exc:
        traceback.print_exc()
        out.emit("fatal", message=repr(exc))
        return 1
    out.emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(member_main(sys.argv[1:]))
