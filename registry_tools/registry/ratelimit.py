"""The stand-in registry's request-rate limit: one token bucket over every request.

Its decisions are a pure function of the arrival times it is shown, in the order it is shown
them (and of `rate` and `burst`): no randomness, no wall clock of its own. The emulator reads
arrival times from an injectable clock, so tests feed it times and never sleep.
"""

from __future__ import annotations

_EPSILON = 1e-9


class TokenBucket:
    """`burst` tokens to start with, refilled at `rate` per second up to `burst`; a request
    that finds a whole token takes it and is admitted, any other is refused (and takes
    nothing). A time earlier than one already seen counts as that one (clocks only go on)."""

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def admit(self, now: float) -> bool:
        """Whether a request arriving at `now` (seconds, any origin) is admitted."""
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1.0 - _EPSILON:  # a client paced exactly at `rate` gets through
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def refill(self) -> None:
        """A full bucket, as after a long quiet time (the registry clock moved on)."""
        self._tokens = self.burst
