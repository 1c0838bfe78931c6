"""The cache file: its shape, validation, and assembly (nodes by id, versions newest first).

The format is documented in docs/cache-format.md. `load_cache` checks the shape every reader
needs; with `strict` (the cache builder's `--input`, deeply enough that a run never fails on it
after making requests) also that every field the builder reads has its type (`deprecated` a
JSON boolean, `comfy_nodes` a list of objects, ...), and that node ids and each node's version
strings are unique.
"""

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
VERSION_LOCAL_KEYS = ("comfy_nodes", "metadata_cached", "metadata_pending")
PENDING_STATES = ("pending", "failed")

ACTIVE = "NodeVersionStatusActive"
NODE_ACTIVE = "NodeStatusActive"

_NODE_TYPES: dict[str, tuple[type, ...]] = {
    "fully_cached": (bool,),
    "versions_cached_at": (str,),
    "versions_cached_for": (str,),
    "versions_unavailable": (str,),
    "status": (str,),
    "latest_version": (dict, type(None)),
    "preempted_comfy_node_names": (list, type(None)),
}
_VERSION_TYPES: dict[str, tuple[type, ...]] = {
    "deprecated": (bool,),
    "metadata_cached": (bool,),
    "status": (str,),
    "comfy_node_extract_status": (str, type(None)),
    "download_url": (str, type(None)),
    "downloadUrl": (str, type(None)),
    "dependencies": (list, type(None)),
    "id": (str, type(None)),
}


def load_cache(path: Path, what: str = "--input", *, strict: bool = False) -> dict[str, Any]:
    """Read and validate a cache file (shape only; unknown fields are kept). `strict` (the
    cache builder's `--input`) also checks the type of every field it reads and every comfy
    node, and refuses duplicate node ids and version strings: a run must not fail on its
    input after making requests, nor take `"deprecated": "false"` for true."""
    cache = read_json(path, what)
    problem = cache_problem(cache, strict=strict)
    if problem:
        raise UserError(f"{what} {path}: not a registry cache ({problem})")
    return cache


def cache_problem(cache: Any, *, strict: bool = False) -> str | None:
    """Why `cache` is not a registry cache, or None when it is one (see `load_cache`)."""
    if not isinstance(cache, dict):
        return f"top level is a JSON {type(cache).__name__}, expected an object"
    nodes = cache.get("nodes")
    if not isinstance(nodes, list):
        return "missing the 'nodes' list"
    seen: dict[str, int] = {}
    for index, node in enumerate(nodes):
        problem = node_problem(node, index, strict=strict)
        if problem:
            return problem
        if strict and node["id"] in seen:
            return (
                f"node id {node['id']!r} appears twice (nodes[{seen[node['id']]}], nodes[{index}])"
            )
        seen[node["id"]] = index
    return None


def node_problem(node: Any, index: int = 0, *, strict: bool = False) -> str | None:
    """Why one cache node is unusable, or None. Without `strict` only the shape every reader
    needs is checked (the mappings' stream leaves `comfy_nodes` unparsed, and reads a
    non-boolean `deprecated` as "not installable" rather than refusing the file)."""
    if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
        return f"nodes[{index}] has no string 'id'"
    name = node["id"]
    wrong = _wrong_type(node, _NODE_TYPES) if strict else None
    if wrong:
        return f"node {name!r}: {wrong}"
    versions = node.get("versions_list", [])
    if not isinstance(versions, list):
        return f"node {name!r} has a malformed 'versions_list' (not a list)"
    strings: set[str] = set()
    for position, version in enumerate(versions):
        if not isinstance(version, dict) or not isinstance(version.get("version"), str):
            return f"node {name!r} has a malformed 'versions_list' (entry {position})"
        label = f"node {name!r} version {version['version']!r}"
        if strict and version["version"] in strings:
            return f"{label} appears twice"
        strings.add(version["version"])
        problem = _version_problem(version) if strict else None
        if problem:
            return f"{label}: {problem}"
    return None


def _version_problem(version: dict[str, Any]) -> str | None:
    wrong = _wrong_type(version, _VERSION_TYPES)
    if wrong:
        return wrong
    pending = version.get("metadata_pending")
    if pending is not None and pending not in PENDING_STATES:
        return f"'metadata_pending' is {pending!r}, expected 'pending' or 'failed'"
    comfy = version.get("comfy_nodes")
    if comfy is None:
        return None
    if not isinstance(comfy, list):
        return f"'comfy_nodes' is a JSON {_json_type(comfy)}, expected a list"
    for entry in comfy:
        if not isinstance(entry, dict):
            return f"'comfy_nodes' holds a JSON {_json_type(entry)}, expected objects"
        if not isinstance(entry.get("comfy_node_name", ""), str):
            return "a comfy node's 'comfy_node_name' is not a string"
        if not isinstance(entry.get("input_types", ""), str | None):
            return "a comfy node's 'input_types' is not a string"
    return None


def _wrong_type(record: dict[str, Any], types: dict[str, tuple[type, ...]]) -> str | None:
    for key, allowed in types.items():
        if key in record and not isinstance(record[key], allowed):
            # bool is an int in Python, but no field here takes an int: no special case needed
            names = " or ".join(_json_name(t) for t in allowed)
            return f"{key!r} is a JSON {_json_type(record[key])}, expected {names}"
    return None


def _json_name(kind: type) -> str:
    return {bool: "boolean", str: "string", list: "list", dict: "object"}.get(kind, "null")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def is_usable(version: dict[str, Any]) -> bool:
    """Active (or no status: an old cache) and not deprecated: a version worth using."""
    return version.get("status", ACTIVE) == ACTIVE and version.get("deprecated") is not True


def download_url(version: dict[str, Any]) -> str:
    """The version's download URL ('' when it has none); old caches may say `downloadUrl`."""
    url = version.get("download_url", version.get("downloadUrl"))
    return url if isinstance(url, str) else ""


def is_installable(version: dict[str, Any]) -> bool:
    """Usable and with a download URL: what mappings and resolve may offer."""
    return is_usable(version) and bool(download_url(version))


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
