"""A real broker in a child process, and a raw-socket Kafka client to poke it with.

The broker runs as ``python -m kafkacompat serve --port 0`` so every test sees what a user
would: its own process, its own event loop, its log on stderr.  The client speaks the wire
protocol through :mod:`kafkacompat.protocol` and nothing else, so a test can send any bytes
it likes.  Every wait here has a timeout; the machines that run these tests are shared, so
the timeouts are generous and no test asserts on how fast something happened.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kafkacompat.protocol.framing import decode_response, encode_request
from kafkacompat.protocol.message import Message
from kafkacompat.protocol.messages.api_versions_request import ApiVersionsRequest
from kafkacompat.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from kafkacompat.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from kafkacompat.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.records.batch import iter_batches
from kafkacompat.records.builder import RecordBatchBuilder

TIMEOUT = 20.0
"""How long any single wait may take before the test fails: generous, machines are shared."""

_SIZE = struct.Struct(">i")
_LISTENING = re.compile(r"listening on \[?([^\s\]]+)\]?:(\d+)[ ,]")
_correlation = itertools.count(1)

REPO = Path(__file__).resolve().parents[2]


class BrokerProcess:
    """``kafkacompat serve`` in a child process, its stderr collected line by line."""

    def __init__(
        self,
        workdir: Path,
        *,
        storage: str = "memory",
        settings: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        port: int | None = 0,
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.storage = storage
        self.settings = dict(settings or {})
        self.args = list(args)
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self.address: tuple[str, int] = ("", 0)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "kafkacompat", "serve"]
        if self.port is not None:
            cmd += ["--port", str(self.port)]
        cmd += ["--storage", self.storage, "--data-dir", str(self.data_dir)]
        cmd += ["--log-level", "debug"]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd + self.args

    def start(self) -> BrokerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        line = self.wait_for_log(_LISTENING, what="the broker to listen")
        match = _LISTENING.search(line)
        assert match is not None
        self.address = (match.group(1), int(match.group(2)))
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self, since: int = 0) -> str:
        with self._changed:
            return "\n".join(self.lines[since:])

    def mark(self) -> int:
        """A position in the log, for :meth:`log_text` and :meth:`wait_for_log`."""
        with self._changed:
            return len(self.lines)

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        *,
        since: int = 0,
        what: str = "",
        timeout: float = TIMEOUT,
    ) -> str:
        """The first log line from ``since`` on that matches ``pattern``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if regex.search(line):
                        return line
                exited = self.proc is not None and self.proc.poll() is not None
                left = deadline - time.monotonic()
                if left <= 0 or (
                    exited and self._reader is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"waited for {what or regex.pattern!r}; broker log:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.5))

    def assert_healthy(self, since: int = 0) -> None:
        """Still running, no traceback logged, and answering a new connection."""
        assert self.proc is not None and self.proc.poll() is None, self.log_text()
        with Client(self.address) as client:
            versions = client.request(api_versions_request(), 3)
            assert versions.error_code == 0 and versions.api_keys
            metadata = client.request(MetadataRequest(topics=None), 12)
            assert [(b.host, b.port) for b in metadata.brokers] == [self.address]
        text = self.log_text(since)
        assert "Traceback" not in text, text

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(TIMEOUT)

    def close(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Client:
    """A blocking socket speaking Kafka's framing; every read times out."""

    def __init__(self, address: tuple[str, int], timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.settimeout(timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, body: Message, version: int, correlation_id: int | None = None) -> int:
        correlation_id = next(_correlation) if correlation_id is None else correlation_id
        self.sock.sendall(request_frame(body, version, correlation_id))
        return correlation_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self.sock.recv(min(size, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        (size,) = _SIZE.unpack(self._exactly(4))
        return decode_response(api_key, version, self._exactly(size))

    def request(self, body: Message, version: int) -> Any:
        correlation_id = self.send(body, version)
        assert body.API_KEY is not None
        got, response = self.receive(body.API_KEY, version)
        assert got == correlation_id
        return response

    def assert_closed(self, timeout: float = TIMEOUT) -> None:
        """The broker closes the connection (EOF or reset) before ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"the broker kept the connection open for {timeout} s") from None


def request_frame(
    body: Message, version: int, correlation_id: int, client_id: str = "tests"
) -> bytes:
    assert body.API_KEY is not None
    header = RequestHeader(
        request_api_key=body.API_KEY,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    return encode_request(header, body)


def raw_frame(
    api_key: int, version: int, correlation_id: int, body: bytes = b"", *, flexible: bool = False
) -> bytes:
    """A frame with a request header v1 (v2, with empty tagged fields, if ``flexible``) and
    any body bytes."""
    client_id = b"tests"
    payload = (
        struct.pack(">hhih", api_key, version, correlation_id, len(client_id))
        + client_id
        + (b"\x00" if flexible else b"")
        + body
    )
    return _SIZE.pack(len(payload)) + payload


def api_versions_request() -> ApiVersionsRequest:
    return ApiVersionsRequest(
        client_software_name="kafkacompat-tests", client_software_version="1.0"
    )


def metadata_for(topic: str) -> MetadataRequest:
    return MetadataRequest(
        topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=True
    )


# -- the data path --------------------------------------------------------------------------

PRODUCE_VERSION = 9
FETCH_VERSION = 12  # the newest that names topics (13+ use topic ids)


def batch(*values: bytes) -> bytes:
    builder = RecordBatchBuilder()
    now = int(time.time() * 1000)
    for value in values:
        builder.append(value, timestamp=now)
    return builder.build()


def produce_request(
    topic: str, records: bytes, partition: int = 0, acks: int = -1
) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=30_000,
        topic_data=[
            TopicProduceData(
                name=topic, partition_data=[PartitionProduceData(index=partition, records=records)]
            )
        ],
    )


def fetch_request(
    topic: str,
    offset: int = 0,
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
    max_bytes: int = 64 << 20,
) -> FetchRequest:
    return FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        topics=[
            FetchTopic(
                topic=topic,
                partitions=[
                    FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=max_bytes)
                ],
            )
        ],
    )


def create_topic(client: Client, topic: str) -> None:
    """Auto-created by Metadata, as a client's first produce would."""
    response = client.request(metadata_for(topic), 12)
    assert [(t.name, t.error_code) for t in response.topics] == [(topic, 0)]


def produce(client: Client, topic: str, records: bytes) -> Any:
    """The partition response of a one-partition Produce."""
    response = client.request(produce_request(topic, records), PRODUCE_VERSION)
    [topic_response] = response.responses
    [partition] = topic_response.partition_responses
    return partition


def fetch_values(client: Client, topic: str, offset: int = 0) -> list[bytes | None]:
    """Every record value from ``offset`` to the high watermark."""
    response = client.request(fetch_request(topic, offset), FETCH_VERSION)
    [topic_response] = response.responses
    [partition] = topic_response.partitions
    assert partition.error_code == 0
    return [
        record.value
        for found in iter_batches(bytes(partition.records))
        for record in found.iter_records()
    ]
