"""A model of Kafka's JSON message schemas, as the code generator and the tests see them.

The schema files (``clients/src/main/resources/common/message/*.json`` upstream) are JSON
with ``//`` line comments.  This module only reads them; ``generate_protocol.py`` turns the
model into Python, and the property tests build random messages from the same model so
the two can never disagree about what a version contains.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

PRIMITIVES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "float64",
        "string",
        "uuid",
        "bytes",
        "records",
    }
)


@dataclass(frozen=True)
class Versions:
    """An inclusive version range; ``high`` None means open-ended ("3+")."""

    low: int
    high: int | None

    @staticmethod
    def parse(text: str | None) -> Versions:
        if text is None or text == "none":
            return NO_VERSIONS
        text = text.strip()
        if text.endswith("+"):
            return Versions(int(text[:-1]), None)
        if "-" in text:
            lo, hi = text.split("-")
            return Versions(int(lo), int(hi))
        return Versions(int(text), int(text))

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, int) or self.low < 0:
            return False
        return self.low <= version and (self.high is None or version <= self.high)

    @property
    def empty(self) -> bool:
        return self.low < 0


NO_VERSIONS = Versions(-1, -1)


@dataclass(eq=False)
class FieldSpec:
    name: str
    type: str
    versions: Versions
    nullable_versions: Versions
    tagged_versions: Versions
    tag: int | None
    default: object
    flexible_versions: Versions | None
    about: str
    ignorable: bool
    zero_copy: bool
    struct: StructSpec | None = None

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def element_type(self) -> str:
        return self.type[2:] if self.is_array else self.type

    @property
    def is_struct(self) -> bool:
        return self.element_type not in PRIMITIVES

    def present(self, version: int) -> bool:
        return version in self.versions

    def tagged(self, version: int) -> bool:
        return version in self.tagged_versions

    def nullable(self, version: int) -> bool:
        return version in self.nullable_versions

    def ever_nullable(self) -> bool:
        return not self.nullable_versions.empty


@dataclass(eq=False)
class StructSpec:
    name: str
    fields: list[FieldSpec]
    about: str = ""


@dataclass
class MessageSpec:
    name: str
    kind: str  # request, response, header, data
    api_key: int | None
    valid_versions: Versions
    flexible_versions: Versions
    latest_version_unstable: bool
    listeners: tuple[str, ...]
    root: StructSpec
    structs: dict[str, StructSpec] = field(default_factory=dict)
    source: str = ""

    @property
    def versions(self) -> range:
        hi = self.valid_versions.high
        assert hi is not None
        return range(self.valid_versions.low, hi + 1)

    def flexible(self, version: int) -> bool:
        return version in self.flexible_versions


def strip_comments(text: str) -> str:
    """Removes ``//`` comments that are outside JSON strings."""
    out: list[str] = []
    i = 0
    in_string = False
    n = len(text)
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def load(path: Path) -> MessageSpec:
    raw = json.loads(strip_comments(path.read_text()))
    common: dict[str, dict[str, object]] = {c["name"]: c for c in raw.get("commonStructs", [])}
    structs: dict[str, StructSpec] = {}

    def build_struct(name: str, fields_json: list[dict[str, object]], about: str) -> StructSpec:
        spec = StructSpec(name, [], about)
        structs[name] = spec
        spec.fields = [build_field(f) for f in fields_json]
        return spec

    def build_field(f: dict[str, object]) -> FieldSpec:
        tagged = Versions.parse(f.get("taggedVersions"))  # type: ignore[arg-type]
        versions_text = f.get("versions")
        versions = Versions.parse(versions_text) if versions_text is not None else tagged  # type: ignore[arg-type]
        flex = f.get("flexibleVersions")
        spec = FieldSpec(
            name=str(f["name"]),
            type=str(f["type"]),
            versions=versions,
            nullable_versions=Versions.parse(f.get("nullableVersions")),  # type: ignore[arg-type]
            tagged_versions=tagged,
            tag=f.get("tag"),  # type: ignore[arg-type]
            default=f.get("default"),
            flexible_versions=Versions.parse(flex) if flex is not None else None,  # type: ignore[arg-type]
            about=str(f.get("about", "")),
            ignorable=bool(f.get("ignorable", False)),
            zero_copy=bool(f.get("zeroCopy", False)),
        )
        if spec.is_struct:
            sname = spec.element_type
            if "fields" in f:
                spec.struct = build_struct(sname, f["fields"], spec.about)  # type: ignore[arg-type]
            elif sname in structs:
                spec.struct = structs[sname]
            elif sname in common:
                c = common[sname]
                spec.struct = build_struct(sname, c["fields"], str(c.get("about", "")))  # type: ignore[arg-type]
            else:
                raise ValueError(f"{path.name}: unknown struct type {sname}")
        return spec

    name = str(raw["name"])
    root = build_struct(name, raw["fields"], "")
    # A common struct that no field uses still belongs to the message's vocabulary.
    for cname, c in common.items():
        if cname not in structs:
            build_struct(cname, c["fields"], str(c.get("about", "")))  # type: ignore[arg-type]
    return MessageSpec(
        name=name,
        kind=str(raw["type"]),
        api_key=raw.get("apiKey"),
        valid_versions=Versions.parse(raw["validVersions"]),
        flexible_versions=Versions.parse(raw.get("flexibleVersions", "none")),
        latest_version_unstable=bool(raw.get("latestVersionUnstable", False)),
        listeners=tuple(raw.get("listeners", ())),
        root=root,
        structs=structs,
        source=path.name,
    )


def load_all(schema_dir: Path) -> list[MessageSpec]:
    """Every schema in ``schema_dir`` and its ``internal-topics/`` folder, sorted by name."""
    paths = sorted(schema_dir.glob("*.json")) + sorted(
        (schema_dir / "internal-topics").glob("*.json")
    )
    return [load(p) for p in paths]


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``TopicData`` -> ``topic_data``, ``ISRNodes`` -> ``isr_nodes``, ``leaderEpoch`` -> ``leader_epoch``."""
    return _CAMEL.sub("_", name).lower()
