"""Connection limits as Kafka's ConnectionQuotas enforces them, with real sockets against a
broker process: max.connections (connections over it wait in the backlog), per listener, the
inter-broker listener's exemption, max.connections.per.ip and its overrides (closed at once,
other addresses unaffected), max.connection.creation.rate (new connections wait), all of them
changed live by IncrementalAlterConfigs, and a low open file limit that clients cannot exhaust.

127.0.0.2 is a loopback address on Linux, so a client bound to it is "another host".
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.config import BrokerConfig
from kafkacompat.connection_quotas import (
    ConnectionQuotas,
    connection_descriptor_budget,
    normalize_host,
)
from kafkacompat.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from kafkacompat.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kafkacompat.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kafkacompat.storage.config import ConfigSource, InvalidConfigError
from tests.server.conftest import StartBroker
from tests.server.helpers import (
    TIMEOUT,
    BrokerProcess,
    Client,
    api_versions_request,
    batch,
    produce,
)

BROKER = 4
SET, DELETE = 0, 1
INVALID_REQUEST = 42
WINDOW = 1.0
"""How long a connection that should wait is watched for an answer it must not get."""

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback on Linux")


class ClientFrom(Client):
    """A client whose socket is bound to ``source`` (another loopback address)."""

    def __init__(self, address: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(address, TIMEOUT, source_address=(source, 0))
        self.sock.settimeout(TIMEOUT)


def served(client: Client) -> bool:
    versions = client.request(api_versions_request(), 3)
    return bool(versions.error_code == 0 and versions.api_keys)


def eventually_served(address: tuple[str, int]) -> None:
    """A new connection is served once the broker has seen earlier ones close (until then,
    a per-IP limit closes it)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        with Client(address) as client:
            try:
                if served(client):
                    return
            except ConnectionError:
                pass
        assert time.monotonic() < deadline, "the per-IP slot was never freed"
        time.sleep(0.05)


def assert_waiting(client: Client) -> None:
    """The connection is open (in the backlog) but its request is not answered."""
    client.send(api_versions_request(), 3)
    client.sock.settimeout(WINDOW)
    try:
        data = client.sock.recv(1)
    except TimeoutError:
        return
    finally:
        client.sock.settimeout(TIMEOUT)
    raise AssertionError(f"a connection over the limit was served or closed: {data!r}")


def answered_after_wait(client: Client) -> bool:
    """The answer to the request :func:`assert_waiting` sent."""
    _, versions = client.receive(18, 3)
    return bool(versions.error_code == 0)


def alter_broker(client: Client, *configs: tuple[str, str | None], resource: str = "1") -> tuple:
    request = IncrementalAlterConfigsRequest(
        resources=[
            AlterConfigsResource(
                resource_type=BROKER,
                resource_name=resource,
                configs=[
                    AlterableConfig(
                        name=name, config_operation=DELETE if value is None else SET, value=value
                    )
                    for name, value in configs
                ],
            )
        ]
    )
    [result] = client.request(request, 1).responses
    return result.error_code, result.error_message


def describe_broker(client: Client, *names: str) -> dict[str, tuple[str | None, int, bool]]:
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsResource(
                resource_type=BROKER, resource_name="1", configuration_keys=list(names)
            )
        ]
    )
    [result] = client.request(request, 4).results
    assert result.error_code == 0
    return {c.name: (c.value, c.config_source, c.read_only) for c in result.configs}


# -- max.connections ----------------------------------------------------------------------------


def test_over_max_connections_a_connection_waits_until_one_closes(
    start_broker: StartBroker,
) -> None:
    broker = start_broker(settings={"max.connections": "3"})
    clients = [Client(broker.address) for _ in range(3)]
    try:
        assert all(served(c) for c in clients)
        with Client(broker.address) as waiting:  # connect() succeeds: the kernel's backlog
            assert_waiting(waiting)
            clients.pop().close()
            assert answered_after_wait(waiting)
        broker.wait_for_log(r"listener PLAINTEXT: max.connections reached")
    finally:
        for client in clients:
            client.close()
    broker.assert_healthy()


def test_listener_max_connections_and_the_inter_broker_listeners_exemption(
    start_broker: StartBroker,
) -> None:
    """EXTERNAL may hold one connection; the broker two.  The inter-broker listener (PLAINTEXT)
    is not held back by max.connections: its connection over it closes EXTERNAL's, the least
    recently used of another listener, as Kafka does."""
    broker = start_broker(
        settings={
            "listeners": "PLAINTEXT://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
            "max.connections": "2",
            "listener.name.external.max.connections": "1",
        }
    )
    line = broker.wait_for_log("listening on")
    internal, external = [
        (host, int(port)) for host, port in re.findall(r"(127\.0\.0\.1):(\d+)", line)[:2]
    ]
    first = Client(external)
    try:
        assert served(first)
        with Client(external) as second:
            assert_waiting(second)  # the listener's own limit
        with Client(internal) as a, Client(internal) as b:
            assert served(a)  # total 2: max.connections reached
            assert served(b)  # the inter-broker listener is exempt ...
            first.assert_closed()  # ... and the other listener's connection made room
    finally:
        first.close()


# -- max.connections.per.ip ---------------------------------------------------------------------


@linux_only
def test_per_ip_limit_closes_the_extra_connection_and_spares_other_addresses(
    start_broker: StartBroker,
) -> None:
    broker = start_broker(
        settings={
            "max.connections.per.ip": "2",
            "max.connections.per.ip.overrides": "127.0.0.3:0,127.0.0.4:3",
        }
    )
    address = broker.address
    clients = [Client(address), Client(address)]
    try:
        assert all(served(c) for c in clients)
        with Client(address) as extra:
            extra.assert_closed(timeout=TIMEOUT)  # at once, not after waiting
        broker.wait_for_log(
            r"Rejected connection from 127\.0\.0\.1, address already has the configured "
            r"maximum of 2 connections"
        )
        with ClientFrom(address, "127.0.0.2") as other:
            assert served(other)
        with ClientFrom(address, "127.0.0.3") as none_allowed:
            none_allowed.assert_closed()
        overridden = [ClientFrom(address, "127.0.0.4") for _ in range(3)]
        try:
            assert all(served(c) for c in overridden)  # its override is above the default
            with ClientFrom(address, "127.0.0.4") as fourth:
                fourth.assert_closed()
        finally:
            for client in overridden:
                client.close()
        clients.pop().close()
        eventually_served(address)  # the closed one's slot is free
    finally:
        for client in clients:
            client.close()
    assert "Traceback" not in broker.log_text()


# -- max.connection.creation.rate ---------------------------------------------------------------


def test_creation_rate_delays_new_connections(start_broker: StartBroker) -> None:
    rate, total = 10, 40
    broker = start_broker(settings={"max.connection.creation.rate": str(rate)})
    started = time.monotonic()
    clients = [Client(broker.address) for _ in range(total)]  # all in the backlog at once
    try:
        for client in clients:
            client.send(api_versions_request(), 3)
        answered = 0
        window_end = started + WINDOW
        for client in clients:
            client.sock.settimeout(max(window_end - time.monotonic(), 0.001))
            try:
                client.sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                break
            answered += 1
        # One second's burst plus a second's refill at most, within the first second.
        assert answered <= 2 * rate + 1, f"{answered} of {total} served within {WINDOW} s"
        for client in clients:  # and the rest are served later, none refused
            client.sock.settimeout(TIMEOUT)
            assert answered_after_wait(client)
    finally:
        for client in clients:
            client.close()


# -- dynamic updates ------------------------------------------------------------------------------


def test_limits_change_live_and_describe_configs_shows_them(start_broker: StartBroker) -> None:
    broker = start_broker()
    with Client(broker.address) as admin:
        assert describe_broker(admin, "max.connections", "max.connections.per.ip") == {
            "max.connections": ("2147483647", ConfigSource.DEFAULT_CONFIG, False),
            "max.connections.per.ip": ("2147483647", ConfigSource.DEFAULT_CONFIG, False),
        }
        assert alter_broker(admin, ("max.connections", "2")) == (0, None)
        assert describe_broker(admin, "max.connections") == {
            "max.connections": ("2", ConfigSource.DYNAMIC_BROKER_CONFIG, False)
        }
        with Client(broker.address) as second:
            assert served(second)
            with Client(broker.address) as third:
                assert_waiting(third)
                # Deleting the dynamic value restores the default: the backlog is let in.
                assert alter_broker(admin, ("max.connections", None)) == (0, None)
                assert answered_after_wait(third)
        # Lowered below the connections open, the least recently active go, as in Kafka.
        idle = [Client(broker.address) for _ in range(2)]
        try:
            assert all(served(c) for c in idle)
            assert alter_broker(admin, ("max.connections", "1")) == (0, None)
            for client in idle:
                client.assert_closed()
            assert served(admin)
        finally:
            for client in idle:
                client.close()
        assert alter_broker(admin, ("max.connections", None)) == (0, None)
        # The cluster default level ("") works too, and the per-IP limit applies at once.
        assert alter_broker(admin, ("max.connections.per.ip", "1"), resource="") == (0, None)
        with Client(broker.address) as over:  # admin already holds 127.0.0.1's one
            over.assert_closed()
        assert alter_broker(admin, ("max.connections.per.ip", None), resource="") == (0, None)
        eventually_served(broker.address)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max.connections", "-1", "Invalid value '-1' for configuration max.connections: "),
        ("max.connection.creation.rate", "x", "Not a number of type INT"),
        (
            "max.connections.per.ip",
            "0",
            "max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides "
            "property is set.",
        ),
        (
            "max.connections.per.ip.overrides",
            "hostName#:100",
            "max.connections.per.ip.overrides contains invalid addresses : hostName#",
        ),
        ("max.connections.per.ip.overrides", "127.0.0.1", "is not of the form host:count"),
        ("listener.name.plaintext.max.connections", "0", "Invalid max.connections 0"),
        ("listener.name.plaintext.max.connection.creation.rate", "-5", "Invalid"),
    ],
)
def test_bad_values_are_refused(
    broker_for_refusals: BrokerProcess, name: str, value: str, message: str
) -> None:
    with Client(broker_for_refusals.address) as admin:
        code, error = alter_broker(admin, (name, value))
        assert code == INVALID_REQUEST
        assert message in error
        assert served(admin)


@pytest.fixture(scope="module")
def broker_for_refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("refusals"))
    try:
        yield process.start()
    finally:
        process.close()


# -- descriptors ------------------------------------------------------------------------------


class LowFdBroker(BrokerProcess):
    """A broker whose soft and hard RLIMIT_NOFILE are ``limit`` (it cannot raise them)."""

    limit = 256

    def command(self) -> list[str]:
        cmd = super().command()
        shim = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.limit}, {self.limit})); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        return [cmd[0], "-c", shim, *cmd[1:]]


def _open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_clients_cannot_take_the_descriptors_storage_needs(tmp_path: Path) -> None:
    broker = LowFdBroker(tmp_path, storage="disk")
    broker.start()
    idle: list[socket.socket] = []
    try:
        broker.wait_for_log(r"soft 256 \(was 256\), hard 256")
        with Client(broker.address) as admin:
            for _ in range(400):  # idle clients, more than the limit allows
                idle.append(socket.create_connection(broker.address, TIMEOUT))
            broker.wait_for_log(r"not accepting connections while \d+ are open")
            assert _open_fds(broker.pid) < LowFdBroker.limit
            response = admin.request(
                CreateTopicsRequest(
                    topics=[CreatableTopic(name="wide", num_partitions=16, replication_factor=1)],
                    timeout_ms=10_000,
                ),
                5,
            )
            assert [(t.name, t.error_code) for t in response.topics] == [("wide", 0)]
            assert produce(admin, "wide", batch(b"kept")).error_code == 0
            time.sleep(1.5)  # the log flusher and the other housekeeping tick meanwhile
        for sock in idle:
            sock.close()
        idle.clear()
        broker.assert_healthy()
        text = broker.log_text()
        assert "Too many open files" not in text and "EMFILE" not in text, text
        assert len(re.findall("not accepting connections while", text)) == 1
    finally:
        for sock in idle:
            sock.close()
        broker.close()


# -- the counting, without sockets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"listener.name.plaintext.max.connections": "abc"}, "Not a number of type INT"),
        ({"max.connections.per.ip": "0"}, "can be set to zero only if"),
        ({"max.connections.per.ip.overrides": "a:1,b"}, "'b' is not of the form host:count"),
    ],
)
def test_bad_static_values_stop_the_broker_from_starting(
    props: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        BrokerConfig(props)


def test_quotas_count_per_listener_and_address() -> None:
    quotas = ConnectionQuotas(
        ["PLAINTEXT", "EXTERNAL"],
        "PLAINTEXT",
        {
            "max.connections": "2",
            "max.connections.per.ip": "1",
            "max.connections.per.ip.overrides": "::ffff:10.0.0.9:0,10.0.0.8:5",
            "listener.name.external.max.connections": "1",
        },
    )
    assert quotas.inc("EXTERNAL", "10.0.0.1", 0.0) is None
    assert quotas.blocked_by("EXTERNAL") == "listener.name.external.max.connections"
    assert quotas.inc("PLAINTEXT", "10.0.0.1", 0.0) == 1  # over the address's limit
    quotas.dec("PLAINTEXT", "10.0.0.1")
    assert quotas.max_for(normalize_host("::ffff:10.0.0.9")) == 0
    assert quotas.max_for("10.0.0.8") == 5
    assert quotas.inc("PLAINTEXT", "10.0.0.8", 0.0) is None
    assert quotas.blocked_by("EXTERNAL") == "max.connections"
    assert quotas.blocked_by("PLAINTEXT") is None  # the inter-broker listener is exempt
    assert quotas.inc("PLAINTEXT", "10.0.0.8", 0.0) is None
    assert quotas.max_connections_exceeded("EXTERNAL")
    assert not quotas.max_connections_exceeded("PLAINTEXT")
    quotas.reconfigure({"max.connections": "10"})
    assert quotas.blocked_by("EXTERNAL") is None
    assert quotas.max_for("10.0.0.8") == 2147483647  # the overrides went with the update


def test_creation_rate_is_a_burst_then_the_rate() -> None:
    quotas = ConnectionQuotas(["PLAINTEXT"], "PLAINTEXT", {"max.connection.creation.rate": "4"})
    now = time.monotonic() + 1.0
    for _ in range(4):
        assert quotas.throttle_delay("PLAINTEXT", now) == 0
        quotas.inc("PLAINTEXT", "10.0.0.1", now)
    assert quotas.throttle_delay("PLAINTEXT", now) == pytest.approx(0.25)
    assert quotas.throttle_delay("PLAINTEXT", now + 0.25) == 0


def test_the_descriptor_budget_leaves_storage_its_reserve() -> None:
    # soft 256: 128 for the storage's pool, 64 for other files, 64 for connections.
    assert connection_descriptor_budget(128, 256) == 64
    assert connection_descriptor_budget(10_000, 20_000) == 20_000 - 10_000 - 2_500
    assert connection_descriptor_budget(0, 1024) == 1024 - 128
    assert connection_descriptor_budget(128, 100) == 1  # never none at all
