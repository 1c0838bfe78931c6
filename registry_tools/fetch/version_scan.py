"""The bulk read of every version: `/versions` pages over all packages, in rounds.

`/versions` is ordered by the version string only, so pages over a tie (`1.0.0` is shared by
about a thousand packages) are not stable and one pass skips some versions and repeats
others. Versions are de-duplicated by their `id` and counted against `total`; while short,
another round re-fetches only the pages of the ties not yet seen whole (a tie's size is
known from where its rows sit: `PagedScan.pages_to_refetch`), up to `max_rounds`. What is
still missing after that is found by `suspects`: the nodes whose versions the scan cannot
vouch for get their own listing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient
from registry_tools.fetch.options import PHASE_VERSIONS, Node
from registry_tools.fetch.paging import Listing, Page, PagedScan, fetch_into, fetch_page

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the documented maximum of `pageSize` (400 above it)
MAX_VERSIONS = 2_000_000


def version_id(version: dict[str, Any]) -> str | None:
    """A version's identity: the server's `id`, else node id and version string."""
    if isinstance(version.get("id"), str) and version["id"]:
        return version["id"]
    node, string = version.get("node_id"), version.get("version")
    return f"{node}\0{string}" if isinstance(node, str) and isinstance(string, str) else None


def _checked_id(version: dict[str, Any]) -> str | None:
    """Only versions naming their node and version string can be placed in the cache."""
    ok = isinstance(version.get("node_id"), str) and isinstance(version.get("version"), str)
    return version_id(version) if ok else None


VERSIONS = Listing(
    path="/versions",
    items_key="versions",
    size_param="pageSize",
    max_items=MAX_VERSIONS,
    item_id=_checked_id,
    sort_key=lambda version: version.get("version"),
    max_rounds=15,
)


def new_scan(build: Build) -> PagedScan:
    """The scan, with the pages a previous run of this job already fetched."""
    scan = PagedScan(VERSIONS, PAGE_SIZE)
    for record in build.replayed["vpage"]:
        scan.add(record["round"], record["page"], Page.from_record(record))
    return scan


async def first_page(client: RegistryClient, build: Build, scan: PagedScan) -> bool:
    """Page 1 (its `total` decides whether the scan is worth it). False if the server has no
    usable `/versions` (a mirror without it, an answer of another shape, attempts exhausted):
    the caller then lists each node's versions, so this is a warning, not a failure."""
    if (1, 1) in scan.pages:
        return True
    try:
        answer = await fetch_page(client, VERSIONS, 1, scan.size)
    except FetchError as error:
        log.warning("bulk read of versions unavailable (%s): listing each node's instead", error)
        return False
    scan.add(1, 1, answer)
    build.record(answer.record("vpage", 1, 1))
    return True


async def complete_scan(client: RegistryClient, build: Build, scan: PagedScan) -> None:
    """The rest of round 1, then rounds until the count reaches `total` (bounded)."""
    round_ = max(scan.rounds(), 1)
    while True:
        wanted = range(1, scan.page_count() + 1) if round_ == 1 else scan.pages_to_refetch()
        todo = [page for page in wanted if (round_, page) not in scan.pages]
        build.reporter.grow(PHASE_VERSIONS, len(todo))
        async with asyncio.TaskGroup() as group:
            for page in todo:
                group.create_task(_fetch(client, build, scan, round_, page))
        build.checkpoint()
        if scan.complete() or round_ >= VERSIONS.max_rounds or _failed(build):
            return
        round_ += 1


def _failed(build: Build) -> bool:
    return any(f.startswith(f"{PHASE_VERSIONS}: /versions page") for f in build.failures)


async def _fetch(
    client: RegistryClient, build: Build, scan: PagedScan, round_: int, page: int
) -> None:
    await fetch_into(client, build, scan, (round_, page), PHASE_VERSIONS, "vpage", "/versions page")


def by_node(scan: PagedScan) -> dict[str, list[dict[str, Any]]]:
    """The scan's versions grouped by node id."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for version in scan.unique().values():
        grouped[version["node_id"]].append(version)
    return grouped


def suspects(nodes: dict[str, Node], scan: PagedScan, grouped: dict[str, list]) -> list[str]:
    """Nodes whose versions the scan cannot vouch for, to be listed one by one:

    - its `latest_version` (any status) is not in the scan: a package hidden from `/versions`
      (banned), or a version the scan skipped;
    - when the scan is short of `total`: a version this cache knew is not in it (skipped, or
      really gone: the node's own listing tells which).
    """
    complete = scan.complete()
    found = []
    for node_id in sorted(nodes):
        node = nodes[node_id]
        seen = {v["version"] for v in grouped.get(node_id, ())}
        latest = node.get("latest_version")
        latest = latest.get("version") if isinstance(latest, dict) else None
        hidden = isinstance(latest, str) and bool(latest) and latest not in seen
        known = node.get("versions_list", [])
        skipped = not complete and any(v["version"] not in seen for v in known)
        if hidden or skipped:
            found.append(node_id)
    return found
