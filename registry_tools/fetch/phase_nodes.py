"""Phase 1: list every node, in rounds of `/nodes` pages, and merge the listing into the known
nodes.

The listing's order is not stable (see `paging`), so one pass over the pages can skip nodes.
Round 1 fetches page 1 (to learn `total` and the page size the server uses), then the other
pages concurrently; while the de-duplicated ids are fewer than `total`, another round fetches
every page again, up to `NODES.max_rounds`. Every request asks `latest=true` (a server
instance's page cache would otherwise answer a second round with the first round's pages) and
`include_banned=true` (a banned package is listed with its status instead of vanishing).

A listing that never reaches `total` is a failure (exit 1) and deletes nothing: only a complete
listing drops from an input cache the nodes the registry no longer lists. `--pages N` asks for
a partial listing on purpose: then no further round is made, and nothing is deleted either.

A refresh first tries the cheap way (`_refresh`): only the nodes created or updated since the
input cache's newest timestamp (`timestamp=`), checked against the registry's count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from registry_tools import clock
from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient
from registry_tools.fetch.options import PHASE_NODES, Node
from registry_tools.fetch.paging import Listing, Page, PagedScan, fetch_page

log = logging.getLogger(__name__)

MAX_NODES = 200_000  # 40 times the registry of 2026: a `total` above it is not believed

NODES = Listing(
    path="/nodes",
    items_key="nodes",
    size_param="limit",
    max_items=MAX_NODES,
    item_id=lambda node: node.get("id") if isinstance(node.get("id"), str) else None,
    params=(("include_banned", "true"), ("latest", "true")),
)


async def run(client: RegistryClient, build: Build) -> None:
    """List the nodes (cheaply when refreshing a complete cache), then merge the listing."""
    build.reporter.start(PHASE_NODES, 1)
    since = newest_timestamp(build.nodes) if build.options.pages is None else None
    if since is not None and await _refresh(client, build, since):
        build.reporter.finish(PHASE_NODES)
        return
    scan = PagedScan(NODES, build.options.nodes_per_page)
    for record in build.replayed["page"]:
        scan.add(record["round"], record["page"], Page.from_record(record))
    limit = build.options.pages
    await _rounds(client, build, scan, "page", limit)
    build.reporter.finish(PHASE_NODES)
    listed = scan.unique()
    total = scan.total or 0
    complete = scan.complete() and not _failed(build)
    build.listing = {"complete": complete, "listed": len(listed), "total": total}
    if not complete and limit is None and not _failed(build):
        build.fail(
            PHASE_NODES,
            f"listing incomplete: {len(listed)} of the {total} nodes the registry counts after "
            f"{scan.rounds()} rounds of pages (its order shifted while paging); nothing was "
            "deleted, run again to complete it",
        )
    build.nodes = _merge_listing(build.nodes, listed, complete)
    build.phase_stats[PHASE_NODES] = {
        "pages": {p: len(answer.items) for (r, p), answer in sorted(scan.pages.items()) if r == 1},
        "rounds": scan.rounds(),
        "listed": len(listed),
        "total": total,
        "complete": complete,
    }


def newest_timestamp(nodes: dict[str, Node]) -> str | None:
    """The newest server time in a cache (node creation, version uploads), for `timestamp=`:
    whatever changed on the registry since the cache was fetched changed after that. None
    for a cache without nodes."""
    newest = None
    for node in nodes.values():
        latest = node.get("latest_version")
        stamps = [node.get("created_at")]
        stamps.append(latest.get("createdAt") if isinstance(latest, dict) else None)
        stamps += [v.get("createdAt") for v in node.get("versions_list", [])]
        for stamp in stamps:
            parsed = clock.parse_time_or_none(stamp)
            if parsed is not None and (newest is None or parsed > newest):
                newest = parsed
    return clock.iso(newest) if newest is not None else None


async def _refresh(client: RegistryClient, build: Build, since: str) -> bool:
    """Refresh a complete cache's listing with the nodes created or updated since `since`
    (`timestamp=`, a page or two), checked by one more request: the registry's `total` must
    be the known nodes plus the new ones, or a node was deleted (or the cache was not
    complete) and the full listing is needed. Whether that held."""
    changed = PagedScan(_changed_since(since), build.options.nodes_per_page)
    for record in build.replayed["since"]:
        changed.add(record["round"], record["page"], Page.from_record(record))
    await _rounds(client, build, changed, "since")
    if _failed(build) or not changed.complete():
        _forget_failures(build)
        return False
    try:
        everything = await fetch_page(client, NODES, 1, 1)
    except FetchError as error:
        log.warning("could not count the registry's nodes (%s): listing them all", error)
        return False
    fresh = changed.unique()
    known = set(build.nodes) | set(fresh)
    if len(known) != everything.total:
        log.info(
            "%d nodes known, the registry has %d: listing them all", len(known), everything.total
        )
        return False
    build.listing = {"complete": True, "listed": len(known), "total": everything.total}
    build.nodes = _merge_listing(build.nodes, fresh, complete=False)
    build.phase_stats[PHASE_NODES] = {
        "pages": {},
        "since": since,
        "changed": len(fresh),
        "listed": len(known),
        "total": everything.total,
        "complete": True,
    }
    return True


def _changed_since(since: str) -> Listing:
    return Listing(
        path=NODES.path,
        items_key=NODES.items_key,
        size_param=NODES.size_param,
        max_items=NODES.max_items,
        item_id=NODES.item_id,
        params=(*NODES.params, ("timestamp", since)),
    )


def _failed(build: Build) -> bool:
    return any(failure.startswith(f"{PHASE_NODES}: page") for failure in build.failures)


def _forget_failures(build: Build) -> None:
    """Failures of the cheap path are not the run's: the full listing follows."""
    build.failures[:] = [f for f in build.failures if not f.startswith(f"{PHASE_NODES}: page")]


async def _rounds(
    client: RegistryClient, build: Build, scan: PagedScan, kind: str, limit: int | None = None
) -> None:
    """Rounds of pages until the listing reaches its `total` (or the bound, or a failure)."""
    round_ = max(scan.rounds(), 1)
    while True:
        await _round(client, build, scan, round_, limit, kind)
        if limit is not None or scan.complete() or round_ >= NODES.max_rounds or _failed(build):
            return
        round_ += 1


async def _round(
    client: RegistryClient,
    build: Build,
    scan: PagedScan,
    round_: int,
    limit: int | None,
    kind: str,
) -> None:
    """One pass over the pages (those of this round not already fetched or replayed)."""

    async def fetch(page: int) -> None:
        try:
            answer = await fetch_page(client, scan.listing, page, scan.size)
        except FetchError as error:
            build.fail(f"{PHASE_NODES}: page {page}", error)
        else:
            scan.add(round_, page, answer)
            build.record(answer.record(kind, round_, page))
            build.checkpoint()
        finally:
            build.reporter.advance(PHASE_NODES)
            build.status(PHASE_NODES, listed=len(scan.unique()), total=scan.total)

    if (round_, 1) not in scan.pages:
        await fetch(1)
        if (round_, 1) not in scan.pages:
            return
    else:
        build.reporter.advance(PHASE_NODES)
    last = scan.page_count() if limit is None else min(scan.page_count(), limit)
    missing = [page for page in scan.missing(round_, last) if page != 1]
    build.reporter.grow(PHASE_NODES, last - 1)
    build.reporter.advance(PHASE_NODES, last - 1 - len(missing))
    async with asyncio.TaskGroup() as group:
        for page in missing:
            group.create_task(fetch(page))


def _merge_listing(known: dict[str, Node], listed: dict[str, Any], complete: bool) -> dict:
    """Fresh server fields, our own fields carried over; drop unlisted nodes only if complete."""
    merged: dict[str, Node] = {}
    for node_id, server_node in listed.items():
        node = {k: v for k, v in server_node.items() if k not in cache_file.NODE_LOCAL_KEYS}
        old = known.get(node_id, {})
        node.update({k: old[k] for k in cache_file.NODE_LOCAL_KEYS if k in old})
        node.setdefault("fully_cached", False)
        merged[node_id] = node
    if not complete:
        merged.update({k: v for k, v in known.items() if k not in merged})
    return merged
