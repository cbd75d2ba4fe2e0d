"""Every client's records read back, byte-exact, by every client, uncompressed and in each
codec (all four, from all five clients)."""

from __future__ import annotations

import pytest

from interop.clients import CLIENTS, CODECS, consume, require
from interop.conftest import BrokerProcess
from interop.records import ProduceOnce, assert_read_back, standard_records


@pytest.fixture(scope="module")
def produced(broker: BrokerProcess) -> ProduceOnce:
    return ProduceOnce(broker.bootstrap)


@pytest.mark.parametrize("codec", ["none", *CODECS])
@pytest.mark.parametrize("consumer", CLIENTS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_round_trip(
    produced: ProduceOnce, broker: BrokerProcess, producer: str, consumer: str, codec: str
) -> None:
    require(producer, consumer)
    batch = produced.get(producer, standard_records(), compression=codec)
    if producer != "kcat":  # kcat does not report offsets
        assert batch.offsets == list(range(len(batch.records)))
    read = consume(consumer, broker.bootstrap, batch.topic, 0, 0, len(batch.records))
    assert_read_back(producer, consumer, batch.records, read, 0, batch.window_ms)
