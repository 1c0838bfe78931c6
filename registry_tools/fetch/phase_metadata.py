"""Phase 3: the comfy-nodes metadata of each node's newest `max_versions` versions."""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build, fan_out
from registry_tools.fetch.client import Answer, FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_METADATA, Node

METADATA_PAGE_SIZE = 50


def metadata_todo(nodes: dict[str, Node], max_versions: int) -> list[tuple[str, str]]:
    """(node id, version) pairs among each node's newest `max_versions` lacking metadata."""
    todo = []
    for node_id in sorted(nodes):
        versions = cache_file.sort_versions(nodes[node_id].get("versions_list", []))
        chosen = versions if max_versions < 0 else versions[:max_versions]
        todo.extend((node_id, v["version"]) for v in chosen if not v.get("metadata_cached"))
    return todo


async def run(client: RegistryClient, build: Build) -> None:
    for record in build.replayed["meta"]:
        _apply_metadata(build.nodes, record)
    todo = metadata_todo(build.nodes, build.options.max_versions)
    remaining: dict[str, int] = {}
    for node_id, _version in todo:
        remaining[node_id] = remaining.get(node_id, 0) + 1

    def finished(item: tuple[str, str]) -> None:
        remaining[item[0]] -= 1
        if not remaining[item[0]]:
            build.unit_done()

    await fan_out(
        build,
        PHASE_METADATA,
        todo,
        lambda item: _fetch_metadata(client, *item),
        _apply_metadata,
        lambda item: f"{item[0]} {item[1]}",
        finished,
    )
    build.phase_stats[PHASE_METADATA] = {"versions_fetched": len(todo)}


async def _fetch_metadata(client: RegistryClient, node_id: str, version: str) -> dict[str, Any]:
    path = api_path("nodes", node_id, "versions", version, "comfy-nodes")
    record = {"k": "meta", "id": node_id, "v": version, "comfy_nodes": []}
    first = await client.get(path, {"page": 1, "limit": METADATA_PAGE_SIZE}, accept=(404,))
    if first.status == 404:
        return record
    items, pages = _metadata_page(client, path, 1, first)
    rest = await asyncio.gather(
        *(client.get(path, {"page": p, "limit": METADATA_PAGE_SIZE}) for p in range(2, pages + 1))
    )
    for page, answer in enumerate(rest, start=2):
        items.extend(_metadata_page(client, path, page, answer)[0])
    record["comfy_nodes"] = items
    return record


def _metadata_page(
    client: RegistryClient, path: str, page: int, answer: Answer
) -> tuple[list[dict[str, Any]], int]:
    """The comfy nodes on one page and the page count (new and old servers' field names)."""
    data = answer.data if isinstance(answer.data, dict) else {"comfy_nodes": "missing"}
    items = data.get("comfy_nodes") or []
    pages = data.get("totalNumberOfPages", data.get("totalPages", 1))
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        url = client.url(path, {"page": page, "limit": METADATA_PAGE_SIZE})
        raise FetchError(url, "not a comfy-nodes page")
    return list(items), pages if isinstance(pages, int) and pages > 0 else 1


def _apply_metadata(nodes: dict[str, Node], record: dict[str, Any]) -> None:
    node = nodes.get(record["id"], {})
    for version in node.get("versions_list", []):
        if version["version"] == record["v"]:
            version["comfy_nodes"] = record["comfy_nodes"]
            version["metadata_cached"] = True
            return
