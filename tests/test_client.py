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
    app.router.add_route("*", "/{tail:.*}", handler)
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


# ---- pacing, Retry-After, body caps, counting (issue 10 items 1 and 9, issue 13) ----------------


def test_retry_after_is_checked_when_a_request_is_about_to_go_out():
    """Requests queued behind the in-flight cap must not go out inside the pause the server
    asked for (the old client checked the pause before waiting for a slot)."""
    arrivals: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            await asyncio.sleep(0.05)  # the others queue behind this one meanwhile
            return web.Response(status=429, headers={"Retry-After": "0.4"})
        return web.json_response({})

    async def main():
        runner, url = await _serve(handler)
        try:
            async with RegistryClient(url, 1, RetryPolicy(max_attempts=3, backoff=0.001)) as c:
                await asyncio.gather(*(c.get(f"/{i}") for i in range(6)))
        finally:
            await runner.cleanup()

    run(main())
    first_answer = arrivals[0] + 0.05
    assert len(arrivals) == 7
    assert all(t >= first_answer + 0.4 - 0.02 for t in arrivals[1:]), [
        round(t - arrivals[0], 3) for t in arrivals
    ]


@pytest.mark.parametrize(
    ("value", "expected", "warned"),
    [
        ("2", 2.0, False),
        ("0.25", 0.25, False),
        ("nan", None, True),
        ("inf", 30.0, True),
        ("-5", 0.0, True),
        ("259200", 30.0, True),  # three days
        ("soon", None, True),
        (None, None, False),
    ],
)
def test_retry_after_values_are_parsed_and_absurd_ones_capped(caplog, value, expected, warned):
    from registry_tools.fetch.answers import RetryAfter

    caplog.set_level("WARNING")
    assert RetryAfter(30.0).seconds(value) == expected
    assert bool(caplog.records) is warned
    assert all(r.levelname == "WARNING" for r in caplog.records)


def test_retry_after_as_an_http_date():
    from email.utils import formatdate

    from registry_tools.fetch.answers import RetryAfter

    wait = RetryAfter(300.0).seconds(formatdate(time.time() + 20, usegmt=True))
    assert 17 <= wait <= 21


def test_an_absurd_retry_after_is_capped_in_a_run(caplog):
    handler, seen = _scripted(lambda: web.Response(status=429, headers={"Retry-After": "inf"}))
    policy = RetryPolicy(max_attempts=2, backoff=0.001, max_retry_after=0.05)
    caplog.set_level("WARNING")
    answer, stats = run(_get(handler, policy=policy))
    assert answer.status == 200 and stats.rate_limited == 1 and seen["/x"] == 2
    assert "capped to 0.05 s" in caplog.text


class _Bucket:
    """A token bucket like the real registry's: instant bare 429s above `rate`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.answered = Counter()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def test_bare_429s_slow_the_client_down_to_the_servers_rate():
    """Against a 40 requests/s limit with bare 429s, 160 requests at concurrency 10: every one
    succeeds and 429s stay a small share (without pacing, most attempts were 429s)."""
    bucket = _Bucket(rate=40.0, burst=3.0)

    async def handler(request: web.Request) -> web.StreamResponse:
        ok = bucket.take()
        bucket.answered[200 if ok else 429] += 1
        return web.json_response({}) if ok else web.Response(status=429)

    async def main():
        runner, url = await _serve(handler)
        try:
            policy = RetryPolicy(max_attempts=8, backoff=0.05)
            async with RegistryClient(url, 10, policy) as client:
                await asyncio.gather(*(client.get(f"/{i}") for i in range(160)))
                return client.stats, client.pacer
        finally:
            await runner.cleanup()

    stats, pacer = run(main())
    assert stats.failures == 0 and bucket.answered[200] == 160
    assert stats.rate_limited == bucket.answered[429]
    assert stats.rate_limited <= 0.2 * stats.requests, stats.rate_limited
    assert pacer.rate < 60 and pacer.stats.cuts >= 1


def test_a_server_that_does_not_limit_is_not_paced():
    handler, _ = _scripted()

    async def main():
        runner, url = await _serve(handler)
        try:
            async with RegistryClient(url, 10, FAST) as client:
                await asyncio.gather(*(client.get(f"/{i}") for i in range(100)))
                return client.pacer
        finally:
            await runner.cleanup()

    pacer = run(main())
    assert pacer.rate == float("inf") and pacer.stats.cuts == 0


def test_max_rate_is_a_ceiling():
    """Nothing goes out faster than max_rate, even from a server that does not limit."""
    arrivals: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        return web.json_response({})

    async def main():
        runner, url = await _serve(handler)
        try:
            async with RegistryClient(url, 10, FAST, max_rate=50.0) as client:
                await asyncio.gather(*(client.get(f"/{i}") for i in range(26)))
        finally:
            await runner.cleanup()

    run(main())
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # 25 gaps of 1/50 s each: the spacing is the schedule's, not the event loop's luck
    assert arrivals[-1] - arrivals[0] >= 25 / 50 - 0.03, sum(gaps)


def _body_handler(body: bytes, headers: dict[str, str]):
    async def handler(request: web.Request) -> web.StreamResponse:
        if headers.get("chunked"):  # no Content-Length: the cap must hold while reading
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(body), 1000):
                await response.write(body[start : start + 1000])
            await response.write_eof()
            return response
        return web.Response(body=body, headers={"Content-Type": "application/json", **headers})

    return handler


def test_gzip_answers_are_decoded():
    import gzip

    body = gzip.compress(b'{"ok": [1, 2, 3]}')
    answer, _ = run(_get(_body_handler(body, {"Content-Encoding": "gzip"})))
    assert answer.data == {"ok": [1, 2, 3]}


BIG = b"[" + b"1," * 3000 + b"1]"


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (BIG, {}, "answer of 6003 bytes is above the 4096 bytes cap"),
        (BIG, {"chunked": "1"}, "answer is above the 4096 bytes cap"),
        (
            __import__("gzip").compress(b"[" + b"0," * 500_000 + b"0]"),
            {"Content-Encoding": "gzip"},
            "inflates to more than the 4096 bytes cap",
        ),
    ],
    ids=["content-length", "chunked", "gzip-bomb"],
)
def test_bodies_are_size_capped_compressed_and_decompressed(body, headers, message):
    async def main():
        runner, url = await _serve(_body_handler(body, headers))
        try:
            async with RegistryClient(url, 2, FAST, max_body=4096) as client:
                return await client.get("/x")
        finally:
            await runner.cleanup()

    with pytest.raises(FetchError, match=message):
        run(main())


def test_requests_count_what_the_server_saw_including_aiohttps_silent_resends():
    """A server that closes a kept-alive connection on its second request: aiohttp re-sends
    that request on a new connection by itself. The server saw three requests for two gets."""
    seen = Counter()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            seen["requests"] += 1
            if answered == 1:  # second request on this connection: hang up without answering
                writer.close()
                return
            answered += 1
            body = b"{}"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with RegistryClient(f"http://127.0.0.1:{port}", 1, FAST) as client:
                await client.get("/a")
                await client.get("/b")
                return client.stats
        finally:
            server.close()

    stats = run(main())
    assert seen["requests"] == 3
    assert stats.requests == 3 and stats.resent == 1


def test_post_sends_canonical_json_and_repeated_parameters():
    received = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        received["body"] = await request.read()
        received["query"] = request.query_string
        return web.json_response({"ok": True})

    async def main():
        runner, url = await _serve(handler)
        try:
            async with RegistryClient(url, 1, FAST) as client:
                return await client.post("/bulk", {"b": 1, "a": [2]}, {"s": ["x", "y"]})
        finally:
            await runner.cleanup()

    answer = run(main())
    assert answer.data == {"ok": True}
    assert received == {"body": b'{"a":[2],"b":1}', "query": "s=x&s=y"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://host:99999", "not a valid URL"),
        ("http://user:hunter2@example.com", "credentials in the URL are not supported"),
        ("https://:hunter2@example.com/api", "credentials in the URL are not supported"),
        ("http://u:hunter2@[::1", "not a valid URL"),
        ("https://api.comfy.org?x=1", "no query or fragment"),
    ],
)
def test_bad_base_urls_are_refused_without_echoing_a_password(bad, message):
    with pytest.raises(UserError, match=message) as caught:
        check_base_url(bad)
    assert "hunter2" not in str(caught.value)


def test_default_rate_ceiling_is_for_the_public_registry_only():
    from registry_tools.fetch.base_url import PUBLIC_MAX_RATE, default_max_rate

    assert default_max_rate("https://api.comfy.org") == PUBLIC_MAX_RATE
    assert default_max_rate("https://stagingapi.comfy.org") == PUBLIC_MAX_RATE
    assert default_max_rate("http://127.0.0.1:8765") == float("inf")
    assert default_max_rate("https://notcomfy.org.example") == float("inf")
