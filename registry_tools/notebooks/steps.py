"""What each notebook does, as library functions: the notebooks only show a panel for them.

A step takes the notebook's `Parameters` and a progress `Reporter`, does its work through the
same library calls as the CLI (`phases.run_cache`, `mappings.build_mappings`,
`resolve.resolve_workflow`) and returns a `StepResult`: a compact summary table, detail
tables and matplotlib figures, which it also saves as PNG next to its data files.

Paths in the parameters are relative to `output_dir`, so the five notebooks chain through
one directory: 01 writes `cache.json`, 02 and 03 extend it, 04 writes `node_mappings.json`,
05 resolves a workflow against it. A step whose input file is missing first builds it from
the earlier phases, so each notebook also runs on its own.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from registry_tools.fetch.run import run_cache
from registry_tools.mappings.build import PHASE as PHASE_MAPPINGS
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.mappings.load import load_mappings
from registry_tools.mappings.signatures import SignatureError, registry_signature
from registry_tools.notebooks import plots, stats
from registry_tools.progress import Reporter
from registry_tools.replay.cassettes import bundled_cassettes, phase_cassettes
from registry_tools.replay.recording import REPLAY_BACKOFF, check_replayable
from registry_tools.resolve.plan import Resolution
from registry_tools.resolve.reading import load_workflow
from registry_tools.resolve.resolver import resolve_workflow

# Fetch options each phase sends to the registry: replaying cassettes needs the recorded ones.
MISSING_TYPE = "NotInTheRegistry"  # the demo workflow's deliberately unresolvable node


def bundled_cassette_dir() -> Path:
    """The bundled `sample` cassettes, wherever the kernel's working directory is."""
    return bundled_cassettes("sample")


@dataclass(frozen=True)
class Parameters:
    """A notebook's parameters (its `parameters` cell), as the steps and the panel use them.

    The fields without defaults are in every notebook, so `run-all -p concurrency 4` means
    the same everywhere; the path fields are only in the notebooks that use them.
    """

    concurrency: int
    max_versions: int  # newest N versions per node get metadata and feed mappings; -1 = all
    nodes_per_page: int
    pages: int  # listing pages to fetch; 0 = all
    checkpoint_interval: int
    base_url: str
    cassette_dir: str | None  # None = the bundled cassettes/sample (replay only)
    record_mode: str  # a vcrpy record mode: none = replay, offline
    output_dir: str
    input_cache: str | None = None
    output_cache: str | None = None
    output_mappings: str | None = None
    input_mappings: str | None = None
    workflow: str | None = None  # None = a demo workflow built from the mappings
    output_resolution: str | None = None

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> Parameters:
        """Pick this class's fields out of a notebook's globals (after the parameters cell)."""
        values = {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace}
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values and f.default is dataclasses.MISSING
        ]
        if missing:
            raise UserError(f"the parameters cell lacks {', '.join(missing)}")
        return cls(**values)

    def directory(self) -> Path:
        """`output_dir`, absolute and created."""
        directory = Path(self.output_dir).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def path(self, name: str | None, what: str) -> Path:
        """A path parameter, relative to `output_dir`."""
        if not name:
            raise UserError(f"parameter {what!r} is not set")
        return self.directory() / Path(name).expanduser()

    def cassettes(self) -> Path:
        return Path(self.cassette_dir).expanduser() if self.cassette_dir else bundled_cassette_dir()


@dataclass
class StepResult:
    """What a step shows: summary rows, detail tables, figures, and what failed."""

    title: str
    summary: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def problem(self) -> str:
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return f"{self.title}: {len(self.failures)} items failed: {self.failures[0]}{more}"

    def html(self) -> str:
        """The summary table (class `registry-summary`), then the detail tables."""
        rows = [{"": key, "value": value} for key, value in self.summary.items()]
        parts = [f"<h4>{html.escape(self.title)}</h4>", _table(rows, "registry-summary")]
        tables = dict(self.tables)
        if self.failures:
            tables["failures (retried by the next run)"] = [{"failed": f} for f in self.failures]
        for title, table in tables.items():
            parts += [f"<h5>{html.escape(title)}</h5>", _table(table, "registry-detail")]
        return "\n".join(parts)

    def show(self) -> None:
        """Display the tables and the figures in the current output."""
        from IPython.display import HTML, Image, display

        display(HTML(self.html()))
        for figure in self.figures.values():
            display(Image(data=plots.png_bytes(figure), format="png"))

    def save_figures(self, directory: Path, prefix: str) -> None:
        """Write each figure as `<prefix>-<name>.png` and list the files in the summary."""
        for name, figure in self.figures.items():
            path = directory / f"{prefix}-{name}.png"
            files.write_atomic(path, plots.png_bytes(figure))
            self.summary[f"plot {name}"] = str(path)


def _table(rows: list[dict[str, Any]], css_class: str) -> str:
    if not rows:
        return "<p><em>nothing to show</em></p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass(frozen=True)
class Step:
    """A notebook's work and the progress bars (phases) it reports to."""

    run: Callable[[Parameters, Reporter], StepResult]
    phases: tuple[str, ...]

    def __call__(self, params: Parameters, reporter: Reporter) -> StepResult:
        return self.run(params, reporter)


# ---- phases 1-3 ----------------------------------------------------------------------------


def _fetch_step(phase: str) -> Callable[[Parameters, Reporter], StepResult]:
    """The step of notebooks 01-03: run `phase` (and the phases before it if needed)."""
    number = PHASES.index(phase) + 1

    def step(params: Parameters, reporter: Reporter) -> StepResult:
        output = params.path(params.output_cache, "output_cache")
        source = params.path(params.input_cache, "input_cache") if params.input_cache else None
        if source is not None and not source.is_file():
            source = None
        wanted = {phase} if number == 1 or source else set(PHASES[:number])
        summary, cache = fetch(params, wanted, source, output, reporter)
        result = StepResult(
            f"{', '.join(p for p in PHASES if p in wanted)} ({_mode(params)})",
            _cache_summary(params, summary),
            failures=list(summary.failures),
        )
        result.figures = _PHASE_FIGURES[phase](summary, cache)
        result.figures["requests"] = plots.requests_over_time(summary.timeline)
        result.save_figures(params.directory(), f"{number:02d}_{phase.split('-')[1]}")
        return result

    return step


def fetch(
    params: Parameters,
    phases: set[str],
    source: Path | None,
    output: Path,
    reporter: Reporter,
) -> tuple[RunSummary, dict[str, Any]]:
    """Run the wanted phases through cassettes; the run summary and the cache it wrote."""
    directory = params.cassettes()
    if params.record_mode != "none" and not params.cassette_dir:
        raise UserError(
            f"record_mode {params.record_mode!r} would overwrite the bundled cassettes; "
            "set cassette_dir to a directory of your own to record"
        )
    replay = params.record_mode == "none"
    options = CacheOptions(
        output=output,
        input=source,
        nodes=PHASE_NODES in phases,
        versions=PHASE_VERSIONS in phases,
        metadata=PHASE_METADATA in phases,
        nodes_per_page=params.nodes_per_page,
        max_versions=params.max_versions,
        concurrency=params.concurrency,
        checkpoint_interval=params.checkpoint_interval,
        pages=params.pages or None,
        base_url=params.base_url,
        backoff=REPLAY_BACKOFF if replay else CacheOptions.backoff,
        progress=False,
    )
    if replay:
        check_replayable(directory, options)
    context = phase_cassettes(directory, params.record_mode)
    summary = run_cache(options, reporter=reporter, phase_context=context)
    cache = cache_file.load_cache(output) if summary.written else {"nodes": []}
    return summary, cache


def _mode(params: Parameters) -> str:
    return "replay" if params.record_mode == "none" else f"record mode {params.record_mode}"


def _cache_summary(params: Parameters, summary: RunSummary) -> dict[str, Any]:
    return {
        "cassettes": f"{params.cassettes()} ({_mode(params)})",
        "concurrency": params.concurrency,
        "nodes": summary.nodes,
        "versions": summary.versions,
        "metadata entries": summary.metadata_entries,
        "requests": summary.requests,
        "retries": summary.retries,
        "failures": len(summary.failures),
        "seconds": f"{summary.elapsed:.2f}",
        "cache": f"{summary.output}" + ("" if summary.written else " (not written)"),
    }


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

nodes = Step(_fetch_step(PHASE_NODES), (PHASE_NODES,))
versions = Step(_fetch_step(PHASE_VERSIONS), (PHASE_VERSIONS,))
metadata = Step(_fetch_step(PHASE_METADATA), (PHASE_METADATA,))


# ---- mappings and resolution ---------------------------------------------------------------


def _ensure_cache(params: Parameters, reporter: Reporter) -> Path:
    """The input cache; built by phases 1-3 first when it does not exist yet."""
    cache = params.path(params.input_cache, "input_cache")
    if not cache.is_file():
        summary, _ = fetch(params, set(PHASES), None, cache, reporter)
        if not summary.ok:
            raise UserError(f"building {cache} failed: {summary.failures[0]}")
    return cache


def _mappings(params: Parameters, reporter: Reporter) -> StepResult:
    """Notebook step 04: build `node_mappings.json`; collisions and signature counts."""
    cache = _ensure_cache(params, reporter)
    output = params.path(params.output_mappings, "output_mappings")
    options = MappingsOptions(
        cache=cache,
        output=output,
        max_versions=params.max_versions,
        checkpoint_interval=params.checkpoint_interval,
    )
    report = build_mappings(options, reporter)
    document = load_mappings(output)
    collisions = stats.collisions(document)
    result = StepResult(
        "mappings",
        {
            "cache": str(cache),
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
            "signatures": plots.signature_counts(
                list(stats.signatures_per_node_type(document).values())
            ),
        },
        tables={"most contested node types": _collision_rows(collisions)},
    )
    result.save_figures(params.directory(), "04_mappings")
    return result


def _collision_rows(collisions: dict[str, list[str]], top: int = 10) -> list[dict[str, Any]]:
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
    result.save_figures(params.directory(), "05_resolve")
    return result


def _comfyui_line(resolution: Resolution) -> str:
    comfy = resolution.comfyui
    if comfy.get("sufficient"):
        return f"its built-in types are all in ComfyUI {comfy['sufficient']}"
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


mappings = Step(_mappings, (PHASE_MAPPINGS,))
resolve = Step(_resolve, ())
