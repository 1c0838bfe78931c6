"""How the stand-in registry behaves (`Behaviour`), how its clock moves (`Churn`) and what a
move changed (`Changes`).

Every behaviour is off by default, so an emulator without one is the ideal registry the tests
have always used. `Behaviour.realistic()` turns them all on at the magnitudes the real service
shows (`docs/emulator.md` gives the source of each number).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from registry_tools.errors import UserError


def _check_number(owner: str, name: str, value: Any, low: float, high: float = math.inf) -> None:
    """A real number (not a bool, not NaN) in [low, high], else UserError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{owner}.{name} must be a number, got {value!r}")
    if not low <= value <= high:  # also false for NaN
        bound = f"between {low:g} and {high:g}" if high < math.inf else f"at least {low:g}"
        raise UserError(f"{owner}.{name} must be {bound}, got {value!r}")


def _check_int(owner: str, name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < low:
        raise UserError(f"{owner}.{name} must be at least {low}, got {value}")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise UserError(f"{owner}.{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Behaviour:
    """The real service's ways, each off by default (see docs/emulator.md).

    - `rate_limit`: requests per second admitted by one token bucket over all requests
      (0 = no limit); `rate_burst` is the bucket's size; an excess request gets an instant
      429, with `Retry-After: rate_retry_after` if that is set, bare otherwise.
    - `drift_rows`: rows of the `/nodes` order that move to the end before each request, so
      offset pages skip and repeat rows; `page_cache_seconds`: how long a `/nodes` page is
      served from the instance's cache (`latest=true` bypasses it).
    - `pending_share`, `failed_share`: shares of the versions with metadata whose extraction is
      pending or failed (`comfy_nodes: null`); their metadata is kept for `advance`.
    - `install_effects`: `/install` increments `downloads` and refuses a `version` that is not
      `^\\d+\\.\\d+\\.\\d+$` with a 400.
    - `enforce_statuses`: banned and deleted packages are hidden from `/nodes`, `/nodes/search`
      and `/versions` (banned ones shown with `include_banned=true`), and answer 403 (banned)
      or 404 (deleted) on their own endpoints.
    - `seed`: drift, pending choices and `/versions` tie orders.
    """

    rate_limit: float = 0.0
    rate_burst: float = 1.0
    rate_retry_after: float | None = None
    drift_rows: int = 0
    page_cache_seconds: float = 0.0
    pending_share: float = 0.0
    failed_share: float = 0.0
    install_effects: bool = False
    enforce_statuses: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "Behaviour"
        _check_number(owner, "rate_limit", self.rate_limit, 0.0)
        _check_number(owner, "rate_burst", self.rate_burst, 1.0)
        if self.rate_retry_after is not None:
            _check_number(owner, "rate_retry_after", self.rate_retry_after, 0.0, 86_400.0)
        _check_int(owner, "drift_rows", self.drift_rows, 0)
        _check_number(owner, "page_cache_seconds", self.page_cache_seconds, 0.0, 86_400.0)
        _check_number(owner, "pending_share", self.pending_share, 0.0, 1.0)
        _check_number(owner, "failed_share", self.failed_share, 0.0, 1.0)
        if self.pending_share + self.failed_share > 1.0:
            raise UserError("Behaviour.pending_share + failed_share must be at most 1")
        _check_bool(owner, "install_effects", self.install_effects)
        _check_bool(owner, "enforce_statuses", self.enforce_statuses)
        _check_int(owner, "seed", self.seed, -(2**63))
        if math.isinf(self.rate_limit):
            raise UserError("Behaviour.rate_limit must be finite (0 means no limit)")

    @classmethod
    def realistic(cls, seed: int = 0) -> Behaviour:
        """Every behaviour on at the real service's magnitudes (docs/emulator.md, "--realistic")."""
        return cls(
            rate_limit=12.0,
            rate_burst=3.0,
            rate_retry_after=None,
            drift_rows=2,
            page_cache_seconds=60.0,
            pending_share=0.10,
            failed_share=0.01,
            install_effects=True,
            enforce_statuses=True,
            seed=seed,
        )

    @property
    def ideal(self) -> bool:
        """Whether every behaviour is off (the seed alone changes nothing then)."""
        return self == Behaviour(seed=self.seed)


@dataclass(frozen=True)
class Churn:
    """One move of the registry's clock (`Emulator.advance`), each change chosen by `seed`.

    - `finish_pending`: share of the pending extractions that finish (success);
    - `deprecate_share`, `ban_share`: shares of the versions that can still change (active, not
      deprecated, not their package's `latest_version`) deprecated or banned, without a release;
    - `new_version_share`: new versions published, as a share of all versions (each in its own
      package, a patch release after the package's newest one);
    - `delete_packages`: that many packages deleted;
    - `hours`: how far the registry's calendar moves (new versions' `createdAt`, `timestamp`).

    Counts are `round(share * candidates)`, so a small registry may need larger shares.
    """

    finish_pending: float = 1.0
    deprecate_share: float = 0.0
    ban_share: float = 0.0
    new_version_share: float = 0.0
    delete_packages: int = 0
    hours: float = 24.0
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "Churn"
        for name in ("finish_pending", "deprecate_share", "ban_share", "new_version_share"):
            _check_number(owner, name, getattr(self, name), 0.0, 1.0)
        if self.deprecate_share + self.ban_share > 1.0:
            raise UserError("Churn.deprecate_share + ban_share must be at most 1")
        _check_int(owner, "delete_packages", self.delete_packages, 0)
        _check_number(owner, "hours", self.hours, 0.0, 24.0 * 3660)
        _check_int(owner, "seed", self.seed, -(2**63))

    @classmethod
    def day(cls, seed: int = 0) -> Churn:
        """A day of the real registry, as issue 10's benchmark describes it: every pending
        extraction finished, 1 % of the versions deprecated or banned, 1 % new versions."""
        return cls(
            finish_pending=1.0,
            deprecate_share=0.008,
            ban_share=0.002,
            new_version_share=0.01,
            seed=seed,
        )

    @classmethod
    def from_json(cls, data: Any) -> Churn:
        """A Churn from a JSON object (the control endpoint's body); UserError if malformed."""
        if not isinstance(data, dict):
            raise UserError("the body must be a JSON object of Churn fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown Churn field(s): {', '.join(unknown)}")
        return cls(**data)


NodeVersion = tuple[str, str]


@dataclass
class Changes:
    """What one `advance` changed, each list sorted: (node id, version) pairs or node ids."""

    finished: list[NodeVersion] = field(default_factory=list)
    deprecated: list[NodeVersion] = field(default_factory=list)
    banned: list[NodeVersion] = field(default_factory=list)
    published: list[NodeVersion] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    now: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: pairs become two-element lists."""
        out = asdict(self)
        for key in ("finished", "deprecated", "banned", "published"):
            out[key] = [list(pair) for pair in out[key]]
        return out

    def __len__(self) -> int:
        """How many things changed."""
        return sum(
            len(getattr(self, key))
            for key in ("finished", "deprecated", "banned", "published", "deleted")
        )
