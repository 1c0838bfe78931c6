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

from matplotlib.figure import Figure

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import (
    PHASE_METADATA,
    PHASE_NODES,
    PHASE_VERSIONS,
    PHASES,
    CacheOptions,
    RunSummary,
)
from registry_tools.fetch.run import run_cache_async
from registry_tools.mappings.build import PHASE as PHASE_MAPPINGS
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.mappings.load import load_mappings
from registry_tools.notebooks import cancel, plots, stats
from registry_tools.notebooks.cassette_sets import (
    StagedRecording,
    describe,
    fixed_options,
    phase_options,
    to_fetch,
)
from registry_tools.notebooks.results import StepResult
from registry_tools.notebooks.settings import Parameters, bundled_cassette_dir
from registry_tools.progress import Reporter
from registry_tools.replay.cassettes import MANIFEST, phase_cassettes
from registry_tools.replay.recording import REPLAY_BACKOFF, check_replayable
from registry_tools.resolve.builtins import builtin_nodes
from registry_tools.resolve.resolver import Resolution, resolve_workflow

__all__ = ["BY_NOTEBOOK", "Parameters", "Step", "StepResult", "bundled_cassette_dir", "fetch"]

MISSING_TYPE = "NotInTheRegistry"  # the demo workflow's deliberately unresolvable node
# Which notebook chooses each fetch option, for the message when another one needs it.
CHOSEN_IN = {"nodes_per_page": "01_nodes", "pages": "01_nodes", "max_versions": "03_metadata"}


@dataclass(frozen=True)
class Step:
    """A notebook's work, the progress bars (phases) it reports to, the parameters it uses."""

    run: Callable[[Parameters, Reporter], StepResult]
    phases: tuple[str, ...]
    uses: tuple[str, ...]

    def __call__(self, params: Parameters, reporter: Reporter) -> StepResult:
        return self.run(params, reporter)


# ---- phases 1-3 ----------------------------------------------------------------------------

CASSETTE_PARAMETERS = ("base_url", "cassette_dir", "record_mode")
CACHE_PATHS = ("output_dir", "input_cache", "output_cache")


def _fetch_step(phase: str) -> Callable[[Parameters, Reporter], StepResult]:
    """The step of notebooks 01-03: run `phase` (and the phases before it if needed)."""
    number = PHASES.index(phase) + 1

    def step(params: Parameters, reporter: Reporter) -> StepResult:
        output = params.path(params.output_cache, "output_cache")
        source = params.path(params.input_cache, "input_cache") if params.input_cache else None
        if source is not None and not source.is_file():
            source = None
        wanted = {phase} if number == 1 or source else set(PHASES[:number])
        fetched = fetch(params, wanted, source, output, reporter)
        summary = fetched.summary
        title = f"{', '.join(p for p in PHASES if p in wanted)} ({_mode(params)})"
        result = StepResult(
            title,
            _cache_summary(params, fetched),
            failures=list(summary.failures),
            notes=fetched.notes,
            headline=f"{title}: {summary.text()}",
            data=_cache_data(summary, fetched.cache),
        )
        result.figures = _PHASE_FIGURES[phase](summary, fetched.cache)
        result.figures["requests"] = plots.requests_over_time(summary.timeline)
        result.save_figures(params.directory(), f"{number:02d}_{phase.split('-')[1]}")
        return result

    return step


@dataclass
class Fetched:
    """What `fetch` did: the run's summary, the cache it wrote, the fetch options it used
    (and which of them the recording fixed), notes for the reader."""

    summary: RunSummary
    cache: dict[str, Any]
    options: dict[str, Any]
    fixed: set[str]
    notes: list[str]


def fetch(
    params: Parameters,
    phases: set[str],
    source: Path | None,
    output: Path,
    reporter: Reporter,
) -> Fetched:
    """Run the wanted phases through cassettes, recording or replaying.

    Replaying uses the fetch options the recording fixed; recording goes to a scratch copy of
    `cassette_dir` that replaces it only when the run succeeded (`StagedRecording`).
    """
    if not params.replay and not params.cassette_dir:
        raise UserError(
            f"record_mode {params.record_mode!r} would overwrite the bundled cassettes; "
            "set cassette_dir to a directory of your own to record"
        )
    directory = params.cassettes()
    recorded = _recorded(params, directory)
    options = _cache_options(params, phases, source, output, recorded)
    chosen = {name: getattr(options, name) for name in phase_options(phases)}
    ordered = [phase for phase in PHASES if phase in phases]
    if params.replay:
        check_replayable(directory, options)
        summary = _run(options, reporter, phase_cassettes(directory, "none"))
        notes = []
    else:
        with StagedRecording(directory, options.base_url, chosen) as staged:
            context = phase_cassettes(staged.directory, params.record_mode, staged.dataset)
            summary = _run(options, reporter, context)
            note = (
                staged.keep(ordered)
                if summary.ok
                else f"the recording had failures, so the cassettes in {directory} were left "
                "as they were"
            )
        notes = [note] if note else []
    cache = cache_file.load_cache(output) if summary.written else {"nodes": []}
    fixed = set(recorded) & set(chosen) if params.replay else set()
    return Fetched(summary, cache, chosen, fixed, notes)


def _recorded(params: Parameters, directory: Path) -> dict[str, Any]:
    """The options the set fixes: replaying needs its manifest; a set being recorded may be
    new (then nothing is fixed yet)."""
    if not params.replay and not (directory / MANIFEST).is_file():
        return {}
    return fixed_options(directory, PHASES)


def _cache_options(
    params: Parameters,
    phases: set[str],
    source: Path | None,
    output: Path,
    recorded: dict[str, Any],
) -> CacheOptions:
    chosen = {name: _fetch_option(params, name, recorded) for name in phase_options(phases)}
    return CacheOptions(
        output=output,
        input=source,
        nodes=PHASE_NODES in phases,
        versions=PHASE_VERSIONS in phases,
        metadata=PHASE_METADATA in phases,
        concurrency=params.concurrency,
        checkpoint_interval=params.checkpoint_interval,
        base_url=params.base_url,
        backoff=REPLAY_BACKOFF if params.replay else CacheOptions.backoff,
        progress=False,
        **{name: to_fetch(name, value) for name, value in chosen.items()},
    )


def _fetch_option(params: Parameters, name: str, recorded: dict[str, Any]) -> Any:
    """A fetch option's value: the recording's when replaying (a declared parameter must
    agree), else the notebook's, else the recording's when the notebook does not choose it."""
    value = getattr(params, name)
    if params.replay and name in recorded:
        if name in params.declared and value != recorded[name]:
            raise UserError(
                f"the cassettes in {params.cassettes()} were recorded with {name}="
                f"{recorded[name]}; replay needs the same value, got {name}={value}"
            )
        return recorded[name]
    if value is not None:
        return value
    if name in recorded:
        return recorded[name]
    raise UserError(
        f"this notebook has to run an earlier phase, but {name} is neither a parameter here "
        f"nor fixed by the cassettes in {params.cassettes()}: run {CHOSEN_IN[name]} first"
    )


def _run(options: CacheOptions, reporter: Reporter, context: Any) -> RunSummary:
    """`run_cache`, stopped at once if the kernel is interrupted (`cancel`)."""
    options.validate()
    return cancel.run_async(run_cache_async(options, reporter, context))


def _mode(params: Parameters) -> str:
    return "replay" if params.replay else f"record mode {params.record_mode}"


def _cache_summary(params: Parameters, fetched: Fetched) -> dict[str, Any]:
    summary = fetched.summary
    verb = "replayed from" if params.replay else f"recorded ({params.record_mode}) into"
    rows: dict[str, Any] = {"cassettes": f"{verb} {describe(params.cassettes())}"}
    if not params.replay:
        rows["registry"] = params.base_url
    rows["concurrency"] = params.concurrency
    for name, value in fetched.options.items():
        shown = "all" if value is None or value == -1 else value
        rows[name] = f"{shown} (fixed by the recording)" if name in fetched.fixed else shown
    rows.update(
        {
            "nodes": summary.nodes,
            "versions": summary.versions,
            "metadata entries": summary.metadata_entries,
            "requests": summary.requests,
            "retries": summary.retries,
            "failures": len(summary.failures),
            "seconds": f"{summary.elapsed:.2f}",
            "cache": f"{summary.output}" + ("" if summary.written else " (not written)"),
        }
    )
    return rows


def _cache_data(summary: RunSummary, cache: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every package, version, listing page and request time, for exploration."""
    pages = summary.phase_stats.get(PHASE_NODES, {}).get("pages", {})
    data = {
        "nodes": stats.node_rows(cache),
        "versions": stats.version_rows(cache),
        "requests": [{"seconds": at, "event": kind} for at, kind in summary.timeline],
    }
    if pages:
        data["pages"] = [{"page": page, "nodes": pages[page]} for page in sorted(pages)]
    return data


def _nodes_figures(summary: RunSummary, cache: dict[str, Any]) -> dict[str, Figure]:
    pages = summary.phase_stats.get(PHASE_NODES, {}).get("pages", {})
    return {"pages": plots.nodes_per_page(pages)}


def _versions_figures(summary: RunSummary, cache: dict[str, Any]) -> dict[str, Figure]:
    counts = list(stats.versions_per_package(cache).values())
    return {"versions": plots.versions_per_package(counts)}


def _metadata_figures(summary: RunSummary, cache: dict[str, Any]) -> dict[str, Figure]:
    share = stats.metadata_share(cache)
    coverage = {
        "with comfy nodes": share.with_nodes,
        "answered empty (404)": share.with_metadata - share.with_nodes,
        "not fetched": share.versions - share.with_metadata,
    }
    return {"coverage": plots.metadata_coverage(coverage)}


_PHASE_FIGURES = {
    PHASE_NODES: _nodes_figures,
    PHASE_VERSIONS: _versions_figures,
    PHASE_METADATA: _metadata_figures,
}

_FETCH_SETTINGS = ("concurrency", "checkpoint_interval", *CASSETTE_PARAMETERS, *CACHE_PATHS)
nodes = Step(
    _fetch_step(PHASE_NODES), (PHASE_NODES,), ("nodes_per_page", "pages", *_FETCH_SETTINGS)
)
versions = Step(_fetch_step(PHASE_VERSIONS), (PHASE_VERSIONS,), _FETCH_SETTINGS)
metadata = Step(_fetch_step(PHASE_METADATA), (PHASE_METADATA,), ("max_versions", *_FETCH_SETTINGS))


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


def demo_workflow(document: dict[str, Any]) -> dict[str, Any]:
    """An API-format workflow that shows every outcome: contested node types, unique ones,
    ComfyUI built-ins and a type no package provides."""
    collisions = stats.collisions(document)
    contested = sorted(collisions, key=lambda t: (-len(collisions[t]), t))[:3]
    unique = [t for t in stats.signatures_per_node_type(document) if t not in collisions][:2]
    builtins = sorted(builtin_nodes())[:2]
    types = [*contested, *unique, *builtins, MISSING_TYPE]
    return {str(i): {"class_type": t, "inputs": {}} for i, t in enumerate(types, 1)}


def _resolve(params: Parameters, reporter: Reporter) -> StepResult:
    """Notebook step 05: resolve a workflow's nodes to candidate packages."""
    mappings_path = _ensure_mappings(params, reporter)
    document = load_mappings(mappings_path)
    if params.workflow:
        workflow_path = params.path(params.workflow, "workflow")
        workflow = files.read_json(workflow_path, "workflow")
    else:
        workflow = demo_workflow(document)
        workflow_path = params.directory() / "demo_workflow.json"
        files.write_atomic(workflow_path, files.dumps(workflow))
    resolution = resolve_workflow(workflow, document)
    output = params.path(params.output_resolution, "output_resolution")
    files.write_atomic(output, files.dumps(resolution.to_json()))
    result = StepResult(
        "resolution",
        {
            "workflow": f"{workflow_path} ({resolution.format} format)",
            "custom node types": len(resolution.types),
            "unresolved": ", ".join(resolution.unresolved) or "none",
            "built-in types skipped": len(resolution.builtin),
            "mappings": str(mappings_path),
            "resolution": str(output),
        },
        figures={"candidates": plots.candidates_per_node(_candidate_counts(resolution))},
        tables={"workflow nodes and candidate packages": _resolution_rows(resolution)},
    )
    result.save_figures(params.directory(), "05_resolve")
    return result


def _candidate_counts(resolution: Resolution) -> dict[str, int]:
    return {t.node_type: len(t.candidates) for t in resolution.types}


def _resolution_rows(resolution: Resolution) -> list[dict[str, Any]]:
    return [
        {
            "node type": t.node_type,
            "match": t.match,
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
