"""Statistics over a cache and a mappings document, as plain data the notebooks plot.

Functions over *mappings* see what feeds resolution (non-deprecated, metadata-bearing
versions); functions over the *cache* see every version. All results are sorted dicts or small
dataclasses, so they diff and plot deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry_tools.mappings.signatures import split_key


def _types_by_package(mappings: dict[str, Any]) -> dict[str, set[str]]:
    providers: dict[str, set[str]] = {}
    for key, entries in mappings["mappings"].items():
        node_type = split_key(key)[0]
        for entry in entries:
            providers.setdefault(entry["package_id"], set()).add(node_type)
    return providers


def node_types_per_package(mappings: dict[str, Any]) -> dict[str, int]:
    """{package id: distinct node types it provides}; packages providing none are included
    with 0 (they are in `packages` but never in `mappings`)."""
    providers = _types_by_package(mappings)
    return {
        p: len(providers.get(p, ())) for p in sorted(set(mappings["packages"]) | providers.keys())
    }


def signatures_per_node_type(mappings: dict[str, Any]) -> dict[str, int]:
    """{node type: distinct input signatures seen for it}. Since every type has a `Type::_`
    entry (the consumers' fall-back, listing every provider), `_` counts as a signature only
    for a type that has no other: one whose nodes take no inputs."""
    keys: dict[str, set[str]] = {}
    for key in mappings["mappings"]:
        node_type, digest = split_key(key)
        keys.setdefault(node_type, set()).add(digest)
    return {t: len(d - {"_"}) or 1 for t, d in sorted(keys.items())}


def collisions(mappings: dict[str, Any]) -> dict[str, list[str]]:
    """{node type: sorted package ids} for node types provided by more than one package."""
    packages: dict[str, set[str]] = {}
    for key, entries in mappings["mappings"].items():
        packages.setdefault(split_key(key)[0], set()).update(e["package_id"] for e in entries)
    return {t: sorted(ids) for t, ids in sorted(packages.items()) if len(ids) > 1}


def versions_per_package(cache: dict[str, Any]) -> dict[str, int]:
    """{package id: versions listed in the cache}, deprecated and banned ones included."""
    return {n["id"]: len(n.get("versions_list") or []) for n in sorted(cache["nodes"], key=_id)}


@dataclass(frozen=True)
class MetadataShare:
    """How many cached versions have comfy-node metadata (`share` = with_metadata/versions)."""

    versions: int
    with_metadata: int  # `metadata_cached` true (a 404 answer counts: it is definitive)
    with_nodes: int  # ... and at least one comfy node
    share: float


def metadata_share(cache: dict[str, Any]) -> MetadataShare:
    """Share of the cache's versions whose comfy-node metadata is cached."""
    versions = [v for n in cache["nodes"] for v in n.get("versions_list") or []]
    cached = [v for v in versions if v.get("metadata_cached") is True]
    with_nodes = sum(1 for v in cached if v.get("comfy_nodes"))
    share = len(cached) / len(versions) if versions else 0.0
    return MetadataShare(len(versions), len(cached), with_nodes, share)


def _id(node: dict[str, Any]) -> str:
    return node["id"]


def node_rows(cache: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per package of a cache, for exploration (a DataFrame in the notebooks)."""
    return [
        {
            "id": node["id"],
            "name": node.get("name"),
            "publisher": (node.get("publisher") or {}).get("id"),
            "status": node.get("status"),
            "downloads": node.get("downloads"),
            "github_stars": node.get("github_stars"),
            "latest_version": (node.get("latest_version") or {}).get("version"),
            "versions": len(node.get("versions_list") or []),
            "fully_cached": node.get("fully_cached"),
        }
        for node in sorted(cache["nodes"], key=_id)
    ]


def version_rows(cache: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per version of a cache: status, flags and what its metadata holds."""
    rows = []
    for node in sorted(cache["nodes"], key=_id):
        for version in node.get("versions_list") or []:
            nodes = version.get("comfy_nodes")
            rows.append(
                {
                    "node_id": node["id"],
                    "version": version.get("version"),
                    "status": version.get("status"),
                    "deprecated": version.get("deprecated"),
                    "created_at": version.get("createdAt"),
                    "has_download_url": bool(
                        version.get("download_url") or version.get("downloadUrl")
                    ),
                    "metadata_cached": version.get("metadata_cached"),
                    "metadata_pending": version.get("metadata_pending"),
                    "comfy_nodes": len(nodes) if isinstance(nodes, list) else None,
                }
            )
    return rows
