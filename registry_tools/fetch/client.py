"""Async registry client: one aiohttp session, bounded concurrency, one retry policy.

Every request goes through `RegistryClient.get`. A semaphore bounds the requests in flight
(a slow request holds one slot, never a whole group), and back-off sleeps happen outside it.
429 honours `Retry-After` and pauses every request, not just the one that got it; 5xx,
timeouts, dropped connections and bodies that are truncated or not JSON back off
exponentially with jitter. After `max_attempts` the request raises `FetchError`, which the
phases record as a failure (never as an empty answer).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from yarl import URL

from registry_tools.errors import UserError

DEFAULT_BASE_URL = "https://api.comfy.org"
BASE_URL_ENV = "REGISTRY_TOOLS_BASE_URL"
TOKEN_ENV = "REGISTRY_TOOLS_TOKEN"

log = logging.getLogger(__name__)


def default_base_url() -> str:
    """The base URL from the environment, else the public registry."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def check_base_url(base_url: str) -> str:
    """Normalise a base URL (no trailing slash) or raise UserError if it is not http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--base-url {base_url!r}: expected an http:// or https:// URL")
    return base_url.rstrip("/")


def api_path(*segments: str) -> str:
    """A path whose segments are percent-encoded, so ids with '/', '..' or unicode are safe."""
    return "".join("/" + _quote_segment(segment) for segment in segments)


def _quote_segment(segment: str) -> str:
    quoted = quote(segment, safe="")
    # '.' and '..' are unreserved but would be read as path navigation
    return quoted.replace(".", "%2E") if set(segment) <= {"."} else quoted


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request, back-off base and cap, per-request timeout."""

    max_attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential back-off with 'equal jitter' before attempt `attempt + 1`."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class ClientStats:
    """Counters for the run summary and the notebooks' requests-over-time plot."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
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

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"GET {url}: {reason}")
        self.url = url
        self.reason = reason


class _Retry(Exception):
    """One attempt failed in a way worth retrying; `wait` overrides the back-off."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class RegistryClient:
    """Registry reads over one aiohttp session; use as `async with RegistryClient(...)`."""

    def __init__(
        self,
        base_url: str,
        concurrency: int = 10,
        policy: RetryPolicy | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.policy = policy or RetryPolicy()
        self.stats = ClientStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._paused_until = 0.0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            headers=self._headers,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """Full URL with the query sorted, so the same request always has the same URL."""
        query = urlencode(sorted((params or {}).items()))
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    async def get(
        self, path: str, params: dict[str, Any] | None = None, accept: tuple[int, ...] = ()
    ) -> Answer:
        """GET with retries; statuses in `accept` are definitive answers (data None)."""
        url = self.url(path, params)
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                return await self._attempt(url, accept)
            except FetchError:
                self._count_failure()
                raise
            except _Retry as retry:
                if attempt == self.policy.max_attempts:
                    self._count_failure()
                    raise FetchError(url, f"{retry.reason} (after {attempt} attempts)") from None
                wait = retry.wait if retry.wait is not None else self.policy.delay(attempt)
                self.stats.retries += 1
                self.stats.event("retry")
                log.info("retrying GET %s in %.2fs: %s", url, wait, retry.reason)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _count_failure(self) -> None:
        self.stats.failures += 1
        self.stats.event("failure")

    async def _attempt(self, url: str, accept: tuple[int, ...]) -> Answer:
        await self._wait_for_pause()
        assert self._session is not None, "use RegistryClient as an async context manager"
        async with self._slots:
            self.stats.requests += 1
            self.stats.event("request")
            try:
                async with self._session.get(URL(url, encoded=True)) as response:
                    self.stats.statuses[response.status] += 1
                    if response.status == 200:
                        return Answer(200, _parse_json(await response.read(), response))
                    if response.status in accept:
                        return Answer(response.status, None)
                    raise self._status_problem(url, response)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _Retry(_describe(exc)) from None

    def _status_problem(self, url: str, response: aiohttp.ClientResponse) -> Exception:
        status = response.status
        if status == 429:
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait is not None:
                self._paused_until = max(self._paused_until, time.monotonic() + wait)
            return _Retry("429 Too Many Requests", wait)
        if status >= 500 or status == 408:
            return _Retry(f"HTTP {status}")
        return FetchError(url, f"HTTP {status}")

    async def _wait_for_pause(self) -> None:
        """Honour a Retry-After seen by any request: the server asked everyone to wait."""
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _parse_json(body: bytes, response: aiohttp.ClientResponse) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = response.headers.get("Content-Type", "unknown content type").split(";")[0]
        raise _Retry(f"answer is not JSON ({kind}, {len(body)} bytes)") from None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form), capped at 5 minutes."""
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 300.0)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
