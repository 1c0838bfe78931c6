"""Phase 2: every version of every known node, with its status, and the download URLs of the
usable ones.

Every run looks at every node: a version can be deprecated, banned or deleted without a new
release, and a refresh must see it. Two ways to read them, the cheaper one chosen from the
first `/versions` page: the bulk scan (`version_scan`, about one request per 100 versions of
the whole registry) or one `/nodes/{id}/versions` per node (cheaper for a few nodes of a large
registry, e.g. with `--pages`). Nodes the scan cannot vouch for get their own listing too.
Versions listed without a download URL get it from the bulk version read (`download_urls`),
never from `/install`.

The records (scan pages, node listings, URL batches) are journaled as they land and assembled
once at the end of the phase, by one pure function of them: the same records give the same
cache, whatever order they arrived in or whether they were replayed.
"""

from __future__ import annotations

from typing import Any

from registry_tools import clock
from registry_tools.fetch import cache_file, download_urls, version_scan
from registry_tools.fetch.build import Build, fan_out
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS, Node

SMALL = 20  # at most this many nodes: list them one by one, no scan


def latest_version(node: Node) -> str:
    """The version the registry calls latest, '' when it names none."""
    latest = node.get("latest_version")
    return latest.get("version") or "" if isinstance(latest, dict) else ""


async def run(client: RegistryClient, build: Build) -> None:
    nodes = build.nodes
    build.reporter.start(PHASE_VERSIONS, 0)
    scan = version_scan.new_scan(build)
    scanned = False
    worth_probing = len(nodes) > SMALL
    if worth_probing and await version_scan.first_page(client, build, scan):
        scanned = scan.page_count() < len(nodes)
        if scanned:
            await version_scan.complete_scan(client, build, scan)
    grouped = version_scan.by_node(scan) if scanned else {}
    one_by_one = version_scan.suspects(nodes, scan, grouped) if scanned else sorted(nodes)
    await _node_listings(client, build, one_by_one)
    listings = {r["id"]: r for r in build.replayed["versions"]}
    fresh = _fresh_versions(nodes, grouped if scanned else None, listings, set(one_by_one))
    wanted = [
        (node_id, v["version"])
        for node_id, versions in sorted(fresh.items())
        for v in versions
        if cache_file.is_usable(v) and not _known_url(nodes.get(node_id, {}), v)
    ]
    await download_urls.fetch_urls(client, build, wanted)
    _assemble(nodes, fresh, listings, download_urls.known_urls(build), clock.iso())
    _check_count(build, scan, scanned, fresh)
    build.reporter.finish(PHASE_VERSIONS)
    build.phase_stats[PHASE_VERSIONS] = {
        "scan_pages": len(scan.pages) if scanned else 0,
        "scan_complete": scan.complete() if scanned else None,
        "nodes_fetched": len(one_by_one),
        "urls_asked": len(wanted),
    }


async def _node_listings(client: RegistryClient, build: Build, node_ids: list[str]) -> None:
    done = {r["id"] for r in build.replayed["versions"]}
    todo = [node_id for node_id in node_ids if node_id not in done]

    def apply(_nodes: dict[str, Node], record: dict[str, Any]) -> None:
        build.replayed["versions"].append(record)

    await fan_out(
        build,
        PHASE_VERSIONS,
        todo,
        lambda node_id: _fetch_versions(client, node_id, latest_version(build.nodes[node_id])),
        apply,
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
    listed_alone: set[str],
) -> dict[str, list[dict[str, Any]]]:
    """Each node's versions as the server sent them this run: its own listing, else the
    scan's (`grouped`, None when there was no scan). Absent: nodes this run learnt nothing
    about, and nodes whose own listing was needed but failed (they keep what they had)."""
    fresh = {}
    for node_id in sorted(nodes):
        if node_id in listings:
            fresh[node_id] = _unique_versions(listings[node_id]["versions"])
        elif grouped is not None and node_id not in listed_alone:
            fresh[node_id] = _unique_versions(grouped.get(node_id, []))
    return fresh


def _unique_versions(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server versions, first of each version string, `downloadUrl` stored as `download_url`."""
    seen: dict[str, dict[str, Any]] = {}
    for raw in listing:
        version = {k: v for k, v in raw.items() if k not in cache_file.VERSION_LOCAL_KEYS}
        url = version.pop("downloadUrl", None)
        version["download_url"] = (
            url if isinstance(url, str) and url else version.get("download_url")
        )
        seen.setdefault(version["version"], version)
    return list(seen.values())


def _known_url(node: Node, version: dict[str, Any]) -> bool:
    """Whether the listing or the cache already has this version's download URL."""
    if cache_file.download_url(version):
        return True
    old = {v["version"]: v for v in node.get("versions_list", [])}.get(version["version"], {})
    return bool(cache_file.download_url(old))


def _assemble(
    nodes: dict[str, Node],
    fresh: dict[str, list[dict[str, Any]]],
    listings: dict[str, dict[str, Any]],
    urls: dict[tuple[str, str], str],
    now: str,
) -> None:
    """Replace each fetched node's versions; keep what earlier runs learnt about versions that
    remain (metadata, download URL)."""
    for node_id, versions in fresh.items():
        node = nodes[node_id]
        old = {v["version"]: v for v in node.get("versions_list", [])}
        entries = []
        for version in versions:
            entry = dict(version)
            previous = old.get(entry["version"], {})
            if not cache_file.download_url(entry):
                learnt = urls.get((node_id, entry["version"]))
                entry["download_url"] = learnt or cache_file.download_url(previous) or learnt
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


def _check_count(build: Build, scan: Any, scanned: bool, fresh: dict[str, list]) -> None:
    """A scan still short of `total` after the rounds and the node listings is reported: some
    versions may be missing (nothing was deleted for it: cached versions the scan lacked were
    checked one node at a time)."""
    if not scanned or scan.complete():
        return
    ids = {version_scan.version_id(v) for versions in fresh.values() for v in versions}
    ids |= set(scan.unique())
    if len(ids) < (scan.total or 0):
        build.fail(
            PHASE_VERSIONS,
            f"version scan incomplete: {len(ids)} of the {scan.total} versions the registry "
            "counts (its order shifted while paging); run again to complete it",
        )
