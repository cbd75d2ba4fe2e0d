"""The pytest plugin, run inside pytest (pytester): which broker each test gets, the marker,
the options, and that tests which ask for no fixture pay for nothing."""

from __future__ import annotations

import pytest

BROKERS_BY_TEST = """
import pytest

brokers = {}


def test_session(kafka, kafka_broker, kafka_bootstrap):
    brokers["session"] = kafka
    assert kafka_broker is kafka and kafka_bootstrap == kafka.bootstrap_servers


@pytest.mark.kafka_broker(configs={"num.partitions": 3})
def test_own(kafka, kafka_broker):
    brokers["own"] = kafka_broker
    assert kafka_broker is not kafka and kafka_broker.running
    assert kafka_broker.configs == {"num.partitions": "3"}


@pytest.mark.kafka_broker(per_test=False, configs={"num.partitions": 2})
def test_shared_1(kafka, kafka_broker):
    brokers["shared_1"] = kafka_broker
    assert kafka_broker is not kafka


@pytest.mark.kafka_broker(per_test=False, configs={"num.partitions": 2})
def test_shared_2(kafka_broker):
    assert kafka_broker is brokers["shared_1"] and kafka_broker.running


def test_after(kafka):
    assert not brokers["own"].running  # stopped at the end of its test
    assert brokers["shared_1"].running  # kept for the session
    assert kafka is brokers["session"]
"""


def test_marker_gives_a_test_its_own_or_a_shared_broker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BROKERS_BY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_per_test_option_and_unique_topics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        seen = []

        def test_one(kafka, kafka_broker, kafka_topic):
            seen.append((kafka_broker, kafka_topic))
            assert kafka_broker is not kafka

        def test_two(kafka_broker, kafka_topic):
            (first, first_topic), = seen
            assert kafka_broker is not first and not first.running
            assert kafka_topic != first_topic
            assert kafka_topic.startswith("test_two-")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--kafka-per-test")
    result.assert_outcomes(passed=2)


def test_options_choose_mode_storage_and_configs(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkafka_configs =\n    num.partitions=5\n    log.retention.ms=1000\n")
    pytester.makepyfile(
        """
        def test_settings(kafka, kafka_topic_factory):
            assert kafka.mode == "process" and kafka.storage == "disk"
            assert kafka.data_dir is not None and (kafka.data_dir / "meta.properties").exists()
            # the command line wins over the ini file
            assert kafka.configs == {"log.retention.ms": "1000", "num.partitions": "7"}
            name = kafka_topic_factory(partitions=2, prefix="orders")
            assert name.startswith("orders-")
            assert (kafka.data_dir / f"{name}-1").is_dir()
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--kafka-mode=process",
        "--kafka-storage",
        "disk",
        "--kafka-config",
        "num.partitions=7",
    )
    result.assert_outcomes(passed=1)


def test_no_fixture_no_broker(pytester: pytest.Pytester) -> None:
    """In a fresh interpreter: the plugin is loaded, yet nothing of the broker is."""
    pytester.makepyfile(
        """
        import sys
        import threading

        def test_plain():
            assert "kafkacompat.pytest_plugin" in sys.modules
            assert "kafkacompat.embedded" not in sys.modules
            assert "kafkacompat.broker" not in sys.modules
            assert not [t for t in threading.enumerate() if t.name.startswith("kafkacompat")]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


def test_bad_marker_and_option_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.kafka_broker(partitions=3)
        def test_typo(kafka_broker):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*kafka_broker marker: unknown arguments*partitions*"])
    assert result.ret != 0
    result = pytester.runpytest("-p", "no:cacheprovider", "--kafka-config", "oops")
    result.stderr.fnmatch_lines(["*expected KEY=VALUE*"])
    assert result.ret != 0
