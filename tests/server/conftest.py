"""Brokers in child processes, always stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import BrokerProcess

StartBroker = Callable[..., BrokerProcess]


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    """``start_broker(storage="memory", settings={...}, args=[...])``: a running broker."""
    started: list[BrokerProcess] = []

    def start(
        *,
        storage: str = "memory",
        settings: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        **kwargs: Any,
    ) -> BrokerProcess:
        workdir = tmp_path / f"broker{len(started)}"
        workdir.mkdir()
        broker = BrokerProcess(
            workdir, storage=storage, settings=settings, args=args or [], **kwargs
        )
        started.append(broker)
        return broker.start()

    yield start
    for broker in started:
        broker.close()
