"""Async registry client: one aiohttp session, bounded concurrency, paced requests, one retry
policy.

Every request goes through `RegistryClient.get` (or `post`, for the bulk read). A semaphore
bounds the requests in flight (a slow request holds one slot, never a whole group); inside its
slot a request waits for its turn from the `Pacer` (the adaptive request rate and the
server's `Retry-After` pause, checked right before it goes out), and back-off sleeps happen
outside the slot. 429 honours `Retry-After` (pausing every request) or, bare, lowers the rate;
5xx, timeouts, dropped connections and bodies that are truncated or not JSON back off
exponentially with jitter. After `max_attempts` the request raises `FetchError`, which the
phases record as a failure (never as an empty answer). Bodies are size-capped, compressed and
decompressed (`answers.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from registry_tools.fetch.answers import (
    MAX_BODY,
    BodyTooLarge,
    RetryAfter,
    read_body,
)
from registry_tools.fetch.base_url import (
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    check_base_url,
    default_base_url,
    default_max_rate,
)
from registry_tools.fetch.pacing import Pacer

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "TOKEN_ENV",
    "Answer",
    "ClientStats",
    "FetchError",
    "RegistryClient",
    "RetryPolicy",
    "api_path",
    "check_base_url",
    "default_base_url",
    "default_max_rate",
]

TOKEN_ENV = "REGISTRY_TOOLS_TOKEN"

log = logging.getLogger(__name__)


def api_path(*segments: str) -> str:
    """A path whose segments are percent-encoded, so ids with '/', '..' or unicode are safe."""
    return "".join("/" + _quote_segment(segment) for segment in segments)


def _quote_segment(segment: str) -> str:
    quoted = quote(segment, safe="")
    # '.' and '..' are unreserved but would be read as path navigation
    return quoted.replace(".", "%2E") if set(segment) <= {"."} else quoted


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request, back-off base and cap, per-request timeout, and
    the longest `Retry-After` obeyed (longer ones are capped, with a warning)."""

    max_attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential back-off with 'equal jitter' before attempt `attempt + 1`."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class ClientStats:
    """Counters for the run summary, the progress bar and the notebooks' requests plot.

    `requests` counts attempts as the server sees them, including the ones aiohttp re-sends
    by itself after a dropped keep-alive connection (`resent`, learnt from its trace hooks).
    """

    requests: int = 0
    resent: int = 0
    retries: int = 0
    failures: int = 0
    rate_limited: int = 0
    statuses: Counter = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def event(self, kind: str) -> None:
        self.timeline.append((round(time.monotonic() - self.started, 4), kind))


@dataclass(frozen=True)
class Answer:
    """A definitive answer: 200 with parsed JSON, or an accepted status (e.g. 404) without."""

    status: int
    data: Any


class FetchError(Exception):
    """A request that failed for good (attempts exhausted or a non-retryable status)."""

    def __init__(self, url: str, reason: str, method: str = "GET") -> None:
        super().__init__(f"{method} {url}: {reason}")
        self.url = url
        self.reason = reason


class _Retry(Exception):
    """One attempt failed in a way worth retrying; `wait` overrides the back-off."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    body: bytes | None
    accept: tuple[int, ...]


class RegistryClient:
    """Registry reads over one aiohttp session; use as `async with RegistryClient(...)`.

    `max_rate` is the ceiling of the adaptive request rate (requests/s): None takes the
    default for `base_url` (`default_max_rate`), `math.inf` means no ceiling. `max_body` caps
    every answer's size, compressed and decompressed.
    """

    def __init__(
        self,
        base_url: str,
        concurrency: int = 10,
        policy: RetryPolicy | None = None,
        token: str | None = None,
        *,
        max_rate: float | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.policy = policy or RetryPolicy()
        self.stats = ClientStats()
        ceiling = default_max_rate(self.base_url) if max_rate is None else max_rate
        self.pacer = Pacer(ceiling)
        self._max_body = max_body
        self._retry_after = RetryAfter(self.policy.max_retry_after)
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        # We decompress ourselves (`answers.read_body`), so that both sizes can be capped.
        self._headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryClient:
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_count_sent)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            headers=self._headers,
            auto_decompress=False,
            trace_configs=[tracing],
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """Full URL with the query sorted, so the same request always has the same URL.
        A list value is a repeated parameter (`statuses=a&statuses=b`)."""
        query = urlencode(sorted((params or {}).items()), doseq=True)
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    async def get(
        self, path: str, params: dict[str, Any] | None = None, accept: tuple[int, ...] = ()
    ) -> Answer:
        """GET with retries; statuses in `accept` are definitive answers (data None)."""
        return await self._request(_Request("GET", self.url(path, params), None, accept))

    async def post(
        self,
        path: str,
        body: Any,
        params: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
    ) -> Answer:
        """POST a JSON body (a read, such as the bulk versions endpoint: safe to retry).
        The body is canonical JSON (sorted keys), so the same request has the same bytes."""
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return await self._request(_Request("POST", self.url(path, params), data, accept))

    async def _request(self, request: _Request) -> Answer:
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                return await self._attempt(request)
            except FetchError:
                self._count_failure()
                raise
            except _Retry as retry:
                if attempt == self.policy.max_attempts:
                    self._count_failure()
                    reason = f"{retry.reason} (after {attempt} attempts)"
                    raise FetchError(request.url, reason, request.method) from None
                wait = retry.wait if retry.wait is not None else self.policy.delay(attempt)
                self.stats.retries += 1
                self.stats.event("retry")
                log.info("retrying %s %s in %.2fs: %s", request.method, request.url, wait, retry)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _count_failure(self) -> None:
        self.stats.failures += 1
        self.stats.event("failure")

    async def _attempt(self, request: _Request) -> Answer:
        assert self._session is not None, "use RegistryClient as an async context manager"
        async with self._slots:
            sent_at = await self.pacer.acquire()
            self.stats.requests += 1
            self.stats.event("request")
            trace = SimpleNamespace(sent=0)
            headers = {"Content-Type": "application/json"} if request.body is not None else None
            try:
                async with self._session.request(
                    request.method,
                    URL(request.url, encoded=True),
                    data=request.body,
                    headers=headers,
                    trace_request_ctx=trace,
                ) as response:
                    self.stats.statuses[response.status] += 1
                    if response.status == 429:
                        raise self._rate_limited(response, sent_at)
                    self.pacer.answered(sent_at, rate_limited=False)
                    if response.status == 200:
                        body = await read_body(response, self._max_body)
                        return Answer(200, _parse_json(body, response))
                    if response.status in request.accept:
                        return Answer(response.status, None)
                    raise _status_problem(request, response.status)
            except BodyTooLarge as exc:
                raise FetchError(request.url, str(exc), request.method) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _Retry(_describe(exc)) from None
            finally:
                self._count_resent(trace.sent)

    def _count_resent(self, sent: int) -> None:
        """aiohttp re-sends an idempotent request once, silently, when a reused connection
        turns out to be closed: the server saw both, so both count."""
        if sent > 1:
            self.stats.resent += sent - 1
            self.stats.requests += sent - 1

    def _rate_limited(self, response: aiohttp.ClientResponse, sent_at: float) -> _Retry:
        self.stats.rate_limited += 1
        self.stats.event("429")
        # Every 429 tells the pacer a limit exists (or, after a pause, every queued request
        # would go out at once and meet the next one); a Retry-After also stops everyone.
        self.pacer.answered(sent_at, rate_limited=True)
        wait = self._retry_after.seconds(response.headers.get("Retry-After"))
        if wait is None:
            return _Retry("429 Too Many Requests")
        self.pacer.pause(wait)
        return _Retry("429 Too Many Requests", wait)


async def _count_sent(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
) -> None:
    """aiohttp trace hook: the request's headers went out (once per attempt on the wire)."""
    holder = getattr(context, "trace_request_ctx", None)
    if isinstance(holder, SimpleNamespace):
        holder.sent += 1


def _status_problem(request: _Request, status: int) -> Exception:
    if status >= 500 or status == 408:
        return _Retry(f"HTTP {status}")
    return FetchError(request.url, f"HTTP {status}", request.method)


def _parse_json(body: bytes, response: aiohttp.ClientResponse) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = response.headers.get("Content-Type", "unknown content type").split(";")[0]
        raise _Retry(f"answer is not JSON ({kind}, {len(body)} bytes)") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
