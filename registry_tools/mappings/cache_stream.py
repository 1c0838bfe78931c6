"""Read a cache file node by node, leaving each version's `comfy_nodes` unparsed until asked.

Why: a full cache is ~150 MB of JSON whose Python objects take about three times that, and
most of it is `comfy_nodes`, which the mappings builder needs only for versions it has not seen
before. Cache files are written with a two-space indent (`files.dumps`, and `json.dump(indent=2)`
gives the same layout), where raw newlines only ever come from the indentation: a node of the
top-level `nodes` array is the text between `\\n    {` and `\\n    }`, its `versions_list` array
lies between `\\n      "versions_list": [` and `\\n      ]`, and a version's `comfy_nodes` array
between `\\n          "comfy_nodes": [` and `\\n          ]`. So each node is parsed on its own
with those arrays cut out and kept as `LazyJSON` slices of the file.

`scan` also fingerprints every node (length and CRC-32 of its `versions_list` bytes, CRC-32 of
the rest), so an incremental mappings build can tell an unchanged package without parsing it:
given the previous length and checksum it checks the bytes where the `versions_list` should end
instead of searching through them, and checksums them. CRC-32 runs at several GB/s (SHA-1 would
double the cost of an incremental build); it catches every change confined to 4 consecutive
bytes and every swap of one status string for another of the same length (the CRC of the
difference is not zero, wherever it lies: tested), and misses any other same-length change with
probability 2**-32.

Anything else (another indentation, a file that breaks the layout half-way, a file that is
not JSON or not a cache) falls back to reading the file whole (`load_whole`), which raises the
usual one-line UserError for a file that is not a cache; nodes already yielded are not yielded
twice.

Lone surrogates (`"\\ud800"`): valid JSON that orjson refuses and no UTF-8 file can hold.
Python's `json` reads them; in a node's own fields they become U+FFFD (with a warning), and in
`comfy_nodes` they are kept for the builder to count (`feeding`, `signatures`).
"""

from __future__ import annotations

import json
import logging
import mmap
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file

log = logging.getLogger(__package__)

_NODES_OPEN = b'\n  "nodes": [\n    {\n'
_NODE_CLOSE = b"\n    }"
_NEXT_NODE = b",\n    {\n"
_NODES_CLOSE = b"\n  ]"
_ID_LINE = b'\n      "id": '
_VERSIONS_OPEN = b'\n      "versions_list": ['
_VERSIONS_CLOSE = b"\n      ]"
_COMFY_OPEN = b'\n          "comfy_nodes": [\n'
_COMFY_CLOSE = b"\n          ]"
_NODE_COUNT = re.compile(rb'\n  "node_count": (\d+),?\n')

Buffer = bytes | mmap.mmap  # a whole cache file, read or mapped

# (length, checksum) a node's `versions_list` had before, by node id; None when unknown.
Expect = Callable[[str], "tuple[int, str] | None"]


class LazyJSON:
    """An unparsed JSON value inside a cache file (at byte `offset`); `load()` parses it."""

    __slots__ = ("_raw", "_where", "_offset")

    def __init__(self, raw: memoryview, where: str, offset: int = 0) -> None:
        self._raw = raw
        self._where = where
        self._offset = offset

    def load(self) -> Any:
        try:
            return orjson.loads(self._raw)
        except orjson.JSONDecodeError:
            pass
        text = bytes(self._raw)
        try:
            return json.loads(text)  # lone surrogates, which orjson refuses
        except ValueError as exc:
            where = _position(text, getattr(exc, "pos", 0), self._raw.obj, self._offset)
            message = getattr(exc, "msg", str(exc))
            raise UserError(f"{self._where}: not valid JSON ({message}: {where})") from None
        except RecursionError:
            raise UserError(f"{self._where}: not valid JSON (nested too deeply)") from None


def _position(text: bytes, pos: int, whole: Any, offset: int) -> str:
    """`line L column C (char N)` of character `pos` of `text`, which starts at byte
    `offset` of the file `whole`: where an editor would find it."""
    at = offset + len(text.decode("utf-8", "replace")[:pos].encode("utf-8", "surrogatepass"))
    line = bytes(whole[:at]).count(b"\n") + 1
    column = at - bytes(whole[:at]).rfind(b"\n")
    return f"line {line} column {column} (char {at})"


def replace_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (proper pairs are kept)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_strings(value: Any) -> Any:
    """A parsed JSON value with lone surrogates replaced in every string, keys included."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, list):
        return [clean_strings(item) for item in value]
    if isinstance(value, dict):
        return {replace_surrogates(k): clean_strings(v) for k, v in value.items()}
    return value


def _loads_lenient(text: bytes) -> tuple[Any, bool]:
    """Parse JSON with orjson, or with Python's `json` when orjson refuses a lone surrogate
    (then the flag is True); raises ValueError (json's, with its position) when it is not JSON
    at all."""
    try:
        return orjson.loads(text), False
    except orjson.JSONDecodeError:
        return json.loads(text), True


def comfy_nodes(version: dict[str, Any]) -> list[Any]:
    """A version's comfy nodes, parsing them now if they were left lazy."""
    value = version.get("comfy_nodes")
    if isinstance(value, LazyJSON):
        value = value.load()
    return value if isinstance(value, list) else []


def declared_node_count(path: Path) -> int:
    """The cache's own `node_count` (for a progress total) without reading the file; 0 when
    the head of the file does not state it."""
    found = _NODE_COUNT.search(_head(path))
    return int(found.group(1)) if found else 0


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(4096)
    except OSError:
        return b""


def map_file(path: Path) -> Buffer:
    """The file's bytes, mapped read-only (no copy; pages come from the page cache). Cache
    and mappings files are replaced atomically, never rewritten in place, so the mapping
    stays valid. An empty file, which cannot be mapped, is read."""
    with open(path, "rb") as handle:
        try:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            return handle.read()


class Layout(Exception):
    """The file does not have the two-space layout; read it the ordinary way."""


@dataclass(slots=True)
class NodeText:
    """Where one node lies in a two-space-indented cache, and fingerprints of its parts.

    The node is `data[start:end]`; its `versions_list` array `data[lo:hi]` (`lo == hi` when
    it has none). `head` is the CRC-32 (8 hex digits) of the node's bytes outside that array,
    `versions` of the array's ('' when there is none). `comfy` lists the `comfy_nodes` arrays
    inside it as (line start, array start, array end), or is None when the array was
    recognised by its checksum and never searched.
    """

    id: str | None
    start: int
    end: int
    lo: int
    hi: int
    head: str
    versions: str
    comfy: list[tuple[int, int, int]] | None


def iter_nodes(
    path: Path,
    what: str = "--cache",
    texts: dict[str, NodeText] | None = None,
    top: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every node of the cache at `path`, in file order, validated like `cache_file.load_cache`.
    With `texts`, each node read from the two-space layout also leaves its NodeText there
    (under its id, first occurrence only); with `top`, the cache's other top-level fields
    (`cached_at`...) are put there once the last node is read."""
    seen: set[str] = set()
    data = b""
    try:
        data = Path(path).read_bytes()
        where = f"{what} {path}"
        for text in scan(data, top=top):
            node = parse_node(data, text, where)
            if texts is not None and node["id"] not in seen:
                texts[node["id"]] = text
            seen.add(node["id"])
            yield node
        return
    except (OSError, Layout):
        data = b""  # not kept alive next to the whole-file copy below
    cache = load_whole(path, what)
    if top is not None:
        top.update((key, value) for key, value in cache.items() if key != "nodes")
    for node in cache["nodes"]:
        if node["id"] not in seen:
            yield node


def load_whole(path: Path, what: str = "--cache") -> dict[str, Any]:
    """Read and validate a cache of any layout in one go, like `cache_file.load_cache`, but
    reading lone surrogates (replaced by U+FFFD outside `comfy_nodes`, see the module)."""
    data = files.check_input(Path(path), what).read_bytes()
    try:
        cache, lenient = _loads_lenient(data)
    except ValueError as exc:
        raise UserError(f"{what} {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{what} {path}: not valid JSON (nested too deeply)") from None
    problem = cache_file.cache_problem(cache)
    if problem:
        raise UserError(f"{what} {path}: not a registry cache ({problem})")
    nodes = cache["nodes"]
    if lenient:
        cache["nodes"] = [_clean_node(node) for node in nodes]
    return cache


def _encodes(value: Any) -> bool:
    """Whether orjson can write `value` (no lone surrogate anywhere in it)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _clean_node(node: dict[str, Any]) -> dict[str, Any]:
    """A node with lone surrogates replaced outside its versions' `comfy_nodes`."""
    comfy = [v.pop("comfy_nodes", None) for v in node.get("versions_list") or []]
    cleaned = node
    if not _encodes(node):
        cleaned = clean_strings(node)
        log.warning("node %s: lone surrogates replaced by U+FFFD", ascii(cleaned.get("id")))
    for version, nodes in zip(cleaned.get("versions_list") or [], comfy, strict=True):
        if nodes is not None:
            version["comfy_nodes"] = nodes
    return cleaned


def scan(
    data: Buffer, expect: Expect | None = None, top: dict[str, Any] | None = None
) -> Iterator[NodeText]:
    """Locate and fingerprint the nodes of a two-space-indented cache, parsing nothing.

    Each byte is searched about once: the next `comfy_nodes` opening is looked up ahead, and
    the end of a `versions_list` is only searched for in the stretches between comfy arrays.
    With `expect`, a node whose `versions_list` has the length and checksum it had before is
    recognised by checksumming those bytes, without searching them. Raises Layout on anything
    unexpected (the caller falls back to reading the file whole). With `top`, the top-level
    fields other than `nodes` are put there at the end.
    """
    opening = data.find(_NODES_OPEN)
    if not data[:64].lstrip().startswith(b"{") or opening < 0:
        raise Layout
    view = memoryview(data)
    pos = opening + len(_NODES_OPEN) - 2  # at the first node's "{"
    comfy = -2  # the next comfy_nodes opening at or after the search cursor; -2: not looked up
    while True:
        opens = data.find(_VERSIONS_OPEN, pos)
        close = data.find(_NODE_CLOSE, pos, opens if opens >= 0 else len(data))
        node_id = _node_id(data, pos, close if close >= 0 else opens)
        arrays: list[tuple[int, int, int]] | None = []
        if close >= 0:  # no versions_list in this node
            lo = hi = end = close + len(_NODE_CLOSE)
            versions = ""
        else:
            if opens < 0:
                raise Layout
            lo = opens + len(_VERSIONS_OPEN) - 1  # at "["
            hi = -1
            previous = expect(node_id) if expect is not None and node_id else None
            if previous is not None:
                length, versions = previous
                guess = lo + length
                if _at(data, guess - len(_VERSIONS_CLOSE), _VERSIONS_CLOSE) and (
                    checksum(view[lo:guess]) == versions
                ):
                    hi, arrays = guess, None
            if hi < 0:
                if _at(data, lo, b"[]"):
                    hi = lo + 2
                else:
                    cursor = lo
                    while True:
                        if comfy == -2 or 0 <= comfy < cursor:
                            comfy = data.find(_COMFY_OPEN, cursor)
                        found = data.find(
                            _VERSIONS_CLOSE, cursor, comfy if comfy >= 0 else len(data)
                        )
                        if found >= 0:
                            hi = found + len(_VERSIONS_CLOSE)
                            break
                        if comfy < 0:
                            raise Layout
                        array_start = comfy + len(_COMFY_OPEN) - 2  # at "["
                        array_close = data.find(_COMFY_CLOSE, array_start)
                        if array_close < 0:
                            raise Layout
                        cursor = array_close + len(_COMFY_CLOSE)
                        arrays.append((comfy, array_start, cursor))
                        comfy = -2
                versions = checksum(view[lo:hi])
            end = data.find(_NODE_CLOSE, hi)
            if end < 0:
                raise Layout
            end += len(_NODE_CLOSE)
        head = f"{zlib.crc32(view[hi:end], zlib.crc32(view[pos:lo])):08x}"
        yield NodeText(node_id, pos, end, lo, hi, head, versions, arrays)
        if _at(data, end, _NEXT_NODE):
            pos = end + len(_NEXT_NODE) - 2
        elif _at(data, end, _NODES_CLOSE):
            fields = _check_top_level(data[:opening] + b'\n  "nodes": [' + data[end:])
            if top is not None:
                top.update((key, value) for key, value in fields.items() if key != "nodes")
            return
        else:
            raise Layout


def _at(data: Buffer, position: int, text: bytes) -> bool:
    """`data.startswith(text, position)`, for bytes and mmap alike."""
    return data[position : position + len(text)] == text


def checksum(raw: Any) -> str:
    """CRC-32 of a buffer, as 8 hex digits."""
    return f"{zlib.crc32(raw):08x}"


def _node_id(data: Buffer, start: int, limit: int) -> str | None:
    """The node's id read from its `"id"` line (keys are sorted: it precedes versions_list)."""
    line = data.find(_ID_LINE, start, limit if limit >= 0 else len(data))
    if line < 0:
        return None
    value = data[line + len(_ID_LINE) : data.find(b"\n", line + len(_ID_LINE))].rstrip(b",")
    if b"\\" not in value and value[:1] == value[-1:] == b'"' and len(value) > 1:
        try:
            return value[1:-1].decode()
        except UnicodeDecodeError:
            return None
    try:
        found = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, str) else None


def parse_node(data: Buffer, text: NodeText, where: str) -> dict[str, Any]:
    """The node at `text`, its `comfy_nodes` arrays left as LazyJSON."""
    arrays = text.comfy if text.comfy is not None else _comfy_arrays(data, text.lo, text.hi)
    view = memoryview(data)
    pieces: list[Any] = []
    lazy: list[memoryview] = []
    cursor = text.start
    for line, array_start, array_end in arrays:
        pieces += [view[cursor:line], b'\n"comfy_nodes": %d' % len(lazy)]
        lazy.append((array_start, view[array_start:array_end]))
        cursor = array_end
    pieces.append(view[cursor : text.end])
    return _node(b"".join(pieces), lazy, where)


def parse_head(data: Buffer, text: NodeText) -> dict[str, Any]:
    """The node at `text` with an empty `versions_list` (its versions are not read)."""
    view = memoryview(data)
    middle = b"[]" if text.hi > text.lo else b""
    return _node(b"".join((view[text.start : text.lo], middle, view[text.hi : text.end])), [], "")


def _comfy_arrays(data: Buffer, lo: int, hi: int) -> list[tuple[int, int, int]]:
    arrays = []
    cursor = lo
    while (comfy := data.find(_COMFY_OPEN, cursor, hi)) >= 0:
        array_start = comfy + len(_COMFY_OPEN) - 2
        array_close = data.find(_COMFY_CLOSE, array_start, hi)
        if array_close < 0:
            raise Layout
        cursor = array_close + len(_COMFY_CLOSE)
        arrays.append((comfy, array_start, cursor))
    return arrays


def _node(text: bytes, lazy: list[tuple[int, memoryview]], where: str) -> dict[str, Any]:
    """Parse one node whose `comfy_nodes` arrays were replaced by numbered placeholders, and
    put the arrays (with where they start) back as LazyJSON."""
    try:
        node = orjson.loads(text)
    except orjson.JSONDecodeError:
        node = _lenient_node(text)
    if cache_file.cache_problem({"nodes": [node]}):
        raise Layout
    placed = 0
    for version in node.get("versions_list") or []:
        index = version.get("comfy_nodes")
        if type(index) is int:
            if index != placed:
                raise Layout
            offset, raw = lazy[index]
            version["comfy_nodes"] = LazyJSON(raw, where, offset)
            placed += 1
    if placed != len(lazy):
        raise Layout
    return node


def _lenient_node(text: bytes) -> Any:
    """A node orjson refused: Python's `json` reads lone surrogates (replaced, with a warning);
    anything else that is not JSON is a Layout problem (the whole file is then read)."""
    try:
        node = json.loads(text)
    except (ValueError, RecursionError):
        raise Layout from None
    cleaned = clean_strings(node)
    if isinstance(cleaned, dict):
        log.warning("node %s: lone surrogates replaced by U+FFFD", ascii(cleaned.get("id")))
    return cleaned


def _check_top_level(skeleton: bytes) -> dict[str, Any]:
    """The file minus its nodes must still be a JSON object (catches a torn or edited tail);
    returns it."""
    try:
        top = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        raise Layout from None
    if not isinstance(top, dict):
        raise Layout
    return top
