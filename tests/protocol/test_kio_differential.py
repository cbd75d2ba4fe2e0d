"""Differential tests against kio, an independent codec generated from the same schemas.

For every (API, version) that kio also implements: a random message encoded by us is
read by kio, every field value is compared, and kio's re-encoding of what it read is
decoded by us back to the original message and is byte-for-byte what we wrote.  A
layout bug that our own round trip cannot see (a field order, a compact/non-compact
choice, a tag number made symmetric in encoder and decoder) fails here.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import io
import os
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from tests.protocol.strategies import message_strategy
from tests.schemas import all_specs, ident

kio_index = pytest.importorskip("kio.index", reason="kio (test dependency) is not installed")
from kio.schema.errors import ErrorCode as KioErrorCode  # noqa: E402
from kio.schema.index import api_key_map, schema_name_map  # noqa: E402
from kio.serial import entity_reader, entity_writer  # noqa: E402
from kio.serial.errors import OutOfBoundValue  # noqa: E402
from kio.static.constants import EntityType  # noqa: E402

EXAMPLES = int(os.environ.get("KIO_EXAMPLES", "6"))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _kio_class(spec: Any, version: int) -> Any:
    if spec.kind == "header":
        name = "request_header" if spec.name == "RequestHeader" else "response_header"
        kind = EntityType.header
    elif spec.kind in ("request", "response"):
        if spec.api_key not in api_key_map:
            return None
        name = api_key_map[spec.api_key]
        kind = EntityType.request if spec.kind == "request" else EntityType.response
    else:
        return None
    # kio's schemas come from a different Kafka release; an unstable latest version
    # may have changed between them, so only released versions are compared.
    if spec.latest_version_unstable and version == spec.valid_versions.high:
        return None
    path = schema_name_map.get(name, {}).get(version, {}).get(kind)
    if path is None:
        return None
    return kio_index._resolve(path)


def _counterpart(name: str, ours: set[str]) -> str | None:
    # kio renames *_ms fields after their timedelta type, and escapes names differently.
    for candidate in (name, name + "_ms", name + "_", name.rstrip("_")):
        if candidate in ours:
            return candidate
    return None


def _kio_struct(annotation: Any) -> Any:
    """The dataclass inside ``X``, ``X | None`` or ``tuple[X, ...]``, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _kio_struct(arg)
        if found is not None:
            return found
    return None


def _same_fields(struct: Any, version: int, kio_cls: Any) -> bool:
    """Whether kio's class has our fields, nested structs included: its schemas come from
    another Kafka release, where a few evolving APIs (share groups, KRaft) renamed fields."""
    ours = {ident(f.name): f for f in struct.fields if f.present(version)}
    hints = typing.get_type_hints(kio_cls)
    theirs = dataclasses.fields(kio_cls)
    if len(theirs) != len(ours):
        return False
    for kf in theirs:
        key = _counterpart(kf.name, set(ours))
        if key is None:
            return False
        f = ours[key]
        if f.struct is not None:
            nested = _kio_struct(hints[kf.name])
            if nested is None or not _same_fields(f.struct, version, nested):
                return False
    return True


def _cases() -> tuple[list[tuple[Any, int, Any]], list[str]]:
    cases, diverged = [], []
    for spec in all_specs():
        for v in spec.versions:
            cls = _kio_class(spec, v)
            if cls is None:
                continue
            if _same_fields(spec.root, v, cls):
                cases.append((spec, v, cls))
            else:
                diverged.append(f"{spec.name} v{v}")
    return cases, diverged


CASES, DIVERGED = _cases()


def test_coverage_is_reported() -> None:
    if not all_specs():
        pytest.skip("Kafka's schema folder is absent")
    apis = {(spec.api_key, spec.kind) for spec, _, _ in CASES}
    print(f"\nkio differential: {len(CASES)} (message, version) pairs over {len(apis)} messages")
    print(f"not compared, kio's schema has other fields: {', '.join(DIVERGED) or 'none'}")
    assert len(CASES) > 500


def kio_values(field: Any) -> st.SearchStrategy[Any] | None:
    """kio types error codes as its own enum, so draw only codes it knows."""
    if field.type == "int16" and field.name.endswith("ErrorCode"):
        return st.sampled_from([int(c) for c in KioErrorCode])
    if field.type == "int64" and ("Timestamp" in field.name or field.name.endswith("TimeMs")):
        # kio reads these as datetimes, which cannot be negative or past year 9999.
        return st.integers(0, 253402300799999)
    if field.type == "int64":
        # ...and durations as timedelta, exact only within a float's 53 bits.
        return st.integers(-(2**52), 2**52)
    return None


def plain(value: Any) -> Any:
    """A kio value in the shape our classes use: ints, lists, bytes, UUIDs."""
    if isinstance(value, datetime.timedelta):
        return round(value / datetime.timedelta(milliseconds=1))
    if isinstance(value, datetime.datetime):
        return round((value - EPOCH) / datetime.timedelta(milliseconds=1))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def compare(ours: Any, theirs: Any, path: str) -> None:
    """Field by field, by position among the fields each side has in this version."""
    if dataclasses.is_dataclass(theirs):
        kio_fields = [f.name for f in dataclasses.fields(theirs)]
        our_values = {f.name: getattr(ours, f.name) for f in dataclasses.fields(ours)}
        for name in kio_fields:
            key = _counterpart(name, set(our_values))
            assert key is not None, f"{path}: kio field {name} has no counterpart"
            compare(our_values[key], getattr(theirs, name), f"{path}.{name}")
        return
    if isinstance(theirs, tuple):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            compare(a, b, f"{path}[{i}]")
        return
    if theirs is None and ours == -1:
        return  # kio reads an int64 time of -1 ("none") as None
    expected = plain(theirs)
    actual = bytes(ours) if isinstance(ours, memoryview | bytearray) else ours
    assert actual == expected, f"{path}: ours {actual!r} != kio {expected!r}"


@pytest.mark.parametrize(
    ("spec", "version", "kio_cls"), CASES, ids=[f"{s.name}-v{v}" for s, v, _ in CASES]
)
def test_against_kio(spec: Any, version: int, kio_cls: Any) -> None:
    strategy = message_strategy(spec, version, kio_values)
    read = entity_reader(kio_cls)
    write = entity_writer(kio_cls)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        ours = data.draw(strategy)
        encoded = ours.encode(version)
        try:
            theirs, size = read(encoded, 0)
        except OutOfBoundValue:
            # kio maps some ints onto timedelta/datetime and rejects values those types
            # cannot hold; such a draw says nothing about either codec.
            reject()
        assert size == len(encoded)
        compare(ours, theirs, spec.name)
        out = io.BytesIO()
        write(out, theirs)
        assert out.getvalue() == encoded
        assert type(ours).decode(out.getvalue(), version) == ours

    check()


def test_ident_matches_kio_names() -> None:
    # Our snake_case names and kio's agree for ordinary fields (kio renames timedelta ones).
    assert ident("ThrottleTimeMs") == "throttle_time_ms"
    assert ident("ISRNodes") == "isr_nodes"
