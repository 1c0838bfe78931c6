"""The package's layout keeps its promises: imports between subpackages go one way, the shared
top-level modules import no subpackage, and no module grows past about 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "registry_tools"
SHARED = "(shared)"  # the top-level modules: errors, clock, semver, ...
FRONT_DOOR = "cli"  # `__main__` belongs with the command line it starts
MAX_LINES = 550


def _unit(path: Path, package: Path) -> str:
    """The subpackage a module belongs to (SHARED for the top-level modules)."""
    parts = path.relative_to(package).parts
    if len(parts) > 1:
        return parts[0]
    return FRONT_DOOR if parts[0] == "__main__.py" else SHARED


def _imported_modules(tree: ast.AST, where: tuple[str, ...]) -> list[str]:
    """Dotted names of what a module imports, absolute or relative, at any depth (lazy imports
    inside functions count: they are a dependency all the same). `where` is the module's
    package, as parts."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = where[: len(where) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> the other units it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        unit = _unit(path, package)
        where = (package.name, *path.relative_to(package).parent.parts)
        graph.setdefault(unit, set())
        for module in _imported_modules(ast.parse(path.read_text("utf-8")), where):
            parts = module.split(".")
            if parts[0] != package.name or len(parts) < 2:
                continue
            target = parts[1] if (package / parts[1]).is_dir() else SHARED
            if parts[1] == "__main__":
                target = FRONT_DOOR
            if target != unit:
                graph[unit].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that starts and ends at the same unit, or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = "open"
        trail.append(unit)
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[unit] = "done"
        trail.pop()
        return None

    for unit in sorted(graph):
        if unit not in state and (cycle := visit(unit)):
            return cycle
    return None


def test_no_cycle_between_subpackages() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle or [])


def test_shared_modules_import_no_subpackage() -> None:
    assert import_graph().get(SHARED, set()) == set()


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_reads_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "registry_tools"
    for unit in ("fetch", "mappings"):
        (package / unit).mkdir(parents=True)
    (package / "errors.py").write_text("")
    (package / "fetch" / "client.py").write_text("from ..mappings import build\nfrom . import x\n")
    (package / "mappings" / "build.py").write_text(
        "def later():\n"
        "    import registry_tools.fetch.client\n"
        "    from registry_tools import errors\n"
    )
    graph = import_graph(package)
    assert graph["fetch"] == {"mappings"}
    assert graph["mappings"] == {"fetch", SHARED}
    assert find_cycle(graph) == ["fetch", "mappings", "fetch"]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_is_much_over_500_lines(path: Path) -> None:
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it where a seam exists"
