"""Stream-processing apps (``interop/apps/``) as child processes, and what the tests read
back from the broker about them.

The apps run in a virtualenv of their own, ``.venv-streams`` (``scripts/test`` makes it with
``pip install -e '.[streams]'``; ``KAFKACOMPAT_STREAMS_PYTHON`` names another interpreter):
quixstreams pins confluent-kafka below 2.13, and the rest of the suite keeps the newest.

``kill_in_transaction`` freezes an app (SIGSTOP) and SIGKILLs it only while one of its
transactions is open on the broker (a topic's last stable offset below its high watermark
for records the app wrote), so every kill is known to leave work for the broker to abort.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, IsolationLevel, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

ROOT = Path(__file__).resolve().parent.parent
STREAMS_VENV_PYTHON = ROOT / ".venv-streams" / "bin" / "python"
CALL_TIMEOUT_S = 30.0
"""Ceiling for one admin or client call."""


def streams_python() -> tuple[str | None, str]:
    """The interpreter with quixstreams and faust-streaming, or None and why not."""
    python = os.environ.get("KAFKACOMPAT_STREAMS_PYTHON") or str(STREAMS_VENV_PYTHON)
    if not Path(python).exists():
        return None, f"{python} not found: ./scripts/test makes it (pip install -e '.[streams]')"
    probe = subprocess.run(
        [python, "-c", "import quixstreams, faust"],
        capture_output=True,
        timeout=CALL_TIMEOUT_S,
        check=False,
    )
    if probe.returncode != 0:
        error = probe.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return None, f"{python} cannot import quixstreams and faust: {error}"
    return python, ""


class AppProcess:
    """One run of an app: its command line, environment and log file (appended to)."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"==== run {self.runs}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(CALL_TIMEOUT_S)

    def stop(self, timeout_s: float = CALL_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        return self.process.returncode

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_bytes().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


# -- the broker's side -----------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(CALL_TIMEOUT_S)


@dataclass(frozen=True)
class Input:
    key: str
    value: int
    timestamp: int


def produce(bootstrap: str, topic: str, records: Iterable[Input]) -> None:
    """Send ``records`` (values as JSON); fail on any delivery error.

    Keys are partitioned as Java's producer and aiokafka do (murmur2): faust names the
    transaction of a write after the partition it writes to, so its output and its input
    offsets share a transaction only where both topics place a key alike."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "partitioner": "murmur2_random",
        }
    )
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            errors.append(error)

    for record in records:
        producer.produce(
            topic,
            key=record.key.encode(),
            value=json.dumps(record.value).encode(),
            timestamp=record.timestamp,
            on_delivery=delivered,
        )
        producer.poll(0)
    remaining = producer.flush(CALL_TIMEOUT_S)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors {errors}"


@dataclass(frozen=True)
class Output:
    partition: int
    offset: int
    key: str
    value: object


def partition_count(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(topic, timeout=CALL_TIMEOUT_S)
    return len(metadata.topics[topic].partitions)


def read_all(bootstrap: str, topic: str, *, committed: bool = True) -> list[Output]:
    """Every record of ``topic`` up to each partition's end (the last stable offset when
    ``committed``), in offset order per partition."""
    partitions = partition_count(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "streams-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        at_end: set[int] = set()
        read: list[Output] = []
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic} not read to its end: {at_end}"
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                at_end.add(message.partition())
                continue
            key = (message.key() or b"").decode()
            value = json.loads(message.value())
            read.append(Output(message.partition(), message.offset(), key, value))
        return read
    finally:
        consumer.close()


def group_has_read(bootstrap: str, group: str, topic: str) -> bool:
    """Whether ``group``'s committed offsets cover every record of ``topic`` read with
    read_committed (the offset after each partition's last record, or beyond)."""
    last: dict[int, int] = {}
    for output in read_all(bootstrap, topic):
        last[output.partition] = output.offset
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        wanted = [TopicPartition(topic, p) for p in last]
        committed = consumer.committed(wanted, timeout=CALL_TIMEOUT_S)
    finally:
        consumer.close()
    return all(tp.offset > last[tp.partition] for tp in committed)


def open_transactions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions whose last stable offset is below the high watermark: an open
    transaction holds records there (ListOffsets latest, read_committed and not)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=CALL_TIMEOUT_S)
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        if topic in metadata.topics
        for p in metadata.topics[topic].partitions
    ]
    if not partitions:
        return []
    ends: dict[IsolationLevel, dict[tuple[str, int], int]] = {}
    for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        futures = admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in partitions},
            isolation_level=level,
            request_timeout=CALL_TIMEOUT_S,
        )
        ends[level] = {
            (tp.topic, tp.partition): future.result(CALL_TIMEOUT_S).offset
            for tp, future in futures.items()
        }
    stable, high = ends[IsolationLevel.READ_COMMITTED], ends[IsolationLevel.READ_UNCOMMITTED]
    return [
        tp for tp in partitions if stable[(tp.topic, tp.partition)] < high[tp.topic, tp.partition]
    ]


def app_topics(bootstrap: str, exclude: Iterable[str]) -> list[str]:
    """The topics an app wrote: all but the internal ones and ``exclude``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = admin.list_topics(timeout=CALL_TIMEOUT_S).topics
    skip = set(exclude)
    return sorted(name for name in names if not name.startswith("__") and name not in skip)


def kill_in_transaction(
    app: AppProcess,
    bootstrap: str,
    topics: Callable[[], list[str]],
    kill: Callable[[], None] | None = None,
    timeout_s: float = 60.0,
) -> list[TopicPartition]:
    """``kill()`` (default: SIGKILL ``app``) while the app has a transaction open; the
    partitions it held open.

    The app is frozen with SIGSTOP before the broker is asked, so it cannot commit between
    the answer and the kill (a commit already sent is given time to land first); it is let
    go again afterwards if it still runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert app.running, "the app exited before the kill:\n" + app.log_tail()
        app.signal(signal.SIGSTOP)
        try:
            time.sleep(0.3)
            held = open_transactions(bootstrap, topics())
            if held:
                (kill or app.kill)()
                return held
        finally:
            if app.running:
                app.signal(signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError(f"no open transaction of the app seen in {timeout_s}s:\n{app.log_tail()}")


def wait_for(check: Callable[[], bool], what: str, app: AppProcess, timeout_s: float) -> None:
    """Poll ``check`` until true; fail with the app's log after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout_s:.0f}s:\n{app.log_tail()}")
        if not app.running:
            raise AssertionError(f"the app exited before {what}:\n{app.log_tail()}")
        time.sleep(0.5)
