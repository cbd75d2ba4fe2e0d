"""A broker for tests and tools, started and stopped from Python.

::

    from kafkacompat import EmbeddedKafka

    with EmbeddedKafka(configs={"num.partitions": "3"}) as kafka:
        kafka.create_topic("orders", partitions=3)
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka.bootstrap_servers})

Two modes:

* ``"thread"`` (the default): the broker runs in this process, on its own event loop (uvloop
  when installed) in a background thread.  Fast to start, no child to clean up; it shares the
  GIL with the caller, and it installs no signal handlers.
* ``"process"``: ``python -m kafkacompat serve --port 0 ...`` as a child process, its
  bootstrap address read from the line it logs when listening.  Isolated from the caller
  (its own GIL, its own crash), stopped with SIGTERM.

Storage is ``"memory"`` (nothing on disk) or ``"disk"`` (Kafka's on-disk layout, in
``data_dir`` when given, else in a temporary directory removed at :meth:`EmbeddedKafka.stop`).
Broker settings go in ``configs`` by Kafka's names.  A broker still running when the
interpreter exits is stopped then (``atexit``).  Every wait is bounded: a broker that
does not start within ``start_timeout`` seconds, or cannot start at all (port in use, bad
config, a data directory another broker holds), raises :class:`BrokerStartError`.

This module imports only the standard library until a broker starts, so that
``import kafkacompat`` stays cheap.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import asyncio

    from kafkacompat.broker_server import BrokerServer
    from kafkacompat.config import BrokerConfig

log = logging.getLogger("kafkacompat.embedded")

Mode = Literal["thread", "process"]
Storage = Literal["memory", "disk"]
ConfigValue = str | int | float | bool

_LISTENING = re.compile(r"bootstrap\.servers=(\S+)\)")
_LOG_TAIL_LINES = 200
_SIZE = struct.Struct(">i")
_CREATE_TOPICS = 19
_CREATE_TOPICS_VERSION = 4  # configs and per-topic errors; not flexible, so no tagged fields


_thread_data_dirs: set[str] = set()
"""Data directories held by thread-mode brokers of this process.  The storage's ``.lock`` is
per process (the kernel's flock), so it cannot tell two brokers in one process apart."""
_thread_data_dirs_lock = threading.Lock()

_running: weakref.WeakSet[EmbeddedKafka] = weakref.WeakSet()
"""Brokers started and not yet stopped: stopped at interpreter exit, so a forgotten one
neither outlives its parent (process mode) nor dies without its clean-shutdown marker."""


@atexit.register
def _stop_running() -> None:
    for kafka in list(_running):
        try:
            kafka.stop()
        except Exception:
            log.exception("stopping %r at exit failed", kafka)


class BrokerStartError(RuntimeError):
    """The embedded broker did not start; the message says why (and the cause is chained)."""


class BrokerStopError(RuntimeError):
    """The embedded broker did not stop cleanly within its timeout."""


class TopicCreationError(RuntimeError):
    """CreateTopics answered an error for the topic."""

    def __init__(self, topic: str, error_code: int, message: str | None) -> None:
        super().__init__(f"cannot create topic {topic!r}: error {error_code}: {message or ''}")
        self.topic = topic
        self.error_code = error_code


def config_string(value: ConfigValue) -> str:
    """A config value as Kafka's properties spell it (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _listener_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class EmbeddedKafka:
    """A kafkacompat broker; a context manager, or :meth:`start` and :meth:`stop` by hand."""

    def __init__(
        self,
        *,
        mode: Mode = "thread",
        storage: Storage = "memory",
        data_dir: str | os.PathLike[str] | None = None,
        configs: Mapping[str, ConfigValue] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
    ) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
        if storage not in ("memory", "disk"):
            raise ValueError(f"storage must be 'memory' or 'disk', not {storage!r}")
        if data_dir is not None and storage != "disk":
            raise ValueError("data_dir needs storage='disk'")
        self.mode: Mode = mode
        self.storage: Storage = storage
        self.configs: dict[str, str] = {k: config_string(v) for k, v in (configs or {}).items()}
        self.host = host
        self.port = port
        """The port asked for; after :meth:`start`, the one listened on."""
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._temp_dir: Path | None = None
        self._runner: _ThreadBroker | _ProcessBroker | None = None
        self._bootstrap: str | None = None
        self._held_data_dir: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmbeddedKafka:
        """Start the broker and wait until it listens; raises :class:`BrokerStartError`."""
        if self._runner is not None:
            raise RuntimeError("the embedded broker is already running")
        data_dir = self._prepare_data_dir()
        runner: _ThreadBroker | _ProcessBroker
        held = None
        try:
            if self.mode == "thread":
                if data_dir is not None:
                    held = self._hold_data_dir(data_dir)
                runner = _ThreadBroker(self._thread_config(data_dir), self.storage, data_dir)
            else:
                runner = _ProcessBroker(self._process_argv(data_dir))
            self._bootstrap = runner.start(self.start_timeout)
        except BaseException:
            _release_data_dir(held)
            self._remove_temp_dir()
            raise
        self._runner = runner
        _running.add(self)
        self._held_data_dir = held
        self.port = int(self._bootstrap.split(",")[0].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Stop the broker cleanly (a disk broker writes its clean-shutdown marker) and remove
        the temporary data directory, if one was made.  Stopping a stopped broker does nothing."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        _running.discard(self)
        try:
            runner.stop(self.stop_timeout)
        finally:
            self._bootstrap = None
            _release_data_dir(self._held_data_dir)
            self._held_data_dir = None
            self._remove_temp_dir()

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for a client's ``bootstrap.servers``."""
        if self._bootstrap is None:
            raise RuntimeError("the embedded broker is not running")
        return self._bootstrap

    @property
    def data_dir(self) -> Path | None:
        """Where a disk broker keeps its data (None for memory storage)."""
        return self._given_data_dir if self._given_data_dir is not None else self._temp_dir

    def __repr__(self) -> str:
        where = self._bootstrap or "stopped"
        return f"EmbeddedKafka(mode={self.mode!r}, storage={self.storage!r}, {where})"

    # -- helpers -------------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        configs: Mapping[str, ConfigValue] | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic through the Kafka protocol (CreateTopics), as an admin client would;
        raises :class:`TopicCreationError` if the broker refuses it (it exists, a bad config)."""
        from kafkacompat.protocol.framing import decode_response, encode_request
        from kafkacompat.protocol.messages.create_topics_request import (
            CreatableTopic,
            CreatableTopicConfig,
            CreateTopicsRequest,
        )
        from kafkacompat.protocol.messages.request_header import RequestHeader

        request = CreateTopicsRequest(
            topics=[
                CreatableTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=1,
                    configs=[
                        CreatableTopicConfig(name=key, value=config_string(value))
                        for key, value in (configs or {}).items()
                    ],
                )
            ],
            timeout_ms=int(timeout * 1000),
        )
        header = RequestHeader(
            request_api_key=_CREATE_TOPICS,
            request_api_version=_CREATE_TOPICS_VERSION,
            correlation_id=1,
            client_id="kafkacompat-embedded",
        )
        host, port = self._first_address()
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(encode_request(header, request))
            (size,) = _SIZE.unpack(_receive_exactly(sock, 4))
            _, response = decode_response(
                _CREATE_TOPICS, _CREATE_TOPICS_VERSION, _receive_exactly(sock, size)
            )
        [result] = response.topics  # type: ignore[attr-defined]
        if result.error_code:
            raise TopicCreationError(name, result.error_code, result.error_message)

    def _first_address(self) -> tuple[str, int]:
        first = self.bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host.strip("[]"), int(port)

    # -- configuration ---------------------------------------------------------------------------

    def _prepare_data_dir(self) -> Path | None:
        if self.storage != "disk":
            return None
        if self._given_data_dir is not None:
            return self._given_data_dir
        self._temp_dir = Path(tempfile.mkdtemp(prefix="kafkacompat-"))
        return self._temp_dir

    @staticmethod
    def _hold_data_dir(data_dir: Path) -> str:
        key = os.path.realpath(data_dir)
        with _thread_data_dirs_lock:
            if key in _thread_data_dirs:
                raise BrokerStartError(
                    f"cannot start: {data_dir} is in use by another embedded broker"
                )
            _thread_data_dirs.add(key)
        return key

    def _remove_temp_dir(self) -> None:
        temp, self._temp_dir = self._temp_dir, None
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

    def _props(self, data_dir: Path | None) -> dict[str, str]:
        props = {"listeners": f"PLAINTEXT://{_listener_host(self.host)}:{self.port}"}
        if data_dir is not None:
            props["log.dirs"] = str(data_dir)
        props.update(self.configs)
        return props

    def _thread_config(self, data_dir: Path | None) -> BrokerConfig:
        from kafkacompat.config import BrokerConfig
        from kafkacompat.errors import KafkaProtocolError

        try:
            config = BrokerConfig(self._props(data_dir))
        except KafkaProtocolError as exc:
            raise BrokerStartError(f"invalid configuration: {exc}") from exc
        for name in config.unknown:
            log.warning("unknown broker config %s ignored", name)
        return config

    def _process_argv(self, data_dir: Path | None) -> list[str]:
        argv = [sys.executable, "-m", "kafkacompat", "serve", "--log-level", "info"]
        argv += ["--host", self.host, "--port", str(self.port), "--storage", self.storage]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        for key, value in self.configs.items():
            argv += ["--set", f"{key}={value}"]
        return argv


def _release_data_dir(key: str | None) -> None:
    if key is not None:
        with _thread_data_dirs_lock:
            _thread_data_dirs.discard(key)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _ThreadBroker:
    """A :class:`BrokerServer` on its own event loop in a daemon thread."""

    def __init__(self, config: BrokerConfig, storage: Storage, data_dir: Path | None) -> None:
        self._config = config
        self._storage: Storage = storage
        self._data_dir = data_dir
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kafkacompat-broker", daemon=True)
        self.broker_server: BrokerServer | None = None

    def start(self, timeout: float) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            self._request_stop()
            self._thread.join(timeout)
            raise BrokerStartError(f"the broker did not start within {timeout:.0f} s")
        if self._error is not None or self.broker_server is None:
            self._thread.join(timeout)
            raise BrokerStartError(f"cannot start: {self._error}") from self._error
        return self.broker_server.bootstrap_servers

    def _run(self) -> None:
        import asyncio

        loop_factory: Callable[[], asyncio.AbstractEventLoop]
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = asyncio.new_event_loop
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the embedded broker failed")

    async def _main(self) -> None:
        import asyncio

        from kafkacompat.broker_server import BrokerServer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        broker_server = BrokerServer(self._config, engine=self._storage, data_dir=self._data_dir)
        try:
            await broker_server.startup()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.broker_server = broker_server
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await broker_server.shutdown()

    def _request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        # RuntimeError: the loop already closed, so the thread is ending anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    def stop(self, timeout: float) -> None:
        self._request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise BrokerStopError(f"the embedded broker did not stop within {timeout:.0f} s")


class _ProcessBroker:
    """``python -m kafkacompat serve`` as a child; its log is drained by a reader thread
    (a full pipe would block the broker) and kept, the last lines, for error messages."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
        self._listening = threading.Event()
        self._bootstrap: str | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float) -> str:
        env = dict(os.environ)
        # The child must import this very package, installed or not.
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        process = subprocess.Popen(
            self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self._process = process
        self._reader = threading.Thread(
            target=self._read_log, name="kafkacompat-broker-log", daemon=True
        )
        self._reader.start()
        if not self._listening.wait(timeout):
            process.kill()
            process.wait(timeout)
            raise BrokerStartError(
                f"the broker did not start within {timeout:.0f} s:\n{self.log_tail()}"
            )
        if self._bootstrap is None:  # the log ended: the child exited
            code = process.wait(timeout)
            raise BrokerStartError(f"the broker exited with {code}:\n{self.log_tail()}")
        return self._bootstrap

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self._process.stdout as stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                self._lines.append(line)
                log.debug("broker: %s", line)
                if self._bootstrap is None:
                    found = _LISTENING.search(line)
                    if found:
                        self._bootstrap = found.group(1)
                        self._listening.set()
        self._listening.set()  # EOF: start() stops waiting either way

    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def stop(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if os.name == "posix":
                process.send_signal(signal.SIGTERM)
            else:
                process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
                raise BrokerStopError(
                    f"the broker ignored SIGTERM for {timeout:.0f} s and was killed:\n"
                    + self.log_tail()
                ) from None
        if self._reader is not None:
            self._reader.join(timeout)
        if process.returncode != 0:
            raise BrokerStopError(
                f"the broker exited with {process.returncode}:\n{self.log_tail()}"
            )
