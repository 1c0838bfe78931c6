"""The cache file: reading and validating it, canonical bytes, atomic writes, journals.

Every file this project writes goes through `dumps` (sorted keys, two-space indent, UTF-8) and
`write_atomic` (temp file + fsync + `os.replace`), so outputs are byte-reproducible and a
reader never sees a torn file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from . import clock
from .errors import UserError
from .semver import version_key

# Keys this project adds to a registry Node or NodeVersion; everything else is the server's.
NODE_LOCAL_KEYS = (
    "fully_cached",
    "versions_cached_at",
    "versions_cached_for",
    "versions_unavailable",
    "versions_list",
)
VERSION_LOCAL_KEYS = ("comfy_nodes", "metadata_cached")

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, indented, UTF-8, trailing newline."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def check_writable(path: Path, what: str = "--output") -> None:
    """Fail early, before any work, if `path` cannot be written."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: directory {parent} is not writable")
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory")


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, or pieces written in order, never joined in
    memory) in one step; an interrupted write leaves the old file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 less the umask
    (mkstemp's private 0600 would surprise whoever reads the output next)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def read_json(path: Path, what: str) -> Any:
    """Load a JSON file, turning every way it can be unusable into a one-line UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path}: is a directory") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: not valid JSON ({exc})") from None


def load_cache(path: Path, what: str = "--input") -> dict[str, Any]:
    """Read and validate a cache file (shape only; unknown fields are kept)."""
    cache = read_json(path, what)
    problem = cache_problem(cache)
    if problem:
        raise UserError(f"{what} {path}: not a registry cache ({problem})")
    return cache


def cache_problem(cache: Any) -> str | None:
    """Why `cache` is not a registry cache, or None when it is one."""
    if not isinstance(cache, dict):
        return f"top level is a JSON {type(cache).__name__}, expected an object"
    nodes = cache.get("nodes")
    if not isinstance(nodes, list):
        return "missing the 'nodes' list"
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            return f"nodes[{index}] has no string 'id'"
        versions = node.get("versions_list", [])
        if not isinstance(versions, list) or not all(
            isinstance(v, dict) and isinstance(v.get("version"), str) for v in versions
        ):
            return f"node {node['id']!r} has a malformed 'versions_list'"
    return None


def sort_versions(versions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Version entries newest first (semver-aware)."""
    return sorted(versions, key=lambda v: version_key(v["version"]), reverse=True)


def build_cache(nodes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Assemble the cache document: nodes by id, versions newest first, counts, timestamp."""
    ordered = sorted(nodes, key=lambda n: n["id"])
    for node in ordered:
        if "versions_list" in node:
            node["versions_list"] = sort_versions(node["versions_list"])
    versions = [v for node in ordered for v in node.get("versions_list", [])]
    return {
        "cached_at": clock.iso(),
        "node_count": len(ordered),
        "versions_processed": len(versions),
        "metadata_entries": sum(len(v.get("comfy_nodes") or []) for v in versions),
        "nodes": ordered,
    }


class Journal:
    """Append-only JSON-lines log of finished work, replayed after a crash.

    A checkpoint hands what was appended since the last one to a writer thread that writes
    and fsyncs it, so its cost is proportional to the work done since then (not to the size
    of the cache) and the disk wait overlaps the network wait. The first line is a header; a
    journal whose header differs (other command, other input) is discarded. A torn last line
    (the process died mid-write) is ignored on replay: that work is simply done again.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self._handle: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self.error: OSError | None = None

    def replay(self) -> Iterator[dict[str, Any]]:
        """Records of a previous interrupted run of the same job (none if there was none)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = raw.split(b"\n")
        try:
            if orjson.loads(lines[0]) != self.header:
                return
        except orjson.JSONDecodeError:
            return
        for line in lines[1:]:
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                return  # torn tail: everything after it was never checkpointed

    def open(self, records: list[dict[str, Any]]) -> None:
        """Start a fresh journal holding `records` (the replayed ones), then append."""
        self._handle = open(self.path, "wb")  # noqa: SIM115 - held for the run
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._pending.append(orjson.dumps(self.header) + b"\n")
        for record in records:
            self.append(record)
        self.checkpoint()

    def append(self, record: dict[str, Any]) -> None:
        self._pending.append(orjson.dumps(record) + b"\n")

    def checkpoint(self) -> None:
        """Queue everything appended so far to be written and made durable, in order."""
        if self._writer is not None and self._pending:
            blob, self._pending = b"".join(self._pending), []
            self._writer.submit(self._write, blob)

    def _write(self, blob: bytes) -> None:
        """Runs on the writer thread. After a failed write (disk full) stop writing: a gap
        would make replay skip records; the journal is then only as good as its prefix."""
        if self.error is not None or self._handle is None:
            return
        try:
            self._handle.write(blob)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self.error = exc

    def close(self, remove: bool) -> None:
        """Finish queued checkpoints and close; remove once the final output is written."""
        if not remove:
            self.checkpoint()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
