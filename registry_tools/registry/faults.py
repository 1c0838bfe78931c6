"""Injected faults (`Faults`), the emulator's counters (`Counters`) and `unit`, the one source
of every seeded choice the stand-in registry makes.

Faults are decided per request key (method, path, sorted query, and a digest of a POST body)
and per occurrence k of that key by a SHA-1 of (seed, key, k): the same requests get the same
faults whatever their order or concurrency, and no key gets more than
`max_consecutive_faults` faults in a row, so a client that tries often enough gets through.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("429", "429_bare", "500", "drop", "truncate")


def unit(*parts: object) -> float:
    """A stable number in [0, 1) from `parts` (SHA-1, never Python's salted hash())."""
    text = "\0".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


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
        draw = unit(self.seed, key, occurrence)
        for kind, rate in zip(FAULT_KINDS, self._rates(), strict=True):
            if draw < rate:
                return kind
            draw -= rate
        return None


class FaultPlan:
    """Which request gets which fault: per-key occurrence counts and streaks."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._seen: Counter[str] = Counter()
        self._streak: Counter[str] = Counter()

    def next(self, key: str) -> str | None:
        """The fault of the next request with `key`: stable per occurrence, capped per streak."""
        self._seen[key] += 1
        fault = self.faults.pick(key, self._seen[key])
        if fault is None or self._streak[key] >= self.faults.max_consecutive_faults:
            self._streak[key] = 0
            return None
        self._streak[key] += 1
        return fault


@dataclass
class Counters:
    """What the emulator answered; read them after the requests of interest completed.

    `rate_limited` counts the 429s of the rate limit (not injected faults), `installs` the
    `/install` requests that reached the endpoint."""

    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    installs: int = 0

    def reset(self) -> None:
        self.requests = self.rate_limited = self.installs = 0
        for counter in (self.by_kind, self.by_status, self.faults):
            counter.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "faults": dict(sorted(self.faults.items())),
            "rate_limited": self.rate_limited,
            "installs": self.installs,
        }

    def summary(self) -> str:
        """One line for a log or stderr."""
        counters = (("kind", self.by_kind), ("status", self.by_status), ("faults", self.faults))
        parts = [f"{title}: {_pairs(counter)}" for title, counter in counters]
        extra = f"rate-limited: {self.rate_limited}; installs: {self.installs}"
        return "; ".join([f"{self.requests} requests", *parts, extra])


def _pairs(counter: Counter) -> str:
    return " ".join(f"{key}={n}" for key, n in sorted(counter.items())) or "none"
