"""Every generated message, every version: random instance -> encode -> decode == instance."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.strategies import message_strategy
from tests.schemas import all_specs, require_schemas

EXAMPLES = int(os.environ.get("ROUNDTRIP_EXAMPLES", "15"))

CASES = [(spec, v) for spec in all_specs() for v in spec.versions]


def test_every_schema_was_found() -> None:
    require_schemas()
    # 88 APIs (requests and responses), 2 headers and the data/internal-topic records.
    assert len({s.api_key for s in all_specs() if s.kind == "request"}) >= 85
    assert len(CASES) > 600


@pytest.mark.parametrize(("spec", "version"), CASES, ids=[f"{s.name}-v{v}" for s, v in CASES])
def test_roundtrip(spec: Any, version: int) -> None:
    strategy = message_strategy(spec, version)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        message = data.draw(strategy)
        encoded = message.encode(version)
        decoded = type(message).decode(encoded, version)
        assert decoded == message
        # Encoding is deterministic, so the decoded copy re-encodes to the same bytes.
        assert decoded.encode(version) == encoded

    check()
