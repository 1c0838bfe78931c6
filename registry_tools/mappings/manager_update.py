"""The Manager's contribution brought up to date instead of worked out again.

Between two runs with the same lists and the same registry packages (ids, repositories,
banned/deleted flags: `Contribution.fingerprint`), only the node types some registry packages
provide can change. Which package each URL stands for, the Manager-only packs and the claims
stay as they were (the input's index keeps what the earlier run found:
`Contribution.state()`). What may change: the entries of the changed packages themselves (a
node type they now provide needs no Manager entry, one they dropped may need one again), and
the pattern hits (`nodename_pattern`) of the node types they added or dropped, which only
exist while some registry package provides them. This module patches the input's Manager
entries for those alone; the incremental tests check every such run against a full build.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from registry_tools.mappings.manager import ManagerData
from registry_tools.mappings.manager_packs import Contribution, RegistryPackage, _Merge


def update(
    data: ManagerData,
    registry: dict[str, RegistryPackage],
    known: Any,
    before: dict[str, list[str]],
    old_names: dict[str, Collection[str]],
) -> Contribution | None:
    """The contribution of this run from the earlier one's state (`known`), its Manager
    entries (`before`, key -> package ids) and the node types the packages parsed this run
    provided then (`old_names`); None when the earlier state does not apply (another
    fingerprint), and then `manager_packs.contribute` works it out."""
    merge = _Merge(data, registry, known)
    if merge.known is None or not isinstance(known.get("hits"), dict):
        return None
    result = merge.result
    scan = merge.scan()
    changed = {
        package_id
        for package_id, names in old_names.items()
        if package_id in registry and set(names) != set(registry[package_id].names)
    }
    hits = dict(known["hits"])
    entries: dict[str, Any] = dict(before)
    touched: set[str] = set()

    def drop(name: str, target: str) -> None:
        key = name + "::_"
        ids = entries.get(key)
        if ids is not None and target in ids:
            rest = set(ids) - {target}
            if rest:
                entries[key] = rest
            else:
                del entries[key]
            touched.add(key)

    def add(name: str, target: str) -> None:
        key = name + "::_"
        ids = set(entries.get(key, ()))
        if target not in ids:
            entries[key] = ids | {target}
            touched.add(key)

    # The pattern hits of the node types that entered or left the registry's metadata.
    new_types = set().union(*(registry[p].names for p in changed))
    old_types = set().union(*(old_names[p] for p in changed))
    others = set().union(*(p.names for i, p in registry.items() if i not in changed))
    moved = []  # (name, hit before, hit now)
    for name in (new_types | old_types) - scan.listed - scan.core:
        now = scan.hit(name) if name in others or name in new_types else None
        was = hits.get(name)
        if now != was:
            moved.append((name, was, now))
            if now is None:
                del hits[name]
            else:
                hits[name] = now
    # The changed packages' own entries: what the Manager attributes to them, less what they
    # now provide (before: less what they provided then).
    for target in changed:
        listed = set().union(*scan.by_target.get(target, ()))
        then = (listed | {n for n, t in known["hits"].items() if t == target}) - scan.core
        now = (listed | {n for n, t in hits.items() if t == target}) - scan.core
        then -= set(old_names[target])
        now -= set(registry[target].names)
        for name in then - now:
            drop(name, target)
        for name in now - then:
            add(name, target)
    # Hits that moved for packages whose node types did not change.
    for name, was, now in moved:
        if was is not None and was not in changed:
            drop(name, was)
        if now is not None and now not in changed and name not in merge.provided(now):
            add(name, now)
    result.entries = entries
    result.hits = hits
    result.registry_types = others | new_types
    result.touched = touched
    return result
