"""BrokerConfig: server.properties as Java reads it, Kafka's names, types, defaults and
validation, listeners, and the node id."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kafkacompat.config import (
    BROKER_CONFIGS,
    BrokerConfig,
    Listener,
    parse_listener,
    parse_server_properties,
    read_server_properties,
)
from kafkacompat.storage.config import InvalidConfigError

# -- the file format ------------------------------------------------------------------------


def test_comments_blank_lines_and_separators() -> None:
    text = (
        "# a comment\n"
        "! also a comment\n"
        "\n"
        "   \t\n"
        "equals=1\n"
        "colon: 2\n"
        "space 3\n"
        "tab\t4\n"
        "  indented = 5\n"
        "spaced   =   6\n"
        "no.value\n"
        "empty=\n"
        "eq.in.value=a=b:c\n"
    )
    assert parse_server_properties(text) == {
        "equals": "1",
        "colon": "2",
        "space": "3",
        "tab": "4",
        "indented": "5",
        "spaced": "6",
        "no.value": "",
        "empty": "",
        "eq.in.value": "a=b:c",
    }


def test_escapes() -> None:
    text = (
        "tab=a\\tb\n"
        "newline=a\\nb\n"
        "unicode=caf\\u00e9\n"
        "backslash=C:\\\\data\n"
        "other=\\q\\#\n"
        "key\\=with\\:separators\\ and\\ spaces=v\n"
        "trailing.space=v \n"
        "\\#not.a.comment=x\n"
    )
    assert parse_server_properties(text) == {
        "tab": "a\tb",
        "newline": "a\nb",
        "unicode": "café",
        "backslash": "C:\\data",
        "other": "q#",
        "key=with:separators and spaces": "v",
        "trailing.space": "v ",  # Java keeps trailing whitespace; parsing a value trims it
        "#not.a.comment": "x",
    }


def test_continuation_lines() -> None:
    text = (
        "listeners=PLAINTEXT://127.0.0.1:9092,\\\n"
        "          CONTROLLER://127.0.0.1:9093\n"
        "even=ends with a backslash\\\\\n"
        "next=1\n"
        "# a comment ending in a backslash does not continue \\\n"
        "after.comment=2\n"
        "last=continued at the end \\"
    )
    assert parse_server_properties(text) == {
        "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        "even": "ends with a backslash\\",
        "next": "1",
        "after.comment": "2",
        "last": "continued at the end ",
    }


def test_line_endings_and_later_keys_win() -> None:
    assert parse_server_properties("a=1\r\nb=2\rc=3\na=4") == {"a": "4", "b": "2", "c": "3"}


def test_malformed_unicode_escape_names_the_line() -> None:
    with pytest.raises(InvalidConfigError, match=r"my.properties line 2: malformed \\uXXXX"):
        parse_server_properties("a=1\nb=\\u00zz\n", "my.properties")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match=r"cannot read config file .*missing\.properties"):
        read_server_properties(tmp_path / "missing.properties")
    latin1 = tmp_path / "latin1.properties"
    latin1.write_bytes(b"broker.rack=caf\xe9\n")
    with pytest.raises(InvalidConfigError, match="is not UTF-8"):
        read_server_properties(latin1)


def test_kafkas_own_kraft_server_properties(tmp_path: Path) -> None:
    """The shape of config/server.properties as Kafka 4.0 ships it."""
    path = tmp_path / "server.properties"
    path.write_text(
        "############################# Server Basics #############################\n"
        "process.roles=broker,controller\n"
        "node.id=1\n"
        "controller.quorum.bootstrap.servers=localhost:9093\n"
        "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        "advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n"
        "num.network.threads=3\n"
        "num.io.threads=8\n"
        "socket.send.buffer.bytes=102400\n"
        "socket.receive.buffer.bytes=102400\n"
        "socket.request.max.bytes=104857600\n"
        "log.dirs=/tmp/kraft-combined-logs\n"
        "num.partitions=1\n"
        "num.recovery.threads.per.data.dir=1\n"
        "offsets.topic.replication.factor=1\n"
        "share.coordinator.state.topic.replication.factor=1\n"
        "share.coordinator.state.topic.min.isr=1\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "log.retention.hours=168\n"
        "log.segment.bytes=1073741824\n"
        "log.retention.check.interval.ms=300000\n"
    )
    config = BrokerConfig.load(path)
    assert config.unknown == []
    assert config.node_id == 1
    # The controller listener is KRaft's, not ours to serve or advertise.
    assert config.listeners == [Listener("PLAINTEXT", "", 9092)]
    assert config.advertised_listeners == [Listener("PLAINTEXT", "localhost", 9092)]
    assert config.log_dir == Path("/tmp/kraft-combined-logs")
    assert config.get("log.retention.hours") == 168


def test_precedence_base_then_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text("num.partitions=2\nlog.retention.hours=10\nnode.id=4\n")
    config = BrokerConfig.load(
        path,
        overrides={"num.partitions": "3"},
        base={"num.partitions": "1", "node.id": "9", "delete.topic.enable": "false"},
    )
    assert config.get("num.partitions") == 3
    assert config.get("log.retention.hours") == 10
    assert config.node_id == 4
    assert config.get("delete.topic.enable") is False


# -- values ---------------------------------------------------------------------------------


def test_defaults_are_kafkas() -> None:
    config = BrokerConfig()
    assert config.get("num.partitions") == 1
    assert config.get("connections.max.idle.ms") == 600_000
    assert config.get("socket.request.max.bytes") == 104_857_600
    assert config.get("auto.create.topics.enable") is True
    assert config.get("advertised.listeners") is None
    assert config.value_string("listener.security.protocol.map") == (
        "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    # Every default in the table parses and passes its own validator.
    for name, key in BROKER_CONFIGS.items():
        if key.default is not None:
            config.get(name)


def test_values_are_trimmed_and_typed() -> None:
    config = BrokerConfig(
        {
            "num.partitions": " 7 ",
            "auto.create.topics.enable": "FALSE",
            "sasl.enabled.mechanisms": " PLAIN , SCRAM-SHA-256 ,",
            "log.flush.scheduler.interval.ms": str(2**63 - 1),
            "offsets.topic.replication.factor": "+1",
        }
    )
    assert config.get("num.partitions") == 7
    assert config.get("auto.create.topics.enable") is False
    assert config.get("sasl.enabled.mechanisms") == ("PLAIN", "SCRAM-SHA-256")
    assert config.get("log.flush.scheduler.interval.ms") == 2**63 - 1
    assert config.get("offsets.topic.replication.factor") == 1
    assert config.value_string("num.partitions") == " 7 "  # as given, for DescribeConfigs


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("num.partitions", "abc", "Not a number of type INT"),
        ("num.partitions", "1.5", "Not a number of type INT"),
        ("num.partitions", "1_000", "Not a number of type INT"),
        ("num.partitions", "0", "at least 1"),
        ("num.partitions", "", "Not a number of type INT"),
        ("node.id", str(2**31), "Not a number of type INT"),
        ("offsets.topic.replication.factor", "40000", "Not a number of type SHORT"),
        ("connections.max.idle.ms", str(2**63), "Not a number of type LONG"),
        ("auto.create.topics.enable", "yes", "either true or false"),
        ("log.message.timestamp.type", "Now", "one of: CreateTime, LogAppendTime"),
        ("socket.request.max.bytes", "0", "at least 1"),
        ("log.retention.hours", "soon", ""),
        ("log.segment.bytes", "12", ""),
        ("listeners", "", "empty"),
        ("listeners", "127.0.0.1:9092", "NAME://host:port"),
        ("listeners", "PLAINTEXT://::1:9092", "IPv6 address goes in brackets"),
        ("listeners", "PLAINTEXT://host:65536", "port from 0 to 65535"),
        ("listeners", "PLAINTEXT://host:-1", "NAME://host:port"),
        ("advertised.listeners", "PLAINTEXT://host", "NAME://host:port"),
        ("listener.security.protocol.map", "PLAINTEXT", "NAME:PROTOCOL"),
        ("listener.security.protocol.map", "PLAINTEXT:HTTP", "NAME:PROTOCOL"),
    ],
)
def test_invalid_values_name_the_key(name: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        BrokerConfig({name: value})
    message = str(caught.value)
    assert name in message and reason in message


def test_unknown_keys_are_kept_not_fatal() -> None:
    config = BrokerConfig({"zookeeper.connect": "localhost:2181", "num.partitions": "2"})
    assert config.unknown == ["zookeeper.connect"]
    assert config.props["zookeeper.connect"] == "localhost:2181"
    assert config.value_string("zookeeper.connect") == "localhost:2181"
    assert config.get("num.partitions") == 2


# -- listeners ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("PLAINTEXT://127.0.0.1:9092", ("PLAINTEXT", "127.0.0.1", 9092)),
        ("PLAINTEXT://:9092", ("PLAINTEXT", "", 9092)),
        ("PLAINTEXT://0.0.0.0:0", ("PLAINTEXT", "0.0.0.0", 0)),
        ("PLAINTEXT://[::1]:9092", ("PLAINTEXT", "::1", 9092)),
        ("PLAINTEXT://[::]:9092", ("PLAINTEXT", "::", 9092)),
        ("PLAINTEXT://[fe80::1%eth0]:9092", None),
        ("INTERNAL_1://kafka.example.com:19092", ("INTERNAL_1", "kafka.example.com", 19092)),
        (" PLAINTEXT://localhost:9092 ", ("PLAINTEXT", "localhost", 9092)),
        ("PLAINTEXT://::1:9092", None),
        ("PLAINTEXT://localhost", None),
        ("://localhost:9092", None),
        ("PLAINTEXT://localhost:99999", None),
    ],
)
def test_parse_listener(text: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_listener(text) == parsed


def test_advertised_listeners_default_to_listeners_with_wildcards_replaced() -> None:
    assert BrokerConfig().advertised_listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    # Kafka's sample server.properties spelling binds every interface: clients on other hosts
    # must be sent to this machine's name, not to their own loopback.
    for host in ("0.0.0.0", "", "[::]"):
        config = BrokerConfig({"listeners": f"PLAINTEXT://{host}:9093"})
        assert config.advertised_listeners == [Listener("PLAINTEXT", socket.getfqdn(), 9093)]
    config = BrokerConfig({"listeners": "PLAINTEXT://[::1]:9094"})
    assert config.listeners == [Listener("PLAINTEXT", "::1", 9094)]
    assert config.advertised_listeners == [Listener("PLAINTEXT", "::1", 9094)]


def test_explicit_advertised_listeners() -> None:
    config = BrokerConfig(
        {
            "listeners": "PLAINTEXT://0.0.0.0:9092",
            "advertised.listeners": "PLAINTEXT://kafka.example.com:19092",
        }
    )
    assert config.listeners == [Listener("PLAINTEXT", "0.0.0.0", 9092)]
    assert config.advertised_listeners == [Listener("PLAINTEXT", "kafka.example.com", 19092)]


def test_advertised_listeners_refuse_the_meta_address() -> None:
    with pytest.raises(
        InvalidConfigError, match=r"cannot use the nonroutable meta-address 0\.0\.0\.0"
    ):
        BrokerConfig(
            {"listeners": "PLAINTEXT://:9092", "advertised.listeners": "PLAINTEXT://0.0.0.0:9092"}
        )
    # An empty advertised host is resolved, as Kafka's withWildcardHostnamesResolved does.
    config = BrokerConfig(
        {"listeners": "PLAINTEXT://:9092", "advertised.listeners": "PLAINTEXT://:9092"}
    )
    assert config.advertised_listeners == [Listener("PLAINTEXT", socket.getfqdn(), 9092)]


def test_listener_names_map_to_protocols() -> None:
    config = BrokerConfig(
        {
            "listeners": "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9094",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        }
    )
    assert [listener.name for listener in config.listeners] == ["INTERNAL", "EXTERNAL"]


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"listeners": "SSL://127.0.0.1:9093"}, "listener SSL uses security protocol SSL"),
        (
            {"listeners": "PLAINTEXT://:9092,SASL_SSL://:9093"},
            "listener SASL_SSL uses security protocol SASL_SSL",
        ),
        ({"listeners": "INTERNAL://:9092"}, "no security protocol defined for listener INTERNAL"),
        (
            {"listeners": "PLAINTEXT://:9092,PLAINTEXT://:9093"},
            "listener name PLAINTEXT appears more than once",
        ),
        ({"listeners": "CONTROLLER://:9093"}, "at least one broker listener"),
        (
            {"advertised.listeners": "SSL://kafka:9093"},
            "advertised.listeners: listener SSL uses security protocol SSL",
        ),
        (
            {
                "listeners": "PLAINTEXT://:9092",
                "advertised.listeners": "OTHER://kafka:9092",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
            },
            "advertised.listeners: listener OTHER is not in listeners",
        ),
    ],
)
def test_listeners_we_cannot_serve_are_refused(props: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        BrokerConfig(props)


def test_controller_listener_with_the_default_map_is_plaintext_and_skipped() -> None:
    config = BrokerConfig({"listeners": "CONTROLLER://:9093,PLAINTEXT://127.0.0.1:9092"})
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    assert config.advertised_listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]


# -- data directory and identity ----------------------------------------------------------


def test_log_dirs() -> None:
    assert BrokerConfig().log_dir == Path("/tmp/kafka-logs")
    assert BrokerConfig({"log.dir": "/a"}).log_dir == Path("/a")
    assert BrokerConfig({"log.dir": "/a", "log.dirs": "/b"}).log_dir == Path("/b")
    assert BrokerConfig({"log.dirs": " /c , "}).log_dir == Path("/c")


def test_two_log_dirs_are_refused_clearly() -> None:
    with pytest.raises(InvalidConfigError, match=r"log.dirs: .*one data directory.*\(/a, /b\)"):
        BrokerConfig({"log.dirs": "/a,/b"})


@pytest.mark.parametrize(
    ("props", "node_id"),
    [
        ({}, 1),
        ({"node.id": "3"}, 3),
        ({"broker.id": "5"}, 5),
        ({"node.id": "6", "broker.id": "6"}, 6),
        ({"broker.id": "0"}, 0),
    ],
)
def test_node_id_and_broker_id_are_synonyms(props: dict[str, str], node_id: int) -> None:
    assert BrokerConfig(props).node_id == node_id


def test_node_id_and_broker_id_must_agree() -> None:
    with pytest.raises(
        InvalidConfigError, match=r"node.id \(1\) and broker.id \(2\) must be equal"
    ):
        BrokerConfig({"node.id": "1", "broker.id": "2"})
    with pytest.raises(InvalidConfigError, match=r"broker\.id"):
        BrokerConfig({"broker.id": "-1"})
    with pytest.raises(InvalidConfigError, match=r"node\.id.*at least 0"):
        BrokerConfig({"node.id": "-1"})
