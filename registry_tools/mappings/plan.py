"""What both build paths decide the same way once every registry package is known: the
Manager's contribution, the ranking (reference date, scores, tiers, claims) and the stats.

The general path (`build`) knows each package from its record and feeding versions; the
incremental one (`incremental`) from the index for the packages it did not parse. Both hand
`plan` the same `PackageFacts`, which is what keeps their outputs byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from registry_tools.mappings import manager_update
from registry_tools.mappings.aliases import unknown_targets
from registry_tools.mappings.manager import ManagerData
from registry_tools.mappings.manager_packs import Contribution, RegistryPackage, contribute
from registry_tools.mappings.ranking import STAR_WEIGHT, Ranking, reference_date, score
from registry_tools.mappings.signatures import NO_SIGNATURE


@dataclass
class Sources:
    """What a build reads besides the cache: the Manager's lists and the aliases."""

    manager: ManagerData | None = None
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageFacts:
    """What ranking and the Manager merge need of one registry package."""

    popularity: int
    newest: datetime | None
    claims: tuple[str, ...]  # `preempted_comfy_node_names`
    repository: str
    excluded: bool
    names: tuple[str, ...]  # the node types its feeding versions provide (sorted)


@dataclass
class Plan:
    ranking: Ranking
    contribution: Contribution
    reference: datetime | None


def node_types(keys: Iterable[str]) -> tuple[str, ...]:
    """The node types of a package's keys, sorted: every type has its `<type>::_` key."""
    return tuple(sorted(key[:-3] for key in keys if key.endswith("::" + NO_SIGNATURE)))


def manager_only_keys(plan: Plan, facts: dict[str, PackageFacts]) -> int:
    """How many keys hold Manager entries only: their node type is no registry package's."""
    provided = plan.contribution.registry_types
    if provided is None:
        provided = set().union(*(f.names for f in facts.values()))
    return sum(1 for key in plan.contribution.entries if key[:-3] not in provided)


def claimed_names(node: dict[str, Any]) -> tuple[str, ...]:
    """The node types a registry package claims over others (`preempted_comfy_node_names`)."""
    names = node.get("preempted_comfy_node_names")
    if not isinstance(names, list):
        return ()
    return tuple(sorted({n for n in names if isinstance(n, str) and n}))


def plan(
    facts: dict[str, PackageFacts],
    manager: ManagerData | None,
    cached_at: Any,
    known: Any = None,
    before: tuple[dict[str, list[str]], dict[str, Any]] | None = None,
) -> Plan:
    """The Manager's contribution and the ranking, from every registry package's facts.
    `known` is an earlier run's `Contribution.state()`; with `before` (its Manager entries,
    and the node types the packages parsed this run provided then) the contribution is that
    run's brought up to date (`manager_update`) when it can be."""
    if manager is not None:
        registry = {
            package_id: RegistryPackage(f.repository, f.excluded, f.names)
            for package_id, f in facts.items()
        }
        contribution = None
        if before is not None:
            contribution = manager_update.update(manager, registry, known, *before)
        if contribution is None:
            contribution = contribute(manager, registry, known)
    else:
        contribution = Contribution()
    newest = {package_id: f.newest for package_id, f in facts.items()}
    reference = reference_date(cached_at, newest)
    scores = {p: score(f.popularity, f.newest, reference) for p, f in facts.items()}
    for package_id, stars in contribution.stars.items():  # downloads 0: stars only
        scores[package_id] = score(STAR_WEIGHT * stars, contribution.newest[package_id], reference)
    claims: dict[str, set[str]] = {}
    for package_id, f in facts.items():
        for name in f.claims:
            claims.setdefault(name, set()).add(package_id)
    for name, claimants in contribution.claims.items():
        claims.setdefault(name, set()).update(claimants)
    ranking = Ranking(scores, set(contribution.stars), claims)
    return Plan(ranking, contribution, reference)


def document_stats(
    plan: Plan,
    registry_packages: int,
    registry_keys: int,
    signatures: int,
    total_nodes: int,
) -> dict[str, Any]:
    """`stats`: totals, packages and keys by source (a key counts for each source with an
    entry in it), the consumers' Manager counters, and the ranking's reference date."""
    manager = plan.contribution
    return {
        "by_source": {
            "manager": {"keys": len(manager.entries), "packages": len(manager.stars)},
            "registry": {"keys": registry_keys, "packages": registry_packages},
        },
        "manager_packages": len(manager.stars),
        "nodes_from_manager": sum(len(ids) for ids in manager.entries.values()),
        "packages": registry_packages + len(manager.stars),
        "reference_date": _iso(plan.reference),
        "signatures": signatures,
        "total_nodes": total_nodes,
    }


def _iso(when: datetime | None) -> str | None:
    """ISO 8601 with a `Z`, fractions kept (a resolver re-ranking from it gets the same ages)."""
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def notes(decided: Plan, sources: Sources, packages: Any) -> dict[str, int]:
    """Counters for the report that the document does not carry."""
    return {
        "manager_matched": len(decided.contribution.matched),
        "manager_bad_patterns": decided.contribution.bad_patterns,
        "aliases_unknown": unknown_targets(sources.aliases, packages),
    }
