"""The stand-in registry's read endpoints, as `registry-api.md` describes them: each takes the
parsed request and answers a JSON body, or raises `Answer` for an error."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from multidict import MultiMapping

from registry_tools.registry.answers import (
    STRICT_VERSION,
    Answer,
    bool_param,
    int_param,
    json_body,
    page_param,
    paged,
    statuses_param,
    time_param,
)
from registry_tools.registry.faults import unit
from registry_tools.registry.listing import Drift, Occurrences, PageCache, tie_ordered_page
from registry_tools.registry.state import Package, Registry

DEFAULT_LIMIT = 10
MAX_PAGE_SIZE = 100  # /versions answers 400 above it
ACTIVE = "NodeVersionStatusActive"
Query = MultiMapping[str]


class Reads:
    """The read endpoints over one `Registry`, with the listings' drift and page cache."""

    def __init__(
        self,
        registry: Registry,
        clock: Callable[[], float],
        missing_download_rate: float,
        legacy_total_pages: bool,
    ) -> None:
        self.registry = registry
        behaviour = registry.behaviour
        self.drift = Drift(behaviour.seed, behaviour.drift_rows)
        self.page_cache = PageCache(behaviour.page_cache_seconds, clock)
        self.occurrences = Occurrences()
        self.missing_download_rate = missing_download_rate
        self.legacy_total_pages = legacy_total_pages
        self._version_rows: dict[Any, tuple[int, list[tuple[str, str, Any]]]] = {}

    def answer(self, kind: str, params: tuple[str, ...], query: Query, body: bytes) -> Any:
        """The body of one request to the endpoint `kind` (see `emulator.ROUTES`)."""
        match kind:
            case "nodes":
                return self.nodes(query)
            case "search":
                return self.search(query)
            case "node":
                return self.node(*params)
            case "versions":
                return self.versions(*params, query)
            case "install":
                return self.install(*params, query)
            case "version":
                return self.version(*params)
            case "comfy_nodes":
                return self.comfy_nodes(*params, query)
            case "all_versions":
                return self.all_versions(query)
            case "bulk":
                return self.bulk(json_body(body))
            case "comfy_node":
                return self.comfy_node_package(*params)
        raise AssertionError(f"no endpoint {kind!r}")

    # ---- packages ----------------------------------------------------------------------------

    def nodes(self, query: Query) -> dict[str, Any]:
        """`/nodes`: the listing, drifting and cached per page when those behaviours are on."""
        page = page_param(query)
        limit = int_param(query, "limit", DEFAULT_LIMIT)
        include_banned = bool_param(query, "include_banned")
        since = time_param(query, "timestamp")
        key = ("nodes", page, limit, include_banned, since)
        latest = bool_param(query, "latest")
        if not latest and (cached := self.page_cache.get(key)) is not None:
            return cached
        rows = [
            package.node_id
            for package in self.registry.packages.values()
            if self.registry.listed(package, include_banned)
            and (since is None or _after(package, since))
        ]
        pages = math.ceil(len(rows) / limit)
        if self.drift.rows:
            round_ = self.occurrences.next(key)
            rows = self.drift.order(rows, (round_ - 1) * max(1, pages) + page)
        body = self._envelope([self.registry.packages[i].server for i in rows], page, limit)
        if not latest:
            self.page_cache.put(key, body)
        return body

    def search(self, query: Query) -> dict[str, Any]:
        """`/nodes/search`: text in id, name or description, a comfy node's exact class name,
        text in the repository URL (all case-insensitive but the class name), combined."""
        text = query.get("search", "").casefold()
        comfy = query.get("comfy_node_search") or None
        repository = query.get("repository_url_search", "").casefold()
        include_banned = bool_param(query, "include_banned")
        providers = set(self.registry.providers().get(comfy, ())) if comfy else None
        found = [
            package.server
            for package in self.registry.packages.values()
            if self.registry.listed(package, include_banned)
            and text in package.haystack
            and (providers is None or package.node_id in providers)
            and repository in str(package.server.get("repository") or "").casefold()
        ]
        return self._envelope(found, page_param(query), int_param(query, "limit", DEFAULT_LIMIT))

    def _envelope(self, nodes: list[dict[str, Any]], page: int, limit: int) -> dict[str, Any]:
        items, pages = paged(nodes, page, limit)
        total = len(nodes)
        return {"nodes": items, "total": total, "page": page, "limit": limit, "totalPages": pages}

    def node(self, node_id: str) -> dict[str, Any]:
        return self.registry.package(node_id).server

    def comfy_node_package(self, name: str) -> dict[str, Any]:
        """`/comfy-nodes/{name}/node`: the provider whose `preempted_comfy_node_names` claims
        the name, else the most downloaded provider (then the smallest id)."""
        candidates = [
            self.registry.packages[node_id]
            for node_id in self.registry.providers().get(name, ())
            if self.registry.listed(self.registry.packages[node_id])
        ]
        if not candidates:
            raise Answer(404, f"no node provides the comfy node {name!r}")

        def preference(package: Package) -> tuple[bool, int, str]:
            claims = name in (package.server.get("preempted_comfy_node_names") or ())
            downloads = package.server.get("downloads")
            return (not claims, -(downloads if isinstance(downloads, int) else 0), package.node_id)

        return min(candidates, key=preference).server

    # ---- versions ----------------------------------------------------------------------------

    def omits_download(self, node_id: str, version: str) -> bool:
        """Whether version listings leave out this version's `downloadUrl`."""
        return unit(node_id, version) < self.missing_download_rate

    def _listed_version(self, node_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        omit = self.omits_download(node_id, entry["version"])
        return self.registry.served_version(node_id, entry, with_download=not omit)

    def versions(self, node_id: str, query: Query) -> list[dict[str, Any]]:
        """`/nodes/{id}/versions`: newest first, every status unless `statuses` filters."""
        package = self.registry.with_versions(node_id)
        wanted = statuses_param(query.getall("statuses", []))
        bool_param(query, "include_status_reason")  # checked; status_reason is always sent
        return [
            self._listed_version(node_id, entry)
            for entry in package.versions
            if wanted is None or entry.get("status", ACTIVE) in wanted
        ]

    def version(self, node_id: str, version: str) -> dict[str, Any]:
        package = self.registry.with_versions(node_id)
        return self.registry.served_version(node_id, package.version(version))

    def install(self, node_id: str, query: Query) -> dict[str, Any]:
        """`/install`: one version; with `install_effects`, a strict `x.y.z` only, and the
        package's `downloads` goes up by one."""
        package = self.registry.with_versions(node_id)
        version = query.get("version")
        effects = self.registry.behaviour.install_effects
        if effects and version is not None and not STRICT_VERSION.match(version):
            raise Answer(400, f"version must match ^\\d+\\.\\d+\\.\\d+$, got {version!r}")
        entry = package.version(version or package.latest())
        if effects:
            downloads = package.server.get("downloads")
            count = downloads if isinstance(downloads, int) else 0
            package.server = {**package.server, "downloads": count + 1}
        return self.registry.served_version(node_id, entry)

    def comfy_nodes(self, node_id: str, version: str, query: Query) -> dict[str, Any]:
        """The metadata, or `comfy_nodes: null` and 0 pages while nothing is extracted."""
        self.registry.with_versions(node_id).version(version)
        page = page_param(query)
        limit = int_param(query, "limit", DEFAULT_LIMIT)
        total_key = "totalPages" if self.legacy_total_pages else "totalNumberOfPages"
        nodes = self.registry.comfy_nodes(node_id, version)
        if nodes is None:
            return {"comfy_nodes": None, total_key: 0}
        items, pages = paged(nodes, page, limit)
        return {"comfy_nodes": items, total_key: pages}

    def all_versions(self, query: Query) -> dict[str, Any]:
        """`/versions`: every listed package's versions by version string; ties ordered by
        the seed (per request when listings drift, else once for all)."""
        page = page_param(query)
        size = int_param(query, "pageSize", DEFAULT_LIMIT)
        if size > MAX_PAGE_SIZE:
            raise Answer(400, f"pageSize must be at most {MAX_PAGE_SIZE}, got {size}")
        wanted = statuses_param(query.getall("statuses", []))
        node_id = query.get("nodeId") or None
        bool_param(query, "include_status_reason")
        if node_id is not None and node_id in self.registry.packages:
            self.registry.package(node_id)  # 403 for a banned one
        rows = self._rows(wanted, node_id)
        seed = self.registry.behaviour.seed
        if self.drift.rows:
            canonical = tuple(sorted(query.items()))
            occurrence = self.occurrences.next(("versions", canonical))
            salt: tuple[Any, ...] = (canonical, occurrence)
        else:
            salt = ()
        items = tie_ordered_page(
            rows, (page - 1) * size, size, lambda row: unit(seed, "ties", *salt, row)
        )
        return {
            "versions": [self._listed_version(pkg.node_id, entry) for pkg, entry in items],
            "total": len(rows),
            "page": page,
            "pageSize": size,
            "totalPages": math.ceil(len(rows) / size),
        }

    def _rows(self, wanted: set[str] | None, node_id: str | None) -> list[tuple[str, str, Any]]:
        """(version string, row id, (package, entry)) of the listed versions, sorted; kept
        until the registry changes."""
        key = (tuple(sorted(wanted)) if wanted else None, node_id)
        kept = self._version_rows.get(key)
        if kept is not None and kept[0] == self.registry.revision:
            return kept[1]
        rows = []
        for package in self.registry.packages.values():
            if (node_id is not None and package.node_id != node_id) or not self.registry.listed(
                package
            ):
                continue
            if package.raw.get("versions_unavailable"):
                continue
            for entry in package.versions:
                if wanted is None or entry.get("status", ACTIVE) in wanted:
                    row_id = f"{package.node_id}\0{entry['version']}"
                    rows.append((entry["version"], row_id, (package, entry)))
        rows.sort(key=lambda row: (row[0], row[1]))
        self._version_rows[key] = (self.registry.revision, rows)
        return rows

    def bulk(self, body: Any) -> dict[str, Any]:
        """`POST /bulk/nodes/versions`: one result per requested (node_id, version)."""
        items = body.get("node_versions") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(item, dict)
            and isinstance(item.get("node_id"), str)
            and isinstance(item.get("version"), str)
            for item in items
        ):
            raise Answer(400, 'the body must be {"node_versions": [{"node_id", "version"}...]}')
        results = [self._bulk_one(item["node_id"], item["version"]) for item in items]
        return {"node_versions": results}

    def _bulk_one(self, node_id: str, version: str) -> dict[str, Any]:
        identifier = {"node_id": node_id, "version": version}
        try:
            served = self.version(node_id, version)
        except Answer as answer:
            status = "error" if answer.status == 403 else "not_found"
            return {"identifier": identifier, "status": status, "error_message": str(answer)}
        return {"identifier": identifier, "status": "success", "node_version": served}


def _after(package: Package, since: Any) -> bool:
    updated = package.updated()
    return updated is not None and updated > since
