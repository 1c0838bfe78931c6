"""The work of the fetch notebooks (01-03): the phases through cassettes, replayed or recorded.

Replaying uses the fetch options the recording fixed (`cassette_sets.fixed_options`; a
declared parameter must agree with them); recording goes through a `StagedRecording`, kept
only when the run succeeded and recorded something. The run itself is `run_cache_async`
under `cancel`, so an interrupt of the kernel stops it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

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
from registry_tools.notebooks import cancel, plots, stats
from registry_tools.notebooks.cassette_sets import (
    StagedRecording,
    describe,
    fixed_options,
    phase_options,
    to_fetch,
)
from registry_tools.notebooks.results import StepResult
from registry_tools.notebooks.settings import Parameters
from registry_tools.progress import Reporter
from registry_tools.replay.cassettes import MANIFEST, phase_cassettes
from registry_tools.replay.recording import REPLAY_BACKOFF, check_replayable

# Which notebook chooses each fetch option, for the message when another one needs it.
CHOSEN_IN = {"nodes_per_page": "01_nodes", "pages": "01_nodes", "max_versions": "03_metadata"}
CASSETTE_PARAMETERS = ("base_url", "cassette_dir", "record_mode")
CACHE_PATHS = ("output_dir", "input_cache", "output_cache")


def fetch_step(phase: str) -> Callable[[Parameters, Reporter], StepResult]:
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
