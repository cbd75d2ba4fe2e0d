"""``kafkacompat serve``: how flags, the config file and ``--set`` combine, what a bad setting
does (exit 2, a message naming the key, no traceback), and what the broker advertises."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.cli import broker_config, build_parser
from kafkacompat.config import Listener
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from tests.server.helpers import REPO, TIMEOUT, BrokerProcess, Client


def config_of(*argv: str):  # type: ignore[no-untyped-def]
    return broker_config(build_parser().parse_args(["serve", *argv]))


@pytest.fixture
def properties(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "server.properties"
    path.write_text(
        "# a file as an operator writes it\n"
        "listeners=PLAINTEXT://0.0.0.0:19092\n"
        "num.partitions=4\n"
        "log.retention.hours=12\n"
        "log.dir=/var/lib/from-file\n"
    )
    yield path


# -- precedence -----------------------------------------------------------------------------


def test_defaults() -> None:
    config = config_of()
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    assert config.log_dir == Path("data")
    assert config.get("num.partitions") == 1


def test_file_over_defaults(properties: Path) -> None:
    config = config_of("--config", str(properties))
    assert config.listeners == [Listener("PLAINTEXT", "0.0.0.0", 19092)]
    assert config.get("num.partitions") == 4
    # The file's log.dir is not shadowed by the default log.dirs (log.dirs beats log.dir).
    assert config.log_dir == Path("/var/lib/from-file")


def test_flags_over_file_and_set_over_flags(properties: Path) -> None:
    config = config_of(
        "--config",
        str(properties),
        "--port",
        "0",
        "--data-dir",
        "/flag",
        "--set",
        "num.partitions=9",
        "--set",
        "log.dirs=/set",
    )
    assert config.listeners == [Listener("PLAINTEXT", "0.0.0.0", 0)]  # the file's host kept
    assert config.get("num.partitions") == 9
    assert config.log_dir == Path("/set")
    assert config.get("log.retention.hours") == 12
    assert config_of("--config", str(properties), "--data-dir", "/flag").log_dir == Path("/flag")


def test_host_alone_keeps_the_files_port(properties: Path) -> None:
    config = config_of("--config", str(properties), "--host", "127.0.0.2")
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.2", 19092)]
    assert config_of("--host", "0.0.0.0").listeners == [Listener("PLAINTEXT", "0.0.0.0", 9092)]


def test_host_and_port_change_the_first_broker_listener(tmp_path: Path) -> None:
    path = tmp_path / "kraft.properties"
    path.write_text(
        "listeners=CONTROLLER://:9093,INTERNAL://10.0.0.1:19092,EXTERNAL://:29092\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,"
        "EXTERNAL:PLAINTEXT\n"
    )
    config = config_of("--config", str(path), "--port", "0")
    assert config.props["listeners"] == (
        "CONTROLLER://:9093,INTERNAL://10.0.0.1:0,EXTERNAL://:29092"
    )
    assert config.listeners == [
        Listener("INTERNAL", "10.0.0.1", 0),
        Listener("EXTERNAL", "", 29092),
    ]


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_host(host: str) -> None:
    config = config_of("--host", host, "--port", "9000")
    assert config.props["listeners"] == "PLAINTEXT://[::1]:9000"
    assert config.listeners == [Listener("PLAINTEXT", "::1", 9000)]


def test_set_wins_over_host_and_port() -> None:
    config = config_of("--port", "1234", "--set", "listeners=PLAINTEXT://127.0.0.3:4321")
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.3", 4321)]


def test_set_value_may_contain_equals() -> None:
    config = config_of("--set", "sasl.jaas.config=a=b")
    assert config.props["sasl.jaas.config"] == "a=b"
    assert config.unknown == ["sasl.jaas.config"]


# -- failures, as the process reports them ---------------------------------------------------


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kafkacompat", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "num.partitions=zero"], "Invalid value 'zero' for configuration num.partitions"),
        (
            ["--set", "socket.request.max.bytes=0"],
            "socket.request.max.bytes: Value must be at least 1",
        ),
        (["--set", "log.dirs=/a,/b"], "log.dirs: kafkacompat keeps one data directory"),
        (
            ["--set", "node.id=1", "--set", "broker.id=2"],
            "node.id (1) and broker.id (2) must be equal",
        ),
        (["--set", "listeners=SSL://:9093"], "listener SSL uses security protocol SSL"),
        (["--port", "70000"], "configuration listeners"),
        (["--config", "missing.properties"], "cannot read config file missing.properties"),
    ],
)
def test_invalid_configuration_exits_2(tmp_path: Path, argv: list[str], message: str) -> None:
    result = run_cli("serve", "--storage", "memory", *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "invalid configuration: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing written


def test_invalid_value_in_the_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.properties").write_text("num.partitions=1\nlog.retention.hours = forever\n")
    result = run_cli("serve", "--config", "bad.properties", cwd=tmp_path)
    assert result.returncode == 2
    assert "log.retention.hours" in result.stderr and "forever" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_set_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("serve", "--set", "num.partitions", cwd=tmp_path)
    assert result.returncode == 2
    assert "expected KEY=VALUE" in result.stderr


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--storage", "memory", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_data_dir_of_another_node_exits_1(tmp_path: Path) -> None:
    first = BrokerProcess(tmp_path, storage="disk", settings={"node.id": "1"}).start()
    first.signal()
    assert first.wait() == 0
    result = run_cli(
        "serve", "--port", "0", "--data-dir", "data", "--set", "node.id=2", cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_second_broker_on_the_same_data_dir_exits_1(tmp_path: Path) -> None:
    # Kafka's .lock: two brokers must never write one data directory.
    first = BrokerProcess(tmp_path, storage="disk").start()
    try:
        result = run_cli("serve", "--port", "0", "--data-dir", "data", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "in use by another process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        first.signal()
        assert first.wait() == 0


# -- a running broker ---------------------------------------------------------------------


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[BrokerProcess]]:
    started: list[BrokerProcess] = []
    yield started
    for broker in started:
        broker.close()


def _metadata_brokers(address: tuple[str, int]) -> list[tuple[int, str, int]]:
    with Client(address) as client:
        response = client.request(MetadataRequest(topics=None), 12)
    return [(b.node_id, b.host, b.port) for b in response.brokers]


def test_unknown_keys_are_warned_and_the_broker_runs(
    tmp_path: Path, brokers: list[BrokerProcess]
) -> None:
    broker = BrokerProcess(tmp_path, settings={"zookeeper.connect": "zk:2181", "node.id": "7"})
    brokers.append(broker)
    broker.start()
    assert "unknown broker config zookeeper.connect ignored" in broker.log_text()
    assert _metadata_brokers(broker.address) == [(7, "127.0.0.1", broker.address[1])]


@pytest.mark.parametrize(
    "how",
    [["--host", "0.0.0.0"], ["--set", "listeners=PLAINTEXT://:0"]],
    ids=["host-0.0.0.0", "empty-host"],
)
def test_wildcard_listener_advertises_the_canonical_host_name(
    tmp_path: Path, brokers: list[BrokerProcess], how: list[str]
) -> None:
    broker = BrokerProcess(tmp_path, args=how)
    brokers.append(broker)
    broker.start()
    port = broker.address[1]
    assert port != 0
    # Bound to every interface: advertised as this machine's name (what a client elsewhere can
    # reach), with the port actually bound, and the start-up line says the same.
    host = socket.getfqdn()
    assert _metadata_brokers(("127.0.0.1", port)) == [(1, host, port)]
    assert f"bootstrap.servers={host}:{port}" in broker.log_text()
    assert f"resolved wildcard host to {host}" in broker.log_text()


def test_named_host_is_advertised_by_name(tmp_path: Path, brokers: list[BrokerProcess]) -> None:
    try:
        socket.getaddrinfo("localhost", 0)
    except OSError:
        pytest.skip("localhost does not resolve")
    broker = BrokerProcess(tmp_path, args=["--host", "localhost"])
    brokers.append(broker)
    broker.start()
    assert broker.address[0] == "localhost"
    assert _metadata_brokers(broker.address) == [(1, "localhost", broker.address[1])]


def test_advertised_listeners_from_the_file(tmp_path: Path, brokers: list[BrokerProcess]) -> None:
    (tmp_path / "server.properties").write_text(
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:9093\n"
        "advertised.listeners=PLAINTEXT://kafka.example.com:19092\n"
        "controller.listener.names=CONTROLLER\n"
    )
    broker = BrokerProcess(tmp_path, args=["--config", "server.properties"], port=None)
    brokers.append(broker)
    broker.start()
    assert _metadata_brokers(broker.address) == [(1, "kafka.example.com", 19092)]


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_listener(tmp_path: Path, brokers: list[BrokerProcess]) -> None:
    broker = BrokerProcess(tmp_path, args=["--host", "::1"])
    brokers.append(broker)
    broker.start()
    host, port = broker.address
    assert host == "::1"
    assert _metadata_brokers(("::1", port)) == [(1, "::1", port)]
