"""The incremental mappings build: unchanged packages are copied from `--input` as bytes,
only the keys of changed, new and removed packages are rebuilt (see `index`)."""

from __future__ import annotations

import bisect
from typing import Any

import orjson

from registry_tools import files
from registry_tools.mappings.cache_stream import (
    Layout,
    declared_node_count,
    map_file,
    parse_head,
    parse_node,
    scan,
)
from registry_tools.mappings.document import header, package_record
from registry_tools.mappings.feeding import Hasher, feeding_versions, metadata_gaps
from registry_tools.mappings.index import (
    BODY_LINE,
    INDENT,
    KEY_LINE,
    MAPPINGS_AT,
    PACKAGES_AT,
    RECORD_CLOSE,
    Previous,
    excluded,
    index_document,
    manager_entries,
    package_entry,
    package_facts,
)
from registry_tools.mappings.job import PHASE, MappingsOptions, MappingsReport
from registry_tools.mappings.plan import (
    PackageFacts,
    Sources,
    claimed_names,
    document_stats,
    manager_only_keys,
    node_types,
    notes,
    plan,
)
from registry_tools.mappings.ranking import MANAGER, newest_release, popularity, ranked_entries
from registry_tools.mappings.signatures import split_key
from registry_tools.progress import Reporter

BODY_KEYS = ("unavailable_versions", "versions")


def _expected(package: dict[str, Any] | None) -> tuple[int, str] | None:
    return None if package is None else (package["length"], package["versions"])


def update(
    options: MappingsOptions,
    previous: Previous,
    replayed: list[dict[str, Any]],
    reporter: Reporter,
    report: MappingsReport,
    sources: Sources,
) -> tuple[list[Any], dict[str, Any], dict[str, int], dict[str, Any]]:
    """Output (as pieces), stats, report counters and index of an incremental run that reuses
    `previous` for every package whose cache bytes did not change. Raises Layout when the
    cache is not in the two-space layout (the caller then takes the general path)."""
    data = map_file(options.cache)
    read = _Read(options, previous, replayed, report, sources.manager is not None)
    top: dict[str, Any] = {}
    total = declared_node_count(options.cache)
    reporter.start(PHASE, total)
    expect = read.expected
    for count, text in enumerate(scan(data, expect, top)):
        if count >= total:
            reporter.grow(PHASE, 1)
        reporter.advance(PHASE)
        read.node(data, text)
    reporter.finish(PHASE)

    old = previous.packages
    was = {p: orjson.loads(old[p]["names"]) for p in read.fed if p in old}  # parsed ones
    before = previous.index["manager"]
    state = previous.index["manager_state"]
    decided = plan(read.facts, sources.manager, top.get("cached_at"), state, (before, was))
    manager = decided.contribution

    # Keys to rebuild: those of packages parsed or gone, those whose Manager entries changed,
    # and multi-package keys whose order moved.
    gone = set(read.fed) | (old.keys() - read.records.keys())
    affected: set[str] = set()
    for package_id in gone:
        if package_id in old:
            affected.update(previous.package_keys(package_id))
    providers: dict[str, dict[str, list[str]]] = {}
    for package_id, versions in read.fed.items():
        for version, keys in versions.items():
            for key in keys:
                providers.setdefault(key, {}).setdefault(package_id, []).append(version)
    affected.update(providers)
    if manager.touched is not None:  # brought up to date: it knows what it changed
        affected.update(manager.touched)
    else:
        affected.update(_changed(before, manager.entries))
    previous.prefetch(affected.union(previous.index["multi"]))
    for key in previous.index["multi"]:
        if key not in affected:
            order = [entry["package_id"] for entry in previous.entries(key)]
            if order != decided.ranking.order(split_key(key)[0], order):
                affected.add(key)
    rebuilt: dict[str, list[dict[str, Any]]] = {}
    for key in affected:
        by_package = {
            entry["package_id"]: entry["versions"]
            for entry in previous.entries(key)
            if entry["package_id"] not in gone and entry.get("source") != MANAGER
        }
        by_package.update(providers.get(key, {}))
        extra = manager.entries.get(key, ())
        if by_package or extra:
            rebuilt[key] = ranked_entries(key, by_package, decided.ranking, extra)

    mappings, keys, starts, end = _splice(previous, rebuilt, sorted(affected))
    block = _ManagerBlock(previous, manager)
    packages = _packages_section(previous, read.records, read.entries, block)
    registry_keys = len(keys)
    if sources.manager is not None:
        registry_keys -= manager_only_keys(decided, read.facts)
    stats = document_stats(
        decided,
        registry_packages=len(read.records),
        registry_keys=registry_keys,
        signatures=len(keys),
        total_nodes=sum(entry["nodes"] for entry in read.entries.values()),
    )
    output, mappings_at, packages_at = _write_document(stats, mappings, packages, sources.aliases)
    multi = {k for k in previous.index["multi"] if k not in affected}
    multi.update(k for k, entries in rebuilt.items() if len(entries) > 1)
    kept = {k: ids for k, ids in before.items() if k not in affected}
    spans = {"keys": keys, "starts": starts, "end": end}
    spans.update(mappings_at=mappings_at, packages_at=packages_at)
    index = index_document(
        options,
        output,
        stats,
        spans,
        multi,
        read.entries,
        {**kept, **manager_entries(rebuilt)},
        block.placed,
        manager.state(),
    )
    return output, stats, notes(decided, sources, read.records.keys() | manager.stars), index


def _changed(before: dict[str, list[str]], now: dict[str, set[str]]) -> list[str]:
    """Keys whose Manager entries are not the packages they were (no sort: most are)."""
    changed = [key for key in before if key not in now]
    for key, ids in now.items():
        was = before.get(key)
        if was is None or len(was) != len(ids) or not ids.issuperset(was):
            changed.append(key)
    return changed


class _Read:
    """The cache's packages as the incremental run reads them: copied, re-read in part, or
    parsed (see `index`)."""

    def __init__(
        self,
        options: MappingsOptions,
        previous: Previous,
        replayed: list[dict[str, Any]],
        report: MappingsReport,
        need_names: bool,
    ) -> None:
        self.options = options
        self.previous = previous
        self.report = report
        self.need_names = need_names  # the Manager merge needs every package's node types
        self.where = f"--cache {options.cache}"
        self.journaled: dict[str, dict[str, list[str]]] = {}  # package -> version -> keys
        for record in replayed:
            self.journaled.setdefault(record["id"], {}).update(record["keys"])
        self.records: dict[str, Any] = {}  # None (copy it), or (record, body bytes or None)
        self.entries: dict[str, dict[str, Any]] = {}  # the new index's package entries
        self.facts: dict[str, PackageFacts] = {}
        self.fed: dict[str, dict[str, list[str]]] = {}  # feeding versions of those parsed
        self.hasher = Hasher(report)

    def expected(self, package_id: str) -> tuple[int, str] | None:
        return _expected(self.previous.packages.get(package_id))

    def node(self, data: Any, text: Any) -> None:
        package_id = text.id
        report = self.report
        before = self.previous.packages.get(package_id) if package_id is not None else None
        if package_id in self.records:
            return  # the first node wins
        if before is not None and text.versions == before["versions"]:
            if text.head == before["head"]:
                self._keep(package_id, None, dict(before))
                report.packages_unchanged += 1
                return
            node = parse_head(data, text)
            if node["id"] != package_id:
                raise Layout
            if excluded(node) == before["excluded"]:  # the same versions feed: keep the rest
                record = package_record(node)
                entry = {**before, "head": text.head, "popularity": popularity(record)}
                entry.update(claims=list(claimed_names(node)), repository=record["repository"])
                self._keep(package_id, (record, self.previous.versions(before)), entry)
                return
        node = parse_node(data, text, self.where)
        if node["id"] != package_id:  # its "id" line is not its id: not the usual layout
            raise Layout
        known = self.previous.known(package_id) if before is not None else {}
        known.update(self.journaled.get(package_id, {}))
        record = package_record(node)
        self.records[package_id] = (record, None)
        versions = self.fed[package_id] = {}
        parsed = 0
        for version in feeding_versions(node, self.options.max_versions):
            name = version["version"]
            keys = known.get(name)
            if keys is None:
                keys = self.hasher.version_keys(package_id, version)
                parsed += 1
            versions[name] = keys
        report.versions_fed += len(versions)
        report.versions_parsed += parsed
        report.versions_reused += len(versions) - parsed
        gaps = metadata_gaps(node)
        report.unfed.update(gaps)
        facts = PackageFacts(
            popularity=popularity(record),
            newest=newest_release(record),
            claims=claimed_names(node),
            repository=record["repository"],
            excluded=excluded(node),
            names=node_types({key for keys in versions.values() for key in keys}),
        )
        self.facts[package_id] = facts
        self.entries[package_id] = package_entry(text, facts, versions, gaps)

    def _keep(self, package_id: str, value: Any, entry: dict[str, Any]) -> None:
        """A package whose versions are copied from the input."""
        self.records[package_id] = value
        self.entries[package_id] = entry
        self.facts[package_id] = package_facts(entry, with_names=self.need_names)
        self.report.versions_fed += entry["fed"]
        self.report.versions_reused += entry["fed"]
        self.report.unfed.update(entry["unfed"])


def _splice(
    previous: Previous, rebuilt: dict[str, list[dict[str, Any]]], affected: list[str]
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
    return orjson.dumps({key: entries}, option=INDENT)[1:-2].replace(b"\n", b"\n  ")


class _ManagerBlock:
    """The Manager-only packages' records in the `packages` object. Their ids share the
    `manager_` prefix, so they are one run in id order: serialised in one go, or copied from
    the input when what they depend on (the Manager's lists, the registry's repositories)
    is what it was (`Contribution.fingerprint`)."""

    def __init__(self, previous: Previous, manager: Any) -> None:
        self.previous = previous
        self.manager = manager
        self.ids = sorted(manager.stars)
        self.placed: dict[str, Any] | None = None  # for the new index: fingerprint and span

    def pieces(self) -> Any:
        before = self.previous.index["manager_block"]
        fingerprint = self.manager.fingerprint
        if fingerprint and before is not None and before["fingerprint"] == fingerprint:
            lo, hi = before["span"]
            at = self.previous.packages_at
            return self.previous.view[at + lo : at + hi]
        block = self.manager.records()
        return orjson.dumps(block, option=INDENT).replace(b"\n", b"\n  ")[1 : -len(b"\n  }")]


def _packages_section(
    previous: Previous,
    records: dict[str, Any],
    facts: dict[str, dict[str, Any]],
    block: _ManagerBlock,
) -> list[Any]:
    """The `packages` object, as `files.dumps` writes it, as pieces to join: runs of records
    that were adjacent in the input copied as one slice, the other records serialised
    (`records` maps a package to None, copy it, or to its record and versions bytes). Notes
    in `facts` where each record lies (relative to the `{`: `line`, `record`, `body`), and in
    `block.placed` where the Manager's block lies (when a registry id falls among its ids,
    its records go one by one instead, like the others)."""
    order: list[Any] = sorted(records)
    if block.ids:
        at = bisect.bisect_right(order, block.ids[0])
        if at == len(order) or order[at] > block.ids[-1]:
            order.insert(at, None)  # where the block goes
        else:
            extra = block.manager.records()
            records = {**records, **{p: (r, None) for p, r in extra.items()}}
            facts = {**facts, **{p: {} for p in extra}}  # Manager packs are not in the index
            order = sorted(records)
    parts: list[Any] = [b"{"]
    offset = 1  # where the next byte goes
    run = -1  # input offset where the current run of copied records starts; -1: none
    shift = 0  # output offset - input offset, within the run
    end = -1  # input offset where the run ends

    def separate() -> None:
        """End the current run of copied records, if any, and put a comma after the last."""
        nonlocal run, offset
        if run >= 0:
            parts.append(previous.view[previous.packages_at + run : previous.packages_at + end])
            run = -1
        if len(parts) > 1:
            parts.append(b",")
            offset += 1

    for package_id in order:
        if package_id is None:  # the Manager's block
            separate()
            pieces = block.pieces()
            parts.append(pieces)
            span = [offset, offset + len(pieces)]
            block.placed = {"fingerprint": block.manager.fingerprint, "span": span}
            offset += len(pieces)
            continue
        value = records[package_id]
        fact = facts[package_id]
        if not (value is None and run >= 0 and fact["line"] == end + 1):  # not a continuation
            separate()
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
        key = KEY_LINE[:-1] + orjson.dumps(package_id) + b": "
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


def _record_bytes(record: dict[str, Any], body: Any) -> tuple[bytes, int]:
    """A `packages` record two levels deep, and where its body starts: its
    `unavailable_versions` and `versions`, the two keys that sort last among a record's.
    `body` (those bytes at that depth, from the input) replaces the record's own when given."""
    if body is None:
        both = {k: record[k] for k in BODY_KEYS}
        raw = orjson.dumps(both, option=INDENT).replace(b"\n", b"\n    ")
        body = raw[len(BODY_LINE) : -len(RECORD_CLOSE)]
    rest = {k: v for k, v in record.items() if k not in BODY_KEYS}
    head = orjson.dumps(rest, option=INDENT).replace(b"\n", b"\n    ")[: -len(RECORD_CLOSE)]
    return b"".join((head, BODY_LINE, body, RECORD_CLOSE)), len(head) + len(BODY_LINE)


def _write_document(
    stats: dict[str, Any], mappings: list[Any], packages: list[Any], aliases: dict[str, str]
) -> tuple[list[Any], int, int]:
    """The output (as `files.dumps` would write the document), as pieces, from those of its
    `mappings` and `packages` objects; and where those objects start."""
    document = {**header(), "stats": stats, "mappings": 0, "packages": 1}
    document["package_aliases"] = aliases
    skeleton = files.dumps(document)
    head, rest = skeleton.split(MAPPINGS_AT + b"0")
    middle, tail = rest.split(PACKAGES_AT + b"1")
    mappings_at = len(head) + len(MAPPINGS_AT)
    packages_at = mappings_at + sum(map(len, mappings)) + len(middle) + len(PACKAGES_AT)
    pieces = [head, MAPPINGS_AT, *mappings, middle, PACKAGES_AT, *packages, tail]
    return pieces, mappings_at, packages_at
