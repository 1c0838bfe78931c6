"""Resolve the custom node types of a ComfyUI workflow to candidate packages.

Matching, per node (docs/mappings.md has the user-facing version):
1. `exact`: the node's visible inputs (UI format only) give the key `<type>::<hash>`, found in
   the mappings: the packages whose versions have exactly that signature.
2. `type_only`: the key `<type>::_` (a node without inputs, or whose inputs could not be read),
   as comfydock-core's resolver does.
3. `name_only`: every key of that type merged: each package once, all its versions, ranked by
   the same score the builder uses. A UI workflow lists only some inputs (links, converted
   widgets) and an API workflow has no input types at all, so this is the common case there.
A type seen on several nodes reports the best match among them (first node wins a tie).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.mappings.load import load_mappings
from registry_tools.mappings.ranking import package_scores
from registry_tools.mappings.signatures import node_key, split_key, workflow_signature
from registry_tools.resolve.builtins import builtin_nodes
from registry_tools.resolve.workflow import GROUP_NODE_PREFIX, WorkflowNode, workflow_nodes
from registry_tools.semver import version_key

MATCHES = ("exact", "type_only", "name_only", "unresolved")  # best first


@dataclass(frozen=True)
class Candidate:
    """A package that provides a node type; `version` is its newest compatible version."""

    package_id: str
    rank: int
    version: str | None
    versions: tuple[str, ...]


@dataclass(frozen=True)
class TypeResolution:
    """How one custom node type resolved; `match` is one of MATCHES, `key` the key used."""

    node_type: str
    match: str
    key: str | None
    candidates: tuple[Candidate, ...]
    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class Resolution:
    """Every custom node type of a workflow (sorted by name) and the types left out."""

    format: str  # "ui" or "api"
    types: tuple[TypeResolution, ...]
    builtin: tuple[str, ...]  # ComfyUI's own types seen in the workflow
    skipped: tuple[str, ...]  # subgraph and group-node instances (their insides are resolved)

    @property
    def unresolved(self) -> tuple[str, ...]:
        return tuple(t.node_type for t in self.types if t.match == "unresolved")

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--json` and notebooks."""
        return {**asdict(self), "unresolved": list(self.unresolved)}


# ---- entry points --------------------------------------------------------------------------


def resolve_files(workflow: Path, mappings: Path) -> Resolution:
    """Resolve a workflow file against a mappings file (both checked, one-line errors)."""
    document = files.read_json(workflow, "workflow")
    fmt, nodes = workflow_nodes(document, f"workflow {workflow}")
    return resolve_nodes(fmt, nodes, load_mappings(mappings, "--mappings"))


def resolve_workflow(workflow: Any, mappings: dict[str, Any]) -> Resolution:
    """Resolve an already-loaded workflow (UI or API format) against a mappings document."""
    fmt, nodes = workflow_nodes(workflow)
    return resolve_nodes(fmt, nodes, mappings)


def resolve_nodes(fmt: str, nodes: list[WorkflowNode], mappings: dict[str, Any]) -> Resolution:
    """Resolve parsed workflow nodes; built-in, subgraph and group-node types are set aside."""
    builtin = builtin_nodes()
    index = _Index(mappings)
    best: dict[str, TypeResolution] = {}
    seen_ids: dict[str, list[str]] = {}
    builtins_seen, skipped = set(), set()
    for node in nodes:
        if node.type in builtin:
            builtins_seen.add(node.type)
            continue
        if node.type.startswith(GROUP_NODE_PREFIX):
            skipped.add(node.type)
            continue
        seen_ids.setdefault(node.type, []).append(node.id)
        found = index.match(node)
        current = best.get(node.type)
        if current is None or MATCHES.index(found.match) < MATCHES.index(current.match):
            best[node.type] = found
    types = tuple(
        TypeResolution(t.node_type, t.match, t.key, t.candidates, tuple(seen_ids[name]))
        for name, t in sorted(best.items())
    )
    return Resolution(fmt, types, tuple(sorted(builtins_seen)), tuple(sorted(skipped)))


# ---- matching ------------------------------------------------------------------------------


class _Index:
    """Mappings looked up by key and by node type; name-only merges are ranked on demand."""

    def __init__(self, mappings: dict[str, Any]) -> None:
        self.mappings = mappings["mappings"]
        self.packages = mappings["packages"]
        self.by_type: dict[str, list[str]] = {}
        for key in self.mappings:
            self.by_type.setdefault(split_key(key)[0], []).append(key)

    @functools.cached_property
    def scores(self) -> dict[str, float]:
        return package_scores(self.packages)

    def match(self, node: WorkflowNode) -> TypeResolution:
        if node.inputs:
            signature = workflow_signature(node.inputs)
            if signature and (key := node_key(node.type, signature)) in self.mappings:
                return self._from_key(node.type, "exact", key)
        key = node_key(node.type, "")
        if key in self.mappings:
            return self._from_key(node.type, "type_only", key)
        if node.type in self.by_type:
            return TypeResolution(node.type, "name_only", None, self._merged(node.type), ())
        return TypeResolution(node.type, "unresolved", None, (), ())

    def _from_key(self, node_type: str, match: str, key: str) -> TypeResolution:
        entries = sorted(self.mappings[key], key=lambda e: (e.get("rank", 0), e["package_id"]))
        candidates = tuple(
            _candidate(e["package_id"], e.get("rank", 0), e["versions"]) for e in entries
        )
        return TypeResolution(node_type, match, key, candidates, ())

    def _merged(self, node_type: str) -> tuple[Candidate, ...]:
        versions: dict[str, set[str]] = {}
        for key in self.by_type[node_type]:
            for entry in self.mappings[key]:
                versions.setdefault(entry["package_id"], set()).update(entry["versions"])
        order = sorted(versions, key=lambda p: (-self.scores.get(p, 0.0), p))
        return tuple(
            _candidate(p, rank, sorted(versions[p], key=version_key, reverse=True))
            for rank, p in enumerate(order, 1)
        )


def _candidate(package_id: str, rank: int, versions: list[str]) -> Candidate:
    return Candidate(package_id, rank, versions[0] if versions else None, tuple(versions))


# ---- text output ---------------------------------------------------------------------------


def format_text(resolution: Resolution) -> str:
    """Human-readable report: each custom type, its candidates, then what is unresolved."""
    lines = [
        f"{resolution.format} workflow: {len(resolution.types)} custom node types, "
        f"{len(resolution.unresolved)} unresolved; {len(resolution.builtin)} built-in types skipped"
    ]
    for item in resolution.types:
        if item.match == "unresolved":
            continue
        where = f" {item.key}" if item.key else ""
        lines.append(f"{item.node_type}  [{item.match}{where}]  nodes {', '.join(item.node_ids)}")
        lines += [f"  {c.rank:>3}  {c.package_id}  {c.version or '-'}" for c in item.candidates]
    if resolution.unresolved:
        lines.append("unresolved: " + ", ".join(resolution.unresolved))
    return "\n".join(lines)
