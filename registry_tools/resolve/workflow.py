"""Reading a ComfyUI workflow (UI or API format) into the node types and inputs it uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry_tools.errors import UserError

GROUP_NODE_PREFIX = "workflow>"  # legacy group nodes: their inner nodes are scanned instead


@dataclass(frozen=True)
class WorkflowNode:
    """One node of a workflow; `inputs` is None when the format shows no input types (API)."""

    id: str
    type: str
    inputs: tuple[tuple[str, Any], ...] | None


def workflow_nodes(document: Any, where: str = "workflow") -> tuple[str, list[WorkflowNode]]:
    """("ui" | "api", nodes) of a ComfyUI workflow; UserError when it is not one."""
    if isinstance(document, dict) and isinstance(document.get("nodes"), list):
        return "ui", _ui_nodes(document)
    prompt = document.get("prompt") if isinstance(document, dict) else None
    api = prompt if isinstance(prompt, dict) else document
    if isinstance(api, dict) and api and all(_is_api_node(v) for v in api.values()):
        return "api", [WorkflowNode(str(k), v["class_type"], None) for k, v in api.items()]
    raise UserError(
        f"{where}: not a ComfyUI workflow (expected a UI export with a 'nodes' list "
        "or an API export mapping node ids to {class_type, inputs})"
    )


def _is_api_node(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("class_type"), str)


def _ui_nodes(document: dict[str, Any]) -> list[WorkflowNode]:
    """Top-level nodes, then the nodes inside subgraph definitions and legacy group nodes;
    instances of a subgraph (typed by its id) are dropped since their insides are listed."""
    lists = [document["nodes"]]
    definitions = document.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    subgraph_ids = set()
    for subgraph in subgraphs if isinstance(subgraphs, list) else []:
        if isinstance(subgraph, dict):
            subgraph_ids.add(subgraph.get("id"))
            lists.append(subgraph.get("nodes"))
    extra = document.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    for group in groups.values() if isinstance(groups, dict) else []:
        if isinstance(group, dict):
            lists.append(group.get("nodes"))
    return [
        _ui_node(raw)
        for nodes in lists
        if isinstance(nodes, list)
        for raw in nodes
        if isinstance(raw, dict)
        and isinstance(raw.get("type"), str)
        and raw["type"]
        and raw["type"] not in subgraph_ids
    ]


def _ui_node(raw: dict[str, Any]) -> WorkflowNode:
    inputs = raw.get("inputs")
    pairs = tuple(
        (item.get("name"), item.get("type"))
        for item in (inputs if isinstance(inputs, list) else [])
        if isinstance(item, dict)
    )
    return WorkflowNode(str(raw.get("id", "")), raw["type"], pairs)
