"""A local registry API over any cache file, with deterministic faults and request counters.

Fetching everything from an emulator that serves cache X gives back cache X, so it is the
test double for the client, the recording source for cassettes and the offline demo.

Faults are decided per request key (method, path, sorted query) and per occurrence k of that
key by a SHA-1 of (seed, key, k): the same requests get the same faults whatever their order
or concurrency, and no key gets more than `max_consecutive_faults` faults in a row, so a
client that tries often enough always gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import orjson
from aiohttp import web

from registry_tools.fetch import cache_file

FAULT_KINDS = ("429", "429_bare", "500", "drop", "truncate")
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often (each rate is a probability per request)."""

    latency_ms: float = 0
    rate_429: float = 0.0
    rate_429_bare: float = 0.0
    rate_500: float = 0.0
    rate_drop: float = 0.0
    rate_truncate: float = 0.0
    retry_after: float = 1
    seed: int = 0
    max_consecutive_faults: int = 3

    def __post_init__(self) -> None:
        if min(self._rates()) < 0 or sum(self._rates()) > 1.0:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        if self.retry_after < 0 or self.latency_ms < 0 or self.max_consecutive_faults < 0:
            raise ValueError("latency_ms, retry_after and max_consecutive_faults must be >= 0")

    def _rates(self) -> tuple[float, ...]:
        return (
            self.rate_429,
            self.rate_429_bare,
            self.rate_500,
            self.rate_drop,
            self.rate_truncate,
        )

    def pick(self, key: str, occurrence: int) -> str | None:
        """The fault for the `occurrence`-th request with this key, before the streak cap."""
        draw = _unit(f"{self.seed}\0{key}\0{occurrence}")
        for kind, rate in zip(FAULT_KINDS, self._rates(), strict=True):
            if draw < rate:
                return kind
            draw -= rate
        return None


def _unit(text: str) -> float:
    """A stable number in [0, 1) from text (SHA-1, never Python's salted hash())."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


@dataclass
class Counters:
    """What the emulator answered; read them after the requests of interest completed."""

    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.requests = 0
        for counter in (self.by_kind, self.by_status, self.faults):
            counter.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "faults": dict(sorted(self.faults.items())),
        }

    def summary(self) -> str:
        """One line for a log or stderr."""
        counters = (("kind", self.by_kind), ("status", self.by_status), ("faults", self.faults))
        parts = [f"{title}: {_pairs(counter)}" for title, counter in counters]
        return "; ".join([f"{self.requests} requests", *parts])


def _pairs(counter: Counter) -> str:
    return " ".join(f"{key}={n}" for key, n in sorted(counter.items())) or "none"


class _Answer(Exception):
    """Raised by an endpoint to answer with an error status and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Node:
    """One cache node, indexed, with its server-side JSON built on first use."""

    raw: dict[str, Any]
    server: dict[str, Any]
    haystack: str
    _versions: list[dict[str, Any]] | None = None
    _by_version: dict[str, dict[str, Any]] | None = None

    def versions(self) -> list[dict[str, Any]]:
        """Cache version entries, newest first."""
        if self._versions is None:
            self._versions = cache_file.sort_versions(self.raw.get("versions_list", []))
        return self._versions

    def version(self, version: str) -> dict[str, Any]:
        if self._by_version is None:
            self._by_version = {v["version"]: v for v in self.versions()}
        try:
            return self._by_version[version]
        except KeyError:
            raise _Answer(
                404, f"version {version!r} of node {self.raw['id']!r} not found"
            ) from None

    def latest(self) -> str:
        """The version `/install` gives without `?version=`: the node's latest_version."""
        latest = (self.raw.get("latest_version") or {}).get("version")
        newest = self.versions()[0]["version"] if self.versions() else ""
        return latest or newest

    def check_versions_available(self) -> None:
        unavailable = self.raw.get("versions_unavailable")
        if unavailable == "banned":
            raise _Answer(403, f"node {self.raw['id']!r} is banned")
        if unavailable == "not_found":
            raise _Answer(404, f"node {self.raw['id']!r} has no versions")


def _server_version(entry: dict[str, Any], with_download: bool = True) -> dict[str, Any]:
    """A cache version entry as the API sends it: no local keys, `downloadUrl`."""
    out = {
        k: v
        for k, v in entry.items()
        if k not in cache_file.VERSION_LOCAL_KEYS and k != "download_url"
    }
    if with_download:
        out["downloadUrl"] = entry.get("download_url")
    return out


def _has_metadata(entry: dict[str, Any]) -> bool:
    return bool(entry.get("metadata_cached", True) and entry.get("comfy_nodes"))


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _Answer(400, f"{name} must be an integer, got {text!r}") from None
    if value < 1:
        raise _Answer(400, f"{name} must be at least 1, got {value}")
    return value


def _page(request: web.Request, items: list[Any]) -> tuple[list[Any], int, int, int]:
    """The requested page of `items`: (page items, page, limit, total pages)."""
    page = _int_param(request, "page", 1)
    limit = _int_param(request, "limit", DEFAULT_LIMIT)
    start = (page - 1) * limit
    return items[start : start + limit], page, limit, math.ceil(len(items) / limit)


class Emulator:
    """The registry API over one cache; `app()` gives the aiohttp application."""

    def __init__(
        self,
        cache: dict[str, Any] | Path | str,
        faults: Faults | None = None,
        missing_download_rate: float = 0.1,
        legacy_total_pages: bool = False,
    ) -> None:
        if not isinstance(cache, dict):
            cache = cache_file.load_cache(Path(cache), "--cache")
        elif problem := cache_file.cache_problem(cache):
            raise ValueError(f"not a registry cache: {problem}")
        self.faults = faults or Faults()
        self.missing_download_rate = missing_download_rate
        self.legacy_total_pages = legacy_total_pages
        self.counters = Counters()
        self._seen: Counter[str] = Counter()
        self._streak: Counter[str] = Counter()
        self._nodes = {
            node["id"]: _Node(
                raw=node,
                server={k: v for k, v in node.items() if k not in cache_file.NODE_LOCAL_KEYS},
                haystack="\0".join(
                    str(node.get(k) or "") for k in ("id", "name", "description")
                ).casefold(),
            )
            for node in sorted(cache["nodes"], key=lambda n: n["id"])
        }
        self._listing = [node.server for node in self._nodes.values()]

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/{tail:.*}", self._handle)
        return application

    # ---- dispatch ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.partition("?")[0]
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments == ["_emulator", "stats"]:
            return _json_response(200, self.counters.as_dict())
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        kind, endpoint = self._route(segments)
        self.counters.requests += 1
        self.counters.by_kind[kind] += 1
        fault = self._fault(request, segments)
        if fault:
            self.counters.faults[fault] += 1
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        if fault in ("429", "429_bare", "500"):
            return self._respond(*self._fault_answer(fault))
        try:
            status, body = 200, endpoint(request)
        except _Answer as answer:
            status, body = answer.status, {"message": str(answer)}
        if fault == "truncate":
            return await self._truncated(request, status, body)
        return self._respond(status, body)

    def _route(self, segments: list[str]) -> tuple[str, Callable[[web.Request], Any]]:
        """(endpoint kind, handler) for a path split into unquoted segments."""
        match segments:
            case ["nodes"]:
                return "nodes", self._nodes_page
            case ["nodes", "search"]:
                return "search", self._search
            case ["nodes", node_id]:
                return "node", lambda _: self._node(node_id).server
            case ["nodes", node_id, "versions"]:
                return "versions", lambda _: self._versions(node_id)
            case ["nodes", node_id, "install"]:
                return "install", lambda request: self._install(node_id, request)
            case ["nodes", node_id, "versions", version]:
                return "version", lambda _: _server_version(self._version(node_id, version))
            case ["nodes", node_id, "versions", version, "comfy-nodes"]:
                return "comfy_nodes", lambda request: self._comfy_nodes(node_id, version, request)
        return "other", self._not_found

    # ---- faults ------------------------------------------------------------------------------

    def _fault(self, request: web.Request, segments: list[str]) -> str | None:
        """This request's fault: stable per (key, occurrence), capped per streak."""
        query = urlencode(sorted(request.query.items()))
        key = f"{request.method} /{'/'.join(quote(s, safe='') for s in segments)}?{query}"
        self._seen[key] += 1
        fault = self.faults.pick(key, self._seen[key])
        if fault is None or self._streak[key] >= self.faults.max_consecutive_faults:
            self._streak[key] = 0
            return None
        self._streak[key] += 1
        return fault

    def _fault_answer(self, fault: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        if fault == "500":
            return 500, {"message": "injected server error"}, {}
        headers = {"Retry-After": f"{self.faults.retry_after:g}"} if fault == "429" else {}
        return 429, {"message": "injected rate limit"}, headers

    async def _truncated(self, request: web.Request, status: int, body: Any) -> web.StreamResponse:
        """Headers announcing the whole body, about half of it, then a closed connection."""
        data = orjson.dumps(body)
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        self.counters.by_status[status] += 1
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        request.transport.close()
        return response

    def _respond(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.counters.by_status[status] += 1
        return _json_response(status, body, headers)

    # ---- endpoints ---------------------------------------------------------------------------

    def _node(self, node_id: str) -> _Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise _Answer(404, f"node {node_id!r} not found") from None

    def _available(self, node_id: str) -> _Node:
        """The node, if the API would show its versions (else 404 or 403)."""
        node = self._node(node_id)
        node.check_versions_available()
        return node

    def _version(self, node_id: str, version: str) -> dict[str, Any]:
        return self._available(node_id).version(version)

    def _nodes_page(self, request: web.Request) -> dict[str, Any]:
        return self._envelope(request, self._listing)

    def _search(self, request: web.Request) -> dict[str, Any]:
        needle = request.query.get("search", "").casefold()
        found = [n.server for n in self._nodes.values() if needle in n.haystack]
        return self._envelope(request, found)

    def _envelope(self, request: web.Request, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        items, page, limit, pages = _page(request, nodes)
        return {
            "nodes": items,
            "total": len(nodes),
            "page": page,
            "limit": limit,
            "totalPages": pages,
        }

    def _versions(self, node_id: str) -> list[dict[str, Any]]:
        """All versions, newest first; a stable share lacks `downloadUrl` (ask /install)."""
        node = self._available(node_id)
        return [
            _server_version(v, not self.omits_download(node_id, v["version"]))
            for v in node.versions()
        ]

    def omits_download(self, node_id: str, version: str) -> bool:
        """Whether the versions listing leaves out this version's `downloadUrl`."""
        return _unit(f"{node_id}\0{version}") < self.missing_download_rate

    def _install(self, node_id: str, request: web.Request) -> dict[str, Any]:
        node = self._available(node_id)
        version = request.query.get("version") or node.latest()
        return _server_version(node.version(version))

    def _comfy_nodes(self, node_id: str, version: str, request: web.Request) -> dict[str, Any]:
        entry = self._version(node_id, version)
        if not _has_metadata(entry):
            raise _Answer(404, f"no comfy nodes for {node_id!r} {version!r}")
        items, _, _, pages = _page(request, entry["comfy_nodes"])
        total_key = "totalPages" if self.legacy_total_pages else "totalNumberOfPages"
        return {"comfy_nodes": items, total_key: pages}

    def _not_found(self, request: web.Request) -> Any:
        raise _Answer(404, f"no such endpoint: {request.path}")


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


# ---- running it ------------------------------------------------------------------------------


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start(emulator: Emulator, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(emulator.app(), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port = runner.addresses[0][1]
    return runner, _url(host, bound_port)


@dataclass
class RunningEmulator:
    """An emulator serving from a background thread (see `running_emulator`)."""

    emulator: Emulator
    url: str

    @property
    def counters(self) -> Counters:
        return self.emulator.counters

    def reset_counters(self) -> None:
        self.emulator.counters.reset()


@contextlib.contextmanager
def running_emulator(
    cache: dict[str, Any] | Path | str | Emulator,
    faults: Faults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[RunningEmulator]:
    """Serve `cache` on its own event loop in a thread, for sync or async callers alike.

    `options` are Emulator's (`missing_download_rate`, `legacy_total_pages`). An `Emulator`
    is served as it is (its faults, options and counters carry over between runs).
    """
    if isinstance(cache, Emulator):
        if faults is not None or options:
            raise TypeError("pass faults and options to the Emulator, not to running_emulator")
        emulator = cache
    else:
        emulator = Emulator(cache, faults, **options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="registry-emulator", daemon=True)
    thread.start()
    try:
        runner, url = asyncio.run_coroutine_threadsafe(_start(emulator, host, port), loop).result()
        try:
            yield RunningEmulator(emulator, url)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def serve(emulator: Emulator, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; `ready(url)` is called once the socket listens."""
    runner, url = await _start(emulator, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        ready(url)
        await stop.wait()
    finally:
        await runner.cleanup()
