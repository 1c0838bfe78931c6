"""Phase 3: the comfy-nodes metadata of each node's newest `max_versions` installable versions.

The window counts installable versions only (active, not deprecated, with a download URL):
metadata of a deprecated, banned, deleted or pending-status version is never used, so it is
never fetched, and such versions cannot push a usable one out of the window. Pending
extraction is the registry's state, not a failure: a version whose
`comfy_node_extract_status` says `pending` or `failed` is not requested, and an answer
`{"comfy_nodes": null}` is not "no nodes"; both are recorded as `metadata_pending` (no
`comfy_nodes`, `metadata_cached: false`) and looked at again by every refresh. An answer of
another shape (`{}`, `{"message": ...}`) is a failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build, fan_out
from registry_tools.fetch.client import Answer, FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_METADATA, Node

PAGE_SIZE = 500  # comfy nodes asked per page: one request for every version but a handful
MIN_PAGE_SIZE = 10
MAX_PAGES = 1000


def chosen_versions(node: Node, max_versions: int) -> list[dict[str, Any]]:
    """The node's newest `max_versions` installable versions (-1: all), newest first."""
    versions = [
        v
        for v in cache_file.sort_versions(node.get("versions_list", []))
        if cache_file.is_installable(v)
    ]
    return versions if max_versions < 0 else versions[:max_versions]


def extract_state(version: dict[str, Any]) -> str | None:
    """'pending' or 'failed' when the version says its extraction is not done."""
    state = version.get("comfy_node_extract_status")
    return state if state in cache_file.PENDING_STATES else None


def metadata_todo(nodes: dict[str, Node], max_versions: int) -> list[tuple[str, str]]:
    """(node id, version) pairs to request. On the way, versions whose status says their
    extraction is pending are marked so, and versions no longer chosen (deprecated, banned,
    out of the window) lose their metadata: the cache holds metadata for exactly the chosen
    versions, as a fresh run would."""
    todo = []
    for node_id in sorted(nodes):
        chosen = {v["version"] for v in chosen_versions(nodes[node_id], max_versions)}
        for version in nodes[node_id].get("versions_list", []):
            if version["version"] not in chosen:
                version.pop("metadata_pending", None)
                version.pop("comfy_nodes", None)
                version["metadata_cached"] = False
            elif version.get("metadata_cached"):
                version.pop("metadata_pending", None)
            elif extract_state(version):
                version["metadata_pending"] = extract_state(version)
            else:
                todo.append((node_id, version["version"]))
    return todo


async def run(client: RegistryClient, build: Build) -> None:
    build.reporter.start(PHASE_METADATA, 0)
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

    size = _PageSize(PAGE_SIZE)
    asked = set(todo)
    pending = sum(  # marked by their status, not asked; the answers add theirs
        1
        for node_id, node in build.nodes.items()
        for v in node.get("versions_list", [])
        if v.get("metadata_pending") and (node_id, v["version"]) not in asked
    )

    def apply(nodes: dict[str, Node], record: dict[str, Any]) -> None:
        nonlocal pending
        pending += "pending" in record
        _apply_metadata(nodes, record)

    await fan_out(
        build,
        PHASE_METADATA,
        todo,
        lambda item: _fetch_metadata(client, build.nodes, size, *item),
        apply,
        lambda item: f"{item[0]} {item[1]}",
        finished,
        lambda: {"pending": pending},
    )
    build.reporter.finish(PHASE_METADATA)
    build.phase_stats[PHASE_METADATA] = {"versions_fetched": len(todo)}


class _PageSize:
    """The largest comfy-nodes page the server accepts (undocumented): a 400 halves it for
    every later request."""

    def __init__(self, size: int) -> None:
        self.size = size


async def _fetch_metadata(
    client: RegistryClient, nodes: dict[str, Node], size: _PageSize, node_id: str, version: str
) -> dict[str, Any]:
    path = api_path("nodes", node_id, "versions", version, "comfy-nodes")
    record: dict[str, Any] = {"k": "meta", "id": node_id, "v": version}
    while True:
        limit = size.size
        first = await client.get(path, {"page": 1, "limit": limit}, accept=(400, 404))
        if first.status != 400 or limit <= MIN_PAGE_SIZE:
            break
        size.size = min(size.size, max(MIN_PAGE_SIZE, limit // 2))
    if first.status in (400, 404):
        reason = "version not found" if first.status == 404 else "HTTP 400"
        raise FetchError(client.url(path, {"page": 1, "limit": limit}), reason)
    items, pages = _metadata_page(client, path, 1, limit, first)
    if items is None:
        entry = _version(nodes, node_id, version)
        record["pending"] = extract_state(entry) or "pending"
        return record
    rest = await asyncio.gather(
        *(client.get(path, {"page": p, "limit": limit}) for p in range(2, pages + 1))
    )
    for page, answer in enumerate(rest, start=2):
        more, _pages = _metadata_page(client, path, page, limit, answer)
        if more is None:  # extraction changed under us: ask again next run
            record["pending"] = "pending"
            return record
        items.extend(more)
    record["comfy_nodes"] = items
    return record


def _metadata_page(
    client: RegistryClient, path: str, page: int, limit: int, answer: Answer
) -> tuple[list[dict[str, Any]] | None, int]:
    """The comfy nodes on one page (None: extraction pending) and the page count (new and
    old servers' field names); FetchError for an answer of another shape."""
    data = answer.data
    url = client.url(path, {"page": page, "limit": limit})
    if not isinstance(data, dict) or "comfy_nodes" not in data:
        raise FetchError(url, f"not a comfy-nodes page ({_shape(data)})")
    items = data["comfy_nodes"]
    if items is None:
        return None, 0
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FetchError(url, "not a comfy-nodes page ('comfy_nodes' is not a list of objects)")
    pages = data.get("totalNumberOfPages", data.get("totalPages", 1))
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 1:
        pages = 1
    return list(items), min(pages, MAX_PAGES)


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        message = data.get("message") or data.get("error")
        return f"message {str(message)[:80]!r}" if message else f"keys {sorted(data)[:5]}"
    return f"a JSON {type(data).__name__}"


def _version(nodes: dict[str, Node], node_id: str, version: str) -> dict[str, Any]:
    for entry in nodes.get(node_id, {}).get("versions_list", []):
        if entry["version"] == version:
            return entry
    return {}


def _apply_metadata(nodes: dict[str, Node], record: dict[str, Any]) -> None:
    entry = _version(nodes, record["id"], record["v"])
    if not entry:
        return
    if "comfy_nodes" in record:
        entry["comfy_nodes"] = record["comfy_nodes"]
        entry["metadata_cached"] = True
        entry.pop("metadata_pending", None)
    else:
        entry.pop("comfy_nodes", None)
        entry["metadata_cached"] = False
        entry["metadata_pending"] = record["pending"]
