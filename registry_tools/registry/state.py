"""The stand-in registry's data: the packages of a cache as the server holds them, each
version's extraction state, the registry's calendar, and the status rules of the real service.

The cache given to the emulator is never modified: an entry that changes (a deprecation, a
download, a finished extraction) is replaced by a changed copy in this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from registry_tools import clock
from registry_tools.fetch import cache_file
from registry_tools.registry.answers import Answer
from registry_tools.registry.behaviour import Behaviour
from registry_tools.registry.faults import unit

SUCCESS, PENDING, FAILED, UNKNOWN = "success", "pending", "failed", "unknown"
NODE_BANNED, NODE_DELETED = "NodeStatusBanned", "NodeStatusDeleted"


@dataclass
class Extraction:
    """A version's comfy-node extraction: `state` is success, pending, failed or unknown (the
    cache has no metadata for it); `nodes` are shown on success and kept while pending or
    failed (None when unknown); `announced` says whether `state` overrides the cache's own
    `comfy_node_extract_status` (a behaviour chose it, or the clock changed it)."""

    state: str
    nodes: list[dict[str, Any]] | None
    announced: bool = False


def initial_extraction(entry: dict[str, Any], node_id: str, behaviour: Behaviour) -> Extraction:
    """From the cache entry first (a fetched cache's pending versions stay pending), then the
    behaviour's seeded shares among the versions whose metadata is known."""
    nodes = entry.get("comfy_nodes")
    known = entry.get("metadata_cached", True) and isinstance(nodes, list)
    kept = nodes if known else None
    local = entry.get("metadata_pending")
    if local in (PENDING, FAILED):
        return Extraction(local, kept)
    served = entry.get("comfy_node_extract_status")
    if served in (PENDING, FAILED):
        return Extraction(served, kept)
    if kept is None:
        return Extraction(UNKNOWN, None)
    draw = unit(behaviour.seed, "extract", node_id, entry["version"])
    if draw < behaviour.pending_share:
        return Extraction(PENDING, kept, announced=True)
    if draw < behaviour.pending_share + behaviour.failed_share:
        return Extraction(FAILED, kept, announced=True)
    # With shares on, every version says how its extraction went; without, the cache does.
    return Extraction(
        SUCCESS, kept, announced=bool(behaviour.pending_share + behaviour.failed_share)
    )


@dataclass
class Package:
    """One package: the Node as served, its versions newest first, and when it last changed."""

    raw: dict[str, Any]
    server: dict[str, Any]
    versions: list[dict[str, Any]]
    haystack: str
    touched: datetime | None = None
    by_version: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_version = {v["version"]: v for v in self.versions}

    @property
    def node_id(self) -> str:
        return self.raw["id"]

    @property
    def banned(self) -> bool:
        return (
            self.server.get("status") == NODE_BANNED
            or self.raw.get("versions_unavailable") == "banned"
        )

    @property
    def deleted(self) -> bool:
        return self.server.get("status") == NODE_DELETED

    def version(self, version: str) -> dict[str, Any]:
        try:
            return self.by_version[version]
        except KeyError:
            raise Answer(404, f"version {version!r} of node {self.node_id!r} not found") from None

    def replace(self, entry: dict[str, Any]) -> None:
        """Put a changed copy of a version entry (or a new one) in place."""
        self.by_version[entry["version"]] = entry
        self.versions = cache_file.sort_versions(self.by_version.values())

    def latest(self) -> str:
        """The version `/install` gives without `?version=`: latest_version, else the newest."""
        latest = self.server.get("latest_version")
        named = latest.get("version") if isinstance(latest, dict) else None
        if isinstance(named, str) and named:
            return named
        return self.versions[0]["version"] if self.versions else ""

    def updated(self) -> datetime | None:
        """When it was created or last updated, for the `timestamp` filter."""
        if self.touched is not None:
            return self.touched
        times = [clock.parse_time_or_none(self.raw.get("created_at"))]
        times += [clock.parse_time_or_none(v.get("createdAt")) for v in self.versions]
        known = [t for t in times if t is not None]
        self.touched = max(known) if known else None
        return self.touched


def _package(node: dict[str, Any]) -> Package:
    server = {k: v for k, v in node.items() if k not in cache_file.NODE_LOCAL_KEYS}
    latest = server.get("latest_version")
    if isinstance(latest, dict) and "downloadUrl" in latest and latest["downloadUrl"] is None:
        server["latest_version"] = {**latest, "downloadUrl": ""}  # a string, never null
    haystack = "\0".join(str(node.get(k) or "") for k in ("id", "name", "description"))
    versions = cache_file.sort_versions(node.get("versions_list", []))
    return Package(raw=node, server=server, versions=versions, haystack=haystack.casefold())


class Registry:
    """Every package of one cache, with the extraction of each version and the calendar."""

    def __init__(self, cache: dict[str, Any], behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.packages = {
            node["id"]: _package(node) for node in sorted(cache["nodes"], key=lambda n: n["id"])
        }
        self.extraction = {
            (package.node_id, entry["version"]): initial_extraction(
                entry, package.node_id, behaviour
            )
            for package in self.packages.values()
            for entry in package.versions
        }
        self.now = _calendar_start(cache, self.packages.values())
        self.revision = 0  # bumped by every change: derived indexes are rebuilt after one
        self._providers: tuple[int, dict[str, list[str]]] | None = None

    # ---- status rules ------------------------------------------------------------------------

    def listed(self, package: Package, include_banned: bool = False) -> bool:
        """Whether listings (`/nodes`, search, `/versions`) show the package."""
        if not self.behaviour.enforce_statuses:
            return True
        return not package.deleted and (include_banned or not package.banned)

    def package(self, node_id: str) -> Package:
        """The package for `/nodes/{id}`: 404 unknown; with statuses enforced, 404 deleted and
        403 banned."""
        package = self.packages.get(node_id)
        if package is None or (self.behaviour.enforce_statuses and package.deleted):
            raise Answer(404, f"node {node_id!r} not found")
        if self.behaviour.enforce_statuses and package.banned:
            raise Answer(403, f"node {node_id!r} is banned")
        return package

    def with_versions(self, node_id: str) -> Package:
        """The package, if the API shows its versions (else 404 or 403)."""
        package = self.package(node_id)
        unavailable = package.raw.get("versions_unavailable")
        if unavailable == "banned":
            raise Answer(403, f"node {node_id!r} is banned")
        if unavailable == "not_found":
            raise Answer(404, f"node {node_id!r} has no versions")
        return package

    # ---- versions as served ------------------------------------------------------------------

    def served_version(
        self, node_id: str, entry: dict[str, Any], with_download: bool = True
    ) -> dict[str, Any]:
        """A version as the API sends it: no local keys, `downloadUrl` a string ("" for none),
        the extraction status this registry holds."""
        out = {
            k: v
            for k, v in entry.items()
            if k not in cache_file.VERSION_LOCAL_KEYS
            and k not in ("download_url", "downloadUrl", "metadata_pending")
        }
        if with_download:
            out["downloadUrl"] = entry.get("download_url") or entry.get("downloadUrl") or ""
        extraction = self.extraction.get((node_id, entry["version"]))
        if extraction is not None and extraction.announced:
            out["comfy_node_extract_status"] = extraction.state
        return out

    def comfy_nodes(self, node_id: str, version: str) -> list[dict[str, Any]] | None:
        """The comfy nodes `/comfy-nodes` shows, None while nothing is extracted."""
        extraction = self.extraction[(node_id, version)]
        return extraction.nodes if extraction.state == SUCCESS else None

    def providers(self) -> dict[str, list[str]]:
        """comfy_node_name -> ids of the packages whose extracted metadata offers it."""
        if self._providers is None or self._providers[0] != self.revision:
            found: dict[str, set[str]] = {}
            for (node_id, _version), extraction in self.extraction.items():
                if extraction.state != SUCCESS:
                    continue
                for comfy in extraction.nodes or ():
                    name = comfy.get("comfy_node_name") if isinstance(comfy, dict) else None
                    if isinstance(name, str):
                        found.setdefault(name, set()).add(node_id)
            self._providers = (self.revision, {k: sorted(v) for k, v in found.items()})
        return self._providers[1]

    def touch(self, package: Package) -> None:
        package.touched = self.now
        self.revision += 1


def _calendar_start(cache: dict[str, Any], packages: Any) -> datetime:
    """The registry's "now": the cache's `cached_at`, else its newest timestamp, else the
    clock (which SOURCE_DATE_EPOCH pins)."""
    start = clock.parse_time_or_none(cache.get("cached_at"))
    if start is not None:
        return start
    times = [package.updated() for package in packages]
    known = [t for t in times if t is not None]
    return max(known) if known else clock.now()
