"""Build `node_mappings.json` offline from a registry cache: incremental and checkpointed.

Pipeline: every package (in file order) gets its *feeding* versions (the ones whose comfy nodes
go into `mappings`), each feeding version gets its set of node keys — reused from `--input` or
from the journal of an interrupted run when known, otherwise parsed from the cache — and the
document is then assembled from those sets and the cache's package metadata. Because the
assembly only ever sees "(package, version) -> keys" plus the cache, an incremental run and a
full rebuild produce the same bytes; ranks are recomputed from the cache every time.

This module is the entry point: options in, report out, the journal of checkpoints, the
general path and reading an earlier mappings file. Its parts live next to it: `feeding` (which
versions feed, their keys), `mapping_format` (records), `ranking` (scores, entry order) and
`mapping_index` (`OUTPUT.index` and the incremental path that skips unchanged packages).

Nothing here imports anything network-related: building mappings never touches the registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from registry_tools import files, heap
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.journal import Journal
from registry_tools.mappings.cache_stream import Layout, NodeText, declared_node_count, iter_nodes
from registry_tools.mappings.document import header, package_record
from registry_tools.mappings.feeding import Hasher, feeding_versions
from registry_tools.mappings.incremental import update
from registry_tools.mappings.index import Previous, full_index, index_path, write_index
from registry_tools.mappings.job import PHASE, MappingsOptions, MappingsReport
from registry_tools.mappings.load import load_mappings
from registry_tools.mappings.ranking import newest_release, ranked_entries, scores_from_newest
from registry_tools.progress import NullReporter, Reporter

FORMAT = 1  # bump when the journal records change meaning
JOURNAL_SUFFIX = ".journal"

Known = dict[tuple[str, str], list[str]]  # (package id, version) -> sorted node keys


# ---- entry point ---------------------------------------------------------------------------


def build_mappings(options: MappingsOptions, reporter: Reporter | None = None) -> MappingsReport:
    """Build the mappings file described by `options`; resumes an interrupted identical job."""
    files.check_output(options.output)
    if not Path(options.cache).is_file():
        cache_file.load_cache(options.cache, "--cache")  # the usual one-line error
    if Path(options.output).resolve() == Path(options.cache).resolve():
        raise UserError(f"--output {options.output} is the --cache file; refusing to replace it")
    reporter = reporter or NullReporter()
    journal = Journal(journal_path(options.output), _fingerprint(options))
    replayed = list(journal.replay())
    previous = Previous.load(options) if options.input is not None else None
    if previous is not None:
        report = MappingsReport(output=options.output)
        try:
            with heap.collector_paused():
                output, stats, index = update(options, previous, replayed, reporter, report)
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
        output = files.dumps(document)
        index = full_index(options, output, document, fed, texts, newest)
    return _finish(options, report, [output], document["stats"], index, journal)


def _finish(
    options: MappingsOptions,
    report: MappingsReport,
    output: list[Any],
    stats: dict[str, int],
    index: dict[str, Any] | None,
    journal: Journal,
) -> MappingsReport:
    """Write the output (atomically, from its pieces), then its index; drop the journal."""
    files.write_atomic(options.output, output)
    write_index(index_path(options.output), index)
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
    journal: Journal,
    reporter: Reporter,
    report: MappingsReport,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[str]]]]:
    """`packages` records and the node keys of every feeding version, one package at a time
    (the first node wins if an id repeats), journaling each finished package."""
    packages: dict[str, dict[str, Any]] = {}
    fed: dict[str, dict[str, list[str]]] = {}
    hasher = Hasher(report)
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
    scores = scores_from_newest(packages, newest)
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    mappings = {key: ranked_entries(by_package, scores) for key, by_package in providers.items()}
    document = {
        **header(),
        "stats": {
            "packages": len(packages),
            "signatures": len(mappings),
            "total_nodes": sum(len(keys) for v in fed.values() for keys in v.values()),
        },
        "mappings": mappings,
        "packages": packages,
    }
    return document, newest
