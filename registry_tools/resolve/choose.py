"""The workflow-wide choice of packs: a small set cover over the node types' candidates.

Resolving each type on its own picks rank 1 everywhere, which often adds a second pack the
workflow does not otherwise need although a pack it requires anyway provides the type too. So:
1. packs already in the plan (recorded by the workflow: `cnr_id`, `aux_id`, a pack's
   frontend-only node, `extra.node_versions`) cover every type they provide;
2. a type with a single candidate forces that pack, which then covers its other types;
3. the rest is an exact minimum set cover (branch and bound, fewest packs first, then the
   lowest sum of the ranks each type gets), with a step budget after which the best cover
   found so far stands (the greedy one at worst). Real workflows have a few dozen custom
   types with a handful of candidates each, far below the budget.
Every choice carries the reason it was made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BUDGET = 50_000  # search steps before the best cover found so far is kept


@dataclass(frozen=True)
class Choice:
    """The pack chosen for a node type, its rank there, and why."""

    package_id: str
    rank: int
    why: str


def choose(
    options: Mapping[str, Mapping[str, int]], planned: Mapping[str, str]
) -> dict[str, Choice]:
    """{type: Choice} for every type in `options` ({type: {package: rank}}, non-empty).

    `planned` maps the packs already in the plan to the reason they are there.
    """
    chosen: dict[str, Choice] = {}
    open_types: dict[str, dict[str, int]] = {}
    for node_type in sorted(options):
        ranks = dict(options[node_type])
        already = sorted((r, p) for p, r in ranks.items() if p in planned)
        if already:
            rank, package = already[0]
            chosen[node_type] = Choice(package, rank, _why_planned(package, rank, ranks, planned))
        else:
            open_types[node_type] = ranks
    cover = _minimum_cover(open_types)
    counts: dict[str, list[str]] = {}
    for node_type, package in cover.items():
        counts.setdefault(package, []).append(node_type)
    for node_type, package in cover.items():
        ranks = open_types[node_type]
        chosen[node_type] = Choice(
            package, ranks[package], _why_cover(node_type, package, ranks, counts[package])
        )
    return chosen


def _why_planned(
    package: str, rank: int, ranks: Mapping[str, int], planned: Mapping[str, str]
) -> str:
    if len(ranks) == 1:
        return f"the only candidate; {package} is in the plan anyway ({planned[package]})"
    return (
        f"rank {rank} of {len(ranks)} candidates; {package} is in the plan anyway "
        f"({planned[package]})"
    )


def _why_cover(node_type: str, package: str, ranks: Mapping[str, int], types: list[str]) -> str:
    others = [t for t in sorted(types) if t != node_type]
    if len(ranks) == 1:
        head = "the only candidate"
    else:
        head = f"rank {ranks[package]} of {len(ranks)} candidates"
    if not others:
        return head
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return f"{head}; {package} also provides {shown} (fewest packs)"


def _minimum_cover(options: dict[str, dict[str, int]]) -> dict[str, str]:
    """{type: package}: fewest packages covering every type, then the lowest rank sum."""
    if not options:
        return {}
    provides: dict[str, set[str]] = {}
    for node_type, ranks in options.items():
        for package in ranks:
            provides.setdefault(package, set()).add(node_type)
    forced = {next(iter(r)) for r in options.values() if len(r) == 1}
    covered = set().union(*(provides[p] for p in forced)) if forced else set()
    rest = {t: r for t, r in options.items() if t not in covered}
    best = _greedy(rest, provides)
    search = _Search(rest, provides, best)
    search.run(frozenset(rest), ())
    packages = set(forced) | set(search.best)
    return {t: min((r, p) for p, r in options[t].items() if p in packages)[1] for t in options}


def _greedy(options: dict[str, dict[str, int]], provides: dict[str, set[str]]) -> tuple[str, ...]:
    uncovered, picked = set(options), []
    while uncovered:
        package = min(
            {p for t in uncovered for p in options[t]},
            key=lambda p: (
                -len(provides[p] & uncovered),
                _rank_sum(options, provides[p] & uncovered, p),
                p,
            ),
        )
        picked.append(package)
        uncovered -= provides[package]
    return tuple(sorted(picked))


def _rank_sum(options: dict[str, dict[str, int]], types: set[str], package: str) -> int:
    return sum(options[t][package] for t in types)


class _Search:
    """Branch and bound over the type with the fewest candidates; cost (packs, rank sum)."""

    def __init__(
        self,
        options: dict[str, dict[str, int]],
        provides: dict[str, set[str]],
        best: tuple[str, ...],
    ) -> None:
        self.options, self.provides = options, provides
        self.best, self.best_cost = best, self._cost(best)
        self.steps = 0

    def _cost(self, packages: tuple[str, ...]) -> tuple[int, int, tuple[str, ...]]:
        chosen = set(packages)
        ranks = sum(min(r for p, r in self.options[t].items() if p in chosen) for t in self.options)
        return len(packages), ranks, tuple(sorted(packages))

    def run(self, uncovered: frozenset[str], picked: tuple[str, ...]) -> None:
        self.steps += 1
        if self.steps > BUDGET:
            return
        if not uncovered:
            cost = self._cost(picked)
            if cost < self.best_cost:
                self.best, self.best_cost = tuple(sorted(picked)), cost
            return
        if len(picked) + 1 > self.best_cost[0]:
            return
        node_type = min(uncovered, key=lambda t: (len(self.options[t]), t))
        for _rank, package in sorted((r, p) for p, r in self.options[node_type].items()):
            self.run(uncovered - self.provides[package], (*picked, package))
