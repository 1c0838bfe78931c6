"""The cache file: its shape, validation, and assembly (nodes by id, versions newest first).

The format is documented in docs/cache-format.md."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from registry_tools import clock
from registry_tools.errors import UserError
from registry_tools.files import read_json
from registry_tools.semver import version_key

# Keys this project adds to a registry Node or NodeVersion; everything else is the server's.
NODE_LOCAL_KEYS = (
    "fully_cached",
    "versions_cached_at",
    "versions_cached_for",
    "versions_unavailable",
    "versions_list",
)
VERSION_LOCAL_KEYS = ("comfy_nodes", "metadata_cached")


def load_cache(path: Path, what: str = "--input") -> dict[str, Any]:
    """Read and validate a cache file (shape only; unknown fields are kept)."""
    cache = read_json(path, what)
    problem = cache_problem(cache)
    if problem:
        raise UserError(f"{what} {path}: not a registry cache ({problem})")
    return cache


def cache_problem(cache: Any) -> str | None:
    """Why `cache` is not a registry cache, or None when it is one."""
    if not isinstance(cache, dict):
        return f"top level is a JSON {type(cache).__name__}, expected an object"
    nodes = cache.get("nodes")
    if not isinstance(nodes, list):
        return "missing the 'nodes' list"
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            return f"nodes[{index}] has no string 'id'"
        versions = node.get("versions_list", [])
        if not isinstance(versions, list) or not all(
            isinstance(v, dict) and isinstance(v.get("version"), str) for v in versions
        ):
            return f"node {node['id']!r} has a malformed 'versions_list'"
    return None


def sort_versions(versions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Version entries newest first (semver-aware)."""
    return sorted(versions, key=lambda v: version_key(v["version"]), reverse=True)


def build_cache(nodes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Assemble the cache document: nodes by id, versions newest first, counts, timestamp."""
    ordered = sorted(nodes, key=lambda n: n["id"])
    for node in ordered:
        if "versions_list" in node:
            node["versions_list"] = sort_versions(node["versions_list"])
    versions = [v for node in ordered for v in node.get("versions_list", [])]
    return {
        "cached_at": clock.iso(),
        "node_count": len(ordered),
        "versions_processed": len(versions),
        "metadata_entries": sum(len(v.get("comfy_nodes") or []) for v in versions),
        "nodes": ordered,
    }
