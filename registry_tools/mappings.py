"""Build `node_mappings.json` offline from a registry cache: incremental and checkpointed.

Pipeline: every package (in file order) gets its *feeding* versions (the ones whose comfy nodes
go into `mappings`), each feeding version gets its set of node keys — reused from `--input` or
from the journal of an interrupted run when known, otherwise parsed from the cache — and the
document is then assembled from those sets and the cache's package metadata. Because the
assembly only ever sees "(package, version) -> keys" plus the cache, an incremental run and a
full rebuild produce the same bytes; ranks are recomputed from the cache every time.

This module imports nothing network-related: building mappings never touches the registry.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from . import clock, store
from .cache_stream import (
    Layout,
    NodeText,
    comfy_nodes,
    declared_node_count,
    iter_nodes,
    parse_head,
    parse_node,
    scan,
)
from .errors import UserError
from .progress import NullReporter, Reporter
from .semver import version_key
from .signatures import registry_hash

log = logging.getLogger(__name__)

PHASE = "mappings"
FORMAT = 1  # bump when the journal records change meaning
JOURNAL_SUFFIX = ".journal"
INDEX_SUFFIX = ".index"
INDEX_FORMAT = 1  # bump when the index, or anything derived from a package, changes meaning

# Statuses that can no longer be installed: kept in `packages`, never fed into `mappings`.
EXCLUDED_NODE_STATUSES = frozenset({"NodeStatusBanned", "NodeStatusDeleted"})
EXCLUDED_VERSION_STATUSES = frozenset({"NodeVersionStatusBanned", "NodeVersionStatusDeleted"})

# Ranking: score = (downloads + STAR_WEIGHT * github_stars) / (1 + age_days / RECENCY_DAYS).
STAR_WEIGHT = 20
RECENCY_DAYS = 365.0
UNKNOWN_AGE_DAYS = 365.0

# Per-version metadata copied into `packages[id]["versions"][v]` (cache key -> output key).
VERSION_FIELDS = (
    ("changelog", "changelog"),
    ("createdAt", "release_date"),
    ("dependencies", "dependencies"),
    ("deprecated", "deprecated"),
    ("download_url", "download_url"),
    ("status", "status"),
    ("supported_accelerators", "supported_accelerators"),
    ("supported_comfyui_version", "supported_comfyui_version"),
    ("supported_os", "supported_os"),
)
PACKAGE_FIELDS = ("author", "description", "rating", "license", "category", "icon", "tags")
PACKAGE_FIELDS += ("status", "created_at")

Known = dict[tuple[str, str], list[str]]  # (package id, version) -> sorted node keys


@dataclass(frozen=True)
class MappingsOptions:
    """What `registry-tools mappings` was asked to do."""

    cache: Path
    output: Path
    input: Path | None = None
    max_versions: int = -1  # newest N feeding versions per package; -1 = all
    checkpoint_interval: int = 50  # packages between journal fsyncs


@dataclass
class MappingsReport:
    """What a build did. `problems` counts, by kind, the malformed comfy nodes of the versions
    parsed in this run (mapped to `<name>::_`, or skipped for `no_name`); `problem_examples`
    names the first 20."""

    output: Path
    packages: int = 0
    signatures: int = 0
    total_nodes: int = 0
    versions_fed: int = 0
    versions_parsed: int = 0
    versions_reused: int = 0
    packages_resumed: int = 0
    problems: Counter = field(default_factory=Counter)
    problem_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for humans (the CLI prints it on stderr)."""
        text = (
            f"wrote {self.output}: {self.packages} packages, {self.signatures} signatures, "
            f"{self.total_nodes} nodes; versions fed {self.versions_fed} "
            f"(parsed {self.versions_parsed}, reused {self.versions_reused})"
        )
        if self.packages_resumed:
            text += f"; resumed {self.packages_resumed} packages from the journal"
        if self.problems:
            detail = ", ".join(f"{k}={n}" for k, n in sorted(self.problems.items()))
            count = sum(self.problems.values())
            text += f"; {count} malformed comfy nodes ({detail})"
        return text


# ---- entry point ---------------------------------------------------------------------------


def build_mappings(options: MappingsOptions, reporter: Reporter | None = None) -> MappingsReport:
    """Build the mappings file described by `options`; resumes an interrupted identical job."""
    store.check_writable(options.output)
    if not Path(options.cache).is_file():
        store.load_cache(options.cache, "--cache")  # the usual one-line error
    if Path(options.output).resolve() == Path(options.cache).resolve():
        raise UserError(f"--output {options.output} is the --cache file; refusing to replace it")
    known: Known = {}
    if options.input is not None:
        known = keys_by_version(load_mappings(options.input, "--input"))
    report = MappingsReport(output=options.output)
    journal = store.Journal(journal_path(options.output), _fingerprint(options))
    replayed = list(journal.replay())
    done = _absorb(replayed, known)
    report.packages_resumed = len(done)
    journal.open(replayed)
    nodes = iter_nodes(options.cache, "--cache")
    reporter = reporter or NullReporter()
    try:
        packages, fed = _collect(nodes, options, known, done, journal, reporter, report)
    except UserError:  # the cache is unusable: nothing worth resuming
        journal.close(remove=True)
        raise
    except BaseException:  # interrupted: keep what was journaled for the next run
        journal.close(remove=False)
        raise
    document = assemble(packages, fed)
    store.write_atomic(options.output, store.dumps(document))
    journal.close(remove=True)
    report.packages = document["stats"]["packages"]
    report.signatures = document["stats"]["signatures"]
    report.total_nodes = document["stats"]["total_nodes"]
    return report


def journal_path(output: Path) -> Path:
    """The checkpoint journal lives next to the output it will become."""
    return Path(output).with_name(Path(output).name + JOURNAL_SUFFIX)


def _fingerprint(options: MappingsOptions) -> dict[str, Any]:
    """Journal header: the same job on the same files (size + mtime) may resume."""
    return {
        "job": "mappings",
        "format": FORMAT,
        "cache": _file_identity(options.cache),
        "input": _file_identity(options.input) if options.input else None,
        "max_versions": options.max_versions,
    }


def _file_identity(path: Path) -> dict[str, Any]:
    stat = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _absorb(records: list[dict[str, Any]], known: Known) -> set[str]:
    """Fold replayed journal records into `known`; returns the finished package ids."""
    done = set()
    for record in records:
        done.add(record["id"])
        for version, keys in record["keys"].items():
            known[(record["id"], version)] = keys
    return done


def _collect(
    nodes: Iterable[dict[str, Any]],
    options: MappingsOptions,
    known: Known,
    done: set[str],
    journal: store.Journal,
    reporter: Reporter,
    report: MappingsReport,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[str]]]]:
    """`packages` records and the node keys of every feeding version, one package at a time
    (the first node wins if an id repeats), journaling each finished package."""
    packages: dict[str, dict[str, Any]] = {}
    fed: dict[str, dict[str, list[str]]] = {}
    hasher = _Hasher(report)
    total = declared_node_count(options.cache)
    reporter.start(PHASE, total)
    pending = 0
    for node in nodes:
        package_id = node["id"]
        if package_id in packages:
            continue
        if len(packages) >= total:
            reporter.grow(PHASE, 1)
        packages[package_id] = package_record(node)
        parsed: dict[str, list[str]] = {}
        versions: dict[str, list[str]] = {}
        for version in feeding_versions(node, options.max_versions):
            name = version["version"]
            keys = known.get((package_id, name))
            if keys is None:
                keys = parsed[name] = hasher.version_keys(package_id, version)
            else:
                report.versions_reused += 1
            versions[name] = keys
        fed[package_id] = versions
        report.versions_fed += len(versions)
        report.versions_parsed += len(parsed)
        if package_id not in done:
            journal.append({"id": package_id, "keys": parsed})
            pending += 1
            if pending >= options.checkpoint_interval:
                journal.checkpoint()
                pending = 0
        reporter.advance(PHASE)
    journal.checkpoint()
    reporter.finish(PHASE)
    return packages, fed


def feeding_versions(node: dict[str, Any], max_versions: int = -1) -> list[dict[str, Any]]:
    """Versions whose comfy nodes feed `mappings`, newest first.

    A version feeds when its metadata is cached, it is not deprecated and not banned/deleted,
    and its package is not banned/deleted; `max_versions` then keeps the newest N of those.
    """
    if node.get("status") in EXCLUDED_NODE_STATUSES:
        return []
    eligible = [
        v
        for v in node.get("versions_list") or []
        if v.get("metadata_cached") is True
        and not v.get("deprecated")
        and v.get("status") not in EXCLUDED_VERSION_STATUSES
    ]
    eligible.sort(key=lambda v: version_key(v["version"]), reverse=True)
    return eligible if max_versions < 0 else eligible[:max_versions]


class _Hasher:
    """Signature hashes memoised on the `input_types` text: successive versions of a package
    mostly repeat their nodes verbatim, so most parses are skipped."""

    def __init__(self, report: MappingsReport) -> None:
        self.report = report
        self._memo: dict[str, tuple[str, str | None]] = {}

    def version_keys(self, package_id: str, version: dict[str, Any]) -> list[str]:
        """Sorted distinct node keys of one version; malformed entries are counted, not fatal."""
        keys = set()
        for comfy_node in comfy_nodes(version):
            name = comfy_node.get("comfy_node_name") if isinstance(comfy_node, dict) else None
            where = f"{package_id}@{version['version']}"
            if not isinstance(name, str) or not name:
                _problem(self.report, "no_name", f"{where}: {comfy_node!r:.60}")
                continue
            digest, problem = self._hash(comfy_node.get("input_types"))
            if problem:
                _problem(self.report, problem, f"{where} {name}")
            keys.add(f"{name}::{digest}")
        return sorted(keys)

    def _hash(self, input_types: Any) -> tuple[str, str | None]:
        if not isinstance(input_types, str):
            return registry_hash(input_types)
        found = self._memo.get(input_types)
        if found is None:
            found = self._memo[input_types] = registry_hash(input_types)
        return found


def _problem(report: MappingsReport, kind: str, where: str) -> None:
    report.problems[kind] += 1
    if len(report.problem_examples) < 20:
        report.problem_examples.append(f"{where}: {kind}")
    log.info("malformed comfy node %s: %s", where, kind)


# ---- the --input file ----------------------------------------------------------------------


def load_mappings(path: Path, what: str = "--mappings") -> dict[str, Any]:
    """Read a node mappings file, rejecting anything of another shape with a UserError."""
    document = store.read_json(path, what)
    problem = mappings_problem(document)
    if problem:
        raise UserError(f"{what} {path}: not a node mappings file ({problem})")
    return document


def mappings_problem(document: Any) -> str | None:
    """Why `document` is not a node mappings file, or None when it is one."""
    if not isinstance(document, dict):
        return f"top level is a JSON {type(document).__name__}, expected an object"
    if not isinstance(document.get("mappings"), dict):
        return "missing the 'mappings' object"
    if not isinstance(document.get("packages"), dict):
        return "missing the 'packages' object"
    for key, entries in document["mappings"].items():
        if "::" not in key or not isinstance(entries, list):
            return f"mapping {key!r} is not '<type>::<hash>' -> list"
        for entry in entries:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("package_id"), str)
                and isinstance(entry.get("versions"), list)
                and all(isinstance(v, str) for v in entry["versions"])
            ):
                return f"mapping {key!r} has an entry without package_id/versions"
    return None


def keys_by_version(document: dict[str, Any]) -> Known:
    """Invert `mappings`: which node keys each (package, version) provided."""
    known: dict[tuple[str, str], list[str]] = {}
    for key, entries in document["mappings"].items():
        for entry in entries:
            for version in entry["versions"]:
                known.setdefault((entry["package_id"], version), []).append(key)
    for keys in known.values():
        keys.sort()
    return known


# ---- assembly ------------------------------------------------------------------------------


def assemble(
    packages: dict[str, dict[str, Any]], fed: dict[str, dict[str, list[str]]]
) -> dict[str, Any]:
    """The mappings document from `packages` records and each feeding version's node keys."""
    scores = package_scores(packages)
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    mappings = {key: ranked_entries(by_package, scores) for key, by_package in providers.items()}
    now = clock.now()
    return {
        "version": now.strftime("%Y.%m.%d"),
        "generated_at": clock.iso(now),
        "stats": {
            "packages": len(packages),
            "signatures": len(mappings),
            "total_nodes": sum(len(keys) for v in fed.values() for keys in v.values()),
        },
        "mappings": mappings,
        "packages": packages,
    }


def ranked_entries(
    by_package: dict[str, list[str]], scores: dict[str, float]
) -> list[dict[str, Any]]:
    """Entries best first (score descending, ties by package id), ranked 1..n.

    Each package's versions arrive newest first (the order `feeding_versions` gives), which
    spares a semver sort per entry.
    """
    order = sorted(by_package, key=lambda p: (-scores.get(p, 0.0), p))
    return [
        {"package_id": package_id, "rank": rank, "versions": by_package[package_id]}
        for rank, package_id in enumerate(order, 1)
    ]


def package_record(node: dict[str, Any]) -> dict[str, Any]:
    """`packages[id]`: display metadata plus every version (deprecated ones included)."""
    record = {field_name: node.get(field_name) for field_name in PACKAGE_FIELDS}
    record.update(
        display_name=node.get("name") or node["id"],
        repository=normalize_repository(node.get("repository")),
        downloads=_count(node.get("downloads")),
        github_stars=_count(node.get("github_stars")),
        versions={v["version"]: version_record(v) for v in node.get("versions_list") or []},
    )
    return record


def version_record(version: dict[str, Any]) -> dict[str, Any]:
    """Per-version metadata under the keys comfydock-core reads."""
    record = {out: version.get(key) for key, out in VERSION_FIELDS}
    record["version"] = version["version"]
    record["deprecated"] = bool(record["deprecated"])
    record["dependencies"] = record["dependencies"] or []
    record["release_date"] = record["release_date"] or ""
    return record


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_GITHUB_SSH = re.compile(r"^(?:ssh://)?git@github\.com[:/](.+)$", re.IGNORECASE)


def normalize_repository(url: Any) -> str:
    """Canonical repository URL: `https://github.com/owner/repo` for GitHub; otherwise the
    URL with a lower-case host and no trailing `/` or `.git`; '' when there is none."""
    if not isinstance(url, str) or not url.strip():
        return ""
    text = url.strip()
    ssh = _GITHUB_SSH.match(text)
    if ssh:
        text = "https://github.com/" + ssh.group(1)
    parts = urlsplit(text if "://" in text else "https://" + text)
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/")
    if host == "github.com":
        segments = [s for s in path.split("/") if s][:2]
        return "https://github.com/" + "/".join(segments)
    return f"{parts.scheme.lower() or 'https'}://{host}{path}"


# ---- ranking -------------------------------------------------------------------------------


def newest_release(package: dict[str, Any]) -> datetime | None:
    """Newest parseable `release_date` among a package record's versions."""
    dates = [clock.parse_time_or_none(v.get("release_date")) for v in package["versions"].values()]
    return max((d for d in dates if d is not None), default=None)


def package_score(
    package: dict[str, Any], reference: datetime | None, newest: datetime | None = None
) -> float:
    """(downloads + 20 * stars) / (1 + age_days / 365); age from `reference` to the package's
    newest release, counted as 365 days when either date is unknown."""
    newest = newest if newest is not None else newest_release(package)
    if reference is None or newest is None:
        age_days = UNKNOWN_AGE_DAYS
    else:
        age_days = max(0.0, (reference - newest).total_seconds() / 86400.0)
    stars = _count(package.get("github_stars"))
    popularity = _count(package.get("downloads")) + STAR_WEIGHT * stars
    return popularity / (1.0 + age_days / RECENCY_DAYS)


def package_scores(packages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Score of every package of a `packages` section (higher ranks first).

    Recency is measured from the newest release in the data, never from the wall clock, so
    the same cache always ranks the same way.
    """
    newest = {package_id: newest_release(p) for package_id, p in packages.items()}
    reference = max((d for d in newest.values() if d is not None), default=None)
    return {pid: package_score(p, reference, newest[pid]) for pid, p in packages.items()}
