"""`OUTPUT.index` and the incremental build that uses it: skip packages whose cache bytes did
not change.

Next to every output the builder writes `OUTPUT.index` (JSON): the output's size and CRC-32,
`--max-versions`, where each key's entries and each package's record lie in the output, and
per package the fingerprints of its cache node (`cache_stream.NodeText`) plus what ranking
needs (popularity, newest release) and what it fed (keys, counts). With `--input`, when the
index next to it describes exactly that file, a package whose node bytes are unchanged is
not parsed at all: its record and entries are copied from the input as bytes. Only the keys
of changed, new and removed packages, and multi-package keys whose order moved, are rebuilt.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import store
from .cache_stream import (
    Buffer,
    Layout,
    NodeText,
    checksum,
    declared_node_count,
    map_file,
    parse_head,
    parse_node,
    scan,
)
from .feeding import EXCLUDED_NODE_STATUSES, Hasher, feeding_versions
from .mapping_format import header, package_record
from .mapping_job import PHASE, MappingsOptions, MappingsReport
from .progress import Reporter
from .ranking import newest_release, popularity, ranked_entries, score

# The builder's modules log under one name, the one `--log-level INFO` output has always shown.
log = logging.getLogger(f"{__package__}.mappings")

INDEX_SUFFIX = ".index"
INDEX_FORMAT = 1  # bump when the index, or anything derived from a package, changes meaning


def index_path(output: Path) -> Path:
    """The index of a mappings file lives next to it."""
    return Path(output).with_name(Path(output).name + INDEX_SUFFIX)


_MAPPINGS_AT = b'\n  "mappings": '
_PACKAGES_AT = b',\n  "packages": '
_KEY_LINE = b'\n    "'
_RECORD_CLOSE = b"\n    }"
_VERSIONS_LINE = b',\n      "versions": '
_INDENT = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


class Previous:
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
    def load(cls, options: MappingsOptions) -> Previous | None:
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
    return output, stats, _index(options, output, stats, spans, multi, facts)


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
    return orjson.dumps({key: entries}, option=_INDENT)[1:-2].replace(b"\n", b"\n  ")


def _packages_section(
    previous: Previous, records: dict[str, Any], facts: dict[str, dict[str, Any]]
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
    document = {**header(), "stats": stats, "mappings": 0, "packages": 1}
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


def full_index(
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


def write_index(path: Path, index: dict[str, Any] | None) -> None:
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
