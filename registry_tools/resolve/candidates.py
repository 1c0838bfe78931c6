"""The mappings document as the resolver asks it: candidates of a node, packages by id, alias,
repository or folder name, and which versions can be installed.

Works with both generations of `node_mappings.json`: older files list every version under
`packages[id].versions` (deprecated, banned and URL-less ones included: filtered out here),
newer ones list only installable versions there, move the others to
`packages[id].unavailable_versions`, carry `package_aliases` (legacy id -> canonical id) and
packages known only to ComfyUI-Manager (`source: "manager"`, `versions: {}`). Malformed parts
of a package record are ignored rather than trusted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from registry_tools.mappings.ranking import package_scores
from registry_tools.mappings.signatures import node_key, split_key, workflow_signature
from registry_tools.resolve.workflow import WorkflowNode
from registry_tools.semver import newest_first

MATCHES = ("exact", "type_only", "name_only")  # best first


@dataclass(frozen=True)
class Candidate:
    """A package that provides a node type; `version` is its newest matching version."""

    package_id: str
    rank: int
    version: str | None
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """The candidates of one node: how they were found (`MATCHES`) and the key used."""

    match: str
    key: str | None
    candidates: tuple[Candidate, ...]


class MappingsView:
    """Lookups over one mappings document, built once per resolution."""

    def __init__(self, mappings: dict[str, Any]) -> None:
        self.mappings: dict[str, list[Any]] = mappings["mappings"]
        self.packages: dict[str, dict[str, Any]] = {
            k: v for k, v in mappings["packages"].items() if isinstance(v, dict)
        }
        self.aliases = _resolved_aliases(mappings.get("package_aliases"), self.packages)
        stats = mappings.get("stats")
        self.reference = stats.get("reference_date") if isinstance(stats, dict) else None
        self._by_type: dict[str, list[str]] | None = None

    # ---- packages -------------------------------------------------------------------------

    def canonical(self, package_id: str | None) -> str | None:
        """The package id the mappings know `package_id` by (aliases, then case), or None."""
        if not package_id:
            return None
        if package_id in self.packages:
            return package_id
        if package_id in self.aliases:
            return self.aliases[package_id]
        return self._lowered.get(package_id.lower())

    @functools.cached_property
    def _lowered(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for alias, target in sorted(self.aliases.items()):
            found.setdefault(alias.lower(), target)
        for package_id in sorted(self.packages):
            found.setdefault(package_id.lower(), package_id)
        return found

    def by_repository(self, repository: str) -> str | None:
        """The package whose repository is `repository` (a URL or `owner/repo`), or None."""
        return self._repositories.get(_repo_key(repository))

    def by_folder(self, name: str) -> str | None:
        """The package an older workflow's `node_versions` key names: an id, an alias, or the
        repository's folder name (`ComfyUI-Impact-Pack`)."""
        return self.canonical(name) or self._folders.get(name.lower())

    @functools.cached_property
    def _repositories(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for package_id in sorted(self.packages, key=lambda p: (not self.installable(p), p)):
            repository = self.packages[package_id].get("repository")
            if isinstance(repository, str) and repository:
                found.setdefault(_repo_key(repository), package_id)
        return found

    @functools.cached_property
    def _folders(self) -> dict[str, str]:
        return {key.rsplit("/", 1)[-1]: package for key, package in self._repositories.items()}

    def record(self, package_id: str) -> dict[str, Any]:
        return self.packages.get(package_id, {})

    def installable(self, package_id: str) -> tuple[str, ...]:
        """Versions of the package that can be installed from the registry, newest first."""
        return self._installable(package_id)

    @functools.cache  # noqa: B019 - one view per resolution, discarded with it
    def _installable(self, package_id: str) -> tuple[str, ...]:
        versions = self.record(package_id).get("versions")
        if not isinstance(versions, dict):
            return ()
        return tuple(newest_first([v for v, meta in versions.items() if _can_install(meta)]))

    def unavailable(self, package_id: str, version: str) -> str | None:
        """Why `version` of the package cannot be installed, or None when it can (or is unknown)."""
        record = self.record(package_id)
        meta = (
            (record.get("versions") or {}).get(version)
            if isinstance(record.get("versions"), dict)
            else None
        )
        if meta is None:
            gone = record.get("unavailable_versions")
            meta = gone.get(version) if isinstance(gone, dict) else None
            if meta is None:
                return "not a registry version of this package"
        if _can_install(meta):
            return None
        if not isinstance(meta, dict):
            return "not installable"
        reasons = meta.get("reasons")  # newer files say why, in the builder's words
        if isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons):
            return ", ".join(r.replace("_", " ") for r in reasons)
        if meta.get("deprecated") is True:
            return "deprecated"
        if isinstance(meta.get("status"), str) and meta["status"] != "NodeVersionStatusActive":
            return meta["status"].removeprefix("NodeVersionStatus").lower()
        return "has no download URL"

    def download_url(self, package_id: str, version: str | None) -> str | None:
        versions = self.record(package_id).get("versions")
        meta = versions.get(version) if isinstance(versions, dict) and version else None
        url = (
            meta.get("download_url") or meta.get("downloadUrl") if isinstance(meta, dict) else None
        )
        return url if isinstance(url, str) and url else None

    def repository(self, package_id: str) -> str | None:
        repository = self.record(package_id).get("repository")
        return repository if isinstance(repository, str) and repository else None

    def source(self, package_id: str) -> str:
        source = self.record(package_id).get("source")
        return source if isinstance(source, str) and source else "registry"

    @functools.cached_property
    def scores(self) -> dict[str, float]:
        usable = {
            k: v
            for k, v in self.packages.items()
            if isinstance(v.get("versions"), dict)
            and all(isinstance(m, dict) for m in v["versions"].values())
        }
        try:
            return package_scores(usable, self.reference)  # the file's own ranking clock
        except (TypeError, ValueError, AttributeError):  # odd values in a hand-edited file
            return {}

    # ---- node types -----------------------------------------------------------------------

    def knows_type(self, node_type: str) -> bool:
        return node_type in self.by_type

    @property
    def by_type(self) -> dict[str, list[str]]:
        if self._by_type is None:
            self._by_type = {}
            for key in self.mappings:
                self._by_type.setdefault(split_key(key)[0], []).append(key)
        return self._by_type

    def match(self, node: WorkflowNode) -> Match | None:
        """Exact signature, then `Type::_`, then every key of the type merged; None if unknown."""
        if node.inputs:
            signature = workflow_signature(node.inputs)
            if signature and (key := node_key(node.type, signature)) in self.mappings:
                return Match("exact", key, self._from_key(key))
        key = node_key(node.type, "")
        if key in self.mappings:
            return Match("type_only", key, self._from_key(key))
        if node.type in self.by_type:
            return Match("name_only", None, self._merged(node.type))
        return None

    def _from_key(self, key: str) -> tuple[Candidate, ...]:
        entries = sorted(self.mappings[key], key=lambda e: (_rank(e), e["package_id"]))
        return tuple(_candidate(e["package_id"], _rank(e), e["versions"]) for e in entries)

    def _merged(self, node_type: str) -> tuple[Candidate, ...]:
        versions: dict[str, set[str]] = {}
        for key in self.by_type[node_type]:
            for entry in self.mappings[key]:
                versions.setdefault(entry["package_id"], set()).update(entry["versions"])
        order = sorted(versions, key=lambda p: (-self.scores.get(p, 0.0), p))
        return tuple(
            _candidate(p, rank, newest_first(versions[p])) for rank, p in enumerate(order, 1)
        )


def _resolved_aliases(aliases: Any, packages: dict[str, Any]) -> dict[str, str]:
    """{legacy id: package id}, chains followed (`a -> b -> c`), loops and aliases whose end
    is no package of the file dropped."""
    table = {
        k: v
        for k, v in (aliases.items() if isinstance(aliases, dict) else ())
        if isinstance(v, str)
    }
    resolved = {}
    for alias in table:
        target, seen = table[alias], {alias}
        while target not in packages and target in table and target not in seen:
            seen.add(target)
            target = table[target]
        if target in packages:
            resolved[alias] = target
    return resolved


def _rank(entry: dict[str, Any]) -> int:
    rank = entry.get("rank")
    usable = isinstance(rank, int) and not isinstance(rank, bool) and 0 <= rank < 2**31
    return rank if usable else 0


def _candidate(package_id: str, rank: int, versions: list[str]) -> Candidate:
    return Candidate(package_id, rank, versions[0] if versions else None, tuple(versions))


def _can_install(meta: Any) -> bool:
    """Status active (or absent), not deprecated, a non-empty download URL (the contract)."""
    if not isinstance(meta, dict) or meta.get("deprecated") is True:
        return False
    if meta.get("status") not in (None, "NodeVersionStatusActive"):
        return False
    url = meta.get("download_url", meta.get("downloadUrl"))
    return isinstance(url, str) and bool(url)


def _repo_key(repository: str) -> str:
    """`github.com/owner/repo`, lower-cased, from a URL or an `owner/repo` aux_id."""
    text = repository.strip().lower().removesuffix("/").removesuffix(".git")
    for prefix in ("git@github.com:", "https://", "http://", "www."):
        text = text.removeprefix(prefix)
    if "/" in text and "." not in text.split("/", 1)[0]:  # owner/repo
        text = f"github.com/{text}"
    return text.removeprefix("www.")
