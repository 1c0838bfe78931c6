"""The stand-in registry's clock: what a `Churn` changes, as the real registry changes without
asking anyone (extractions finish, old versions are deprecated or banned without a release,
packages are deleted, new versions are published).

Each change is chosen by a SHA-1 of (churn seed, the advance's number, the kind of change, the
package and version): the same churn on the same registry changes the same things, and a
second advance with the same seed picks new ones.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from registry_tools.registry.behaviour import Changes, Churn
from registry_tools.registry.faults import unit
from registry_tools.registry.state import PENDING, SUCCESS, Extraction, Package, Registry

BANNED = "NodeVersionStatusBanned"
ACTIVE = "NodeVersionStatusActive"
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def advance(registry: Registry, churn: Churn, number: int) -> Changes:
    """Apply `churn` (the `number`-th advance) to `registry` and say what changed."""
    registry.now += timedelta(hours=churn.hours)

    def chosen(kind: str, candidates: list[Any], share: float) -> list[Any]:
        count = round(share * len(candidates))
        ranked = sorted(candidates, key=lambda c: (unit(churn.seed, number, kind, *c), c))
        return sorted(ranked[:count])

    changes = Changes()
    pending = [key for key, e in registry.extraction.items() if e.state == PENDING]
    for node_id, version in chosen("finish", pending, churn.finish_pending):
        _finish(registry, node_id, version)
        changes.finished.append((node_id, version))

    changeable = _changeable_versions(registry)
    ranked = chosen("status", changeable, churn.deprecate_share + churn.ban_share)
    bans = set(chosen("ban", ranked, _ratio(churn.ban_share, churn.deprecate_share)))
    for node_id, version in ranked:
        package = registry.packages[node_id]
        entry = package.by_version[version]
        if (node_id, version) in bans:
            package.replace({**entry, "status": BANNED, "status_reason": "banned by an admin"})
            changes.banned.append((node_id, version))
        else:
            package.replace({**entry, "deprecated": True})
            changes.deprecated.append((node_id, version))
        registry.touch(package)

    total_versions = sum(len(p.versions) for p in registry.packages.values())
    publishers = [(p.node_id,) for p in _live(registry) if p.versions]
    count = round(churn.new_version_share * total_versions)
    for (node_id,) in chosen("publish", publishers, min(1.0, count / max(1, len(publishers)))):
        changes.published.append((node_id, _publish(registry, registry.packages[node_id])))

    live = [(p.node_id,) for p in _live(registry)]
    for (node_id,) in chosen("delete", live, min(1.0, churn.delete_packages / max(1, len(live)))):
        package = registry.packages[node_id]
        package.server = {**package.server, "status": "NodeStatusDeleted"}
        registry.touch(package)
        changes.deleted.append(node_id)
    registry.revision += 1
    changes.now = registry.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return changes


def _ratio(part: float, other: float) -> float:
    return part / (part + other) if part + other else 0.0


def _live(registry: Registry) -> list[Package]:
    return [p for p in registry.packages.values() if not (p.deleted or p.banned)]


def _changeable_versions(registry: Registry) -> list[tuple[str, str]]:
    """Active, not deprecated, not the package's latest_version, in a live package."""
    found = []
    for package in _live(registry):
        latest = package.latest()
        for entry in package.versions:
            status = entry.get("status", ACTIVE)
            if status == ACTIVE and not entry.get("deprecated") and entry["version"] != latest:
                found.append((package.node_id, entry["version"]))
    return found


def _finish(registry: Registry, node_id: str, version: str) -> None:
    """The extraction succeeds: kept metadata is shown, or (a fetched cache's pending version
    has none) the comfy nodes of the package's nearest older version with metadata."""
    extraction = registry.extraction[(node_id, version)]
    package = registry.packages[node_id]
    nodes = extraction.nodes if extraction.nodes is not None else _older_nodes(registry, package)
    registry.extraction[(node_id, version)] = Extraction(SUCCESS, nodes, announced=True)
    registry.touch(package)


def _older_nodes(registry: Registry, package: Package) -> list[dict[str, Any]]:
    for entry in package.versions:
        extraction = registry.extraction[(package.node_id, entry["version"])]
        if extraction.nodes:
            return [dict(comfy) for comfy in extraction.nodes]
    return []


def _publish(registry: Registry, package: Package) -> str:
    """A new patch release after the package's newest release, with its newest comfy nodes;
    its extraction is pending with the behaviour's pending share, as a new upload is."""
    newest = package.versions[0]
    version = _next_release(package)
    stamp = _go_time(registry.now)
    url = newest.get("download_url") or ""
    entry = {
        k: v
        for k, v in newest.items()
        if k not in ("comfy_nodes", "metadata_cached", "metadata_pending")
    }
    entry.update(
        version=version,
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"registry-tools:{package.node_id}/{version}")),
        createdAt=stamp,
        changelog="New release.",
        deprecated=False,
        status=ACTIVE,
        status_reason="",
        download_url=url.replace(newest["version"], version) if url else "",
    )
    entry.pop("comfy_node_extract_status", None)
    nodes = _older_nodes(registry, package)
    package.replace(entry)
    behaviour = registry.behaviour
    draw = unit(behaviour.seed, "extract", package.node_id, version)
    state = PENDING if draw < behaviour.pending_share else SUCCESS
    registry.extraction[(package.node_id, version)] = Extraction(state, nodes, announced=True)
    latest = registry.served_version(package.node_id, entry)
    package.server = {**package.server, "latest_version": {**latest, "downloadUrl": ""}}
    registry.touch(package)
    return version


def _go_time(when: datetime) -> str:
    """RFC 3339 as the Go server writes it: fractional digits only as many as needed."""
    fraction = f"{when.microsecond:06d}".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}Z" if fraction else "Z")


def _next_release(package: Package) -> str:
    """One patch above the highest x.y.z release (1.0.0 if there is none), unused so far."""
    releases = [
        tuple(map(int, match.groups()))
        for entry in package.versions
        if (match := _RELEASE.match(entry["version"]))
    ]
    major, minor, patch = max(releases, default=(1, 0, -1))
    while f"{major}.{minor}.{patch + 1}" in package.by_version:
        patch += 1
    return f"{major}.{minor}.{patch + 1}"
