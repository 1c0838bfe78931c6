"""Request pacing: an adaptive rate limit on top of the in-flight cap, and the server's pause.

The public registry answers `429` (usually without `Retry-After`) when a client goes faster
than about 10-15 requests/s, and those answers come back instantly: a cap on requests in flight
does not limit the rate. `Pacer` spaces requests out (a virtual schedule, `1/rate` apart, so
there is no burst to spend) and adapts, much as TCP finds a link's capacity:

- Without a ceiling (`--max-rate`) nothing is paced until 429s show a rate limit: at least
  `LIMIT_EVIDENCE` of them in the last second, and `LIMIT_SHARE` of its answers. A server that
  does not limit (a private mirror, the stand-in registry), or one whose 429s are only
  occasional, is never slowed down.
- Then the rate starts low (what the server accepted so far, per second) and doubles every
  half second while answers are clean ("slow start"), until 429s as heavy again show where
  the limit is: the first cut, which measures it.
- Each 429 after that (of a request sent after the previous cut, at most one cut a second)
  cuts the rate multiplicatively, to 95 % of what the server accepted over the last second:
  the server's own limit, measured. A 429 with `Retry-After` counts too (after the pause,
  every queued request would otherwise go out at once and meet the next one).
- While answers are clean and the pacer is what holds requests back (requests wait for their
  turn and go out at 80 % of the rate or more), the rate rises: by 2 % a second, or a quarter
  of the way back to the rate that last drew a 429 if that is more. Never above the ceiling.
  A rate nobody uses does not grow, so when the bottleneck moves from the network to the
  server's limit the rate is near what was used, not thousands of requests a second.
- `Retry-After` stops every request until it expires; `acquire` checks it last, right before
  the request goes out (after it got its slot and its turn), so requests queued behind the
  in-flight cap never go out inside the window the server asked everyone to wait.

Written here rather than taken from aiolimiter: its leaky bucket has a fixed rate and lets a
whole period's worth of requests out at once, which is exactly the burst that earns 429s; the
part that matters (adapting to the server, the shared pause) would be ours either way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass

LIMIT_EVIDENCE = 3  # bare 429s in the window before the client believes in a limit
LIMIT_SHARE = 0.2  # ...and their share of the window's answers
TARGET_SHARE = 0.95  # of the rate the server accepted, after a cut
SLOW_INCREASE = 0.02  # of the rate, per clean second
RECOVERY = 0.25  # of the way back to the rate of the last 429, per clean second
SLOW_START = 4.0  # per clean second (doubling every half second), until a cut measures
WINDOW = 2.0  # seconds of answers kept
MEASURE = 1.0  # seconds of accepted answers a cut measures the limit over
CUT_INTERVAL = 1.0  # seconds between two cuts at least
RAISE_INTERVAL = 0.5  # seconds between two raises at least
MIN_RATE = 0.5  # requests/s: a misbehaving server can slow us down, not stop us
USED_SHARE = 0.8  # the rate rises only while requests go out at this share of it or more


@dataclass
class PaceStats:
    """What the pacer did, for the summary and the progress bar."""

    cuts: int = 0
    paused_seconds: float = 0.0


class Pacer:
    """Adaptive request pacing shared by every request of one client."""

    def __init__(self, max_rate: float | None = None) -> None:
        self.enabled = True  # off while answers come from a cassette: no server to spare
        self.ceiling = math.inf if max_rate is None else float(max_rate)
        self.rate = self.ceiling
        self.stats = PaceStats()
        self.paused_until = 0.0
        self.measured = False  # whether a cut has measured the server's limit yet
        self._limited = math.isfinite(self.ceiling)  # whether pacing is on
        self._last_429_rate = math.inf
        self._next = 0.0  # when the next request may go out
        self._last_cut = -math.inf
        self._last_change = time.monotonic()
        self._held_at = -math.inf  # last time a request waited for its turn
        self._started = time.monotonic()
        self._sent: deque[float] = deque()
        self._accepted: deque[float] = deque()
        self._refused: deque[float] = deque()

    def pause(self, seconds: float) -> None:
        """The server asked everyone to wait `seconds` (Retry-After)."""
        if not self.enabled:
            return
        now = time.monotonic()
        until = now + seconds
        if until > self.paused_until:
            self.stats.paused_seconds += until - max(now, self.paused_until)
            self.paused_until = until

    async def acquire(self) -> float:
        """Wait for this request's turn and any pause; the send time (monotonic). The pause is
        checked last, right before the request goes out."""
        while self.enabled:
            now = time.monotonic()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            if self._limited and now < self._next:
                # Wait, then look again: the rate may have changed, or another request
                # taken this turn (no turn is booked ahead, so a new rate applies at once).
                self._held_at = now
                await asyncio.sleep(self._next - now)
                continue
            if self._limited:
                # A turn taken a little late keeps the schedule (event-loop jitter must not
                # lower the rate); after an idle spell the schedule starts again from now.
                gap = 1.0 / self.rate
                self._next = (self._next if self._next >= now - gap else now) + gap
            self._sent.append(now)
            return now
        return time.monotonic()

    def answered(self, sent_at: float, rate_limited: bool) -> None:
        """An answer to a request sent at `sent_at`; `rate_limited` for a 429."""
        if not self.enabled:
            return
        now = time.monotonic()
        self._trim(now)
        if not rate_limited:
            self._accepted.append(now)
            self._raise(now)
            return
        self._refused.append(now)
        fresh = sent_at >= self._last_cut and now - self._last_cut >= CUT_INTERVAL
        if self.measured:
            if fresh:
                self._cut(now)
        elif self._refused_heavily(now):  # a limit, not the odd 429 of a busy server
            if not self._limited:
                self._start_pacing(now)
            elif fresh:
                self._cut(now)

    def _refused_heavily(self, now: float) -> bool:
        since = now - MEASURE
        refused = sum(1 for t in self._refused if t >= since)
        accepted = sum(1 for t in self._accepted if t >= since)
        return refused >= LIMIT_EVIDENCE and refused >= LIMIT_SHARE * (refused + accepted)

    def current_rate(self) -> float:
        """Requests sent per second over the last seconds (what the progress bar shows)."""
        now = time.monotonic()
        self._trim(now)
        return len(self._sent) / min(WINDOW, max(now - self._started, 1.0))

    def _start_pacing(self, now: float) -> None:
        """A limit exists but nothing says where: start low, slow start finds it."""
        accepted = len(self._accepted) / max(1.0, min(WINDOW, now - self._started))
        self._limited = True
        self._set(now, max(accepted, 2 * MIN_RATE))

    def _cut(self, now: float) -> None:
        accepted = sum(1 for t in self._accepted if t >= now - MEASURE) / MEASURE
        self._last_429_rate = self.rate
        self.measured = True
        self._set(now, min(TARGET_SHARE * accepted, self.rate))

    def _set(self, now: float, rate: float) -> None:
        self.rate = max(MIN_RATE, min(rate, self.ceiling))
        self._last_cut = self._last_change = now
        self._next = max(self._next, now + 1.0 / self.rate)
        self.stats.cuts += 1

    def _raise(self, now: float) -> None:
        elapsed = now - self._last_change
        if elapsed < RAISE_INTERVAL or not self._limited or self.rate >= self.ceiling:
            return
        self._last_change = now
        if now - self._held_at > elapsed or self.current_rate() < USED_SHARE * self.rate:
            return  # the pacer is not what limits the requests: raising it would mean nothing
        if not self.measured:
            rate = self.rate * SLOW_START**elapsed
        else:
            gap = max(0.0, self._last_429_rate - self.rate)
            rate = self.rate + elapsed * max(SLOW_INCREASE * self.rate, RECOVERY * gap)
        self.rate = min(self.ceiling, rate)

    def _trim(self, now: float) -> None:
        for times in (self._sent, self._accepted, self._refused):
            while times and times[0] < now - WINDOW:
                times.popleft()
