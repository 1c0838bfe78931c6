"""Reading a ComfyUI workflow (UI or API format) into the node types it uses and what it records.

UI exports (`{"nodes": [...]}`) carry, per node, the type, the visible inputs and, since 2025,
`properties.cnr_id` / `aux_id` / `ver` (the pack and version ComfyUI had loaded); subgraph
definitions (`definitions.subgraphs`, whose instances are typed by the subgraph's UUID) and
legacy group nodes (`extra.groupNodes`, instances typed `workflow>Name` or, from older
frontends, `workflow/Name`) contribute their inner nodes. API exports
(`{"<id>": {"class_type", "inputs"}}`, optionally under `"prompt"`) carry only the types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from registry_tools.errors import UserError

GROUP_NODE_PREFIXES = ("workflow>", "workflow/")  # legacy group nodes: insides are listed
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_UI_MARKERS = ("links", "last_node_id", "last_link_id", "version", "definitions", "extra")


@dataclass(frozen=True, slots=True)  # slots: a 100,000-node workflow holds as many
class WorkflowNode:
    """One node; `inputs` is None when the format shows no input types (API exports)."""

    id: str
    type: str
    inputs: tuple[tuple[Any, Any], ...] | None
    cnr_id: str | None = None  # the registry pack ComfyUI recorded (`comfy-core` = built in)
    aux_id: str | None = None  # `owner/repo` of a pack outside the registry
    ver: str | None = None  # the pack's version (or git commit) when the workflow was saved


@dataclass(frozen=True)
class Workflow:
    """What a workflow file holds, ready to resolve."""

    format: str  # "ui" or "api"
    nodes: tuple[WorkflowNode, ...]
    references: tuple[str, ...] = ()  # subgraph and group-node instance types (not packs)
    node_versions: dict[str, str] = field(default_factory=dict)  # older `extra.node_versions`
    notes: tuple[str, ...] = ()  # what was set aside while reading, for the report
    source: str = "json"  # "json", or where in an image/video the workflow was found


def read_document(document: Any, where: str = "workflow", source: str = "json") -> Workflow:
    """The workflow in an already-parsed JSON document; UserError when it is not one."""
    if isinstance(document, dict) and isinstance(document.get("nodes"), list):
        if _looks_ui(document):
            return _ui_workflow(document, source)
        raise UserError(
            f"{where}: not a ComfyUI workflow: its 'nodes' carry no 'type' "
            "(a registry cache or another file with a 'nodes' list?)"
        )
    prompt = document.get("prompt") if isinstance(document, dict) else None
    api = prompt if isinstance(prompt, dict) else document
    if isinstance(api, dict) and any(_is_api_node(v) for v in api.values()):
        return _api_workflow(api, source)
    raise UserError(
        f"{where}: not a ComfyUI workflow (expected a UI export with a 'nodes' list "
        "or an API export mapping node ids to {class_type, inputs})"
    )


def _looks_ui(document: dict[str, Any]) -> bool:
    """Nodes with a `type` key, or an empty canvas that still has the UI format's keys."""
    nodes = document["nodes"]
    if any(isinstance(n, dict) and "type" in n for n in nodes):
        return True
    return not nodes and any(key in document for key in _UI_MARKERS)


def _is_api_node(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("class_type"), str)


def _api_workflow(api: dict[str, Any], source: str) -> Workflow:
    nodes, stray = [], []
    for key, value in api.items():
        if not _is_api_node(value):
            stray.append(str(key))
        elif value["class_type"]:  # `class_type: ""` is skipped like an empty UI type
            nodes.append(WorkflowNode(str(key), value["class_type"], None))
    notes = tuple(f"ignored key {k!r}: not a node (no class_type)" for k in sorted(stray))
    return Workflow("api", tuple(nodes), notes=notes, source=source)


def _ui_workflow(document: dict[str, Any], source: str) -> Workflow:
    """Top-level nodes, then the nodes inside subgraph definitions and legacy group nodes;
    instances of a subgraph (typed by its id) and of a group node are references, not types."""
    lists: list[Any] = [document["nodes"]]
    subgraph_ids: set[str] = set()
    _subgraphs(document, lists, subgraph_ids, depth=0)
    extra = document.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    for group in groups.values() if isinstance(groups, dict) else []:
        if isinstance(group, dict):
            lists.append(group.get("nodes"))
    nodes, references = [], set()
    shared: dict[Any, Any] = {}  # one copy of each distinct input list and recorded string
    for raw in (r for items in lists if isinstance(items, list) for r in items):
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or not raw["type"]:
            continue
        kind = raw["type"]
        if kind in subgraph_ids or UUID.match(kind) or kind.startswith(GROUP_NODE_PREFIXES):
            references.add(kind)
        else:
            nodes.append(_ui_node(raw, shared))
    return Workflow(
        "ui",
        tuple(nodes),
        tuple(sorted(references)),
        _node_versions(extra),
        source=source,
    )


def _subgraphs(holder: dict[str, Any], lists: list[Any], ids: set[str], depth: int) -> None:
    """Subgraph definitions, including any nested inside a definition (bounded depth)."""
    definitions = holder.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    for subgraph in subgraphs if isinstance(subgraphs, list) and depth < 32 else []:
        if isinstance(subgraph, dict):
            if isinstance(subgraph.get("id"), str):
                ids.add(subgraph["id"])
            lists.append(subgraph.get("nodes"))
            _subgraphs(subgraph, lists, ids, depth + 1)


def _ui_node(raw: dict[str, Any], shared: dict[Any, Any]) -> WorkflowNode:
    inputs = raw.get("inputs")
    pairs = tuple(
        (_hashable(item.get("name")), _hashable(item.get("type")))
        for item in (inputs if isinstance(inputs, list) else [])
        if isinstance(item, dict)
    )
    props = raw.get("properties")
    props = props if isinstance(props, dict) else {}
    recorded = (_text(props.get(k)) for k in ("cnr_id", "aux_id", "ver"))
    cnr_id, aux_id, ver = (shared.setdefault(v, v) for v in recorded)
    node_type = shared.setdefault(raw["type"], raw["type"])
    return WorkflowNode(
        str(raw.get("id", "")), node_type, shared.setdefault(pairs, pairs), cnr_id, aux_id, ver
    )


def _hashable(kind: Any) -> Any:
    """Input names and types are strings (an old frontend's combo list is `COMBO`); other
    values cannot be part of a signature, and must not make the pair unhashable."""
    if isinstance(kind, list):
        return "COMBO"
    return kind if isinstance(kind, str | int | float | bool | None) else None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _node_versions(extra: Any) -> dict[str, str]:
    """Older frontends' `extra.node_versions`: {pack name or id: version or commit}."""
    found = extra.get("node_versions") if isinstance(extra, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(k): v.strip() for k, v in found.items() if isinstance(v, str) and v.strip()}
