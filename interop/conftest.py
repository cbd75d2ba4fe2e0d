"""Fixtures for the interop tests: real ``kafkacompat serve`` processes on random ports.

``broker`` is one broker for the whole session (disk storage, a temporary data directory);
tests keep out of each other's way with their own topics (``topic``).  ``broker_factory``
starts more, for tests that restart or configure a broker of their own.  Every broker is
stopped at teardown, SIGKILLed if SIGTERM does not stop it in time, whatever the test did.

After each test the log of every broker is read for what the test left there: a Python
traceback (a handler crashed) or a broker that died fails the test at teardown, with the
log excerpt.  Each test also runs under a SIGALRM watchdog, so no wait is unbounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
TEST_TIMEOUT_S = 150
LISTENING = re.compile(rb"bootstrap\.servers=(\S+):(\d+)\)")


class BrokerProcess:
    """One ``kafkacompat serve`` child: its data directory, settings and log file."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        storage: str = "disk",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.storage = storage
        self.settings = dict(settings or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.checked_bytes = 0
        """How much of the log the health check has read."""
        self.expect_running = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, port: int = 0) -> None:
        """Start and wait for the 'listening' log line; ``port`` 0 picks a free one."""
        assert self.process is None or self.process.poll() is not None, "already running"
        argv = [sys.executable, "-m", "kafkacompat", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--data-dir", str(self.data_dir)]
        argv += ["--storage", self.storage, "--log-level", "info"]
        for key, value in self.settings.items():
            argv += ["--set", f"{key}={value}"]
        with self.log_path.open("ab") as log:
            log.write(f"==== {' '.join(argv)}\n".encode())
            log.flush()
            start_at = log.tell()
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self.expect_running = True
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(start_at)
                found = LISTENING.search(log.read())
            if found:
                self.host, self.port = found.group(1).decode(), int(found.group(2))
                return
            if self.process.poll() is not None:
                self.expect_running = False
                raise RuntimeError(
                    f"broker exited with {self.process.returncode} before listening:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"broker not listening after {START_TIMEOUT_S}s:\n" + self.log_tail())

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send ``signum`` and wait for the exit (SIGKILL after ``timeout_s``); the exit code."""
        self.expect_running = False
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
                raise TimeoutError(
                    f"broker ignored signal {signum} for {timeout_s}s; killed:\n" + self.log_tail()
                ) from None
        return process.returncode

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def restart(self, signum: int = signal.SIGTERM) -> int:
        """Stop with ``signum`` and start again on the same port; the exit code of the stop."""
        code = self.stop(signum)
        self.start(self.port)
        return code

    def log_text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def new_log(self) -> str:
        """The log written since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self.checked_bytes)
            data = log.read()
        self.checked_bytes += len(data)
        return data.decode(errors="replace")


_BROKERS: list[BrokerProcess] = []


def new_broker(folder: Path, **options: object) -> BrokerProcess:
    """A broker (not started) with its data and log under ``folder``, watched by the
    health check; the caller starts it, and stops it in a ``finally``."""
    folder.mkdir(parents=True, exist_ok=True)
    broker = BrokerProcess(folder / "data", folder / "broker.log", **options)  # type: ignore[arg-type]
    _BROKERS.append(broker)
    return broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """The session's broker: disk storage, Kafka's default settings."""
    process = new_broker(tmp_path_factory.mktemp("session-broker"))
    try:
        process.start()
        yield process
    finally:
        code = process.stop()
    # Everything the session did must still allow a clean stop.
    if code != 0 or "stopped cleanly" not in process.new_log():
        pytest.fail(
            f"the session broker did not stop cleanly (exit {code}):\n{process.log_tail()}",
            pytrace=False,
        )


BrokerFactory = Callable[..., BrokerProcess]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start brokers of the test's own: ``broker_factory(storage=..., settings={...})``."""
    started: list[BrokerProcess] = []

    def start(*, storage: str = "disk", settings: Mapping[str, str] | None = None) -> BrokerProcess:
        process = new_broker(
            tmp_path / f"broker-{len(started)}", storage=storage, settings=settings
        )
        started.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (Kafka's legal characters, under 249 of them)."""
    return unique_topic(request.node.name)


def unique_topic(hint: str) -> str:
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", hint).strip("-")[:180]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def broker_health() -> Iterator[None]:
    """Fail a test, at teardown, that left a traceback in a broker log or killed a broker."""
    for process in _BROKERS:
        process.new_log()
    yield
    problems: list[str] = []
    for process in _BROKERS:
        text = process.new_log()
        if "Traceback" in text:
            problems.append(f"traceback in the log of broker {process.bootstrap}:\n{text}")
        if process.expect_running and process.process and process.process.poll() is not None:
            problems.append(
                f"broker {process.bootstrap} died (exit {process.process.returncode}):\n"
                + process.log_tail()
            )
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A watchdog per test: every client call has its own timeout, this is the backstop."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"{item.nodeid} ran over {TEST_TIMEOUT_S}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Belt and braces: no broker outlives the session, even after an internal error."""
    for process in _BROKERS:
        if process.process is not None and process.process.poll() is None:
            os.killpg(process.process.pid, signal.SIGKILL)
