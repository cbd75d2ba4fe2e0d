"""EmbeddedKafka itself: both modes, both storages, clean stops, restarts on the same data
directory, and brokers that cannot start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kafkacompat import BrokerStartError, EmbeddedKafka, TopicCreationError
from kafkacompat.embedded import Mode, Storage
from kafkacompat.storage.data_dir import CLEAN_SHUTDOWN_FILE, LOCK_FILE
from tests.embedded.clients import consume, produce

MODES: list[Mode] = ["thread", "process"]


@pytest.mark.parametrize("storage", ["memory", "disk"])
@pytest.mark.parametrize("mode", MODES)
def test_round_trip(mode: Mode, storage: Storage) -> None:
    with EmbeddedKafka(mode=mode, storage=storage, configs={"num.partitions": 2}) as kafka:
        host, port = kafka.bootstrap_servers.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) == kafka.port > 0
        kafka.create_topic("greetings", partitions=3, configs={"retention.ms": 60_000})
        produce(kafka.bootstrap_servers, "greetings", [b"hello", b"world"], partition=2)
        assert consume(kafka.bootstrap_servers, "greetings", 2, partition=2) == [b"hello", b"world"]
        with pytest.raises(TopicCreationError, match="already exists") as refused:
            kafka.create_topic("greetings")
        assert refused.value.error_code == 36  # TOPIC_ALREADY_EXISTS
        if storage == "disk":
            assert kafka.data_dir is not None
            assert (kafka.data_dir / "greetings-2").is_dir()
        else:
            assert kafka.data_dir is None
    assert not kafka.running


@pytest.mark.parametrize("mode", MODES)
def test_disk_restart_keeps_data_and_stops_cleanly(mode: Mode, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedKafka(mode=mode, storage="disk", data_dir=data) as kafka:
        kafka.create_topic("kept")
        produce(kafka.bootstrap_servers, "kept", [b"before restart"])
    assert (data / CLEAN_SHUTDOWN_FILE).exists()  # written last, at a clean stop
    assert not (data / LOCK_FILE).exists() or _lock_is_free(data)
    with EmbeddedKafka(mode=mode, storage="disk", data_dir=data) as kafka:
        assert not (data / CLEAN_SHUTDOWN_FILE).exists()  # consumed at start
        produce(kafka.bootstrap_servers, "kept", [b"after restart"])
        assert consume(kafka.bootstrap_servers, "kept", 2) == [b"before restart", b"after restart"]
    assert data.is_dir()  # a given data directory is the caller's: never removed


def _lock_is_free(data: Path) -> bool:
    import fcntl

    with (data / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
    return True


@pytest.mark.parametrize("mode", MODES)
def test_temporary_data_dir_is_removed_and_stopping_twice_is_harmless(mode: Mode) -> None:
    kafka = EmbeddedKafka(mode=mode, storage="disk")
    kafka.stop()  # never started: nothing to do
    kafka.start()
    temp = kafka.data_dir
    assert temp is not None and (temp / "meta.properties").exists()
    kafka.stop()
    kafka.stop()
    assert not temp.exists()
    assert kafka.data_dir is None and not kafka.running
    with pytest.raises(RuntimeError, match="not running"):
        kafka.bootstrap_servers  # noqa: B018
    # And it starts again, in a fresh directory.
    with kafka:
        assert kafka.data_dir is not None and kafka.data_dir != temp


@pytest.mark.parametrize("mode", MODES)
def test_port_in_use_raises(mode: Mode) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = EmbeddedKafka(mode=mode, port=port, start_timeout=20)
        with pytest.raises(BrokerStartError, match=r"cannot start|exited with 1") as failed:
            kafka.start()
        assert "in use" in str(failed.value) or "address already" in str(failed.value).lower()
        assert not kafka.running


@pytest.mark.parametrize("mode", MODES)
def test_bad_config_raises_naming_the_key(mode: Mode) -> None:
    kafka = EmbeddedKafka(mode=mode, configs={"num.partitions": "many"}, start_timeout=20)
    with pytest.raises(BrokerStartError, match=r"num\.partitions"):
        kafka.start()
    assert not kafka.running


@pytest.mark.parametrize("mode", MODES)
def test_a_data_dir_in_use_raises(mode: Mode, tmp_path: Path) -> None:
    """By another broker of this process (thread), or from another process (the .lock)."""
    with (
        EmbeddedKafka(storage="disk", data_dir=tmp_path),
        pytest.raises(BrokerStartError, match="in use"),
    ):
        EmbeddedKafka(mode=mode, storage="disk", data_dir=tmp_path, start_timeout=20).start()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        EmbeddedKafka(mode="fork")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="storage"):
        EmbeddedKafka(storage="null")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_dir"):
        EmbeddedKafka(storage="memory", data_dir="somewhere")


def test_thread_mode_installs_no_signal_handlers() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with EmbeddedKafka(mode="thread"):
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before


def test_import_kafkacompat_stays_light() -> None:
    """The command line's start-up pays for every module ``import kafkacompat`` loads."""
    code = (
        "import sys, kafkacompat, kafkacompat.pytest_plugin\n"
        "heavy = sorted(m for m in sys.modules if m.startswith('kafkacompat.')"
        " and m not in ('kafkacompat._version', 'kafkacompat.pytest_plugin'))\n"
        "assert not heavy, heavy\n"
        "assert kafkacompat.EmbeddedKafka.__module__ == 'kafkacompat.embedded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("mode", MODES)
def test_a_forgotten_broker_is_stopped_at_exit(mode: Mode, tmp_path: Path) -> None:
    script = (
        "from kafkacompat import EmbeddedKafka\n"
        f"kafka = EmbeddedKafka(mode={mode!r}, storage='disk', data_dir={str(tmp_path)!r})\n"
        "print(kafka.start().port, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    port = int(done.stdout.strip())
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists(), done.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
