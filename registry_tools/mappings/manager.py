"""ComfyUI-Manager's public lists, read from wherever they are: a directory, a `comfyui-manager`
wheel, the installed package, or the Manager's repository (`live`).

The Manager ships `custom-node-list.json` (the packs), `extension-node-map.json` (which node
classes each repository provides) and `github-stats.json` (stars, last update) under
`comfyui_manager/` in its PyPI package, and publishes them in its GitHub repository. The files
are read as data: the package is never imported (its dependencies are heavy, and importing it
starts a ComfyUI extension). `live` fetches them through the registry client, so the traffic
records into cassettes like every other (`registry_tools.replay.cassettes.use_cassette`).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.mappings.cache_stream import clean_strings

CUSTOM_NODE_LIST = "custom-node-list.json"
NODE_MAP = "extension-node-map.json"
GITHUB_STATS = "github-stats.json"
FILES = (CUSTOM_NODE_LIST, NODE_MAP, GITHUB_STATS)
PACKAGE_DIR = "comfyui_manager"  # where the wheel and the installed package keep them
DISTRIBUTION = "comfyui-manager"

LIVE = "live"
INSTALLED = "installed"  # the installed `comfyui-manager` distribution
DEFAULT_URL = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main"
URL_ENV = "REGISTRY_TOOLS_MANAGER_URL"
MAX_FILE_BYTES = 256 * 1024 * 1024  # the real lists are a few MB; refuse a zip bomb's


@dataclass(frozen=True)
class ManagerData:
    """The Manager's three lists, checked: `custom_nodes` (list of pack objects), `node_map`
    (repository URL -> [node class names, metadata]), `stats` (repository URL -> object).
    Entries of the wrong shape are dropped and counted in `skipped`."""

    origin: str
    custom_nodes: list[dict[str, Any]]
    node_map: dict[str, tuple[list[str], dict[str, Any]]]
    stats: dict[str, dict[str, Any]]
    skipped: int = 0
    digest: str = ""  # CRC-32 of the three lists: an incremental run reuses what they gave


def default_url() -> str:
    """Where `live` fetches from: `$REGISTRY_TOOLS_MANAGER_URL`, else the Manager's main branch."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def check_source(source: Any) -> str:
    """A `--manager` value as a string (`live`, `installed`, a path or a distribution name)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"--manager {source!r}: expected a directory, wheel, 'installed' or 'live'")
    return source


def load_manager(source: str, url: str | None = None) -> ManagerData:
    """Read the Manager's lists from `source`; every way it can be unusable is a UserError."""
    source = check_source(source)
    if source == LIVE:
        from registry_tools.fetch.client import check_base_url  # the network only for `live`

        base = check_base_url(url or default_url())
        parsed = fetch_live(base)
        digest = _digest([orjson.dumps(parsed[name]) for name in FILES])
        return parse_lists(parsed, f"{base} (live)", digest)
    path = Path(source)
    if source == INSTALLED or not (path.exists() or os.sep in source or "/" in source):
        raw, origin = _installed(DISTRIBUTION if source == INSTALLED else source)
        return parse_lists(_parsed(raw, origin), origin, _digest(raw.values()))
    if path.is_dir():
        folder = path / PACKAGE_DIR if (path / PACKAGE_DIR / NODE_MAP).is_file() else path
        raw = {name: _read(folder / name) for name in FILES}
        return parse_lists(_parsed(raw, str(folder)), str(folder), _digest(raw.values()))
    if path.exists():
        raw = _from_zip(files.check_input(path, "--manager"))
        return parse_lists(_parsed(raw, str(path)), str(path), _digest(raw.values()))
    raise UserError(f"--manager {source}: no such file or directory")


def _read(path: Path) -> bytes:
    return files.check_input(path, "--manager").read_bytes()


def _from_zip(path: Path) -> dict[str, bytes]:
    """The lists from a wheel (or any zip) that holds them under `comfyui_manager/`."""
    try:
        with zipfile.ZipFile(path) as archive:
            raw = {}
            for name in FILES:
                member = f"{PACKAGE_DIR}/{name}"
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise UserError(f"--manager {path}: the archive has no {member}") from None
                if info.file_size > MAX_FILE_BYTES:
                    raise UserError(f"--manager {path}: {member} is implausibly large")
                raw[name] = archive.read(info)
            return raw
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise UserError(f"--manager {path}: not a readable wheel or zip ({exc})") from None


def _installed(name: str) -> tuple[dict[str, bytes], str]:
    """The lists of an installed distribution, read from its files (never imported)."""
    import importlib.metadata  # imports `email`, hence `socket`: only when asked for

    try:
        distribution = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        raise UserError(
            f"--manager {name}: not a directory, a file, 'live' or an installed distribution"
        ) from None
    raw = {}
    for file_name in FILES:
        located = Path(distribution.locate_file(f"{PACKAGE_DIR}/{file_name}"))
        if not located.is_file():
            raise UserError(f"--manager {name}: the installed package has no {located}")
        raw[file_name] = _read(located)
    return raw, f"{name} {distribution.version} ({located.parent})"


def fetch_live(base: str) -> dict[str, Any]:
    """The three lists from the Manager's repository, through `RegistryClient` (retries,
    cassettes); safe to call while an event loop is running (a notebook)."""
    import asyncio  # imports `socket`: only for `live`, the builder stays offline otherwise
    import concurrent.futures

    # A loop of its own on a worker thread: works whether or not the caller runs one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _fetch(base)).result()


async def _fetch(base: str) -> dict[str, Any]:
    import asyncio

    from registry_tools.fetch.client import FetchError, RegistryClient, RetryPolicy

    policy = RetryPolicy(max_attempts=4, timeout=60.0)
    async with RegistryClient(base, concurrency=3, policy=policy) as client:
        try:
            answers = await asyncio.gather(*(client.get("/" + name) for name in FILES))
        except FetchError as exc:
            raise UserError(f"--manager live: could not fetch the Manager's lists: {exc}") from None
    return {name: answer.data for name, answer in zip(FILES, answers, strict=True)}


def _digest(contents: Iterable[bytes]) -> str:
    crc = 0
    for content in contents:
        crc = zlib.crc32(content, zlib.crc32(b"\0", crc))
    return f"{crc:08x}"


def parse_lists(parsed: dict[str, Any], origin: str, digest: str = "") -> ManagerData:
    """Check the three lists' shapes (parsed JSON, by file name): a wrong top level is a
    UserError; entries of the wrong shape are dropped (and counted)."""
    custom, node_map, stats = (parsed[name] for name in FILES)
    if not isinstance(custom, dict) or not isinstance(custom.get("custom_nodes"), list):
        raise UserError(f"--manager {origin}: {CUSTOM_NODE_LIST} has no 'custom_nodes' list")
    for name, value in ((NODE_MAP, node_map), (GITHUB_STATS, stats)):
        if not isinstance(value, dict):
            raise UserError(f"--manager {origin}: {name} is not a JSON object")
    skipped = 0
    packs = []
    for entry in custom["custom_nodes"]:
        if isinstance(entry, dict) and _url(entry.get("reference")):
            packs.append(entry)
        else:
            skipped += 1
    classes: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for url, value in node_map.items():
        names = value[0] if isinstance(value, list) and value else None
        meta = value[1] if isinstance(value, list) and len(value) > 1 else {}
        if not _url(url) or not isinstance(names, list) or not isinstance(meta, dict):
            skipped += 1
            continue
        if not all(type(n) is str and n for n in names):  # usually all are: no copy then
            names = [n for n in names if isinstance(n, str) and n]
        classes[url] = (names, meta)
    counts = {url: value for url, value in stats.items() if isinstance(value, dict)}
    skipped += len(stats) - len(counts)
    return ManagerData(origin, packs, classes, counts, skipped, digest)


_HTTP_URL = re.compile(r"\s*https?://[^/?#\s]", re.IGNORECASE)


def _url(value: Any) -> bool:
    """An http(s) URL with a host: anything else names no repository (and would give every
    such pack the same id). (`urlsplit` would say the same, three times slower.)"""
    return isinstance(value, str) and _HTTP_URL.match(value) is not None


def _parsed(raw: dict[str, bytes], origin: str) -> dict[str, Any]:
    return {name: _json(data, name, origin) for name, data in raw.items()}


def _json(data: bytes, name: str, origin: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:  # a lone surrogate somewhere: Python's json reads it; the strings are then cleaned
        return clean_strings(json.loads(data))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"--manager {origin}: {name} is not valid JSON ({exc})") from None
