"""A local registry API over any cache file: the real service's endpoints, its behaviours on
request (`Behaviour`), deterministic faults, a clock the tests advance, and counters.

With no behaviour and no fault it is an ideal registry: fetching everything from an emulator
that serves cache X gives back cache X, so it is the test double for the client, the
recording source for cassettes, the offline demo and an offline mirror.

A request goes through, in order: the rate limit (an instant 429 for an excess request, which
then reaches nothing else), the latency, the injected fault of its key (see `faults`), and the
endpoint. Requests to `/_emulator/...` (stats, advance) skip all of that and are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import orjson
from aiohttp import web

from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry import churn as churn_module
from registry_tools.registry.answers import Answer, error_body, json_body
from registry_tools.registry.behaviour import Behaviour, Changes, Churn
from registry_tools.registry.faults import Counters, FaultPlan, Faults
from registry_tools.registry.ratelimit import TokenBucket
from registry_tools.registry.reads import DEFAULT_LIMIT, Reads
from registry_tools.registry.state import Registry

__all__ = [
    "DEFAULT_LIMIT",
    "ENDPOINTS",
    "Behaviour",
    "Changes",
    "Churn",
    "Counters",
    "Emulator",
    "Faults",
    "RunningEmulator",
    "running_emulator",
    "serve",
]

Endpoint = Callable[[web.Request, bytes], Any]
log = logging.getLogger(__name__)

# Every endpoint served: (method, path template, kind). The first template that matches a path
# wins, so `/nodes/search` is search, not the node "search". The kinds name the counters.
ROUTES = (
    ("GET", "/nodes", "nodes"),
    ("GET", "/nodes/search", "search"),
    ("GET", "/nodes/{nodeId}", "node"),
    ("GET", "/nodes/{nodeId}/versions", "versions"),
    ("GET", "/nodes/{nodeId}/install", "install"),
    ("GET", "/nodes/{nodeId}/versions/{version}", "version"),
    ("GET", "/nodes/{nodeId}/versions/{version}/comfy-nodes", "comfy_nodes"),
    ("GET", "/versions", "all_versions"),
    ("POST", "/bulk/nodes/versions", "bulk"),
    ("GET", "/comfy-nodes/{comfyNodeName}/node", "comfy_node"),
)
ENDPOINTS = tuple(f"{method} {template}" for method, template, _ in ROUTES)


def _match(template: str, segments: list[str]) -> tuple[str, ...] | None:
    """The placeholders' values if `segments` fit `template`, else None."""
    parts = template.split("/")[1:]
    if len(parts) != len(segments):
        return None
    values = []
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{"):
            values.append(segment)
        elif part != segment:
            return None
    return tuple(values)


class Emulator:
    """The registry API over one cache; `app()` gives the aiohttp application.

    `clock` (seconds, monotonic; `time.monotonic` by default) is what the rate limit and the
    page cache read: tests pass their own and never sleep.
    """

    def __init__(
        self,
        cache: dict[str, Any] | Path | str,
        faults: Faults | None = None,
        missing_download_rate: float = 0.1,
        legacy_total_pages: bool = False,
        *,
        behaviour: Behaviour | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if behaviour is not None and not isinstance(behaviour, Behaviour):
            raise UserError(f"behaviour must be a Behaviour, got {type(behaviour).__name__}")
        if clock is not None and not callable(clock):
            raise UserError("clock must be a function returning seconds")
        share = missing_download_rate
        if isinstance(share, bool) or not (isinstance(share, int | float) and 0 <= share <= 1):
            raise UserError(f"missing_download_rate must be from 0 to 1, got {share!r}")
        if not isinstance(cache, dict):
            cache = cache_file.load_cache(Path(cache), "--cache")
        elif problem := cache_file.cache_problem(cache):
            raise ValueError(f"not a registry cache: {problem}")
        self.faults = faults or Faults()
        self.behaviour = behaviour or Behaviour()
        self.clock = clock or time.monotonic
        self.counters = Counters()
        self.registry = Registry(cache, self.behaviour)
        self.reads = Reads(self.registry, self.clock, missing_download_rate, legacy_total_pages)
        self._plan = FaultPlan(self.faults)
        rate = self.behaviour.rate_limit
        self._bucket = TokenBucket(rate, self.behaviour.rate_burst) if rate else None
        self._lock = threading.Lock()  # `advance` may come from another thread
        self._advances = 0

    @property
    def missing_download_rate(self) -> float:
        return self.reads.missing_download_rate

    @property
    def legacy_total_pages(self) -> bool:
        return self.reads.legacy_total_pages

    def omits_download(self, node_id: str, version: str) -> bool:
        """Whether version listings leave out this version's `downloadUrl`."""
        return self.reads.omits_download(node_id, version)

    def advance(self, churn: Churn | None = None) -> Changes:
        """Move the registry's clock by one `Churn` (default: every pending extraction
        finishes) and say what changed. The page cache empties and the rate bucket refills,
        as they would after the hours that passed."""
        churn = churn or Churn()
        if not isinstance(churn, Churn):
            raise UserError(f"advance takes a Churn, got {type(churn).__name__}")
        with self._lock:
            self._advances += 1
            changes = churn_module.advance(self.registry, churn, self._advances)
            self.reads.page_cache.clear()
            if self._bucket is not None:
                self._bucket.refill()
        return changes

    def _admitted(self, arrival: float) -> bool:
        with self._lock:  # `advance` refills the bucket from another thread
            return self._bucket is None or self._bucket.admit(arrival)

    def app(self) -> web.Application:
        application = web.Application(client_max_size=16 * 2**20)
        application.router.add_route("*", "/{tail:.*}", self._handle)
        return application

    # ---- dispatch ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.partition("?")[0]
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments[:1] == ["_emulator"]:
            return await self._control(request, segments[1:])
        arrival = self.clock()
        kind, endpoint = self._route(request.method, segments)
        body = await request.read() if request.method == "POST" else b""
        self.counters.requests += 1
        self.counters.by_kind[kind] += 1
        if self._bucket is not None and not self._admitted(arrival):
            self.counters.rate_limited += 1
            return self._respond(429, *self._rate_limited())
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        fault = self._plan.next(_request_key(request, segments, body))
        if fault:
            self.counters.faults[fault] += 1
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        if fault in ("429", "429_bare", "500"):
            return self._respond(*self._fault_answer(fault))
        if kind == "install":
            self.counters.installs += 1
        try:
            with self._lock:
                status, answer = 200, endpoint(request, body)
        except Answer as error:
            status, answer = error.status, error.body()
        if fault == "truncate":
            return await self._truncated(request, status, answer)
        return self._respond(status, answer)

    def _route(self, method: str, segments: list[str]) -> tuple[str, Endpoint]:
        """(endpoint kind, handler) for a method and a path split into unquoted segments."""
        found = [
            (route_method, kind, params)
            for route_method, template, kind in ROUTES
            if (params := _match(template, segments)) is not None
        ]
        chosen = next(((kind, params) for m, kind, params in found if m == method), None)
        if chosen is not None:
            answer = functools.partial(self.reads.answer, *chosen)
            return chosen[0], lambda request, body: answer(request.query, body)
        if not found:
            return "other", lambda request, _: _not_found(request)
        allowed = ", ".join(sorted({route_method for route_method, _, _ in found}))
        return "other", lambda request, _: _not_allowed(request, allowed)

    # ---- control -----------------------------------------------------------------------------

    async def _control(self, request: web.Request, segments: list[str]) -> web.Response:
        """`GET /_emulator/stats` (the counters), `POST /_emulator/advance` (a Churn's fields
        as JSON; answers the Changes)."""
        if segments == ["stats"] and request.method == "GET":
            return _json_response(200, self.counters.as_dict())
        if segments == ["advance"] and request.method == "POST":
            try:
                churn = Churn.from_json(json_body(await request.read() or b"{}"))
                changes = await asyncio.to_thread(self.advance, churn)
            except Answer as error:
                return _json_response(error.status, error.body())
            except UserError as error:
                return _json_response(400, error_body(400, str(error)))
            return _json_response(200, changes.as_dict())
        return _json_response(404, error_body(404, f"no such control endpoint: {request.path}"))

    # ---- answers -----------------------------------------------------------------------------

    def _rate_limited(self) -> tuple[dict[str, Any], dict[str, str]]:
        retry_after = self.behaviour.rate_retry_after
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return error_body(429, "rate limit exceeded"), headers

    def _fault_answer(self, fault: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        if fault == "500":
            return 500, error_body(500, "injected server error"), {}
        headers = {"Retry-After": f"{self.faults.retry_after:g}"} if fault == "429" else {}
        return 429, error_body(429, "injected rate limit"), headers

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


def _request_key(request: web.Request, segments: list[str], body: bytes) -> str:
    """Method, path, sorted query, and a digest of a body: what a fault is decided by."""
    query = urlencode(sorted(request.query.items()))
    key = f"{request.method} /{'/'.join(quote(s, safe='') for s in segments)}?{query}"
    return f"{key}#{hashlib.sha1(body).hexdigest()[:16]}" if body else key


def _not_found(request: web.Request) -> Any:
    raise Answer(404, f"no such endpoint: {request.path}")


def _not_allowed(request: web.Request, allowed: str) -> Any:
    raise Answer(405, f"{request.method} is not allowed on {request.path} (only {allowed})")


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


# ---- running it ------------------------------------------------------------------------------


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


async def _start(emulator: Emulator, host: str, port: int) -> tuple[web.AppRunner, str]:
    if host in WILDCARD_HOSTS:
        log.warning(
            "--host %r listens on every network interface: anyone who can reach this machine "
            "can read the registry and advance its clock; bind 127.0.0.1 unless you mean it",
            host,
        )
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

    def advance(self, churn: Churn | None = None) -> Changes:
        """`Emulator.advance`: move the registry's clock, say what changed."""
        return self.emulator.advance(churn)


@contextlib.contextmanager
def running_emulator(
    cache: dict[str, Any] | Path | str | Emulator,
    faults: Faults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[RunningEmulator]:
    """Serve `cache` on its own event loop in a thread, for sync or async callers alike.

    `options` are Emulator's (`missing_download_rate`, `legacy_total_pages`, `behaviour`,
    `clock`). An `Emulator` is served as it is (its faults, behaviour, data and counters
    carry over between runs).
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
