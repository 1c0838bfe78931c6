"""`OUTPUT.index`: what lets the incremental build (`incremental`) skip packages whose cache
bytes did not change.

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
import operator
import os
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from registry_tools.mappings.cache_stream import Buffer, NodeText, checksum, map_file
from registry_tools.mappings.installable import package_reason
from registry_tools.mappings.job import MappingsOptions
from registry_tools.mappings.plan import PackageFacts
from registry_tools.mappings.ranking import MANAGER

# The builder's modules log under one name, the subpackage's (`registry_tools.mappings`).
log = logging.getLogger(__package__)

INDEX_SUFFIX = ".index"
INDEX_FORMAT = 5  # bump when the index, or anything derived from a package, changes meaning


def index_path(output: Path) -> Path:
    """The index of a mappings file lives next to it."""
    return Path(output).with_name(Path(output).name + INDEX_SUFFIX)


MAPPINGS_AT = b'\n  "mappings": '
PACKAGES_AT = b',\n  "packages": '
KEY_LINE = b'\n    "'
RECORD_CLOSE = b"\n    }"
BODY_LINE = b',\n      "unavailable_versions": '
INDENT = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


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
        path = index_path(options.input)
        try:
            if not path.is_file():  # a FIFO there would never end
                return None
            index = orjson.loads(path.read_bytes())
            data = map_file(options.input)
        except (OSError, orjson.JSONDecodeError):
            return None
        if not (
            isinstance(index, dict)
            and index.get("format") == INDEX_FORMAT
            and index.get("max_versions") == options.max_versions
            and index.get("size") == len(data)
            and index.get("crc32") == checksum(data)
            and well_formed(index)
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


# What an index holds, by type: an index that matches its output's size and CRC-32 but not
# this shape (edited by hand, written by a bug) is ignored, never a traceback.
_TOP = {
    "keys": list, "starts": list, "end": int, "mappings_at": int, "packages_at": int,
    "multi": list, "manager": dict, "packages": dict,
}  # fmt: skip
_ENTRY = {
    "head": str, "versions": str, "length": int, "excluded": bool, "popularity": int,
    "claims": list, "repository": str, "fed": int, "nodes": int, "unfed": dict, "keys": str,
    "names": str, "line": int, "record": list, "body": int,
}  # fmt: skip


def well_formed(index: dict[str, Any]) -> bool:
    """Whether `index` has the shape `index_document` writes (checked before any use)."""
    if not all(isinstance(index.get(k), kind) for k, kind in _TOP.items()):
        return False
    if len(index["keys"]) != len(index["starts"]):
        return False
    if not _state_well_formed(index.get("manager_state", False)):
        return False
    block = index.get("manager_block", False)
    if block is not None and not (
        isinstance(block, dict)
        and isinstance(block.get("fingerprint"), str)
        and isinstance(block.get("span"), list)
        and len(block["span"]) == 2
        and all(isinstance(x, int) for x in block["span"])
    ):
        return False
    fields, kinds = operator.itemgetter(*_ENTRY, "newest"), (*_ENTRY.values(), str | None)
    for entry in index["packages"].values():
        try:  # one C-level pass per entry: 3,000 of them in a full registry's index
            if not all(map(isinstance, fields(entry), kinds)):
                return False
            if entry["newest"] is not None:
                datetime.fromisoformat(entry["newest"])
        except (TypeError, KeyError, ValueError):
            return False
    return True


def _state_well_formed(state: Any) -> bool:
    """`Contribution.state()` as written: None, or its fingerprint, targets and packs."""
    if state is None:
        return True
    if not (
        isinstance(state, dict)
        and isinstance(state.get("fingerprint"), str)
        and isinstance(state.get("targets"), dict)
        and isinstance(state.get("packs"), dict)
        and isinstance(state.get("hits"), dict)
        and all(isinstance(t, str) for t in state["hits"].values())
    ):
        return False
    targets_ok = all(t is None or isinstance(t, str) for t in state["targets"].values())
    return targets_ok and all(
        isinstance(pack, list)
        and len(pack) == 3
        and isinstance(pack[0], str)
        and isinstance(pack[1], int)
        and (pack[2] is None or isinstance(pack[2], str))
        for pack in state["packs"].values()
    )


def excluded(node: dict[str, Any]) -> bool:
    """Whether none of the package's versions may be installed (banned or deleted)."""
    return package_reason(node) is not None


def from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def package_entry(
    text: NodeText, facts: PackageFacts, versions: dict[str, list[str]], unfed: Any
) -> dict[str, Any]:
    """A package's entry in the index (where its record lies is added once it is written).
    Its keys are kept as a JSON string, parsed only when needed."""
    return {
        "head": text.head,
        "versions": text.versions,
        "length": text.hi - text.lo,
        "excluded": facts.excluded,
        "popularity": facts.popularity,
        "newest": None if facts.newest is None else facts.newest.isoformat(),
        "claims": list(facts.claims),
        "repository": facts.repository,
        "fed": len(versions),
        "nodes": sum(len(keys) for keys in versions.values()),
        "unfed": dict(sorted(unfed.items())),
        "keys": orjson.dumps(sorted({key for keys in versions.values() for key in keys})).decode(),
        "names": orjson.dumps(facts.names).decode(),
    }


def package_facts(entry: dict[str, Any], with_names: bool = True) -> PackageFacts:
    """The PackageFacts of an index entry (its node types only when asked: they are kept as
    JSON text, parsed when the Manager merge needs them)."""
    return PackageFacts(
        popularity=entry["popularity"],
        newest=from_iso(entry["newest"]),
        claims=tuple(entry["claims"]),
        repository=entry["repository"],
        excluded=entry["excluded"],
        names=tuple(orjson.loads(entry["names"])) if with_names else (),
    )


def manager_entries(mappings: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """key -> the packages whose entries there come from the Manager (the next incremental
    run rebuilds a key whose set changed)."""
    found = {}
    for key, entries in mappings.items():
        ids = [e["package_id"] for e in entries if e.get("source") == MANAGER]
        if ids:
            found[key] = sorted(ids)
    return found


def full_index(
    options: MappingsOptions,
    output: bytes,
    document: dict[str, Any],
    fed: dict[str, dict[str, list[str]]],
    texts: dict[str, NodeText],
    facts: dict[str, PackageFacts],
    unfed: dict[str, Any],
    fingerprint: str = "",
    manager_state: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The index of an output built by the general path, found by scanning it; None when part
    of the cache was not in the two-space layout (no fingerprints)."""
    if any(package_id not in texts or texts[package_id].id != package_id for package_id in facts):
        return None
    entries = {
        package_id: package_entry(texts[package_id], f, fed[package_id], unfed[package_id])
        for package_id, f in facts.items()
    }
    mappings = document["mappings"]
    keys = sorted(mappings)
    find = output.find
    mappings_at = find(MAPPINGS_AT) + len(MAPPINGS_AT)
    starts = []
    cursor = mappings_at
    for _ in keys:
        cursor = find(KEY_LINE, cursor + 1)
        starts.append(cursor - mappings_at)
    end = find(b"\n  }", cursor) - mappings_at if keys else 1
    packages_at = find(PACKAGES_AT, mappings_at + end) + len(PACKAGES_AT)
    cursor = packages_at
    block: list[int] = []  # where the Manager packs' records lie (one run of ids, or none)
    contiguous, ended = True, False
    for package_id in sorted(document["packages"]):
        line = find(KEY_LINE, cursor)
        lo = line + len(KEY_LINE) - 1 + len(orjson.dumps(package_id)) + 2
        hi = find(RECORD_CLOSE, lo) + len(RECORD_CLOSE)
        cursor = hi
        if package_id not in entries:  # a Manager pack (see `incremental._ManagerBlock`)
            contiguous = contiguous and not ended
            block = [block[0] if block else line - packages_at, hi - packages_at]
            continue
        ended = bool(block)
        body = find(BODY_LINE, lo, hi) + len(BODY_LINE)
        entries[package_id].update(
            line=line - packages_at, record=[lo - packages_at, hi - packages_at]
        )
        entries[package_id]["body"] = body - packages_at
    multi = {key for key, found in mappings.items() if len(found) > 1}
    spans = {"keys": keys, "starts": starts, "end": end}
    spans.update(mappings_at=mappings_at, packages_at=packages_at)
    placed = {"fingerprint": fingerprint, "span": block} if block and contiguous else None
    return index_document(
        options,
        [output],
        document["stats"],
        spans,
        multi,
        entries,
        manager_entries(mappings),
        placed,
        manager_state,
    )


def index_document(
    options: MappingsOptions,
    output: list[Any],
    stats: dict[str, Any],
    spans: dict[str, Any],
    multi: set[str],
    entries: dict[str, dict[str, Any]],
    manager: dict[str, list[str]],
    manager_block: dict[str, Any] | None,
    manager_state: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "size": sum(len(piece) for piece in output),
        "crc32": _checksum(output),
        "max_versions": options.max_versions,
        "stats": stats,
        **spans,
        "multi": sorted(multi),
        "manager": manager,
        "manager_block": manager_block,
        "manager_state": manager_state,
        "packages": entries,
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
