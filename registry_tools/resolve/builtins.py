"""ComfyUI's built-in node types, versioned: a node of one of these types needs no package.

The table (`data/builtin_nodes.tsv`) is rebuilt by `scripts/refresh_builtins.py` from PyPI
packages (`comfyui-embedded-docs`, `comfyui-workflow-templates-json`); each row names its
kind (`core`: a backend node of ComfyUI; `frontend`: defined by the ComfyUI frontend alone),
the earliest ComfyUI version known to have it, the version by which it was removed when known,
and the sources that list it. Its header says which ComfyUI version the table covers, so a
core type it lacks can be reported as "needs a newer ComfyUI".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from registry_tools.semver import version_key

DATA_FILE = Path(__file__).parent / "data" / "builtin_nodes.tsv"
COLUMNS = ("name", "kind", "introduced", "removed", "sources")


@dataclass(frozen=True)
class BuiltinType:
    """One row of the table."""

    kind: str  # "core" or "frontend"
    introduced: str | None  # earliest ComfyUI version known to have it (it may be older)
    removed: str | None  # ComfyUI version by which it is gone, when known
    sources: tuple[str, ...]


@dataclass(frozen=True)
class BuiltinTable:
    """The whole table: rows by type, and the header's facts."""

    nodes: dict[str, BuiltinType]
    header: dict[str, str]

    @property
    def comfyui_version(self) -> str | None:
        """The newest ComfyUI version the sources show: the table knows nothing later."""
        return self.header.get("comfyui_version")

    def __contains__(self, node_type: object) -> bool:
        return node_type in self.nodes

    def sufficient_version(self, node_types: list[str]) -> str | None:
        """A ComfyUI version that has every one of `node_types` (the newest `introduced`)."""
        known = [self.nodes[t].introduced for t in node_types if t in self.nodes]
        dated = [v for v in known if v]
        return max(dated, key=version_key) if dated else None


def parse_table(text: str) -> BuiltinTable:
    """Read the TSV: `# key<TAB>value` header lines, a column line, then one row per type."""
    nodes: dict[str, BuiltinType] = {}
    header: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition("\t")
            if value:
                header[key] = value
            continue
        cells = line.split("\t")
        if not line.strip() or tuple(cells) == COLUMNS:
            continue
        name, kind, introduced, removed, sources = (cells + [""] * 5)[:5]
        nodes[name] = BuiltinType(
            kind or "core",
            introduced or None,
            removed or None,
            tuple(filter(None, sources.split(","))),
        )
    return BuiltinTable(nodes, header)


@functools.cache
def builtin_table() -> BuiltinTable:
    """The shipped table (read once)."""
    text = resources.files(__package__).joinpath("data/builtin_nodes.tsv").read_text("utf-8")
    return parse_table(text)


def builtin_nodes() -> frozenset[str]:
    """Every built-in type name (core and frontend-only)."""
    return frozenset(builtin_table().nodes)
