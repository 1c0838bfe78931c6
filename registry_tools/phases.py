"""The three phases of a cache build, with incremental refresh and crash-safe checkpoints.

Phase 1 pages `/nodes`; phase 2 fetches each node's versions (and `/install` for versions
whose listing lacks a download URL); phase 3 fetches comfy-nodes metadata for the newest
`max_versions` versions of each node. Every finished unit of work is one journal record, so
a killed run resumes where it stopped, and the same record is applied whether it was just
fetched or replayed: one code path, one result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clock, store
from .client import Answer, FetchError, RegistryClient, RetryPolicy, api_path, default_base_url
from .client import check_base_url as _check_base_url
from .errors import UserError
from .progress import Reporter, default_reporter

PHASE_NODES = "phase1-nodes"
PHASE_VERSIONS = "phase2-versions"
PHASE_METADATA = "phase3-metadata"
PHASES = (PHASE_NODES, PHASE_VERSIONS, PHASE_METADATA)
METADATA_PAGE_SIZE = 50
JOURNAL_FORMAT = 1

log = logging.getLogger(__name__)

PhaseContext = Callable[[str], AbstractContextManager]
Node = dict[str, Any]


@dataclass
class CacheOptions:
    """Everything `registry-tools cache` can be told; the notebooks fill the same fields."""

    output: Path
    input: Path | None = None
    nodes: bool = True
    versions: bool = True
    metadata: bool = True
    nodes_per_page: int = 100
    max_versions: int = -1
    concurrency: int = 10
    checkpoint_interval: int = 20
    pages: int | None = None
    base_url: str = field(default_factory=default_base_url)
    max_attempts: int = 6
    backoff: float = 0.5
    timeout: float = 30.0
    token: str | None = None
    progress: bool | None = None

    def validate(self) -> None:
        """Raise UserError for values no run could use."""
        self.output = Path(self.output)
        self.input = Path(self.input) if self.input is not None else None
        for name in ("nodes_per_page", "concurrency", "checkpoint_interval", "max_attempts"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.pages is not None and self.pages < 1:
            raise UserError("--pages must be at least 1")
        if self.max_versions == 0 or self.max_versions < -1:
            raise UserError("--max-versions must be -1 (all) or at least 1")
        self.base_url = _check_base_url(self.base_url)


@dataclass
class RunSummary:
    """What a run did: the notebooks plot it, the CLI prints `text()`."""

    output: Path
    written: bool = False
    nodes: int = 0
    versions: int = 0
    metadata_entries: int = 0
    requests: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    journal_seconds: float = 0.0
    write_seconds: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    phase_stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        where = f"wrote {self.output}" if self.written else f"did not write {self.output}"
        return (
            f"{self.nodes} nodes, {self.versions} versions, {self.metadata_entries} metadata "
            f"entries; {self.requests} requests, {self.retries} retries, "
            f"{len(self.failures)} failures; {self.elapsed:.2f} s; {where}"
        )


def run_cache(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
) -> RunSummary:
    """Build or refresh a cache; safe to call from a notebook whose event loop is running."""
    options.validate()
    job = run_cache_async(options, reporter, phase_context)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()


async def run_cache_async(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
) -> RunSummary:
    """The asynchronous body of `run_cache` (options already validated)."""
    started = time.monotonic()
    store.check_writable(options.output)
    nodes, input_digest = _load_input(options.input)
    build = _Build(options, nodes, reporter or default_reporter(options.progress))
    build.open_journal(input_digest)
    enter = phase_context or (lambda _phase: contextlib.nullcontext())
    policy = RetryPolicy(options.max_attempts, options.backoff, timeout=options.timeout)
    try:
        async with RegistryClient(
            options.base_url, options.concurrency, policy, options.token
        ) as client:
            for phase, wanted, body in (
                (PHASE_NODES, options.nodes, _phase_nodes),
                (PHASE_VERSIONS, options.versions, _phase_versions),
                (PHASE_METADATA, options.metadata, _phase_metadata),
            ):
                if wanted:
                    with enter(phase):
                        await body(client, build)
            summary = build.finish(client)
    except BaseException:
        build.journal.close(remove=False)
        raise
    summary.elapsed = round(time.monotonic() - started, 3)
    return summary


def _load_input(path: Path | None) -> tuple[dict[str, Node], str | None]:
    """The input cache's nodes by id, and a digest that ties a journal to this input."""
    if path is None:
        return {}, None
    cache = store.load_cache(path)
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha1").hexdigest()
    return {node["id"]: node for node in cache["nodes"]}, digest


class _Build:
    """The state of one run: nodes by id, journal, failures, checkpoint cadence."""

    def __init__(self, options: CacheOptions, nodes: dict[str, Node], reporter: Reporter):
        self.options = options
        self.nodes = nodes
        self.reporter = reporter
        self.failures: list[str] = []
        self.replayed: dict[str, list[dict[str, Any]]] = {"page": [], "versions": [], "meta": []}
        self.progressed = False
        self.phase_stats: dict[str, dict[str, Any]] = {}
        self.journal_seconds = 0.0
        self._units_since_checkpoint = 0
        self.journal = store.Journal(Path(f"{options.output}.journal"), {})

    def open_journal(self, input_digest: str | None) -> None:
        """Resume from the journal of an interrupted run of this same job, if any."""
        o = self.options
        self.journal.header = {
            "format": JOURNAL_FORMAT,
            "job": "cache",
            "input": input_digest,
            "options": [o.nodes, o.versions, o.metadata, o.nodes_per_page, o.max_versions, o.pages],
        }
        records = list(self.journal.replay())
        for record in records:
            self.replayed[record["k"]].append(record)
        if records:
            log.warning("resuming: %d items replayed from %s", len(records), self.journal.path)
            self.progressed = True
        self.journal.open(records)

    def record(self, record: dict[str, Any]) -> None:
        """Journal a finished unit of work (applied by the caller)."""
        self.progressed = True
        with self._timed():
            self.journal.append(record)

    def unit_done(self) -> None:
        """Count a finished node; checkpoint every `checkpoint_interval` of them."""
        self._units_since_checkpoint += 1
        if self._units_since_checkpoint >= self.options.checkpoint_interval:
            self.checkpoint()

    def checkpoint(self) -> None:
        self._units_since_checkpoint = 0
        with self._timed():
            self.journal.checkpoint()
        # What exists now is mostly the cache, alive until the end: move it out of the
        # collector's sight, or every full collection walks the whole growing cache and a
        # run's GC time grows faster than its size. `finish` hands it back.
        gc.freeze()

    def fail(self, what: str, error: FetchError) -> None:
        message = f"{what}: {error}"
        log.warning("failed: %s", message)
        self.failures.append(message)

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.journal_seconds += time.perf_counter() - begin

    def finish(self, client: RegistryClient) -> RunSummary:
        """Write the cache once, atomically, unless the run failed without learning anything."""
        gc.unfreeze()
        cache = store.build_cache(self.nodes.values())
        summary = RunSummary(
            output=self.options.output,
            nodes=cache["node_count"],
            versions=cache["versions_processed"],
            metadata_entries=cache["metadata_entries"],
            requests=client.stats.requests,
            retries=client.stats.retries,
            failures=sorted(self.failures),
            timeline=client.stats.timeline,
            phase_stats=self.phase_stats,
        )
        if self.progressed or not self.failures:
            begin = time.perf_counter()
            store.write_atomic(self.options.output, store.dumps(cache))
            summary.write_seconds = round(time.perf_counter() - begin, 4)
            summary.written = True
        with self._timed():
            self.journal.close(remove=True)
        if self.journal.error is not None:
            log.warning("checkpoint journal was not fully written: %s", self.journal.error)
        summary.journal_seconds = round(self.journal_seconds, 4)
        return summary


async def _fan_out(
    build: _Build,
    phase: str,
    items: list[Any],
    fetch: Callable[[Any], Awaitable[dict[str, Any]]],
    apply: Callable[[dict[str, Node], dict[str, Any]], None],
    label: Callable[[Any], str],
    finished: Callable[[Any], None],
) -> None:
    """Fetch every item concurrently (the client bounds requests in flight); apply and
    journal each result as it lands, record each failure, report progress."""
    build.reporter.start(phase, len(items))

    async def one(item: Any) -> None:
        try:
            record = await fetch(item)
        except FetchError as error:
            build.fail(f"{phase}: {label(item)}", error)
        else:
            apply(build.nodes, record)
            build.record(record)
        finally:
            build.reporter.advance(phase)
            finished(item)

    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
    build.checkpoint()
    build.reporter.finish(phase)


# ---- phase 1: nodes -------------------------------------------------------------------------


async def _phase_nodes(client: RegistryClient, build: _Build) -> None:
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
        node = {k: v for k, v in server_node.items() if k not in store.NODE_LOCAL_KEYS}
        old = known.get(node_id, {})
        node.update({k: old[k] for k in store.NODE_LOCAL_KEYS if k in old})
        node.setdefault("fully_cached", False)
        merged[node_id] = node
    if not complete:
        merged.update({k: v for k, v in known.items() if k not in merged})
    return merged


# ---- phase 2: versions ----------------------------------------------------------------------


def latest_version(node: Node) -> str:
    """The version the registry calls latest, '' when it names none."""
    latest = node.get("latest_version")
    return latest.get("version") or "" if isinstance(latest, dict) else ""


def needs_versions(node: Node) -> bool:
    """Never fetched, last fetch failed, or a new release since the last fetch."""
    return not node.get("fully_cached") or node.get("versions_cached_for") != latest_version(node)


async def _phase_versions(client: RegistryClient, build: _Build) -> None:
    for record in build.replayed["versions"]:
        _apply_versions(build.nodes, record)
    todo = [node_id for node_id in sorted(build.nodes) if needs_versions(build.nodes[node_id])]
    await _fan_out(
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
        version = {k: v for k, v in raw.items() if k not in store.VERSION_LOCAL_KEYS}
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


# ---- phase 3: comfy-nodes metadata ---------------------------------------------------------


def metadata_todo(nodes: dict[str, Node], max_versions: int) -> list[tuple[str, str]]:
    """(node id, version) pairs among each node's newest `max_versions` lacking metadata."""
    todo = []
    for node_id in sorted(nodes):
        versions = store.sort_versions(nodes[node_id].get("versions_list", []))
        chosen = versions if max_versions < 0 else versions[:max_versions]
        todo.extend((node_id, v["version"]) for v in chosen if not v.get("metadata_cached"))
    return todo


async def _phase_metadata(client: RegistryClient, build: _Build) -> None:
    for record in build.replayed["meta"]:
        _apply_metadata(build.nodes, record)
    todo = metadata_todo(build.nodes, build.options.max_versions)
    remaining: dict[str, int] = {}
    for node_id, _version in todo:
        remaining[node_id] = remaining.get(node_id, 0) + 1

    def finished(item: tuple[str, str]) -> None:
        remaining[item[0]] -= 1
        if not remaining[item[0]]:
            build.unit_done()

    await _fan_out(
        build,
        PHASE_METADATA,
        todo,
        lambda item: _fetch_metadata(client, *item),
        _apply_metadata,
        lambda item: f"{item[0]} {item[1]}",
        finished,
    )
    build.phase_stats[PHASE_METADATA] = {"versions_fetched": len(todo)}


async def _fetch_metadata(client: RegistryClient, node_id: str, version: str) -> dict[str, Any]:
    path = api_path("nodes", node_id, "versions", version, "comfy-nodes")
    record = {"k": "meta", "id": node_id, "v": version, "comfy_nodes": []}
    first = await client.get(path, {"page": 1, "limit": METADATA_PAGE_SIZE}, accept=(404,))
    if first.status == 404:
        return record
    items, pages = _metadata_page(client, path, 1, first)
    rest = await asyncio.gather(
        *(client.get(path, {"page": p, "limit": METADATA_PAGE_SIZE}) for p in range(2, pages + 1))
    )
    for page, answer in enumerate(rest, start=2):
        items.extend(_metadata_page(client, path, page, answer)[0])
    record["comfy_nodes"] = items
    return record


def _metadata_page(
    client: RegistryClient, path: str, page: int, answer: Answer
) -> tuple[list[dict[str, Any]], int]:
    """The comfy nodes on one page and the page count (new and old servers' field names)."""
    data = answer.data if isinstance(answer.data, dict) else {"comfy_nodes": "missing"}
    items = data.get("comfy_nodes") or []
    pages = data.get("totalNumberOfPages", data.get("totalPages", 1))
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        url = client.url(path, {"page": page, "limit": METADATA_PAGE_SIZE})
        raise FetchError(url, "not a comfy-nodes page")
    return list(items), pages if isinstance(pages, int) and pages > 0 else 1


def _apply_metadata(nodes: dict[str, Node], record: dict[str, Any]) -> None:
    node = nodes.get(record["id"], {})
    for version in node.get("versions_list", []):
        if version["version"] == record["v"]:
            version["comfy_nodes"] = record["comfy_nodes"]
            version["metadata_cached"] = True
            return
