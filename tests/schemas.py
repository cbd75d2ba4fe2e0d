"""Where the tests find Kafka's JSON schemas, and the generator's model of them.

The schemas are input data kept outside the repository (``../shared/kafka-message-schemas``
beside the checkout, or ``$KAFKA_SCHEMA_DIR``).  Tests that need them skip, saying why,
when the folder is absent.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DIR = Path(
    os.environ.get("KAFKA_SCHEMA_DIR", REPO.parent / "shared" / "kafka-message-schemas")
)

sys.path.insert(0, str(REPO / "scripts"))

import generate_protocol  # noqa: E402
import kafka_schema  # noqa: E402
from generate_protocol import ident  # noqa: E402

__all__ = [
    "SCHEMA_DIR",
    "all_specs",
    "generate_protocol",
    "ident",
    "kafka_schema",
    "require_schemas",
]


def require_schemas() -> Path:
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Kafka's schema folder is not at {SCHEMA_DIR} (set KAFKA_SCHEMA_DIR)")
    return SCHEMA_DIR


@cache
def all_specs() -> list[kafka_schema.MessageSpec]:
    if not SCHEMA_DIR.is_dir():
        return []
    return kafka_schema.load_all(SCHEMA_DIR)
