"""Phase 2: each node's versions (and a download URL for versions listed without one)."""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools import clock
from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build, fan_out
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS, Node


def latest_version(node: Node) -> str:
    """The version the registry calls latest, '' when it names none."""
    latest = node.get("latest_version")
    return latest.get("version") or "" if isinstance(latest, dict) else ""


def needs_versions(node: Node) -> bool:
    """Never fetched, last fetch failed, or a new release since the last fetch."""
    return not node.get("fully_cached") or node.get("versions_cached_for") != latest_version(node)


async def run(client: RegistryClient, build: Build) -> None:
    for record in build.replayed["versions"]:
        _apply_versions(build.nodes, record)
    todo = [node_id for node_id in sorted(build.nodes) if needs_versions(build.nodes[node_id])]
    await fan_out(
        build,
        PHASE_VERSIONS,
        todo,
        lambda node_id: _fetch_versions(client, node_id, latest_version(build.nodes[node_id])),
        _apply_versions,
        lambda node_id: node_id,
        lambda _node_id: build.unit_done(),
    )
    build.phase_stats[PHASE_VERSIONS] = {"nodes_fetched": len(todo)}


async def _fetch_versions(client: RegistryClient, node_id: str, latest: str) -> dict[str, Any]:
    path = api_path("nodes", node_id, "versions")
    answer = await client.get(path, accept=(403, 404))
    record: dict[str, Any] = {
        "k": "versions",
        "id": node_id,
        "for": latest,
        "at": clock.iso(),
        "unavailable": {403: "banned", 404: "not_found"}.get(answer.status),
        "versions": [],
    }
    if answer.status != 200:
        return record
    if not isinstance(answer.data, list) or not all(
        isinstance(v, dict) and isinstance(v.get("version"), str) for v in answer.data
    ):
        raise FetchError(client.url(path), "not a list of versions")
    versions = _unique_versions(answer.data)
    lacking = [v for v in versions if not v.get("download_url")]
    urls = await asyncio.gather(*(_install_url(client, node_id, v["version"]) for v in lacking))
    for version, url in zip(lacking, urls, strict=True):
        version["download_url"] = url
    record["versions"] = versions
    return record


def _unique_versions(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server versions, first of each version string, `downloadUrl` stored as `download_url`."""
    seen: dict[str, dict[str, Any]] = {}
    for raw in listing:
        version = {k: v for k, v in raw.items() if k not in cache_file.VERSION_LOCAL_KEYS}
        version["download_url"] = version.pop("downloadUrl", None) or version.get("download_url")
        seen.setdefault(version["version"], version)
    return list(seen.values())


async def _install_url(client: RegistryClient, node_id: str, version: str) -> str | None:
    answer = await client.get(
        api_path("nodes", node_id, "install"), {"version": version}, accept=(404,)
    )
    data = answer.data
    return data.get("downloadUrl") or None if isinstance(data, dict) else None


def _apply_versions(nodes: dict[str, Node], record: dict[str, Any]) -> None:
    """Replace a node's versions; keep metadata already fetched for versions that remain."""
    node = nodes.get(record["id"])
    if node is None:
        return
    old = {v["version"]: v for v in node.get("versions_list", [])}
    fresh = []
    for version in record["versions"]:
        entry = dict(version)
        previous = old.get(entry["version"], {})
        entry["metadata_cached"] = bool(previous.get("metadata_cached"))
        if entry["metadata_cached"]:
            entry["comfy_nodes"] = previous.get("comfy_nodes", [])
        fresh.append(entry)
    node["versions_list"] = fresh
    node["fully_cached"] = True
    node["versions_cached_at"] = record["at"]
    node["versions_cached_for"] = record["for"]
    if record["unavailable"]:
        node["versions_unavailable"] = record["unavailable"]
    else:
        node.pop("versions_unavailable", None)
