"""Resolve the node types of ComfyUI workflows to an installation plan (docs/resolve.md).

Per node type, in this order:
1. built in: a type of `builtins` (core or frontend-only) whose nodes record no other pack;
   `cnr_id: comfy-core` on a type the table lacks means a ComfyUI newer than the table;
2. what the workflow records: `properties.cnr_id` (through `package_aliases`), else
   `properties.aux_id` (`owner/repo`, a pack outside the registry, found by repository);
3. a pack's frontend-only node (`frontend`): mapped to that pack;
4. the mappings: exact signature, then `Type::_`, then every key of the type merged;
5. with a live look-up, the registry's answer for types the mappings do not know.
Then one choice for the whole workflow (`choose`), the version of each pack (`ver` when
installable, else the newest that matches), and the plan (`plan`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools.errors import UserError
from registry_tools.mappings.load import load_mappings, mappings_problem
from registry_tools.resolve.builtins import builtin_table
from registry_tools.resolve.candidates import MATCHES, Candidate, MappingsView, Match
from registry_tools.resolve.choose import choose
from registry_tools.resolve.frontend import pack_frontend_nodes
from registry_tools.resolve.plan import (
    REASONS,
    PlannedPackage,
    Resolution,
    TypeResolution,
    Unresolved,
)
from registry_tools.resolve.reading import load_workflow
from registry_tools.resolve.workflow import Workflow, WorkflowNode, read_document
from registry_tools.semver import newest_first, version_key

CORE = "comfy-core"
_RELEASE = re.compile(r"^v?\d+\.\d+\.\d+")
# A live look-up: unknown node types -> their candidates, after adding the packages it found
# to the view (`online.OnlineLookup`).
Lookup = Callable[[list[str], MappingsView], dict[str, tuple[Candidate, ...]]]


def resolve_workflow(
    workflow: Any,
    mappings: dict[str, Any],
    *,
    label: str = "workflow",
    lookup: Lookup | None = None,
) -> Resolution:
    """The plan for an already-loaded workflow (a parsed UI/API document, or a `Workflow`)."""
    problem = mappings_problem(mappings)
    if problem:
        raise UserError(f"mappings: not a node mappings document ({problem})")
    if not isinstance(label, str):
        raise UserError(f"label must be a string, got {type(label).__name__}")
    _check_lookup(lookup)
    parsed = workflow if isinstance(workflow, Workflow) else read_document(workflow)
    return resolve([parsed], [label], MappingsView(mappings), lookup)


def resolve_files(
    workflows: Sequence[Path | str],
    mappings: Path,
    *,
    combined: bool = False,
    lookup: Lookup | None = None,
) -> list[Resolution]:
    """One plan per workflow file (or one for all with `combined`); every input is read and
    checked before anything is resolved."""
    if isinstance(workflows, str | Path) or not isinstance(workflows, Sequence):
        raise UserError("workflows must be a list of paths (or '-' for standard input)")
    if not workflows:
        raise UserError("no workflow given")
    if not all(isinstance(w, str | Path) for w in workflows):
        raise UserError("workflows must be paths (str or pathlib.Path)")
    if not isinstance(mappings, str | Path):
        raise UserError(f"mappings must be a path, got {type(mappings).__name__}")
    if not isinstance(combined, bool):
        raise UserError(f"combined must be True or False, got {combined!r}")
    _check_lookup(lookup)
    loaded = [load_workflow(path) for path in workflows]
    view = MappingsView(load_mappings(Path(mappings), "--mappings"))
    labels = [str(path) for path in workflows]
    if combined:
        return [resolve(loaded, labels, view, lookup)]
    return [resolve([w], [label], view, lookup) for w, label in zip(loaded, labels, strict=True)]


def _check_lookup(lookup: Any) -> None:
    if lookup is not None and not callable(lookup):
        raise UserError(f"lookup must be callable (an OnlineLookup) or None, got {lookup!r}")


@dataclass
class _Type:
    """Everything the workflow's nodes say about one node type."""

    name: str
    node_ids: list[str] = field(default_factory=list)
    cnr_ids: Counter = field(default_factory=Counter)
    aux_ids: Counter = field(default_factory=Counter)
    versions: dict[str, set[str]] = field(default_factory=dict)  # recorded pack -> vers
    inputs: dict = field(default_factory=dict)  # distinct input lists, first seen first

    def recorded(self) -> tuple[str | None, str | None]:
        """The pack (`cnr_id`) and repository (`aux_id`) most of its nodes record."""
        return _most_common(self.cnr_ids), _most_common(self.aux_ids)


def resolve(
    workflows: Sequence[Workflow], labels: Sequence[str], view: MappingsView, lookup: Lookup | None
) -> Resolution:
    """The plan for one or several parsed workflows against a mappings view."""
    table = builtin_table()
    types, saved_with, node_versions = _collect(workflows)
    builtin, pending = [], {}
    state = _Pins(view)
    resolved, planned, pins = state.resolved, state.planned, state.pins
    for name in sorted(types):
        item = types[name]
        cnr, aux = item.recorded()
        canonical = view.canonical(cnr) if cnr and cnr != CORE else None
        if name in table and canonical is None:
            builtin.append(name)
        elif cnr == CORE:
            resolved[name] = _unresolved(item, "core_newer", _newer_detail(item, table))
        elif canonical is not None:
            state.pin(item, canonical, "cnr_id", f"cnr_id {cnr}")
        elif aux and (package := view.by_repository(aux)):
            state.pin(item, package, "aux_id", f"aux_id {aux}")
        elif aux:
            state.pin(item, f"github:{aux}", "aux_id", f"aux_id {aux}")
        elif name in pack_frontend_nodes():
            pack = pack_frontend_nodes()[name]
            package = view.canonical(pack.package_id) or view.by_repository(pack.repository)
            if package is None:
                detail = f"frontend-only node of {pack.package_id} ({pack.repository})"
                resolved[name] = _unresolved(item, "frontend_only", detail)
            else:
                state.pin(item, package, "frontend", "frontend-only node")
        else:
            pending[name] = _best_match(item, view)
    failures = _look_up(pending, view, lookup)
    _recorded_versions(node_versions, view, planned, pins)
    options = _options(pending, types, view, resolved, failures)
    for name, choice in choose(options, planned).items():
        match, (cnr, _aux) = pending[name], types[name].recorded()
        why = choice.why
        if cnr and cnr != CORE:
            why += f"; the workflow records pack {cnr}, which the mappings do not list"
        resolved[name] = TypeResolution(
            name, match.match, match.key, match.candidates, tuple(types[name].node_ids),
            choice.package_id, why,
        )  # fmt: skip
    packages = _plan(resolved, pins, planned, view)
    ordered = tuple(resolved[n] for n in sorted(resolved))
    unresolved = tuple(
        Unresolved(t.node_type, t.reason, t.why, t.node_ids) for t in ordered if t.reason
    )
    references = sorted({r for w in workflows for r in w.references})
    formats = {w.format for w in workflows}
    return Resolution(
        tuple(labels),
        formats.pop() if len(formats) == 1 else "mixed",
        ordered,
        packages,
        unresolved,
        tuple(builtin),
        tuple(references),
        {
            "saved_with": saved_with,
            "sufficient": table.sufficient_version(builtin),
            "data_covers": table.comfyui_version,
        },
        (
            *(
                f"{name} is a ComfyUI core type removed by ComfyUI {table.nodes[name].removed}"
                for name in builtin
                if table.nodes[name].removed
            ),
            *(
                note
                for w, label in zip(workflows, labels, strict=True)
                for note in _notes(w, label, len(workflows))
            ),
        ),
        online=lookup is not None,
    )


def _collect(workflows: Sequence[Workflow]) -> tuple[dict[str, _Type], str | None, dict[str, str]]:
    """Node types with their nodes' records; the newest ComfyUI version a node or
    `node_versions` records; and the merged `node_versions`."""
    types: dict[str, _Type] = {}
    core_versions: set[str] = set()
    node_versions: dict[str, str] = {}
    for workflow in workflows:
        node_versions.update(workflow.node_versions)
        for node in workflow.nodes:
            item = types.get(node.type)
            if item is None:
                item = types[node.type] = _Type(node.type)
            item.node_ids.append(node.id)
            if node.cnr_id:
                item.cnr_ids[node.cnr_id] += 1
                if node.ver:
                    item.versions.setdefault(node.cnr_id, set()).add(node.ver)
                    if node.cnr_id == CORE:
                        core_versions.add(node.ver)
            if node.aux_id:
                item.aux_ids[node.aux_id] += 1
                if node.ver:
                    item.versions.setdefault(node.aux_id, set()).add(node.ver)
            if node.inputs:
                item.inputs.setdefault(node.inputs)
    if CORE in node_versions:
        core_versions.add(node_versions[CORE])
    dated = [v.lstrip("v") for v in core_versions if _RELEASE.match(v)]  # not git commits
    return types, max(dated, key=version_key) if dated else None, node_versions


def _most_common(counts: Counter) -> str | None:
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _best_match(item: _Type, view: MappingsView) -> Match:
    """The best match among the type's distinct input lists (exact > type_only > name_only)."""
    best: Match | None = None
    for inputs in list(item.inputs) or [None]:
        found = view.match(WorkflowNode("", item.name, inputs))
        if found and (best is None or MATCHES.index(found.match) < MATCHES.index(best.match)):
            best = found
        if best and best.match == "exact":
            break
    return best or Match("unresolved", None, ())


class _Pins:
    """Types whose pack is settled before the choice: what the workflow records, a pack's
    frontend-only node; and the versions recorded for each such pack."""

    def __init__(self, view: MappingsView) -> None:
        self.view = view
        self.resolved: dict[str, TypeResolution] = {}
        self.planned: dict[str, str] = {}  # package -> why it is in the plan
        self.pins: dict[str, set[str]] = {}  # package -> versions the workflow records

    def pin(self, item: _Type, package: str, match: str, what: str) -> None:
        if match == "frontend":
            why = f"a frontend-only node of {package} (curated table)"
        else:
            why = f"recorded in the workflow ({what})"
        found = _best_match(item, self.view)
        if found.candidates and package not in {c.package_id for c in found.candidates}:
            why += "; the mappings do not list this type for that pack"
        self.resolved[item.name] = TypeResolution(
            item.name, match, found.key, found.candidates, tuple(item.node_ids), package, why
        )
        self.planned.setdefault(package, why)
        cnr, aux = item.recorded()
        recorded = item.versions.get(cnr or "", set()) | item.versions.get(aux or "", set())
        self.pins.setdefault(package, set()).update(recorded)


def _unresolved(item: _Type, reason: str, detail: str) -> TypeResolution:
    return TypeResolution(
        item.name, "unresolved", None, (), tuple(item.node_ids), None, detail, reason
    )


def _newer_detail(item: _Type, table) -> str:
    saved = newest_first(item.versions.get(CORE, set()))
    when = f"the workflow was saved with ComfyUI {saved[0]}; " if saved else ""
    return (
        f"{when}the built-ins data covers ComfyUI up to {table.comfyui_version}: "
        "needs a newer ComfyUI (or newer built-ins data)"
    )


def _look_up(
    pending: dict[str, Match], view: MappingsView, lookup: Lookup | None
) -> dict[str, str]:
    """Ask the registry about the types the mappings do not know; {type: why its reads failed}."""
    unknown = sorted(n for n, m in pending.items() if not m.candidates)
    if lookup is None or not unknown:
        return {}
    for name, candidates in lookup(unknown, view).items():
        if candidates:
            pending[name] = Match("online", None, candidates)
    failures = getattr(lookup, "failures", {})
    return {name: failures[name] for name in unknown if name in failures}


def _recorded_versions(node_versions, view: MappingsView, planned, pins) -> None:
    """Packs an older workflow names in `extra.node_versions` count as needed, at that version."""
    for name, version in sorted(node_versions.items()):
        package = view.by_folder(name) if name != CORE else None
        if package is not None:
            planned.setdefault(package, f"named in the workflow's extra.node_versions ({name})")
            pins.setdefault(package, set()).add(version)


def _options(
    pending: dict[str, Match], types, view: MappingsView, resolved, failures: dict[str, str]
) -> dict[str, dict[str, int]]:
    """{type: {installable package: rank}}; types without one are resolved as unresolved."""
    options = {}
    for name, match in list(pending.items()):
        ranks = {c.package_id: c.rank for c in match.candidates if view.installable(c.package_id)}
        if ranks:
            options[name] = ranks
            continue
        del pending[name]
        item = types[name]
        if not match.candidates:
            cnr = item.recorded()[0]
            detail = REASONS["unknown"] + (
                f" (the workflow records pack {cnr}, which the mappings do not list)" if cnr else ""
            )
            if name in failures:
                detail += f"; the online look-up failed ({failures[name]}), so it may exist"
            resolved[name] = _unresolved(item, "unknown", detail)
            continue
        manager = [c.package_id for c in match.candidates if view.source(c.package_id) == "manager"]
        if manager:
            where = ", ".join(f"{p} ({view.repository(p) or 'no repository'})" for p in manager)
            resolved[name] = _unresolved(
                item, "manager_only", f"{REASONS['manager_only']}: {where}"
            )
        else:
            listed = ", ".join(c.package_id for c in match.candidates)
            detail = f"{REASONS['not_installable']}: {listed}"
            if name in failures:
                detail += f"; the online look-up failed ({failures[name]})"
            resolved[name] = _unresolved(item, "not_installable", detail)
    return options


def _plan(resolved, pins, planned, view: MappingsView) -> tuple[PlannedPackage, ...]:
    """One entry per chosen pack: its version, URL, repository, types and reasons."""
    by_package: dict[str, list[TypeResolution]] = {}
    for item in resolved.values():
        if item.package_id:
            by_package.setdefault(item.package_id, []).append(item)
    packages = []
    for package_id in sorted(by_package):
        items = sorted(by_package[package_id], key=lambda t: t.node_type)
        types = tuple(t.node_type for t in items)
        version, notes = _version(package_id, items, pins.get(package_id, set()), view)
        if package_id.startswith("github:"):
            repository = f"https://github.com/{package_id.removeprefix('github:')}"
            notes.append("not in the mappings: install from the repository")
            source, url = "aux_id", None
        else:
            repository, source = view.repository(package_id), view.source(package_id)
            url = view.download_url(package_id, version)
            if url is None and not view.installable(package_id):
                notes.append("not installable from the registry: install from the repository")
        if package_id in planned:
            why = planned[package_id]
        elif len(items) > 1:
            why = f"provides {len(items)} of the workflow's types: the fewest packs cover them"
        else:
            why = items[0].why
        packages.append(
            PlannedPackage(package_id, version, url, repository, source, types, why, tuple(notes))
        )
    return tuple(packages)


def _version(
    package_id: str, items, recorded: set[str], view: MappingsView
) -> tuple[str | None, list[str]]:
    """The version to install: one the workflow records when installable, else the newest
    installable version every type's match allows, else the newest installable one."""
    installable = view.installable(package_id)
    notes = []
    for version in newest_first(recorded):
        if version in installable:
            return version, notes
        if not installable:
            return version, notes
        why = view.unavailable(package_id, version) or "not installable"
        notes.append(
            f"the workflow records version {version}, which is {why}; newest installable instead"
        )
    if not installable:
        return None, notes
    allowed = set(installable)
    for item in items:
        versions = {v for c in item.candidates if c.package_id == package_id for v in c.versions}
        if versions:
            allowed &= versions
    if allowed:
        return newest_first(allowed)[0], notes
    notes.append("no single version matches every type's signature; newest installable")
    return installable[0], notes


def _notes(workflow: Workflow, label: str, count: int) -> list[str]:
    prefix = f"{label}: " if count > 1 else ""
    found = [f"{prefix}{note}" for note in workflow.notes]
    if workflow.source != "json":
        found.insert(0, f"{prefix}read from the file's {workflow.source}")
    return found
