"""Phase 2: every version of every known node, with its status, and the download URLs of the
usable ones.

Every run looks at every version it knows: a version can be deprecated, banned or deleted
without a new release, and a refresh must see it. Three ways to read versions, each where it
is cheapest:

- a node's own listing (`/nodes/{id}/versions`) for a node never fetched, with a new release
  (`latest_version` changed), or whose versions the other reads cannot vouch for;
- the bulk read (`bulk_versions`, hundreds of known versions per request, no paging) for
  every version already known: status, deprecation, extraction state, download URL;
- the bulk scan of `/versions` (`version_scan`) when most nodes need their own listing (a first
  mirror): about one request per 100 versions of the whole registry, plus rounds over ties.

The cheaper mix is chosen from the first `/versions` page. Versions listed without a download
URL get it from the bulk read, never from `/install`. All records (scan pages, node listings,
bulk answers) are journaled as they land and assembled once at the end of the phase by one
pure function of them: the same records give the same cache, whatever order they arrived in
or whether they were replayed.
"""

from __future__ import annotations

import math
from typing import Any

from registry_tools import clock
from registry_tools.fetch import bulk_versions, cache_file, version_scan
from registry_tools.fetch.build import Build, fan_out
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS, Node

SMALL = 20  # at most this many nodes to list: list them, no scan
SCAN_ROUNDS = 4  # what a scan costs, in passes over its pages (ties need several)


def latest_version(node: Node) -> str:
    """The version the registry calls latest, '' when it names none."""
    latest = node.get("latest_version")
    return latest.get("version") or "" if isinstance(latest, dict) else ""


def needs_listing(node: Node) -> bool:
    """Never fetched, last fetch failed or was refused, or a new release since."""
    return (
        not node.get("fully_cached")
        or bool(node.get("versions_unavailable"))
        or node.get("versions_cached_for") != latest_version(node)
    )


async def run(client: RegistryClient, build: Build) -> None:
    nodes = build.nodes
    build.reporter.start(PHASE_VERSIONS, 0)
    alone = {node_id for node_id, node in nodes.items() if needs_listing(node)}
    known = [
        (node_id, v["version"])
        for node_id in sorted(set(nodes) - alone)
        for v in nodes[node_id].get("versions_list", [])
    ]
    scan = version_scan.new_scan(build)
    scanned = await _scan_is_cheaper(client, build, scan, len(alone), len(known))
    if scanned:
        await version_scan.complete_scan(client, build, scan)
        grouped = version_scan.by_node(scan)
        alone = set(version_scan.suspects(nodes, scan, grouped))
    else:
        grouped = None
        await bulk_versions.read_versions(client, build, known)
        read = bulk_versions.known(build)
        alone |= {n for (n, _v), result in read.items() if result == "error"}
    await _node_listings(client, build, sorted(alone))
    listings = {r["id"]: r for r in build.replayed["versions"]}
    fresh = _fresh_versions(nodes, grouped, listings, alone, bulk_versions.known(build))
    lacking = [
        (node_id, v["version"])
        for node_id, versions in sorted(fresh.items())
        for v in versions
        if cache_file.is_usable(v) and not _known_url(nodes[node_id], v)
    ]
    await bulk_versions.read_versions(client, build, lacking)
    _assemble(nodes, fresh, listings, bulk_versions.known(build), clock.iso())
    if scanned:
        _check_count(build, scan, fresh)
    build.reporter.finish(PHASE_VERSIONS)
    build.phase_stats[PHASE_VERSIONS] = {
        "scan_pages": len(scan.pages) if scanned else 0,
        "scan_complete": scan.complete() if scanned else None,
        "nodes_listed": len(alone),
        "versions_read": len(bulk_versions.known(build)),
    }


async def _scan_is_cheaper(
    client: RegistryClient, build: Build, scan: Any, alone: int, known: int
) -> bool:
    """Whether the `/versions` scan costs less than listing `alone` nodes and bulk-reading
    `known` versions; its first page (one request) tells its size."""
    if alone <= SMALL or not await version_scan.first_page(client, build, scan):
        return False
    reads = alone + math.ceil(known / bulk_versions.FIRST_BATCH)
    return scan.page_count() * SCAN_ROUNDS < reads


async def _node_listings(client: RegistryClient, build: Build, node_ids: list[str]) -> None:
    done = {r["id"] for r in build.replayed["versions"]}

    def keep(_nodes: dict[str, Node], record: dict[str, Any]) -> None:
        build.replayed["versions"].append(record)

    await fan_out(
        build,
        PHASE_VERSIONS,
        [node_id for node_id in node_ids if node_id not in done],
        lambda node_id: _fetch_versions(client, node_id, latest_version(build.nodes[node_id])),
        keep,
        lambda node_id: node_id,
        lambda _node_id: build.unit_done(),
    )


async def _fetch_versions(client: RegistryClient, node_id: str, latest: str) -> dict[str, Any]:
    path = api_path("nodes", node_id, "versions")
    answer = await client.get(path, accept=(403, 404))
    record: dict[str, Any] = {
        "k": "versions",
        "id": node_id,
        "for": latest,
        "unavailable": {403: "banned", 404: "not_found"}.get(answer.status),
        "versions": [],
    }
    if answer.status != 200:
        return record
    if not isinstance(answer.data, list) or not all(
        isinstance(v, dict) and isinstance(v.get("version"), str) for v in answer.data
    ):
        raise FetchError(client.url(path), "not a list of versions")
    record["versions"] = answer.data
    return record


def _fresh_versions(
    nodes: dict[str, Node],
    grouped: dict[str, list] | None,
    listings: dict[str, dict[str, Any]],
    alone: set[str],
    read: dict[tuple[str, str], Any],
) -> dict[str, list[dict[str, Any]]]:
    """Each node's versions as the server sent them this run: its own listing, else the
    scan's (`grouped`, None without a scan), else its known versions as the bulk read
    answered (a version the registry no longer has is gone; one the read did not answer is
    kept as it was). Absent: nodes whose own listing was needed but failed, and nodes whose
    bulk read failed entirely (they keep what they had)."""
    fresh = {}
    for node_id in sorted(nodes):
        if node_id in listings:
            fresh[node_id] = _unique_versions(listings[node_id]["versions"])
        elif node_id in alone:
            continue
        elif grouped is not None:
            fresh[node_id] = _unique_versions(grouped.get(node_id, []))
        else:
            old = nodes[node_id].get("versions_list", [])
            if old and not any((node_id, v["version"]) in read for v in old):
                continue
            kept = []
            for version in old:
                result = read.get((node_id, version["version"]), version)
                if isinstance(result, dict):
                    kept.append(result)
            fresh[node_id] = _unique_versions(kept)
    return fresh


def _unique_versions(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server versions, first of each version string, `downloadUrl` stored as `download_url`."""
    seen: dict[str, dict[str, Any]] = {}
    for raw in listing:
        version = {k: v for k, v in raw.items() if k not in cache_file.VERSION_LOCAL_KEYS}
        if "downloadUrl" in version:  # the server's word, kept ('' included)
            url = version.pop("downloadUrl")
            version["download_url"] = url if isinstance(url, str) else None
        else:  # left out of the listing: unknown until asked
            version.setdefault("download_url", None)
        seen.setdefault(version["version"], version)
    return list(seen.values())


def _known_url(node: Node, version: dict[str, Any]) -> bool:
    """Whether this run's answer or the cache already has the version's download URL."""
    if cache_file.download_url(version):
        return True
    old = {v["version"]: v for v in node.get("versions_list", [])}.get(version["version"], {})
    return bool(cache_file.download_url(old))


def _assemble(
    nodes: dict[str, Node],
    fresh: dict[str, list[dict[str, Any]]],
    listings: dict[str, dict[str, Any]],
    read: dict[tuple[str, str], Any],
    now: str,
) -> None:
    """Replace each fetched node's versions; keep what earlier runs learnt about versions that
    remain (metadata, pending state, download URL)."""
    for node_id, versions in fresh.items():
        node = nodes[node_id]
        old = {v["version"]: v for v in node.get("versions_list", [])}
        entries = []
        for version in versions:
            entry = dict(version)
            previous = old.get(entry["version"], {})
            if not cache_file.download_url(entry):
                answer = read.get((node_id, entry["version"]))
                if isinstance(answer, dict):  # the bulk read's word ('' if it has none)
                    entry["download_url"] = cache_file.download_url(answer)
                elif cache_file.download_url(previous):
                    entry["download_url"] = cache_file.download_url(previous)
            for key in cache_file.VERSION_LOCAL_KEYS:
                if key in previous:
                    entry[key] = previous[key]
            entry["metadata_cached"] = bool(previous.get("metadata_cached"))
            entries.append(entry)
        node["versions_list"] = entries
        node["fully_cached"] = True
        node["versions_cached_at"] = now
        listing = listings.get(node_id)
        node["versions_cached_for"] = listing["for"] if listing else latest_version(node)
        unavailable = listing["unavailable"] if listing else None
        if unavailable:
            node["versions_unavailable"] = unavailable
        else:
            node.pop("versions_unavailable", None)


def _check_count(build: Build, scan: Any, fresh: dict[str, list]) -> None:
    """A scan still short of `total` after the rounds and the node listings is reported: some
    versions may be missing (nothing was deleted for it: cached versions the scan lacked were
    checked one node at a time)."""
    if scan.complete():
        return
    ids = {version_scan.version_id(v) for versions in fresh.values() for v in versions}
    ids |= set(scan.unique())
    if len(ids) < (scan.total or 0):
        build.fail(
            PHASE_VERSIONS,
            f"version scan incomplete: {len(ids)} of the {scan.total} versions the registry "
            "counts (its order shifted while paging); run again to complete it",
        )
