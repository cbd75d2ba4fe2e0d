"""Dependencies point one way: the bottom layers never reach up, and never do I/O.

Three rules over every module of the ``kafkacompat`` package, read from its source (nothing is
imported):

* **Layers.** :data:`LAYERS` places every subpackage and top-level module, lowest first. A
  module may import its own unit and any unit of a lower tier; never a higher tier, nor a peer
  of its own tier (``protocol`` and ``records`` stay independent). Every import counts here,
  lazy ones inside functions included. A module whose unit is not listed fails the test: a new
  package must be placed.
* **No cycles.** The graph of module-level imports among kafkacompat modules, ``if
  TYPE_CHECKING:`` imports included, has no cycle. Imports inside a function body (lazy ones)
  are left out of this graph, since they run only once every module involved is loaded; they
  still obey the layer rule.
* **Storage surface.** Outside ``kafkacompat/storage/`` only :data:`STORAGE_SURFACE` may be
  imported from storage. The list is what is imported today, so it documents the leaks; shrink
  it, never grow it without a reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Final

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kafkacompat"
ROOT: Final = "kafkacompat"

LAYERS: Final[list[tuple[str, ...]]] = [
    ("_version", "errors"),  # the package's version; Kafka's error codes
    ("protocol", "records", "security"),  # sans-I/O codecs; who is connected, may they
    ("storage",),
    ("config",),  # broker configs; builds on storage.config's topic configs
    ("metadata",),  # topics and partitions as the cluster sees them
    ("cluster",),  # Partition, ReplicaManager
    ("coordinators",),
    ("broker",),
    ("dynamic_config",),
    ("handlers",),
    ("scheduler",),  # periodic jobs on the event loop: the socket server's and the broker's
    ("connection_quotas",),  # the socket server's connection limits (Kafka's ConnectionQuotas)
    ("server",),
    ("broker_server",),  # the composition root: builds and starts broker and server
    ("cli", "embedded"),  # the command; EmbeddedKafka (runs the command as a child, not imports it)
    ("__main__", "pytest_plugin"),  # python -m kafkacompat; the fixtures over EmbeddedKafka
    ("__init__",),  # the package root: re-exports the public API (EmbeddedKafka), lazily
]
"""Units (subpackages, or top-level modules without ``.py``), lowest tier first."""

STORAGE_SURFACE: Final = frozenset(
    {
        "kafkacompat.storage.base",  # the PartitionLog interface
        "kafkacompat.storage.manager",  # LogManager, Topic
        "kafkacompat.storage.config",  # topic configs, LogConfig
        # Leaks to shrink:
        "kafkacompat.storage.atomic_file",  # cli, coordinators.producer_ids, dynamic_config
        "kafkacompat.storage.properties_file",  # coordinators.producer_ids, dynamic_config
        "kafkacompat.storage.data_dir",  # cli: DataDirInUseError
        "kafkacompat.storage.meta_properties",  # cli: NodeIdMismatchError
        "kafkacompat.storage.log_cleaner",  # broker: the cleaner task
        "kafkacompat.storage.log_cleaner_manager",  # broker: the cleaner task
        # The layer above storage: a partition's log is the storage's UnifiedLog.
        "kafkacompat.storage.unified_log",  # cluster: Partition, ReplicaManager
        "kafkacompat.storage.transaction_index",  # cluster: AbortedTxn, read_committed fetches
        # The local controller's metadata log is the data dir's topic records; an etcd
        # source will not need them.
        "kafkacompat.storage.topic_records",  # metadata.local_controller, cluster
        "kafkacompat.storage.kafka_uuid",  # metadata.local_controller: new topic ids
    }
)

# The sans-I/O layers: no sockets, no event loop.
NO_IO = {"protocol", "records"}
IO_MODULES = {"socket", "asyncio", "selectors", "ssl"}

TIER: Final = {unit: tier for tier, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _targets(path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Every module an import statement loads: ``from a import b`` is module ``a.b`` when that
    is a kafkacompat module (``from kafkacompat import server``), else ``a``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    module = _resolve(path, node)
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        yield submodule if submodule in _modules() else module


def _walk(tree: ast.AST, *, lazy: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif lazy or not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, lazy=lazy)


@cache
def _imports(module: str, *, lazy: bool) -> frozenset[str]:
    path = _modules()[module]
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(target for node in _walk(tree, lazy=lazy) for target in _targets(path, node))


def _internal(name: str) -> bool:
    return name == ROOT or name.startswith(ROOT + ".")


def test_every_unit_is_placed_in_a_layer() -> None:
    unplaced = sorted({_unit(m) for m in _modules()} - TIER.keys())
    assert not unplaced, f"place these in LAYERS (tests/test_layers.py): {unplaced}"


def test_the_layer_list_names_each_unit_once() -> None:
    units = [unit for tier in LAYERS for unit in tier]
    assert len(units) == len(set(units))


@pytest.mark.parametrize("unit", [unit for tier in LAYERS for unit in tier])
def test_layer_imports_point_down(unit: str) -> None:
    modules = [m for m in _modules() if _unit(m) == unit]
    if not modules:
        pytest.skip(f"kafkacompat/{unit} does not exist yet")
    offenders = []
    for module in modules:
        for name in sorted(_imports(module, lazy=True)):
            if _internal(name):
                target = _unit(name)
                if target != unit and TIER.get(target, len(LAYERS)) >= TIER[unit]:
                    offenders.append(f"{module} imports {name} (layer {target!r})")
            elif unit in NO_IO and name.split(".")[0] in IO_MODULES:
                offenders.append(f"{module} does I/O via {name}")
    assert not offenders, offenders


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def test_find_cycle_finds_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_module_imports_have_no_cycle() -> None:
    modules = _modules()
    graph = {
        module: {
            name for name in _imports(module, lazy=False) if name in modules and name != module
        }
        for module in modules
    }
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_storage_is_used_through_its_surface() -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module in _modules()
        if _unit(module) != "storage"
        for name in _imports(module, lazy=True)
        if _unit(name) == "storage" and _internal(name) and name not in STORAGE_SURFACE
    )
    assert not offenders, offenders


def test_the_storage_surface_lists_only_modules_in_use() -> None:
    used = {
        name
        for module in _modules()
        if _unit(module) != "storage"
        for name in _imports(module, lazy=True)
        if _internal(name) and _unit(name) == "storage"
    }
    assert sorted(STORAGE_SURFACE - used) == [], "drop these from STORAGE_SURFACE"
