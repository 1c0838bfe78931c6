"""Build `node_mappings.json` offline from a registry cache: incremental and checkpointed.

Pipeline: every package (in file order) gets its *feeding* versions (the installable ones
whose comfy nodes go into `mappings`), each feeding version gets its set of node keys — reused
from `--input` or from the journal of an interrupted run when known, otherwise parsed from the
cache — and the document is then assembled from those sets, the cache's package metadata and,
with `--manager`, ComfyUI-Manager's lists. Because the assembly only ever sees
"(package, version) -> keys" plus the cache (and the Manager's lists, merged the same way by
`plan`), an incremental run and a full rebuild produce the same bytes; ranks are recomputed
every time.

This module is the entry point: options in, report out, the checks before any work, the
journal of checkpoints, the general path and reading an earlier mappings file. Its parts live
next to it (see `__init__`); the index-based incremental path is `incremental`.

Nothing here imports anything network-related unless `--manager live` asks for it: building
mappings never touches the registry.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools import files, heap
from registry_tools.errors import UserError
from registry_tools.journal import Journal
from registry_tools.mappings.aliases import load_aliases
from registry_tools.mappings.cache_stream import (
    Layout,
    NodeText,
    declared_node_count,
    iter_nodes,
)
from registry_tools.mappings.document import header, package_record
from registry_tools.mappings.feeding import Hasher, feeding_versions, metadata_gaps
from registry_tools.mappings.incremental import update
from registry_tools.mappings.index import Previous, full_index, index_path, write_index
from registry_tools.mappings.installable import package_reason
from registry_tools.mappings.job import PHASE, MappingsOptions, MappingsReport
from registry_tools.mappings.load import load_mappings
from registry_tools.mappings.manager import load_manager
from registry_tools.mappings.plan import (
    PackageFacts,
    Plan,
    Sources,
    claimed_names,
    document_stats,
    node_types,
    notes,
    plan,
)
from registry_tools.mappings.ranking import newest_release, popularity, ranked_entries
from registry_tools.mappings.signatures import split_key
from registry_tools.progress import NullReporter, Reporter

FORMAT = 2  # bump when the journal records change meaning
JOURNAL_SUFFIX = ".journal"

Known = dict[tuple[str, str], list[str]]  # (package id, version) -> sorted node keys


# ---- entry point ---------------------------------------------------------------------------


def build_mappings(options: MappingsOptions, reporter: Reporter | None = None) -> MappingsReport:
    """Build the mappings file described by `options`; resumes an interrupted identical job."""
    if not isinstance(options, MappingsOptions):
        raise UserError(f"expected MappingsOptions, got {type(options).__name__}")
    check_paths(options)
    sources = Sources(
        manager=load_manager(options.manager, options.manager_url) if options.manager else None,
        aliases=load_aliases(options.aliases),
    )
    reporter = reporter or NullReporter()
    journal: Journal | _NoJournal = (
        _NoJournal()
        if options.to_stdout
        else Journal(journal_path(options.output), _fingerprint(options))
    )
    replayed = list(journal.replay())
    previous = Previous.load(options) if options.input is not None else None
    if previous is not None:
        report = MappingsReport(output=options.output)
        try:
            with heap.collector_paused():
                output, stats, counted, index = update(
                    options, previous, replayed, reporter, report, sources
                )
        except Layout:  # not the two-space layout after all: the general path below
            pass
        else:
            return _finish(options, report, output, stats, counted, index, journal, sources)
    report = MappingsReport(output=options.output)
    known: Known = {}
    if options.input is not None:
        known = keys_by_version(load_mappings(options.input, "--input"))
    done = _absorb(replayed, known)
    report.packages_resumed = len(done)
    journal.open(replayed)
    texts: dict[str, NodeText] = {}
    top: dict[str, Any] = {}
    nodes = iter_nodes(options.cache, "--cache", texts, top)
    try:
        with heap.collector_paused():
            collected = _collect(nodes, options, known, done, journal, reporter, report)
    except UserError:  # the cache is unusable: nothing worth resuming
        journal.close(remove=True)
        raise
    except BaseException:  # interrupted: keep what was journaled for the next run
        journal.close(remove=False)
        raise
    with heap.collector_paused():
        document, facts, decided = _assemble(collected, sources, top.get("cached_at"))
        counted = notes(decided, sources, document["packages"])
        output = files.dumps(document)
        index = None
        if not options.to_stdout:
            contribution = decided.contribution
            index = full_index(
                options,
                output,
                document,
                collected.fed,
                texts,
                facts,
                collected.unfed,
                contribution.fingerprint,
                contribution.state(),
            )
    return _finish(options, report, [output], document["stats"], counted, index, journal, sources)


def check_paths(options: MappingsOptions) -> None:
    """Refuse, before any work, inputs that are not regular files and outputs that cannot or
    must not be replaced: the output, its journal and its index may be none of the inputs
    (`--input` may be the output itself: the incremental update in place)."""
    files.check_input(options.cache, "--cache")
    inputs = [options.cache]
    for what, path in (("--input", options.input), ("--aliases", options.aliases)):
        if path is not None:
            files.check_input(path, what)
    if options.aliases is not None:
        inputs.append(options.aliases)
    manager = Path(options.manager) if options.manager is not None else None
    if manager is not None and manager.is_file():
        inputs.append(manager)
    if not options.to_stdout:
        files.check_output(
            options.output,
            "--output",
            inputs=inputs,
            replaces=[options.input],
            companions=(journal_path(options.output), index_path(options.output)),
        )


def _finish(
    options: MappingsOptions,
    report: MappingsReport,
    output: list[Any],
    stats: dict[str, Any],
    counted: dict[str, int],
    index: dict[str, Any] | None,
    journal: Journal | _NoJournal,
    sources: Sources,
) -> MappingsReport:
    """Write the output (atomically, from its pieces), then its index; drop the journal. A
    write that fails (a full disk) leaves the old output and no journal (exit 2 leaves no
    stray file)."""
    try:
        files.write_output(options.output, output)
    except UserError:
        journal.close(remove=True)
        raise
    if not options.to_stdout:
        write_index(index_path(options.output), index)
    journal.close(remove=True)
    report.packages = stats["packages"]
    report.signatures = stats["signatures"]
    report.total_nodes = stats["total_nodes"]
    if sources.manager is not None:
        by_source = stats["by_source"]
        report.manager = {
            "origin": sources.manager.origin,
            "packages": by_source["manager"]["packages"],
            "keys": by_source["manager"]["keys"],
            "registry_packages": counted["manager_matched"],
            "skipped": sources.manager.skipped,
            "bad_patterns": counted["manager_bad_patterns"],
        }
    report.aliases = len(sources.aliases)
    report.aliases_unknown = counted["aliases_unknown"]
    return report


class _NoJournal:
    """The journal of a build written to standard output: there is no place beside it."""

    def replay(self) -> Iterable[dict[str, Any]]:
        return ()

    def open(self, records: list[dict[str, Any]]) -> None:
        pass

    def append(self, record: dict[str, Any]) -> None:
        pass

    def checkpoint(self) -> None:
        pass

    def close(self, remove: bool) -> None:
        pass


def journal_path(output: Path) -> Path:
    """The checkpoint journal lives next to the output it will become."""
    return Path(output).with_name(Path(output).name + JOURNAL_SUFFIX)


def _fingerprint(options: MappingsOptions) -> dict[str, Any]:
    """Journal header: the same job on the same files (size + mtime) may resume. The journal
    holds only key sets parsed from the cache, so the Manager's lists and the aliases do not
    enter it."""
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


@dataclass
class Collected:
    """What the general path read from the cache, per package."""

    packages: dict[str, dict[str, Any]] = field(default_factory=dict)  # `packages` records
    fed: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # version -> keys
    claims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unfed: dict[str, Counter] = field(default_factory=dict)


def _collect(
    nodes: Iterable[dict[str, Any]],
    options: MappingsOptions,
    known: Known,
    done: set[str],
    journal: Journal | _NoJournal,
    reporter: Reporter,
    report: MappingsReport,
) -> Collected:
    """`packages` records and the node keys of every feeding version, one package at a time
    (the first node wins if an id repeats), journaling each finished package."""
    collected = Collected()
    hasher = Hasher(report)
    total = declared_node_count(options.cache)
    reporter.start(PHASE, total)
    pending = 0
    for node in nodes:
        package_id = node["id"]
        if package_id in collected.packages:
            continue
        if len(collected.packages) >= total:
            reporter.grow(PHASE, 1)
        collected.packages[package_id] = package_record(node)
        collected.claims[package_id] = claimed_names(node)
        collected.unfed[package_id] = gaps = metadata_gaps(node)
        report.unfed.update(gaps)
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
        collected.fed[package_id] = versions
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
    return collected


def keys_by_version(document: dict[str, Any]) -> Known:
    """Invert `mappings`: which node keys each (package, version) provided. An input from
    an older build without `<type>::_` keys gets them added, as `Hasher.version_keys` would."""
    found: dict[tuple[str, str], set[str]] = {}
    for key, entries in document["mappings"].items():
        node_type = split_key(key)[0]
        for entry in entries:
            for version in entry["versions"]:
                found.setdefault((entry["package_id"], version), set()).update(
                    (key, node_type + "::_")
                )
    return {pair: sorted(keys) for pair, keys in found.items()}


# ---- assembly ------------------------------------------------------------------------------


def _assemble(
    collected: Collected, sources: Sources, cached_at: Any
) -> tuple[dict[str, Any], dict[str, PackageFacts], Plan]:
    """The document, every registry package's facts (the index keeps them) and the plan."""
    facts = {}
    for package_id, record in collected.packages.items():
        versions = collected.fed.get(package_id, {})
        facts[package_id] = PackageFacts(
            popularity=popularity(record),
            newest=newest_release(record),
            claims=collected.claims.get(package_id, ()),
            repository=record["repository"],
            excluded=package_reason(record) is not None,
            names=node_types({key for keys in versions.values() for key in keys}),
        )
    decided = plan(facts, sources.manager, cached_at)
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in collected.fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    mappings = build_entries(providers, decided)
    packages = {**collected.packages, **decided.contribution.records()}
    stats = document_stats(
        decided,
        registry_packages=len(collected.packages),
        registry_keys=len(providers),
        signatures=len(mappings),
        total_nodes=sum(len(keys) for v in collected.fed.values() for keys in v.values()),
    )
    document = {
        **header(),
        "stats": stats,
        "mappings": mappings,
        "packages": packages,
        "package_aliases": sources.aliases,
    }
    return document, facts, decided


def build_entries(
    providers: dict[str, dict[str, list[str]]], decided: Plan
) -> dict[str, list[dict[str, Any]]]:
    """Ranked entries of every key with a registry or a Manager provider."""
    manager = decided.contribution.entries
    built = {}
    for key in set(providers).union(manager):
        by_package, extra = providers.get(key, {}), manager.get(key, ())
        built[key] = ranked_entries(key, by_package, decided.ranking, extra)
    return built
