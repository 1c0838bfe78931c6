"""Ranking packages from the data alone: popularity, recency, and the order of a key's entries.

score = (downloads + STAR_WEIGHT * github_stars) / (1 + age_days / RECENCY_DAYS), with the age
measured from the newest release in the data, never from the wall clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registry_tools import clock
from registry_tools.mappings.document import count

STAR_WEIGHT = 20
RECENCY_DAYS = 365.0
UNKNOWN_AGE_DAYS = 365.0


def ranked_entries(
    by_package: dict[str, list[str]], scores: dict[str, float]
) -> list[dict[str, Any]]:
    """Entries best first (score descending, ties by package id), ranked 1..n.

    Each package's versions arrive newest first (the order `feeding_versions` gives), which
    spares a semver sort per entry.
    """
    order = sorted(by_package, key=lambda p: (-scores.get(p, 0.0), p))
    return [
        {"package_id": package_id, "rank": rank, "versions": by_package[package_id]}
        for rank, package_id in enumerate(order, 1)
    ]


def newest_release(package: dict[str, Any]) -> datetime | None:
    """Newest parseable `release_date` among a package record's versions."""
    dates = [clock.parse_time_or_none(v.get("release_date")) for v in package["versions"].values()]
    return max((d for d in dates if d is not None), default=None)


def package_score(
    package: dict[str, Any], reference: datetime | None, newest: datetime | None = None
) -> float:
    """(downloads + 20 * stars) / (1 + age_days / 365); age from `reference` to the package's
    newest release, counted as 365 days when either date is unknown."""
    newest = newest if newest is not None else newest_release(package)
    return score(popularity(package), newest, reference)


def popularity(package: dict[str, Any]) -> int:
    """downloads + 20 * github_stars of a `packages` record (non-negative integers)."""
    return count(package.get("downloads")) + STAR_WEIGHT * count(package.get("github_stars"))


def score(popular: int, newest: datetime | None, reference: datetime | None) -> float:
    """The ranking formula, from a package's popularity and newest release (the index keeps
    both, so an incremental run scores a package without its record)."""
    if reference is None or newest is None:
        age_days = UNKNOWN_AGE_DAYS
    else:
        age_days = max(0.0, (reference - newest).total_seconds() / 86400.0)
    return popular / (1.0 + age_days / RECENCY_DAYS)


def package_scores(packages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Score of every package of a `packages` section (higher ranks first).

    Recency is measured from the newest release in the data, never from the wall clock, so
    the same cache always ranks the same way.
    """
    return scores_from_newest(
        packages, {package_id: newest_release(p) for package_id, p in packages.items()}
    )


def scores_from_newest(
    packages: dict[str, dict[str, Any]], newest: dict[str, datetime | None]
) -> dict[str, float]:
    """`package_scores` when each package's newest release is already known."""
    reference = max((d for d in newest.values() if d is not None), default=None)
    return {pid: score(popularity(p), newest[pid], reference) for pid, p in packages.items()}
