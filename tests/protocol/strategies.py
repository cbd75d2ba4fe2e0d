"""Hypothesis strategies for any generated message at any version, built from the schema model."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.schemas import ident, kafka_schema

INTS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def message_module(spec: kafka_schema.MessageSpec) -> Any:
    pkg = "internal_topics" if spec.source and _is_internal(spec) else "messages"
    return importlib.import_module(
        f"kafkacompat.protocol.{pkg}.{kafka_schema.snake_case(spec.name)}"
    )


def _is_internal(spec: kafka_schema.MessageSpec) -> bool:
    from tests.schemas import SCHEMA_DIR

    return (SCHEMA_DIR / "internal-topics" / spec.source).exists()


def primitive(t: str, nullable: bool) -> st.SearchStrategy[Any]:
    if t == "bool":
        s: st.SearchStrategy[Any] = st.booleans()
    elif t in INTS:
        lo, hi = INTS[t]
        s = st.integers(lo, hi)
    elif t == "float64":
        s = st.floats(allow_nan=False)
    elif t == "string":
        s = st.text(max_size=12)
    elif t == "uuid":
        s = st.uuids()
    elif t in ("bytes", "records"):
        s = st.binary(max_size=24)
    else:
        raise ValueError(t)
    return st.none() | s if nullable else s


Override = Callable[[kafka_schema.FieldSpec], "st.SearchStrategy[Any] | None"]


def struct_strategy(
    module: Any,
    struct: kafka_schema.StructSpec,
    version: int,
    depth: int = 0,
    override: Override | None = None,
) -> st.SearchStrategy[Any]:
    cls = getattr(module, struct.name)
    kwargs = {
        ident(f.name): field_strategy(module, f, version, depth, override)
        for f in struct.fields
        if f.present(version)
    }
    return st.builds(cls, **kwargs)


def field_strategy(
    module: Any, f: kafka_schema.FieldSpec, version: int, depth: int, override: Override | None
) -> st.SearchStrategy[Any]:
    nullable = f.nullable(version)
    special = override(f) if override is not None else None
    if special is not None:
        return special
    if f.struct is not None:
        elem = struct_strategy(module, f.struct, version, depth + 1, override)
    else:
        elem = primitive(f.element_type, False)
    if f.struct is None and not f.is_array:
        return primitive(f.type, nullable)
    s = st.lists(elem, max_size=3 if depth < 2 else 1) if f.is_array else elem
    return st.none() | s if nullable else s


def message_strategy(
    spec: kafka_schema.MessageSpec, version: int, override: Override | None = None
) -> st.SearchStrategy[Any]:
    """Random instances of ``spec`` at ``version``; ``override`` may pick a field's strategy."""
    return struct_strategy(message_module(spec), spec.root, version, 0, override)
