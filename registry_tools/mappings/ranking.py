"""Ranking packages from the data alone: popularity, recency, claims, and the order of a key's
entries.

score = (downloads + STAR_WEIGHT * github_stars) / (1 + age_days / RECENCY_DAYS), with the age
measured from the cache's own `cached_at` (never the wall clock, and never another package's
dates, so one package with a bogus future release date moves nobody else). Within a key, a
registry package comes before a pack known only to ComfyUI-Manager; then a package that claims
the node type (the registry's `preempted_comfy_node_names`, the Manager's `preemptions`) comes
first; then the score; then the package id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from registry_tools import clock
from registry_tools.mappings.document import count
from registry_tools.mappings.signatures import split_key

STAR_WEIGHT = 20
RECENCY_DAYS = 365.0
UNKNOWN_AGE_DAYS = 365.0
MANAGER = "manager"  # `source` of an entry or package that comes from ComfyUI-Manager's lists


@dataclass
class Ranking:
    """What orders a key's entries: every package's score, the packs known only to the
    Manager (ranked after every registry package), and who claims which node type."""

    scores: dict[str, float]
    manager_only: set[str] = field(default_factory=set)
    claims: dict[str, set[str]] = field(default_factory=dict)  # node type -> package ids

    def sort_key(self, node_type: str) -> Any:
        """The sort key of a package among the entries of a key of `node_type`."""
        claimants = self.claims.get(node_type, ())
        scores, manager_only = self.scores, self.manager_only
        return lambda p: (p in manager_only, p not in claimants, -scores.get(p, 0.0), p)

    def order(self, node_type: str, package_ids: Any) -> list[str]:
        """Package ids best first."""
        return sorted(package_ids, key=self.sort_key(node_type))


def ranked_entries(
    key: str,
    by_package: dict[str, list[str]],
    ranking: Ranking,
    manager: Any = (),
) -> list[dict[str, Any]]:
    """Entries of `key`, best first, ranked 1..n: one per package of `by_package` (its
    versions, newest first, as `feeding_versions` gives them) and one per package of `manager`
    not already there (`versions: []`, `source: "manager"`: the Manager says it provides the
    type, the registry's metadata does not)."""
    extra = [p for p in manager if p not in by_package]
    candidates = [*by_package, *extra]
    if len(candidates) > 1:  # most keys have one package: no node type, no sort
        candidates = ranking.order(split_key(key)[0], candidates)
    entries = []
    for rank, package_id in enumerate(candidates, 1):
        if package_id in by_package:
            entry = {"package_id": package_id, "rank": rank, "versions": by_package[package_id]}
        else:
            entry = {"package_id": package_id, "rank": rank, "source": MANAGER, "versions": []}
        entries.append(entry)
    return entries


def newest_release(package: dict[str, Any]) -> datetime | None:
    """Newest parseable `release_date` among a package record's installable versions; for a
    pack known only to the Manager (no versions), its repository's `last_update`."""
    dates = [clock.parse_time_or_none(v.get("release_date")) for v in package["versions"].values()]
    dates.append(clock.parse_time_or_none(package.get("last_update")))
    return max((d for d in dates if d is not None), default=None)


def reference_date(cached_at: Any, newest: dict[str, datetime | None]) -> datetime | None:
    """The date ages are measured from: the cache's `cached_at`; for a cache without a
    readable one, the newest release in the data (still never the wall clock)."""
    parsed = clock.parse_time_or_none(cached_at)
    if parsed is not None:
        return parsed
    return max((d for d in newest.values() if d is not None), default=None)


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


def package_scores(
    packages: dict[str, dict[str, Any]], reference: datetime | str | None = None
) -> dict[str, float]:
    """Score of every package of a `packages` section (higher ranks first), ages measured
    from `reference` (a mappings file's `stats.reference_date`); without one, from the
    newest release in the data."""
    newest = {package_id: newest_release(p) for package_id, p in packages.items()}
    when = reference if isinstance(reference, datetime) else reference_date(reference, newest)
    return {pid: score(popularity(p), newest[pid], when) for pid, p in packages.items()}
