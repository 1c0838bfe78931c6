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
import contextlib
import logging
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from . import clock, heap, store
from .cache_stream import (
    Buffer,
    Layout,
    NodeText,
    checksum,
    comfy_nodes,
    declared_node_count,
    iter_nodes,
    map_file,
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
    packages_unchanged: int = 0  # copied from --input without being parsed (its index matched)
    problems: Counter = field(default_factory=Counter)
    problem_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for humans (the CLI prints it on stderr)."""
        text = (
            f"wrote {self.output}: {self.packages} packages, {self.signatures} signatures, "
            f"{self.total_nodes} nodes; versions fed {self.versions_fed} "
            f"(parsed {self.versions_parsed}, reused {self.versions_reused})"
        )
        if self.packages_unchanged:
            text += f"; {self.packages_unchanged} packages unchanged since --input"
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
    reporter = reporter or NullReporter()
    journal = store.Journal(journal_path(options.output), _fingerprint(options))
    replayed = list(journal.replay())
    previous = _Previous.load(options) if options.input is not None else None
    if previous is not None:
        report = MappingsReport(output=options.output)
        try:
            with heap.collector_paused():
                output, stats, index = _update(options, previous, replayed, reporter, report)
        except Layout:  # not the two-space layout after all: the general path below
            pass
        else:
            return _finish(options, report, output, stats, index, journal)
    report = MappingsReport(output=options.output)
    known: Known = {}
    if options.input is not None:
        known = keys_by_version(load_mappings(options.input, "--input"))
    done = _absorb(replayed, known)
    report.packages_resumed = len(done)
    journal.open(replayed)
    texts: dict[str, NodeText] = {}
    nodes = iter_nodes(options.cache, "--cache", texts)
    try:
        with heap.collector_paused():
            packages, fed = _collect(nodes, options, known, done, journal, reporter, report)
    except UserError:  # the cache is unusable: nothing worth resuming
        journal.close(remove=True)
        raise
    except BaseException:  # interrupted: keep what was journaled for the next run
        journal.close(remove=False)
        raise
    with heap.collector_paused():
        document, newest = _assemble(packages, fed)
        output = store.dumps(document)
        index = _full_index(options, output, document, fed, texts, newest)
    return _finish(options, report, [output], document["stats"], index, journal)


def _finish(
    options: MappingsOptions,
    report: MappingsReport,
    output: list[Any],
    stats: dict[str, int],
    index: dict[str, Any] | None,
    journal: store.Journal,
) -> MappingsReport:
    """Write the output (atomically, from its pieces), then its index; drop the journal."""
    store.write_atomic(options.output, output)
    _write_index(index_path(options.output), index)
    journal.close(remove=True)
    report.packages = stats["packages"]
    report.signatures = stats["signatures"]
    report.total_nodes = stats["total_nodes"]
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
    return _assemble(packages, fed)[0]


def _assemble(
    packages: dict[str, dict[str, Any]], fed: dict[str, dict[str, list[str]]]
) -> tuple[dict[str, Any], dict[str, datetime | None]]:
    """`assemble`, plus each package's newest release (the index keeps them)."""
    newest = {package_id: newest_release(p) for package_id, p in packages.items()}
    scores = _scores(packages, newest)
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    mappings = {key: ranked_entries(by_package, scores) for key, by_package in providers.items()}
    document = {
        **_header(),
        "stats": {
            "packages": len(packages),
            "signatures": len(mappings),
            "total_nodes": sum(len(keys) for v in fed.values() for keys in v.values()),
        },
        "mappings": mappings,
        "packages": packages,
    }
    return document, newest


def _header() -> dict[str, str]:
    now = clock.now()
    return {"version": now.strftime("%Y.%m.%d"), "generated_at": clock.iso(now)}


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
# `https://github.com/owner/repo`, optionally with `.git` and/or one trailing `/`: the usual
# form, normalised without `urlsplit` (same result; tested against the general path).
_GITHUB_PLAIN = re.compile(
    r"https://github\.com/([^/?#\s\\@:;]+/[^/?#\s\\@:;.][^/?#\s\\@:;]*?)(?:\.git)?/?"
)


def normalize_repository(url: Any) -> str:
    """Canonical repository URL: `https://github.com/owner/repo` for GitHub; otherwise the
    URL with a lower-case host and no trailing `/` or `.git`; '' when there is none."""
    if not isinstance(url, str) or not url.strip():
        return ""
    text = url.strip()
    plain = _GITHUB_PLAIN.fullmatch(text)
    if plain:
        return "https://github.com/" + plain.group(1)
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
    return _score(popularity(package), newest, reference)


def popularity(package: dict[str, Any]) -> int:
    """downloads + 20 * github_stars of a `packages` record (non-negative integers)."""
    return _count(package.get("downloads")) + STAR_WEIGHT * _count(package.get("github_stars"))


def _score(popular: int, newest: datetime | None, reference: datetime | None) -> float:
    if reference is None or newest is None:
        age_days = UNKNOWN_AGE_DAYS
    else:
        age_days = max(0.0, (reference - newest).total_seconds() / 86400.0)
    return popular / (1.0 + age_days / RECENCY_DAYS)


def package_scores(packages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Score of every package of a `packages` section (higher ranks first).

    Recency is measured from the newest release in the data, never from the wall clock, so
    the same cache always ranks the same way.
    """
    return _scores(packages, {package_id: newest_release(p) for package_id, p in packages.items()})


def _scores(
    packages: dict[str, dict[str, Any]], newest: dict[str, datetime | None]
) -> dict[str, float]:
    reference = max((d for d in newest.values() if d is not None), default=None)
    return {pid: _score(popularity(p), newest[pid], reference) for pid, p in packages.items()}


# ---- the index: incremental runs that skip unchanged packages ------------------------------
#
# Next to every output the builder writes `OUTPUT.index` (JSON): the output's size and CRC-32,
# `--max-versions`, where each key's entries and each package's record lie in the output, and
# per package the fingerprints of its cache node (`cache_stream.NodeText`) plus what ranking
# needs (popularity, newest release) and what it fed (keys, counts). With `--input`, when the
# index next to it describes exactly that file, a package whose node bytes are unchanged is
# not parsed at all: its record and entries are copied from the input as bytes. Only the keys
# of changed, new and removed packages, and multi-package keys whose order moved, are rebuilt.


def index_path(output: Path) -> Path:
    """The index of a mappings file lives next to it."""
    return Path(output).with_name(Path(output).name + INDEX_SUFFIX)


_MAPPINGS_AT = b'\n  "mappings": '
_PACKAGES_AT = b',\n  "packages": '
_KEY_LINE = b'\n    "'
_RECORD_CLOSE = b"\n    }"
_VERSIONS_LINE = b',\n      "versions": '
_INDENT = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


class _Previous:
    """The `--input` file's bytes and the index that describes them."""

    def __init__(self, data: Buffer, index: dict[str, Any]) -> None:
        self.data = data
        self.view = memoryview(data)
        self.index = index
        self.packages: dict[str, dict[str, Any]] = index["packages"]
        self.keys: list[str] = index["keys"]
        self.starts: list[int] = index["starts"]
        self.mappings_at = index["mappings_at"]
        self.packages_at = index["packages_at"]
        self._entries: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def load(cls, options: MappingsOptions) -> _Previous | None:
        """The index of `--input`, if there is one and it matches the file and the options."""
        try:
            index = orjson.loads(index_path(options.input).read_bytes())
            data = map_file(options.input)
        except (OSError, orjson.JSONDecodeError):
            return None
        if not (
            isinstance(index, dict)
            and index.get("format") == INDEX_FORMAT
            and index.get("max_versions") == options.max_versions
            and index.get("size") == len(data)
            and index.get("crc32") == checksum(data)
        ):
            return None
        return cls(data, index)

    def versions(self, package: dict[str, Any]) -> memoryview:
        """The `versions` object of a package's record, as the input has it."""
        _, hi = package["record"]
        return self.view[self.packages_at + package["body"] : self.packages_at + hi - 6]

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Where keys first..last-1 lie in the input (without the separating comma)."""
        hi = self.starts[last] - 1 if last < len(self.keys) else self.index["end"]
        return self.mappings_at + self.starts[first], self.mappings_at + hi

    def entries(self, key: str) -> list[dict[str, Any]]:
        """The input's entries of `key` ([] when it has none)."""
        found = self._entries.get(key)
        if found is None:
            self.prefetch([key])
            found = self._entries.get(key, [])
        return found

    def prefetch(self, keys: Iterable[str]) -> None:
        """Parse the entries of these keys, all in one go."""
        spans = []
        for key in keys:
            if key not in self._entries:
                at = bisect.bisect_left(self.keys, key)
                if at < len(self.keys) and self.keys[at] == key:
                    lo, hi = self.span(at, at + 1)
                    spans.append(self.view[lo:hi])
        if spans:
            self._entries.update(orjson.loads(b"".join((b"{", b",".join(spans), b"}"))))

    def package_keys(self, package_id: str) -> list[str]:
        return orjson.loads(self.packages[package_id]["keys"])

    def known(self, package_id: str) -> dict[str, list[str]]:
        """version -> sorted node keys, for a package's versions that fed the input."""
        known: dict[str, list[str]] = {}
        keys = self.package_keys(package_id)
        self.prefetch(keys)
        for key in keys:
            for entry in self.entries(key):
                if entry["package_id"] == package_id:
                    for version in entry["versions"]:
                        known.setdefault(version, []).append(key)
        for keys in known.values():
            keys.sort()
        return known


def _expected(package: dict[str, Any] | None) -> tuple[int, str] | None:
    return None if package is None else (package["length"], package["versions"])


def _update(
    options: MappingsOptions,
    previous: _Previous,
    replayed: list[dict[str, Any]],
    reporter: Reporter,
    report: MappingsReport,
) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """Output (as pieces), stats and index of an incremental run that reuses `previous` for every
    package whose cache bytes did not change. Raises Layout when the cache is not in the
    two-space layout (the caller then takes the general path)."""
    data = map_file(options.cache)
    where = f"--cache {options.cache}"
    journaled: dict[str, dict[str, list[str]]] = {}  # package -> version -> keys
    for record in replayed:
        journaled.setdefault(record["id"], {}).update(record["keys"])
    old = previous.packages
    records: dict[str, Any] = {}  # None (copy it), or (record, versions bytes or None)
    facts: dict[str, dict[str, Any]] = {}  # the new index's package entries
    fed: dict[str, dict[str, list[str]]] = {}  # feeding versions of the packages parsed
    hasher = _Hasher(report)
    total = declared_node_count(options.cache)
    reporter.start(PHASE, total)
    for count, text in enumerate(scan(data, lambda package_id: _expected(old.get(package_id)))):
        if count >= total:
            reporter.grow(PHASE, 1)
        reporter.advance(PHASE)
        package_id = text.id
        before = old.get(package_id) if package_id is not None else None
        if package_id in records:
            continue  # the first node wins
        if before is not None and text.versions == before["versions"]:
            if text.head == before["head"]:
                records[package_id] = None  # copied from the input
                facts[package_id] = dict(before)
                report.packages_unchanged += 1
                report.versions_fed += before["fed"]
                report.versions_reused += before["fed"]
                continue
            node = parse_head(data, text)
            if node["id"] != package_id:
                raise Layout
            if _excluded(node) == before["excluded"]:  # the same versions feed: keep the rest
                record = package_record(node)
                records[package_id] = (record, previous.versions(before))
                facts[package_id] = {**before, "head": text.head, "popularity": popularity(record)}
                report.versions_fed += before["fed"]
                report.versions_reused += before["fed"]
                continue
        node = parse_node(data, text, where)
        if node["id"] != package_id:  # its "id" line is not its id: not the usual layout
            raise Layout
        if package_id in records:
            continue
        known = previous.known(package_id) if package_id in old else {}
        known.update(journaled.get(package_id, {}))
        record = package_record(node)
        records[package_id] = (record, None)
        versions = fed[package_id] = {}
        parsed = 0
        for version in feeding_versions(node, options.max_versions):
            name = version["version"]
            keys = known.get(name)
            if keys is None:
                keys = hasher.version_keys(package_id, version)
                parsed += 1
            versions[name] = keys
        report.versions_fed += len(versions)
        report.versions_parsed += parsed
        report.versions_reused += len(versions) - parsed
        facts[package_id] = _package_facts(text, node, record, versions, newest_release(record))
    reporter.finish(PHASE)

    newest = {p: _from_iso(f["newest"]) for p, f in facts.items()}
    reference = max((d for d in newest.values() if d is not None), default=None)
    scores = {p: _score(f["popularity"], newest[p], reference) for p, f in facts.items()}

    # Keys to rebuild: those of packages parsed or gone, and multi-package keys whose order moved.
    gone = set(fed) | (old.keys() - records.keys())
    affected: set[str] = set()
    for package_id in gone:
        if package_id in old:
            affected.update(previous.package_keys(package_id))
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    affected.update(providers)
    previous.prefetch(affected.union(previous.index["multi"]))
    for key in previous.index["multi"]:
        if key not in affected:
            order = [entry["package_id"] for entry in previous.entries(key)]
            if order != sorted(order, key=lambda p: (-scores.get(p, 0.0), p)):
                affected.add(key)
    rebuilt: dict[str, list[dict[str, Any]]] = {}
    for key in affected:
        by_package = {
            entry["package_id"]: entry["versions"]
            for entry in previous.entries(key)
            if entry["package_id"] not in gone
        }
        by_package.update(providers.get(key, {}))
        if by_package:
            rebuilt[key] = ranked_entries(by_package, scores)

    mappings, keys, starts, end = _splice(previous, rebuilt, sorted(affected))
    packages = _packages_section(previous, records, facts)
    stats = {
        "packages": len(records),
        "signatures": len(keys),
        "total_nodes": sum(f["nodes"] for f in facts.values()),
    }
    output, mappings_at, packages_at = _write_document(stats, mappings, packages)
    multi = {k for k in previous.index["multi"] if k not in affected}
    multi.update(k for k, entries in rebuilt.items() if len(entries) > 1)
    spans = {"keys": keys, "starts": starts, "end": end}
    spans.update(mappings_at=mappings_at, packages_at=packages_at)
    return output, stats, _index(options, output, stats, spans, multi, facts)


def _splice(
    previous: _Previous, rebuilt: dict[str, list[dict[str, Any]]], affected: list[str]
) -> tuple[list[Any], list[str], list[int], int]:
    """The new `mappings` object, as pieces to join: runs of untouched keys copied from the
    input, rebuilt keys serialised, in key order. Also its keys, where each starts and where
    its closing line starts (relative to its `{`)."""
    parts: list[Any] = [b"{"]
    keys: list[str] = []
    starts: list[int] = []
    offset = 1  # just past "{"

    def place(raw: Any, shift: int, first: int, last: int) -> None:
        nonlocal offset
        if len(parts) > 1:
            parts.append(b",")
            offset += 1
        shift += offset
        if last < 0:
            starts.append(offset)
        else:
            starts.extend([s + shift for s in previous.starts[first:last]])
        parts.append(raw)
        offset += len(raw)

    done = 0
    for key in affected:
        at = bisect.bisect_left(previous.keys, key)
        if done < at:
            lo, hi = previous.span(done, at)
            place(previous.view[lo:hi], -previous.starts[done], done, at)
            keys += previous.keys[done:at]
        if key in rebuilt:
            place(_entries_bytes(key, rebuilt[key]), 0, 0, -1)
            keys.append(key)
        done = at + 1 if at < len(previous.keys) and previous.keys[at] == key else at
    if done < len(previous.keys):
        lo, hi = previous.span(done, len(previous.keys))
        place(previous.view[lo:hi], -previous.starts[done], done, len(previous.keys))
        keys += previous.keys[done:]
    if not keys:
        return [b"{}"], [], [], 1
    parts.append(b"\n  }")
    return parts, keys, starts, offset


def _entries_bytes(key: str, entries: list[dict[str, Any]]) -> bytes:
    """`"key": [entries]` as the canonical output has it, two levels deep."""
    return orjson.dumps({key: entries}, option=_INDENT)[1:-2].replace(b"\n", b"\n  ")


def _packages_section(
    previous: _Previous, records: dict[str, Any], facts: dict[str, dict[str, Any]]
) -> list[Any]:
    """The `packages` object, as `store.dumps` writes it, as pieces to join: runs of records
    that were adjacent in the input copied as one slice, the other records serialised
    (`records` maps a package to None, copy it, or to its record and versions bytes). Notes
    in `facts` where each record lies (relative to the `{`: `line`, `record`, `body`)."""
    parts: list[Any] = [b"{"]
    offset = 1  # where the next byte goes
    run = -1  # input offset where the current run of copied records starts; -1: none
    shift = 0  # output offset - input offset, within the run
    end = -1  # input offset where the run ends
    for package_id in sorted(records):
        value = records[package_id]
        fact = facts[package_id]
        if value is None and run >= 0 and fact["line"] == end + 1:
            pass  # continues the run
        else:
            if run >= 0:
                parts.append(previous.view[previous.packages_at + run : previous.packages_at + end])
                run = -1
            if len(parts) > 1:
                parts.append(b",")
                offset += 1
        if value is None:
            if run < 0:
                run, shift = fact["line"], offset - fact["line"]
            lo, hi = fact["record"]
            end = hi
            fact.update(line=fact["line"] + shift, record=[lo + shift, hi + shift])
            fact["body"] += shift
            offset = hi + shift
            continue
        raw, body = _record_bytes(*value)
        key = _KEY_LINE[:-1] + orjson.dumps(package_id) + b": "
        parts += [key, raw]
        lo = offset + len(key)
        fact.update(line=offset, record=[lo, lo + len(raw)], body=lo + body)
        offset = lo + len(raw)
    if run >= 0:
        parts.append(previous.view[previous.packages_at + run : previous.packages_at + end])
    if len(parts) == 1:
        return [b"{}"]
    parts.append(b"\n  }")
    return parts


def _record_bytes(record: dict[str, Any], versions: Any) -> tuple[bytes, int]:
    """A `packages` record two levels deep, and where its `versions` object starts. `versions`
    (bytes at that depth) replaces the record's own when given. `versions` sorts last among a
    record's keys, so the record is its other members, then it."""
    if versions is None:
        versions = orjson.dumps(record["versions"], option=_INDENT).replace(b"\n", b"\n      ")
    rest = {k: v for k, v in record.items() if k != "versions"}
    head = orjson.dumps(rest, option=_INDENT).replace(b"\n", b"\n    ")[: -len(_RECORD_CLOSE)]
    return b"".join((head, _VERSIONS_LINE, versions, _RECORD_CLOSE)), len(head) + len(
        _VERSIONS_LINE
    )


def _write_document(
    stats: dict[str, int], mappings: list[Any], packages: list[Any]
) -> tuple[list[Any], int, int]:
    """The output (as `store.dumps` would write the document), as pieces, from those of its
    `mappings` and `packages` objects; and where those objects start."""
    document = {**_header(), "stats": stats, "mappings": 0, "packages": 1}
    skeleton = store.dumps(document)
    head, rest = skeleton.split(_MAPPINGS_AT + b"0")
    middle, tail = rest.split(_PACKAGES_AT + b"1")
    mappings_at = len(head) + len(_MAPPINGS_AT)
    packages_at = mappings_at + sum(map(len, mappings)) + len(middle) + len(_PACKAGES_AT)
    pieces = [head, _MAPPINGS_AT, *mappings, middle, _PACKAGES_AT, *packages, tail]
    return pieces, mappings_at, packages_at


def _excluded(node: dict[str, Any]) -> bool:
    return node.get("status") in EXCLUDED_NODE_STATUSES


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _package_facts(
    text: NodeText,
    node: dict[str, Any],
    record: dict[str, Any],
    versions: dict[str, list[str]],
    newest: datetime | None,
) -> dict[str, Any]:
    """A package's entry in the index (where its record lies is added once it is written).
    Its keys are kept as a JSON string, parsed only when the package changes."""
    keys = sorted({key for keys in versions.values() for key in keys})
    return {
        "head": text.head,
        "versions": text.versions,
        "length": text.hi - text.lo,
        "excluded": _excluded(node),
        "popularity": popularity(record),
        "newest": None if newest is None else newest.isoformat(),
        "fed": len(versions),
        "nodes": sum(len(keys) for keys in versions.values()),
        "keys": orjson.dumps(keys).decode(),
    }


def _full_index(
    options: MappingsOptions,
    output: bytes,
    document: dict[str, Any],
    fed: dict[str, dict[str, list[str]]],
    texts: dict[str, NodeText],
    newest: dict[str, datetime | None],
) -> dict[str, Any] | None:
    """The index of an output built by the general path, found by scanning it; None when part
    of the cache was not in the two-space layout (no fingerprints)."""
    packages = document["packages"]
    if any(
        package_id not in texts or texts[package_id].id != package_id for package_id in packages
    ):
        return None
    facts = {}
    for package_id, record in packages.items():
        node = {"status": record["status"]}
        facts[package_id] = _package_facts(
            texts[package_id], node, record, fed[package_id], newest[package_id]
        )
    mappings = document["mappings"]
    keys = sorted(mappings)
    find = output.find
    mappings_at = find(_MAPPINGS_AT) + len(_MAPPINGS_AT)
    starts = []
    cursor = mappings_at
    for _ in keys:
        cursor = find(_KEY_LINE, cursor + 1)
        starts.append(cursor - mappings_at)
    end = find(b"\n  }", cursor) - mappings_at if keys else 1
    packages_at = mappings_at + end + len(b"\n  }") + len(_PACKAGES_AT) if keys else -1
    if not keys:
        packages_at = find(_PACKAGES_AT, mappings_at) + len(_PACKAGES_AT)
    cursor = packages_at
    for package_id in sorted(facts):
        line = find(_KEY_LINE, cursor)
        lo = line + len(_KEY_LINE) - 1 + len(orjson.dumps(package_id)) + 2
        hi = find(_RECORD_CLOSE, lo) + len(_RECORD_CLOSE)
        body = find(_VERSIONS_LINE, lo, hi) + len(_VERSIONS_LINE)
        facts[package_id].update(
            line=line - packages_at, record=[lo - packages_at, hi - packages_at]
        )
        facts[package_id]["body"] = body - packages_at
        cursor = hi
    multi = {key for key, entries in mappings.items() if len(entries) > 1}
    spans = {"keys": keys, "starts": starts, "end": end}
    spans.update(mappings_at=mappings_at, packages_at=packages_at)
    return _index(options, [output], document["stats"], spans, multi, facts)


def _index(
    options: MappingsOptions,
    output: list[Any],
    stats: dict[str, int],
    spans: dict[str, Any],
    multi: set[str],
    facts: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "size": sum(len(piece) for piece in output),
        "crc32": _checksum(output),
        "max_versions": options.max_versions,
        "stats": stats,
        **spans,
        "multi": sorted(multi),
        "packages": facts,
    }


def _checksum(pieces: list[Any]) -> str:
    """`checksum` of the concatenation of `pieces`."""
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return f"{crc:08x}"


def _write_index(path: Path, index: dict[str, Any] | None) -> None:
    """Replace the index (no fsync: one lost or torn in a crash no longer matches its output,
    and is ignored); remove a stale one when there is none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if index is None:
            path.unlink(missing_ok=True)
            return
        tmp.write_bytes(orjson.dumps(index))
        os.replace(tmp, path)
    except OSError as exc:  # the output is written; only later incremental runs are slower
        log.warning("could not write %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
            path.unlink(missing_ok=True)  # an older index no longer matches the output
