"""The retry policy and concurrency bound of RegistryClient, against scripted servers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiohttp import web

from registry_tools.errors import UserError
from registry_tools.fetch.client import (
    FetchError,
    RegistryClient,
    RetryPolicy,
    api_path,
    check_base_url,
)

FAST = RetryPolicy(max_attempts=4, backoff=0.01, timeout=5)


async def _serve(handler):
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _scripted(*answers):
    """A handler giving `answers` in order (per path), then 200 {"ok": path}."""
    seen: Counter = Counter()

    async def handler(request: web.Request) -> web.StreamResponse:
        seen[request.path_qs] += 1
        n = seen[request.path_qs]
        if n <= len(answers):
            return answers[n - 1]()
        return web.json_response({"ok": request.path_qs})

    return handler, seen


def run(coro):
    return asyncio.run(coro)


async def _get(handler, path="/x", accept=(), policy=FAST, concurrency=4):
    runner, url = await _serve(handler)
    try:
        async with RegistryClient(url, concurrency, policy) as client:
            return await client.get(path, accept=accept), client.stats
    finally:
        await runner.cleanup()


def test_retries_429_5xx_and_garbage_then_succeeds():
    handler, seen = _scripted(
        lambda: web.Response(status=429),
        lambda: web.Response(status=503),
        lambda: web.Response(text="<html>oops</html>", content_type="text/html"),
    )
    answer, stats = run(_get(handler))
    assert answer.data == {"ok": "/x"}
    assert seen["/x"] == 4
    assert stats.retries == 3 and stats.failures == 0
    assert stats.statuses[429] == 1 and stats.statuses[503] == 1


def test_retry_after_is_honoured():
    handler, _ = _scripted(lambda: web.Response(status=429, headers={"Retry-After": "0.3"}))
    begin = time.monotonic()
    answer, _stats = run(_get(handler, policy=RetryPolicy(max_attempts=2, backoff=0.001)))
    assert answer.status == 200
    assert time.monotonic() - begin >= 0.3


def test_exhausted_attempts_raise_fetch_error_naming_the_url():
    handler, seen = _scripted(*[lambda: web.Response(status=500)] * 10)
    with pytest.raises(FetchError, match=r"GET http://127.0.0.1:\d+/x: HTTP 500 \(after 4"):
        run(_get(handler))
    assert seen["/x"] == 4


def test_non_retryable_status_fails_at_once_and_accepted_status_is_an_answer():
    handler, seen = _scripted(lambda: web.Response(status=400))
    with pytest.raises(FetchError, match="HTTP 400"):
        run(_get(handler))
    assert seen["/x"] == 1
    handler, _ = _scripted(lambda: web.Response(status=404))
    answer, stats = run(_get(handler, accept=(404,)))
    assert (answer.status, answer.data, stats.failures) == (404, None, 0)


def test_dropped_connection_is_retried():
    calls = Counter()

    async def handler(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] <= 3:
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.json_response([1])

    answer, stats = run(_get(handler))
    assert answer.data == [1] and stats.retries >= 1


def test_concurrency_is_bounded_without_batches():
    state = {"now": 0, "peak": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        # one slow request must not hold back the others (no head-of-line blocking)
        await asyncio.sleep(0.5 if request.path == "/0" else 0.02)
        state["now"] -= 1
        return web.json_response({})

    async def main():
        runner, url = await _serve(handler)
        try:
            async with RegistryClient(url, 3, FAST) as client:
                begin = time.monotonic()
                await asyncio.gather(*(client.get(f"/{i}") for i in range(40)))
                return time.monotonic() - begin
        finally:
            await runner.cleanup()

    elapsed = run(main())
    assert state["peak"] == 3
    # 39 fast requests on 2 free slots take ~0.4 s, overlapping the slow one
    assert elapsed < 0.5 + 0.4


def test_paths_are_quoted_and_queries_sorted():
    assert api_path("nodes", "a/b", "..", "nœud", ".x") == "/nodes/a%2Fb/%2E%2E/n%C5%93ud/.x"
    client = RegistryClient("http://h:1/", 1)
    assert client.url("/nodes", {"page": 2, "limit": 5}) == "http://h:1/nodes?limit=5&page=2"


@pytest.mark.parametrize("bad", ["ftp://x", "api.comfy.org", "http://", "file:///tmp"])
def test_base_url_must_be_http(bad):
    with pytest.raises(UserError, match="expected an http"):
        check_base_url(bad)
