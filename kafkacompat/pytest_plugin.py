"""A pytest plugin: Kafka brokers as fixtures, registered through the ``pytest11`` entry point,
so installing kafkacompat is all it takes.

Fixtures:

* ``kafka`` (session): one :class:`~kafkacompat.EmbeddedKafka` for the whole run, started
  on first use and stopped at the end of the session;
* ``kafka_broker``: the broker *this test* uses: the session's, or one of its own when the
  test is marked ``kafka_broker(per_test=True)`` (or the run has ``--kafka-per-test``);
* ``kafka_bootstrap``: that broker's ``bootstrap.servers`` string;
* ``kafka_topic_factory``: ``create(partitions=1, configs=None)`` makes a topic with a name
  no other test uses, on that broker, and returns the name;
* ``kafka_topic``: one such topic.

The marker ``@pytest.mark.kafka_broker(per_test=True, configs={...}, storage=..., mode=...)``
shapes the broker a test gets.  With ``per_test=False`` the test shares a broker with every
other test asking for the same settings (a broker per distinct setting, for the session).

Options (each also an ini key): ``--kafka-mode thread|process`` (``kafka_mode``),
``--kafka-storage memory|disk`` (``kafka_storage``), ``--kafka-config KEY=VALUE``, repeatable
(``kafka_configs``, one per line), and ``--kafka-per-test``.

Nothing here costs anything until a test asks for a fixture: this module imports only pytest
at load time, and no broker starts before it is requested.  ``-p no:kafkacompat`` turns the
plugin off.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kafkacompat.embedded import ConfigValue, EmbeddedKafka, Mode, Storage

MARKER = "kafka_broker"
_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")
_MAX_TOPIC_NAME = 249  # Kafka's limit


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kafkacompat", "Kafka brokers as fixtures (kafkacompat)")
    group.addoption(
        "--kafka-mode",
        choices=("thread", "process"),
        default=None,
        help="run brokers in a thread of this process (default) or as child processes",
    )
    group.addoption(
        "--kafka-storage",
        choices=("memory", "disk"),
        default=None,
        help="keep brokers' data in memory (default) or on disk in a temporary directory",
    )
    group.addoption(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a broker config by Kafka's name, for every broker (repeatable)",
    )
    group.addoption(
        "--kafka-per-test",
        action="store_true",
        default=False,
        help="give every test using kafka_broker/kafka_bootstrap/kafka_topic its own broker",
    )
    parser.addini("kafka_mode", "default for --kafka-mode", default="thread")
    parser.addini("kafka_storage", "default for --kafka-storage", default="memory")
    parser.addini("kafka_configs", "broker configs, KEY=VALUE, one a line", type="linelist")


def pytest_configure(config: pytest.Config) -> None:
    # Checked now, so a bad option fails the run at once, not at the first fixture.
    config.stash[_SETTINGS] = settings_from(config)
    config.addinivalue_line(
        "markers",
        f"{MARKER}(per_test=True, configs=None, storage=None, mode=None): the Kafka broker "
        "this test's kafka_broker/kafka_bootstrap/kafka_topic fixtures use; per_test=False "
        "shares one with the other tests asking for the same settings",
    )


@dataclass(frozen=True)
class BrokerSettings:
    mode: Mode
    storage: Storage
    configs: tuple[tuple[str, str], ...]

    def with_marker(self, kwargs: Mapping[str, Any]) -> BrokerSettings:
        unknown = set(kwargs) - {"per_test", "configs", "storage", "mode"}
        if unknown:
            raise pytest.UsageError(f"{MARKER} marker: unknown arguments {sorted(unknown)}")
        from kafkacompat.embedded import config_string

        configs = dict(self.configs)
        configs.update({k: config_string(v) for k, v in (kwargs.get("configs") or {}).items()})
        return replace(
            self,
            mode=kwargs.get("mode") or self.mode,
            storage=kwargs.get("storage") or self.storage,
            configs=tuple(sorted(configs.items())),
        )

    def broker(self) -> EmbeddedKafka:
        from kafkacompat.embedded import EmbeddedKafka

        return EmbeddedKafka(mode=self.mode, storage=self.storage, configs=dict(self.configs))


def _parse_configs(lines: list[str], where: str) -> dict[str, str]:
    configs = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"{where}: expected KEY=VALUE, got {line!r}")
        configs[key.strip()] = value.strip()
    return configs


def settings_from(config: pytest.Config) -> BrokerSettings:
    """The run's defaults: ini keys, overridden by the command line."""
    mode = config.getoption("kafka_mode") or config.getini("kafka_mode")
    storage = config.getoption("kafka_storage") or config.getini("kafka_storage")
    if mode not in ("thread", "process"):
        raise pytest.UsageError(f"kafka_mode must be thread or process, not {mode!r}")
    if storage not in ("memory", "disk"):
        raise pytest.UsageError(f"kafka_storage must be memory or disk, not {storage!r}")
    configs = _parse_configs(config.getini("kafka_configs"), "kafka_configs")
    configs.update(_parse_configs(config.getoption("kafka_config"), "--kafka-config"))
    return BrokerSettings(mode, storage, tuple(sorted(configs.items())))


_SETTINGS = pytest.StashKey[BrokerSettings]()


class BrokerPool:
    """The session's shared brokers, one per distinct settings, started on first use."""

    def __init__(self, defaults: BrokerSettings) -> None:
        self.defaults = defaults
        self._brokers: dict[BrokerSettings, EmbeddedKafka] = {}

    def shared(self, settings: BrokerSettings) -> EmbeddedKafka:
        broker = self._brokers.get(settings)
        if broker is None:
            broker = settings.broker().start()
            self._brokers[settings] = broker
        return broker

    def stop_all(self) -> None:
        brokers = list(self._brokers.values())
        self._brokers.clear()
        errors = []
        for broker in brokers:
            try:
                broker.stop()
            except Exception as exc:  # stop the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def kafka_broker_pool(pytestconfig: pytest.Config) -> Iterator[BrokerPool]:
    """The session's shared brokers (the plugin's bookkeeping; tests use the fixtures below)."""
    pool = BrokerPool(pytestconfig.stash[_SETTINGS])
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def kafka(kafka_broker_pool: BrokerPool) -> EmbeddedKafka:
    """One broker for the whole session, as the command line and ini keys configure it."""
    return kafka_broker_pool.shared(kafka_broker_pool.defaults)


@pytest.fixture
def kafka_broker(
    request: pytest.FixtureRequest, kafka_broker_pool: BrokerPool
) -> Iterator[EmbeddedKafka]:
    """The broker this test uses: its own when marked ``kafka_broker(per_test=True)`` or run
    with ``--kafka-per-test``, else a shared one (the session's ``kafka`` unless the marker
    asks for other settings)."""
    marker = request.node.get_closest_marker(MARKER)
    settings = kafka_broker_pool.defaults
    per_test = bool(request.config.getoption("kafka_per_test"))
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"{MARKER} marker takes keyword arguments only")
        settings = settings.with_marker(marker.kwargs)
        per_test = bool(marker.kwargs.get("per_test", True))
    if not per_test:
        yield kafka_broker_pool.shared(settings)
        return
    broker = settings.broker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: EmbeddedKafka) -> str:
    """``bootstrap.servers`` for this test's broker."""
    return kafka_broker.bootstrap_servers


TopicFactory = Callable[..., str]


@pytest.fixture
def kafka_topic_factory(
    request: pytest.FixtureRequest, kafka_broker: EmbeddedKafka
) -> TopicFactory:
    """``create(partitions=1, configs=None, *, prefix=None) -> name``: a new topic on this
    test's broker, named after the test and unique across the session."""
    counter = itertools.count()
    test_name = _TOPIC_CHARS.sub("-", request.node.name).strip("-.") or "topic"

    def create(
        partitions: int = 1,
        configs: Mapping[str, ConfigValue] | None = None,
        *,
        prefix: str | None = None,
    ) -> str:
        stem = _TOPIC_CHARS.sub("-", prefix) if prefix is not None else test_name
        suffix = f"-{next(counter)}-{uuid.uuid4().hex[:8]}"
        name = stem[: _MAX_TOPIC_NAME - len(suffix)] + suffix
        kafka_broker.create_topic(name, partitions=partitions, configs=configs)
        return name

    return create


@pytest.fixture
def kafka_topic(kafka_topic_factory: TopicFactory) -> str:
    """A new one-partition topic on this test's broker."""
    return kafka_topic_factory()
