"""Dependencies point one way: the bottom layers never reach up, and never do I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kafkacompat"

# layer -> kafkacompat subpackages it must not import
FORBIDDEN = {
    "protocol": {"records", "storage", "coordinators", "handlers", "server", "cli"},
    "records": {"protocol", "storage", "coordinators", "handlers", "server", "cli"},
    "storage": {"coordinators", "handlers", "server", "cli"},
    "coordinators": {"handlers", "server", "cli"},
    "handlers": {"server", "cli"},
}
# The sans-I/O layers: no sockets, no event loop.
NO_IO = {"protocol", "records"}
IO_MODULES = {"socket", "asyncio", "selectors", "ssl"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    folder = PACKAGE / layer
    if not folder.exists():
        pytest.skip(f"kafkacompat/{layer} does not exist yet")
    offenders = []
    for path in folder.rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "kafkacompat" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
            if layer in NO_IO and parts[0] in IO_MODULES:
                offenders.append(f"{path.relative_to(PACKAGE)} does I/O via {name}")
    assert not offenders, offenders
