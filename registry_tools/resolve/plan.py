"""The installation plan: what a resolution says to do, as text for people and JSON for tools.

A plan lists the de-duplicated packs to install (version, download URL, repository, the node
types each is there for and why it was chosen), then the node types left unresolved, each with
its reason (`REASONS`), then what was set aside (built-in types, subgraph and group-node
references) and notes from reading the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from registry_tools.resolve.candidates import Candidate

REASONS = {
    "core_newer": "a ComfyUI core type newer than the built-ins data: needs a newer ComfyUI",
    "frontend_only": "a frontend-only node of a pack the mappings do not list",
    "manager_only": "known to ComfyUI-Manager but not installable from the registry",
    "not_installable": "its packs have no installable version (deprecated, banned or no URL)",
    "unknown": "no package in the mappings provides it",
}


@dataclass(frozen=True)
class TypeResolution:
    """How one custom node type resolved: its candidates, the pack chosen and why."""

    node_type: str
    match: str  # exact, type_only, name_only, cnr_id, aux_id, frontend, online, unresolved
    key: str | None
    candidates: tuple[Candidate, ...]
    node_ids: tuple[str, ...]
    package_id: str | None = None
    why: str = ""
    reason: str | None = None  # one of REASONS when unresolved


@dataclass(frozen=True)
class PlannedPackage:
    """One pack to install."""

    package_id: str
    version: str | None
    download_url: str | None
    repository: str | None
    source: str  # registry, manager, aux_id (a repository the workflow names), online
    node_types: tuple[str, ...]
    why: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unresolved:
    """A node type the plan cannot provide, and why."""

    node_type: str
    reason: str
    detail: str
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class Resolution:
    """The plan for one workflow (or several combined)."""

    workflows: tuple[str, ...]
    format: str  # ui, api, or mixed (combined plans)
    types: tuple[TypeResolution, ...]
    packages: tuple[PlannedPackage, ...]
    unresolved_types: tuple[Unresolved, ...]
    builtin: tuple[str, ...]
    references: tuple[str, ...]  # subgraph and group-node instances (insides are resolved)
    comfyui: dict[str, str | None] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    online: bool = False

    @property
    def unresolved(self) -> tuple[str, ...]:
        return tuple(u.node_type for u in self.unresolved_types)

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--json` and the notebooks (docs/resolve.md documents it)."""
        return {**asdict(self), "unresolved": list(self.unresolved)}


def format_text(resolution: Resolution) -> str:
    """The plan for people: a summary line, the packs, the unresolved types, the notes."""
    lines = [summary_line(resolution)]
    if resolution.packages:
        lines.append("install:")
    for package in resolution.packages:
        where = "  ".join(x for x in (package.download_url, package.repository) if x)
        lines.append(
            f"  {package.package_id} {package.version or '(no version)'}  {where}".rstrip()
        )
        lines.append(f"      for {', '.join(package.node_types)}")
        lines.append(f"      why: {package.why}")
        lines += [f"      note: {note}" for note in package.notes]
    if resolution.unresolved_types:
        lines.append("unresolved:")
    for item in resolution.unresolved_types:
        lines.append(
            f"  {item.node_type}  [{item.reason}] {item.detail}  (nodes {', '.join(item.node_ids)})"
        )
    lines += [f"note: {note}" for note in resolution.notes]
    return "\n".join(lines)


def format_details(resolution: Resolution) -> str:
    """Every custom type with its candidates and the choice made (`--details`)."""
    lines = []
    for item in resolution.types:
        where = f" {item.key}" if item.key else ""
        chosen = f" -> {item.package_id}" if item.package_id else f" -> unresolved ({item.reason})"
        lines.append(
            f"{item.node_type}  [{item.match}{where}]{chosen}  nodes {', '.join(item.node_ids)}"
        )
        if item.why:
            lines.append(f"    why: {item.why}")
        lines += [f"  {c.rank:>3}  {c.package_id}  {c.version or '-'}" for c in item.candidates]
    return "\n".join(lines)


def summary_line(resolution: Resolution) -> str:
    """The plan in one line: what the text report starts with, and the notebook's headline."""
    comfy = resolution.comfyui
    parts = [f"{len(resolution.builtin)} built-in types"]
    if comfy.get("sufficient"):
        parts.append(f"ComfyUI {comfy['sufficient']} or newer has them all")
    if comfy.get("saved_with"):
        parts.append(f"saved with ComfyUI {comfy['saved_with']}")
    online = ", looked up online" if resolution.online else ""
    return (
        f"{', '.join(resolution.workflows)} ({resolution.format}): "
        f"{len(resolution.types)} custom node types, {len(resolution.packages)} packs to install, "
        f"{len(resolution.unresolved_types)} unresolved{online}; {'; '.join(parts)}"
    )
