"""Phase 1: page through `/nodes` and merge the listing into the known nodes."""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools.fetch import cache_file
from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient
from registry_tools.fetch.options import PHASE_NODES, Node


async def run(client: RegistryClient, build: Build) -> None:
    """Page through `/nodes`, then merge the listing into the known nodes."""
    pages: dict[int, list[Node]] = {r["page"]: r["nodes"] for r in build.replayed["page"]}
    totals = {r["page"]: r["total_pages"] for r in build.replayed["page"]}
    reported = {r["page"]: r["total"] for r in build.replayed["page"]}
    build.reporter.start(PHASE_NODES, 1)

    async def fetch(page: int) -> None:
        try:
            record = await _fetch_page(client, page, build.options.nodes_per_page)
        except FetchError as error:
            build.fail(f"{PHASE_NODES}: page {page}", error)
        else:
            build.record(record)
            pages[page], totals[page], reported[page] = (
                record["nodes"],
                record["total_pages"],
                record["total"],
            )
            build.checkpoint()
        finally:
            build.reporter.advance(PHASE_NODES)

    if 1 not in pages:
        await fetch(1)
    else:
        build.reporter.advance(PHASE_NODES)
    last = max(totals.values(), default=0)
    if build.options.pages is not None:
        last = min(last, build.options.pages)
    missing = [page for page in range(2, last + 1) if page not in pages]
    build.reporter.grow(PHASE_NODES, max(last - 1, 0))
    build.reporter.advance(PHASE_NODES, last - 1 - len(missing))
    async with asyncio.TaskGroup() as group:
        for page in missing:
            group.create_task(fetch(page))
    build.reporter.finish(PHASE_NODES)
    fetched = all(page in pages for page in range(1, last + 1)) and last > 0
    listed = _dedupe(pages)
    complete = (
        fetched
        and last == max(totals.values())
        and len(listed) >= max(reported.values(), default=0)
    )
    build.nodes = _merge_listing(build.nodes, listed, complete)
    build.phase_stats[PHASE_NODES] = {
        "pages": {page: len(pages[page]) for page in sorted(pages)},
        "listed": len(listed),
        "complete": complete,
    }


async def _fetch_page(client: RegistryClient, page: int, limit: int) -> dict[str, Any]:
    path = "/nodes"
    answer = await client.get(path, {"page": page, "limit": limit})
    data = answer.data
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list) or not all(_has_id(node) for node in nodes):
        raise FetchError(client.url(path, {"page": page, "limit": limit}), "not a nodes page")
    total_pages = data.get("totalPages")
    total = data.get("total")
    return {
        "k": "page",
        "page": page,
        "nodes": nodes,
        "total_pages": total_pages if isinstance(total_pages, int) else page,
        "total": total if isinstance(total, int) else 0,
    }


def _has_id(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("id"), str) and bool(node["id"])


def _dedupe(pages: dict[int, list[Node]]) -> dict[str, Node]:
    """Pages shift while we page (nodes get added): keep each id's first appearance."""
    listed: dict[str, Node] = {}
    for page in sorted(pages):
        for node in pages[page]:
            listed.setdefault(node["id"], node)
    return listed


def _merge_listing(known: dict[str, Node], listed: dict[str, Node], complete: bool) -> dict:
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
