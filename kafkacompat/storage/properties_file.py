"""Java properties files, as Kafka's ``meta.properties`` and our own small files use them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kafkacompat.storage.atomic_file import CorruptFileError, read_text


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + out if out.startswith((" ", "#", "!")) else out


def _unescape(text: str) -> str:
    out = []
    chars = iter(text)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
    return "".join(out)


def format_properties(props: Mapping[str, str], comment: str | None = None) -> bytes:
    """A Java properties file. No timestamp comment (Java adds one): it would need the clock."""
    lines = [f"#{comment}"] if comment else []
    for key, value in props.items():
        if any(c in key for c in "=: \n\r\\#!"):
            raise ValueError(f"property name {key!r} needs escaping this writer does not do")
        lines.append(f"{key}={_escape(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_properties(path: Path, text: str) -> dict[str, str]:
    """The subset of Java properties syntax Kafka's files use: ``key=value``/``key: value``,
    ``#``/``!`` comments, backslash escapes; no line continuations."""
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        positions = [p for p in (line.find("="), line.find(":")) if p > 0]
        if not positions:
            raise CorruptFileError(path, f"line {number} is not key=value: {raw!r}")
        split = min(positions)
        props[line[:split].strip()] = _unescape(line[split + 1 :].strip())
    return props


def read_properties(path: Path) -> dict[str, str]:
    return parse_properties(path, read_text(path))
