"""What each notebook does, as library functions: the notebooks only show a panel for them.

A step takes the notebook's `Parameters` and a progress `Reporter`, does its work through the
same library calls as the CLI (`run_cache_async`, `build_mappings`, `resolve_workflow`) and
returns a `StepResult`: a compact summary table, detail tables, data for exploration and
matplotlib figures, which it also saves as PNG next to its data files. `Step.uses` names the
parameters a step uses: the notebook's parameters cell declares exactly those, and its panel
shows a control for each one that has one.

Paths in the parameters are relative to `output_dir`, so the five notebooks chain through
one directory: 01 writes `cache.json`, 02 and 03 extend it, 04 writes `node_mappings.json`,
05 resolves a workflow against it. A step whose input file is missing first builds it from
the earlier phases, so each notebook also runs on its own; the fetch options of an earlier
phase come from the cassette set's recording (04 and 05 replay the bundled sample).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import PHASE_METADATA, PHASE_NODES, PHASE_VERSIONS, PHASES
from registry_tools.mappings.build import PHASE as PHASE_MAPPINGS
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.mappings.load import load_mappings
from registry_tools.mappings.signatures import SignatureError, registry_signature
from registry_tools.notebooks import cancel, plots, stats
from registry_tools.notebooks.cassette_sets import describe, phase_options
from registry_tools.notebooks.fetching import CACHE_PATHS, CASSETTE_PARAMETERS, fetch, fetch_step
from registry_tools.notebooks.results import StepResult
from registry_tools.notebooks.settings import Parameters, bundled_cassette_dir
from registry_tools.progress import Reporter
from registry_tools.resolve.plan import Resolution, summary_line
from registry_tools.resolve.reading import load_workflow
from registry_tools.resolve.resolver import resolve_workflow

__all__ = ["BY_NOTEBOOK", "Parameters", "Step", "StepResult", "bundled_cassette_dir", "fetch"]

MISSING_TYPE = "NotInTheRegistry"  # the demo workflow's deliberately unresolvable node


@dataclass(frozen=True)
class Step:
    """A notebook's work, the progress bars (phases) it reports to, the parameters it uses."""

    run: Callable[[Parameters, Reporter], StepResult]
    phases: tuple[str, ...]
    uses: tuple[str, ...]

    def __call__(self, params: Parameters, reporter: Reporter) -> StepResult:
        return self.run(params, reporter)


# ---- phases 1-3 (fetching.py) -------------------------------------------------------------

_FETCH_SETTINGS = ("concurrency", "checkpoint_interval", *CASSETTE_PARAMETERS, *CACHE_PATHS)
nodes = Step(fetch_step(PHASE_NODES), (PHASE_NODES,), ("nodes_per_page", "pages", *_FETCH_SETTINGS))
versions = Step(fetch_step(PHASE_VERSIONS), (PHASE_VERSIONS,), _FETCH_SETTINGS)
metadata = Step(fetch_step(PHASE_METADATA), (PHASE_METADATA,), ("max_versions", *_FETCH_SETTINGS))


# ---- mappings and resolution ---------------------------------------------------------------


def _ensure_cache(params: Parameters, reporter: Reporter) -> tuple[Path, str]:
    """The input cache, and where it came from; built by phases 1-3 first when it does not
    exist yet (replaying the bundled sample unless the notebook says otherwise)."""
    cache = params.path(params.input_cache, "input_cache")
    if cache.is_file():
        return cache, str(cache)
    # 04's max_versions is the mappings' own option: the fetch takes the recording's.
    fetch_options = set(phase_options(PHASES))
    as_recorded = dataclasses.replace(
        params,
        **dict.fromkeys(fetch_options),
        declared=params.declared - fetch_options,
    )
    fetched = fetch(as_recorded, set(PHASES), None, cache, reporter)
    if not fetched.summary.ok:
        raise UserError(f"building {cache} failed: {fetched.summary.failures[0]}")
    return cache, f"{cache} (built first, from {describe(params.cassettes())})"


def _mappings(params: Parameters, reporter: Reporter) -> StepResult:
    """Notebook step 04: build `node_mappings.json`; collisions and signature counts."""
    cache, cache_source = _ensure_cache(params, reporter)
    output = params.path(params.output_mappings, "output_mappings")
    options = MappingsOptions(
        cache=cache,
        output=output,
        max_versions=-1 if params.max_versions is None else params.max_versions,
        checkpoint_interval=params.checkpoint_interval,
    )
    report = build_mappings(options, cancel.checking(reporter))
    document = load_mappings(output)
    collisions = stats.collisions(document)
    signatures = stats.signatures_per_node_type(document)
    result = StepResult(
        "mappings",
        {
            "cache": cache_source,
            "packages": report.packages,
            "signatures": report.signatures,
            "node entries": report.total_nodes,
            "versions fed": report.versions_fed,
            "malformed input_types": sum(report.problems.values()),
            "node types in several packages": len(collisions),
            "mappings": str(output),
        },
        figures={
            "collisions": plots.collisions({t: len(p) for t, p in collisions.items()}),
            "signatures": plots.signature_counts(list(signatures.values())),
        },
        tables={"most contested node types": _collision_rows(collisions)},
        data={
            "collisions": _collision_rows(collisions, top=None),
            "signatures": [{"node type": t, "signatures": n} for t, n in signatures.items()],
            "packages": [
                {"package": p, "node types": n}
                for p, n in stats.node_types_per_package(document).items()
            ],
        },
    )
    result.headline = (
        f"mappings: {report.packages} packages, {report.signatures} signatures, "
        f"{len(collisions)} node types in several packages; wrote {output}"
    )
    result.save_figures(params.directory(), "04_mappings")
    return result


def _collision_rows(collisions: dict[str, list[str]], top: int | None = 10) -> list[dict[str, Any]]:
    ranked = sorted(collisions.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    return [
        {"node type": name, "packages": len(ids), "offered by": ", ".join(ids)}
        for name, ids in ranked
    ]


def _ensure_mappings(params: Parameters, reporter: Reporter) -> Path:
    path = params.path(params.input_mappings, "input_mappings")
    if not path.is_file():
        _mappings(dataclasses.replace(params, output_mappings=params.input_mappings), reporter)
    return path


def demo_workflow(document: dict[str, Any], cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """A UI-format workflow that shows every outcome: the most contested node types with the
    inputs their registry metadata lists (so their exact signatures match), one of them
    recorded with the pack the workflow used (`cnr_id`), two unique types, ComfyUI built-ins
    (a core and a frontend-only one), and a type no package provides."""
    collisions = stats.collisions(document)
    contested = sorted(collisions, key=lambda t: (-len(collisions[t]), t))[:3]
    unique = [t for t in stats.signatures_per_node_type(document) if t not in collisions][:2]
    inputs = _registry_inputs(cache, {*contested, *unique}) if cache else {}
    nodes = []
    for number, node_type in enumerate([*contested, *unique], 1):
        listed = [{"name": n, "type": t, "link": None} for n, t in inputs.get(node_type, [])]
        nodes.append({"id": number, "type": node_type, "inputs": listed, "properties": {}})
    if contested:  # the workflow says which pack it used: the plan honours it over the rank
        recorded = collisions[contested[0]][-1]
        nodes[0]["properties"] = {"cnr_id": recorded, "Node name for S&R": contested[0]}
    builtins = ["KSampler", "Reroute"]
    for node_type in [*builtins, MISSING_TYPE]:
        nodes.append({"id": len(nodes) + 1, "type": node_type, "inputs": [], "properties": {}})
    return {"last_node_id": len(nodes), "nodes": nodes, "links": [], "version": 0.4}


def _registry_inputs(cache: dict[str, Any], wanted: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(input name, type) pairs of the newest registry metadata for each wanted node type."""
    found: dict[str, list[tuple[str, str]]] = {}
    for package in cache.get("nodes", []):
        for version in package.get("versions_list", []):
            for comfy in version.get("comfy_nodes") or []:
                name = comfy.get("comfy_node_name")
                if name not in wanted or name in found:
                    continue
                try:
                    signature = registry_signature(comfy.get("input_types"))
                except SignatureError:
                    continue
                if signature:
                    found[name] = [tuple(part.rsplit(":", 1)) for part in signature.split("|")]
    return found


def _resolve(params: Parameters, reporter: Reporter) -> StepResult:
    """Notebook step 05: resolve a workflow to an installation plan."""
    mappings_path = _ensure_mappings(params, reporter)
    document = load_mappings(mappings_path)
    if params.workflow:
        workflow_path = params.path(params.workflow, "workflow")
        workflow: Any = load_workflow(workflow_path)
    else:
        cache_path = params.path(params.input_cache, "input_cache") if params.input_cache else None
        cache = cache_file.load_cache(cache_path) if cache_path and cache_path.is_file() else None
        workflow = demo_workflow(document, cache)
        workflow_path = params.directory() / "demo_workflow.json"
        files.write_atomic(workflow_path, files.dumps(workflow))
    resolution = resolve_workflow(workflow, document, label=workflow_path.name)
    output = params.path(params.output_resolution, "output_resolution")
    files.write_atomic(output, files.dumps(resolution.to_json()))
    result = StepResult(
        "resolution",
        {
            "workflow": f"{workflow_path} ({resolution.format} format)",
            "custom node types": len(resolution.types),
            "packs to install": len(resolution.packages),
            "unresolved": ", ".join(resolution.unresolved) or "none",
            "built-in types": len(resolution.builtin),
            "ComfyUI": _comfyui_line(resolution),
            "mappings": str(mappings_path),
            "resolution": str(output),
        },
        figures={"candidates": plots.candidates_per_node(_candidate_counts(resolution))},
        tables={
            "installation plan": _plan_rows(resolution),
            "unresolved node types": _unresolved_rows(resolution),
            "workflow nodes and candidate packages": _resolution_rows(resolution),
        },
    )
    result.headline = f"resolution: {summary_line(resolution)}; wrote {output}"
    result.save_figures(params.directory(), "05_resolve")
    return result


def _comfyui_line(resolution: Resolution) -> str:
    comfy = resolution.comfyui
    if comfy.get("sufficient"):
        return f"ComfyUI {comfy['sufficient']} or newer has every built-in type it uses"
    return "no dated built-in types"


def _candidate_counts(resolution: Resolution) -> dict[str, int]:
    return {t.node_type: len(t.candidates) for t in resolution.types}


def _plan_rows(resolution: Resolution) -> list[dict[str, Any]]:
    return [
        {
            "pack": p.package_id,
            "version": p.version or "-",
            "for node types": ", ".join(p.node_types),
            "why": p.why,
            "download": p.download_url or p.repository or "-",
            "notes": "; ".join(p.notes),
        }
        for p in resolution.packages
    ]


def _unresolved_rows(resolution: Resolution) -> list[dict[str, Any]]:
    return [
        {"node type": u.node_type, "reason": u.reason, "detail": u.detail}
        for u in resolution.unresolved_types
    ]


def _resolution_rows(resolution: Resolution) -> list[dict[str, Any]]:
    return [
        {
            "node type": t.node_type,
            "match": t.match,
            "chosen": t.package_id or f"unresolved ({t.reason})",
            "why": t.why,
            "candidates (rank package@version)": "; ".join(
                f"{c.rank}. {c.package_id}@{c.version or '-'}" for c in t.candidates
            )
            or "-",
        }
        for t in resolution.types
    ]


mappings = Step(
    _mappings,
    (PHASE_MAPPINGS,),
    ("max_versions", "checkpoint_interval", "output_dir", "input_cache", "output_mappings"),
)
resolve = Step(
    _resolve,
    (),
    ("workflow", "output_dir", "input_cache", "input_mappings", "output_resolution"),
)
# The step each bundled notebook runs (its parameters cell declares exactly `step.uses`).
BY_NOTEBOOK = {
    "01_nodes": nodes,
    "02_versions": versions,
    "03_metadata": metadata,
    "04_mappings": mappings,
    "05_resolve": resolve,
}
