"""What a cache build is asked (`CacheOptions`) and what it did (`RunSummary`), and the
names of its three phases (progress bars and cassette files use them)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools.errors import UserError
from registry_tools.fetch.base_url import check_base_url, default_base_url

PHASE_NODES = "phase1-nodes"
PHASE_VERSIONS = "phase2-versions"
PHASE_METADATA = "phase3-metadata"
PHASES = (PHASE_NODES, PHASE_VERSIONS, PHASE_METADATA)

# Defaults chosen for the public registry (docs/cache-format.md, README "The cache builder"):
# 500 nodes a page lists 5,100 packages in 11 requests (a server that caps the page size is
# followed); metadata of each package's newest 5 installable versions keeps a first mirror of
# a 3,000-package registry under 11,000 requests (-1, every version, costs about 40 % more).
DEFAULT_NODES_PER_PAGE = 500
DEFAULT_MAX_VERSIONS = 5

PhaseContext = Callable[[str], AbstractContextManager]
Node = dict[str, Any]

# (field, smallest value, largest value): integers; the largest keeps a typo from meaning
# "a million requests in flight".
_INTS = (
    ("nodes_per_page", 1, 10_000),
    ("concurrency", 1, 1_000),
    ("checkpoint_interval", 1, 10_000_000),
    ("max_attempts", 1, 100),
)
_FLOATS = (("backoff", 0.0, 3600.0), ("timeout", 0.001, 86_400.0))
_BOOLS = ("nodes", "versions", "metadata")


@dataclass
class CacheOptions:
    """Everything `registry-tools cache` can be told; the notebooks fill the same fields.

    Checked when built and again when a run starts (`validate`): a wrong type or value is a
    `UserError` before any work, never a TypeError half-way through a run.
    """

    output: Path
    input: Path | None = None
    nodes: bool = True
    versions: bool = True
    metadata: bool = True
    nodes_per_page: int = DEFAULT_NODES_PER_PAGE
    max_versions: int = DEFAULT_MAX_VERSIONS
    concurrency: int = 10
    checkpoint_interval: int = 20
    pages: int | None = None
    base_url: str = field(default_factory=default_base_url)
    max_attempts: int = 6
    backoff: float = 0.5
    timeout: float = 30.0
    token: str | None = None
    progress: bool | None = None
    max_rate: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError for values no run could use (types included)."""
        self.output = _path(self.output, "output")
        self.input = None if self.input is None else _path(self.input, "input")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise UserError(f"progress must be True, False or None, got {self.progress!r}")
        for name, low, high in _INTS:
            _check_int(name, getattr(self, name), low, high)
        if self.pages is not None:
            _check_int("pages", self.pages, 1, 10_000_000)
        _check_int("max_versions", self.max_versions, -1, 100_000)
        if self.max_versions == 0:
            raise UserError("--max-versions must be -1 (all) or at least 1, got 0")
        for name, low, high in _FLOATS:
            _check_number(name, getattr(self, name), low, high)
        if self.max_rate is not None:
            _check_number("max_rate", self.max_rate, 0.0, math.inf, allow_inf=True)
            if self.max_rate <= 0:
                raise UserError(f"--max-rate must be more than 0, got {self.max_rate!r}")
        if self.token is not None and (
            not isinstance(self.token, str) or not self.token.isprintable() or not self.token
        ):
            raise UserError("--token must be a non-empty string of printable characters")
        self.base_url = check_base_url(self.base_url)


def _path(value: Any, name: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise UserError(f"--{name} must be a file path, got {value!r}")
    return Path(value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{flag} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{flag} must be between {low} and {high}, got {value}")


def _check_number(name: str, value: Any, low: float, high: float, allow_inf: bool = False) -> None:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{flag} must be a number, got {value!r}")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise UserError(f"{flag} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{flag} must be between {low:g} and {high:g}, got {value!r}")


@dataclass
class RunSummary:
    """What a run did: the notebooks plot it, the CLI prints `text()`.

    `requests` counts what the server saw (aiohttp's own silent re-sends included);
    `rate_limited` the 429 answers among them; `pending` the versions whose metadata the
    registry has not extracted (yet): the registry's state, not a failure; `listing` says
    whether phase 1 saw every node the registry has (`complete`, `listed`, `total`).
    """

    output: Path
    written: bool = False
    nodes: int = 0
    versions: int = 0
    metadata_entries: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    resent: int = 0
    pending: int = 0
    rate: float = 0.0
    listing: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    journal_seconds: float = 0.0
    write_seconds: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    phase_stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        where = f"wrote {self.output}" if self.written else f"did not write {self.output}"
        listing = ""
        if self.listing:
            state = "complete" if self.listing.get("complete") else "INCOMPLETE"
            listing = f"listing {state} ({self.listing.get('listed')} of "
            listing += f"{self.listing.get('total')} nodes); "
        rate = f" ({self.rate:.1f}/s)" if self.rate else ""
        resent = f", {self.resent} re-sent by aiohttp" if self.resent else ""
        return (
            f"{self.nodes} nodes, {self.versions} versions, {self.metadata_entries} metadata "
            f"entries, {self.pending} versions pending extraction; {listing}"
            f"{self.requests} requests{rate}{resent}, {self.rate_limited} answered 429, "
            f"{self.retries} retries, {len(self.failures)} failures; {self.elapsed:.2f} s; "
            f"{where}"
        )
