"""Reading an answer safely: size-capped bodies and the `Retry-After` header.

The session does not decompress (`auto_decompress=False`): `read_body` reads the raw body up
to a cap, then decompresses it up to the same cap, so neither a huge body nor a small one that
inflates (a decompression bomb) can exhaust memory. `RetryAfter` turns the header's seconds or
HTTP date into a wait, capping absurd values (`nan`, `inf`, negative, days) with a warning.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
import zlib

import aiohttp

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
CHUNK = 1 << 16


class BodyTooLarge(Exception):
    """An answer above the size cap (a clear failure, not retried)."""


async def read_body(response: aiohttp.ClientResponse, cap: int = MAX_BODY) -> bytes:
    """The decoded body, or BodyTooLarge if it is (or inflates to) more than `cap` bytes."""
    length = response.content_length
    if length is not None and length > cap:
        raise BodyTooLarge(f"answer of {length} bytes is above the {_size(cap)} cap")
    raw = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        raw += chunk
        if len(raw) > cap:
            raise BodyTooLarge(f"answer is above the {_size(cap)} cap")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    return _decode(bytes(raw), encoding, cap)


def _decode(raw: bytes, encoding: str, cap: int) -> bytes:
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise aiohttp.ClientPayloadError(f"unsupported Content-Encoding {encoding!r}")
    # gzip: possibly several members; deflate: zlib-wrapped, or raw as some servers send it
    attempts = (zlib.MAX_WBITS | 16,) if "gzip" in encoding else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in attempts:
        try:
            return _inflate(raw, wbits, cap)
        except zlib.error as exc:
            problem = exc
    raise aiohttp.ClientPayloadError(f"cannot decode {encoding} body: {problem}")


def _inflate(data: bytes, wbits: int, cap: int) -> bytes:
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits)
        out += inflater.decompress(data, cap + 1 - len(out))
        if len(out) > cap or inflater.unconsumed_tail:
            raise BodyTooLarge(f"answer inflates to more than the {_size(cap)} cap")
        if not inflater.eof:
            raise zlib.error("truncated compressed body")
        data = inflater.unused_data
    return bytes(out)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} bytes"


class RetryAfter:
    """Parses `Retry-After` into seconds to wait, within [0, `cap`]."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self._warned: set[str] = set()

    def seconds(self, value: str | None) -> float | None:
        """Seconds to wait, or None when the header is absent or says nothing usable (the
        429 is then treated as a bare one)."""
        if value is None:
            return None
        text = value.strip()
        try:
            wait = float(text)
        except ValueError:
            wait = _http_date_wait(text)
            if wait is None:
                self._warn(text, "is neither seconds nor an HTTP date: treated as absent")
                return None
        if math.isnan(wait):
            self._warn(text, "is not a number: treated as absent")
            return None
        if wait < 0:
            self._warn(text, "is in the past or negative: capped to 0 s")
            return 0.0
        if wait > self.cap:
            self._warn(text, f"is more than {self.cap:g} s: capped to {self.cap:g} s")
            return self.cap
        return wait

    def _warn(self, value: str, problem: str) -> None:
        if value not in self._warned:  # once per distinct value, not once per request
            self._warned.add(value)
            log.warning("Retry-After %r %s", value[:80], problem)


def _http_date_wait(text: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.timestamp() - time.time()
