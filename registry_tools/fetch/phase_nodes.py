"""Phase 1: list every node, in rounds of `/nodes` pages, and merge the listing into the known
nodes.

The listing's order is not stable (see `paging`), so one pass over the pages can skip nodes.
Round 1 fetches page 1 (to learn `total` and the page size the server uses), then the other
pages concurrently; while the de-duplicated ids are fewer than `total`, another round fetches
every page again, up to `NODES.max_rounds`. Every request asks `latest=true` (a server
instance's page cache would otherwise answer a second round with the first round's pages) and
`include_banned=true` (a banned package is listed with its status instead of vanishing).

A listing that never reaches `total` is a failure (exit 1) and deletes nothing: only a complete
listing drops from an input cache the nodes the registry no longer lists. `--pages N` fetches at
most N pages a round: when they cannot hold the registry's `total`, the listing is partial on
purpose (no further round, nothing deleted, not a failure); when they can, rounds complete it
as without the option. Rounds also stop when one finds nothing new.

A refresh lists everything too, rather than asking `timestamp=` for what changed since the
input's newest timestamp: that filter compares with the registry's own clock, and a cache
whose newest timestamp is ahead of it (the stand-in registry's synthetic data is, a mirror
with a skewed clock would be) silently misses every change; the count check cannot catch it.
The full listing costs a few requests at `DEFAULT_PAGE_SIZE` nodes a page.
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build
from registry_tools.fetch.client import RegistryClient
from registry_tools.fetch.options import PHASE_NODES, Node
from registry_tools.fetch.paging import Listing, Page, PagedScan, fetch_into

MAX_NODES = 200_000  # 40 times the registry of 2026: a `total` above it is not believed
WAVE = 16  # pages of one round requested together

NODES = Listing(
    path="/nodes",
    items_key="nodes",
    size_param="limit",
    max_items=MAX_NODES,
    item_id=lambda node: node.get("id") if isinstance(node.get("id"), str) else None,
    params=(("include_banned", "true"), ("latest", "true")),
)


async def run(client: RegistryClient, build: Build) -> None:
    """Page through `/nodes` in rounds, then merge the listing into the known nodes."""
    build.reporter.start(PHASE_NODES, 1)
    scan = PagedScan(NODES, build.options.nodes_per_page)
    for record in build.replayed["page"]:
        scan.add(record["round"], record["page"], Page.from_record(record))
    limit = build.options.pages
    await _rounds(client, build, scan, limit)
    build.reporter.finish(PHASE_NODES)
    listed = scan.unique()
    total = scan.total or 0
    complete = scan.complete() and not _failed(build)
    build.listing = {"complete": complete, "listed": len(listed), "total": total}
    if not complete and not _partial(scan, limit) and not _failed(build):
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


def _failed(build: Build) -> bool:
    return any(failure.startswith(f"{PHASE_NODES}: page") for failure in build.failures)


def _partial(scan: PagedScan, limit: int | None) -> bool:
    """`--pages N` cut the listing short on purpose (N pages cannot hold every node)."""
    return limit is not None and scan.page_count() > limit


async def _rounds(client: RegistryClient, build: Build, scan: PagedScan, limit: int | None) -> None:
    """Rounds of pages until the listing reaches its `total`: at most `max_rounds`, none after
    a failure, a round that found nothing new, or a partial listing asked for."""
    round_ = max(scan.rounds(), 1)
    while True:
        before = scan.count()
        await _round(client, build, scan, round_, limit)
        found = scan.count() - before
        if scan.complete() or _failed(build) or _partial(scan, limit):
            return
        if round_ >= NODES.max_rounds or (round_ > 1 and not found):
            return
        round_ += 1


async def _round(
    client: RegistryClient, build: Build, scan: PagedScan, round_: int, limit: int | None
) -> None:
    """One pass over the pages (those of this round not already fetched or replayed), in
    waves: a page past the end (no nodes) ends the pass, so a `total` that lies costs a wave
    of requests, not the hundreds of pages it announces."""

    async def fetch(page: int) -> None:
        await fetch_into(client, build, scan, (round_, page), PHASE_NODES, "page", "page")

    if (round_, 1) not in scan.pages:
        await fetch(1)
        build.checkpoint()
        if (round_, 1) not in scan.pages:
            return
    else:
        build.reporter.advance(PHASE_NODES)
    last = scan.page_count() if limit is None else min(scan.page_count(), limit)
    missing = [page for page in scan.missing(round_, last) if page != 1]
    build.reporter.grow(PHASE_NODES, last - 1)
    build.reporter.advance(PHASE_NODES, last - 1 - len(missing))
    wave = max(WAVE, build.options.concurrency)
    for start in range(0, len(missing), wave):
        async with asyncio.TaskGroup() as group:
            for page in missing[start : start + wave]:
                group.create_task(fetch(page))
        build.checkpoint()
        if any(not answer.items for (r, _p), answer in scan.pages.items() if r == round_):
            build.reporter.advance(PHASE_NODES, max(0, len(missing) - start - wave))
            return


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
