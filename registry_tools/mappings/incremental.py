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
from registry_tools.mappings.feeding import Hasher, feeding_versions
from registry_tools.mappings.index import (
    INDENT,
    KEY_LINE,
    MAPPINGS_AT,
    PACKAGES_AT,
    RECORD_CLOSE,
    VERSIONS_LINE,
    Previous,
    excluded,
    from_iso,
    index_document,
    package_facts,
)
from registry_tools.mappings.job import PHASE, MappingsOptions, MappingsReport
from registry_tools.mappings.ranking import newest_release, popularity, ranked_entries, score
from registry_tools.progress import Reporter


def _expected(package: dict[str, Any] | None) -> tuple[int, str] | None:
    return None if package is None else (package["length"], package["versions"])


def update(
    options: MappingsOptions,
    previous: Previous,
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
    hasher = Hasher(report)
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
            if excluded(node) == before["excluded"]:  # the same versions feed: keep the rest
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
        facts[package_id] = package_facts(text, node, record, versions, newest_release(record))
    reporter.finish(PHASE)

    newest = {p: from_iso(f["newest"]) for p, f in facts.items()}
    reference = max((d for d in newest.values() if d is not None), default=None)
    scores = {p: score(f["popularity"], newest[p], reference) for p, f in facts.items()}

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
    return output, stats, index_document(options, output, stats, spans, multi, facts)


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


def _packages_section(
    previous: Previous, records: dict[str, Any], facts: dict[str, dict[str, Any]]
) -> list[Any]:
    """The `packages` object, as `files.dumps` writes it, as pieces to join: runs of records
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


def _record_bytes(record: dict[str, Any], versions: Any) -> tuple[bytes, int]:
    """A `packages` record two levels deep, and where its `versions` object starts. `versions`
    (bytes at that depth) replaces the record's own when given. `versions` sorts last among a
    record's keys, so the record is its other members, then it."""
    if versions is None:
        versions = orjson.dumps(record["versions"], option=INDENT).replace(b"\n", b"\n      ")
    rest = {k: v for k, v in record.items() if k != "versions"}
    head = orjson.dumps(rest, option=INDENT).replace(b"\n", b"\n    ")[: -len(RECORD_CLOSE)]
    return b"".join((head, VERSIONS_LINE, versions, RECORD_CLOSE)), len(head) + len(VERSIONS_LINE)


def _write_document(
    stats: dict[str, int], mappings: list[Any], packages: list[Any]
) -> tuple[list[Any], int, int]:
    """The output (as `files.dumps` would write the document), as pieces, from those of its
    `mappings` and `packages` objects; and where those objects start."""
    document = {**header(), "stats": stats, "mappings": 0, "packages": 1}
    skeleton = files.dumps(document)
    head, rest = skeleton.split(MAPPINGS_AT + b"0")
    middle, tail = rest.split(PACKAGES_AT + b"1")
    mappings_at = len(head) + len(MAPPINGS_AT)
    packages_at = mappings_at + sum(map(len, mappings)) + len(middle) + len(PACKAGES_AT)
    pieces = [head, MAPPINGS_AT, *mappings, middle, PACKAGES_AT, *packages, tail]
    return pieces, mappings_at, packages_at
