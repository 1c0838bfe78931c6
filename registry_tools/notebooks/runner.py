"""Headless notebook runner: papermill-style parameters, nbclient execution, one-line errors.

A notebook's defaults live in the cell tagged `parameters`; overrides go into a new cell tagged
`injected-parameters` right after it, written as Python literals built with `repr`, never as
code the caller supplied. That is papermill's convention, so the same notebooks also run
unchanged under papermill, and the parameters cell stays the one place that says what a
notebook accepts and of which type.

Working directory: the kernel starts in the directory the executed notebook is written to,
and `output_dir` (when the notebook declares it and the caller did not set it) is injected as
that directory, so the executed notebook, the cache, the mappings and the plots of a run all
end up side by side whatever the caller's current directory was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry_tools import files
from registry_tools.errors import UserError

if TYPE_CHECKING:  # nbformat is imported where used: `steps` (in every kernel) imports this package
    import nbformat
from registry_tools.notebooks.parameters import (
    check_parameters,
    inject_parameters,
    notebook_parameters,
    parse_cli_parameters,
    unknown_parameter,
)

KERNEL_NAME = "python3"
DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 7 * 24 * 3600.0  # a week: beyond it, timers overflow in the kernel client
DEFAULT_OUTPUT_DIR = Path("notebook-output")
BUNDLED_NOTEBOOKS = Path(__file__).resolve().parent / "bundled"
# Output metadata key under which a step's display carries its one-line summary.
OUTPUT_METADATA = "registry-tools"


class NotebookFailed(UserError):
    """A cell raised, timed out, or the kernel died: the notebook did not run to the end."""


@dataclass(frozen=True)
class NotebookRun:
    """Where one executed notebook went, how its wall time split, what its steps said."""

    name: str
    output: Path
    seconds: float
    kernel_start_seconds: float
    summaries: tuple[str, ...] = ()

    def line(self) -> str:
        """`NAME: summary (seconds)`, for a log."""
        said = "; ".join(self.summaries) or "done"
        return f"{self.name}: {said} ({self.seconds:.1f} s)"


@dataclass
class RunAllResult:
    """The executed notebooks of `run_all` and the files they left in `output_dir`."""

    output_dir: Path
    runs: list[NotebookRun] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(run.seconds for run in self.runs)

    @property
    def kernel_start_seconds(self) -> float:
        return sum(run.kernel_start_seconds for run in self.runs)

    def text(self) -> str:
        """Where everything is, for a person reading the terminal."""
        lines = [f"output directory: {self.output_dir}"]
        lines += [f"  notebook  {run.output}  ({run.seconds:.1f} s)" for run in self.runs]
        lines += [f"  data      {path}" for path in sorted(self.output_dir.glob("*.json"))]
        plots = sorted(self.output_dir.glob("*.png"))
        lines += [f"  plot      {plot}" for plot in plots]
        lines.append(
            f"{len(self.runs)} notebooks in {self.seconds:.1f} s "
            f"(kernel start {self.kernel_start_seconds:.1f} s)"
        )
        return "\n".join(lines)


# ---- finding notebooks ----------------------------------------------------------------------


def notebook_dir() -> Path:
    """The bundled notebooks, shipped inside the package (`notebooks/` of a checkout links
    there)."""
    return BUNDLED_NOTEBOOKS


def bundled_notebooks() -> list[Path]:
    """The numbered notebooks (`01_nodes.ipynb` ...), in the order `run_all` executes them."""
    found = sorted(notebook_dir().glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise UserError(
            f"no notebooks in {notebook_dir()}: this installation of registry-tools is "
            "incomplete; reinstall it"
        )
    return found


def find_notebook(name: str) -> Path:
    """An existing `.ipynb` path, or a bundled notebook name (`01_nodes` or `01_nodes.ipynb`)."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return path
    wanted = path.name.removesuffix(".ipynb")
    for candidate in bundled_notebooks():
        if candidate.stem == wanted:
            return candidate
    known = ", ".join(p.stem for p in bundled_notebooks())
    raise UserError(
        f"unknown notebook {name!r}: not an .ipynb file, nor a bundled notebook ({known})"
    )


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Load a notebook, turning every way it can be unreadable into a one-line UserError."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise UserError(f"notebook {path}: no such file") from None
    except (OSError, ValueError, nbformat.reader.NotJSONError) as exc:
        raise UserError(f"notebook {path}: cannot read it ({exc})") from None


# ---- execution ------------------------------------------------------------------------------


def strip_outputs(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs, execution counts and widget state; True when anything changed."""
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        changed |= bool(cell.outputs) or cell.execution_count is not None
        cell.outputs = []
        cell.execution_count = None
        for volatile in ("execution", "collapsed", "scrolled"):
            changed |= cell.metadata.pop(volatile, None) is not None
    return changed


def strip_files(names: Iterable[str], write: bool = True) -> list[Path]:
    """Strip outputs from notebooks (default: the bundled ones); the ones that had any.

    Every notebook that needs stripping is checked writable before the first is written, so
    a refusal changes nothing.
    """
    paths = [find_notebook(name) for name in names] or bundled_notebooks()
    dirty = []
    for path in paths:
        nb = read_notebook(path)
        if strip_outputs(nb):
            dirty.append((path, nb))
    if write:
        for path, _ in dirty:
            files.check_output(path, "notebook")
        for path, nb in dirty:
            write_notebook(nb, path)
    return [path for path, _ in dirty]


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook atomically: a reader never sees half of it."""
    import nbformat

    files.write_atomic(path, nbformat.writes(nb).encode("utf-8") + b"\n")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _kernel_config() -> Any:
    """Encrypt the loopback kernel channels when pyzmq can (and the kernelspec says it can)."""
    import zmq
    from traitlets.config import Config

    policy = "auto" if zmq.has("curve") else "disabled"
    return Config({"KernelManager": {"transport_encryption": policy}})


def check_timeout(timeout: float) -> float:
    """Seconds allowed per cell: a number above 0, at most `MAX_TIMEOUT`."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise UserError(f"--timeout expects a number of seconds, got {timeout!r}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UserError(f"--timeout {timeout:g}: must be above 0 and at most {MAX_TIMEOUT:g} s")
    return float(timeout)


def check_output_path(path: Path, what: str, source: Path | None = None) -> Path:
    """Refuse, before anything is created, an output inside the bundled notebooks or equal to
    its source notebook; then create its directory and check it as any output."""
    path = Path(path).absolute()
    files.check_name(path, what)
    if _inside_bundled(path):
        raise UserError(
            f"{what} {path}: is inside the bundled notebooks ({BUNDLED_NOTEBOOKS}), which it "
            "would overwrite; choose another directory"
        )
    files.make_directory(path.parent, what)
    files.check_output(path, what, inputs=[source])
    return path


def _inside_bundled(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(BUNDLED_NOTEBOOKS)
    except OSError:
        return False


def summaries(nb: nbformat.NotebookNode) -> tuple[str, ...]:
    """The one-line summaries the steps left in an executed notebook's outputs."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            said = output.get("metadata", {}).get(OUTPUT_METADATA, {}).get("summary")
            if isinstance(said, str):
                found.append(said)
    return tuple(found)


def _where(cell_index: int) -> str:
    return f"while running cell {cell_index + 1}" if cell_index >= 0 else "before the first cell"


class _Tracker:
    """nbclient hooks: which cell is running, and when the kernel became ready."""

    def __init__(self) -> None:
        self.cell_index = -1
        self.ready_at: float | None = None

    def on_notebook_start(self, notebook: Any) -> None:
        self.ready_at = time.perf_counter()

    def on_cell_start(self, cell: Any, cell_index: int) -> None:
        self.cell_index = cell_index


def execute_notebook(
    source: Path,
    output: Path,
    params: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    kernel_name: str = KERNEL_NAME,
) -> NotebookRun:
    """Run `source` with `params` (checked Python values) in a fresh kernel, write `output`.

    The executed notebook is written even when a cell fails, so its traceback can be read;
    the failure is then raised as one `NotebookFailed` line naming notebook and cell.
    """
    source = Path(source)
    timeout = check_timeout(timeout)
    nb = read_notebook(source)
    defaults = notebook_parameters(nb, source.name)
    params = check_parameters(params or {}, defaults, f"notebook {source.name}")
    output = check_output_path(output, "--output", source)
    if "output_dir" in defaults:
        params.setdefault("output_dir", str(output.parent))
        _check_output_dir(output.parent / Path(params["output_dir"]).expanduser())
    inject_parameters(nb, params, source.name)
    strip_outputs(nb)
    return _execute(nb, source.name, output, timeout, kernel_name)


def _check_output_dir(directory: Path) -> None:
    """`-p output_dir` must not put data files among the bundled notebooks either."""
    if _inside_bundled(directory):
        raise UserError(
            f"parameter 'output_dir' {directory}: is inside the bundled notebooks "
            f"({BUNDLED_NOTEBOOKS}); choose another directory"
        )


def _execute(
    nb: nbformat.NotebookNode, name: str, output: Path, timeout: float, kernel_name: str
) -> NotebookRun:
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from registry_tools.notebooks.widgets import HEADLESS_ENV

    tracker = _Tracker()
    client = NotebookClient(
        nb,
        config=_kernel_config(),
        kernel_name=kernel_name,
        timeout=None,
        timeout_func=lambda _cell: timeout,  # the `timeout` trait takes only whole seconds
        shutdown_kernel="immediate",  # the kernel is thrown away; a graceful stop costs ~0.7 s
        resources={"metadata": {"path": str(output.parent)}},
        on_notebook_start=tracker.on_notebook_start,
        on_cell_start=tracker.on_cell_start,
    )
    started = time.perf_counter()
    failure = None
    try:
        client.execute(env={**os.environ, HEADLESS_ENV: "1"})
    except NoSuchKernel:
        raise UserError(
            f"notebook {name}: no Jupyter kernel named {kernel_name!r} "
            "(see `jupyter kernelspec list`; `python -m ipykernel install --user` adds one)"
        ) from None
    except CellTimeoutError:
        failure = f"cell {tracker.cell_index + 1} timed out after {timeout:g} s"
    except CellExecutionError as exc:
        failure = f"cell {tracker.cell_index + 1} failed: {exc.ename}: {_one_line(exc.evalue)}"
    except DeadKernelError:
        failure = f"the kernel died {_where(tracker.cell_index)}"
    except RuntimeError as exc:  # nbclient's other ways of losing the kernel
        failure = f"the kernel failed {_where(tracker.cell_index)}: {_one_line(str(exc))}"
    finished = time.perf_counter()
    write_notebook(nb, output)
    if failure:
        raise NotebookFailed(f"notebook {name}: {failure} (executed notebook: {output})")
    ready = tracker.ready_at if tracker.ready_at is not None else started
    return NotebookRun(name, output, finished - started, ready - started, summaries(nb))


def run_notebook(
    name: str,
    output: Path | None = None,
    cli_params: Iterable[tuple[str, str]] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> NotebookRun:
    """`registry-tools notebook run`: find the notebook, parse `-p` pairs, execute it."""
    source = find_notebook(name)
    defaults = notebook_parameters(read_notebook(source), source.name)
    params = parse_cli_parameters(cli_params, defaults, f"notebook {source.name}")
    output = Path(output) if output else DEFAULT_OUTPUT_DIR / source.name
    return execute_notebook(source, output, params, timeout=timeout)


def run_all(
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    cli_params: Iterable[tuple[str, str]] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] | None = None,
) -> RunAllResult:
    """Execute the numbered notebooks in order into one directory, stopping at a failure.

    They chain through files there: 01 writes `cache.json`, 02 and 03 extend it, 04 writes
    `node_mappings.json`, 05 reads it. A `-p` name must be declared by at least one notebook
    and is passed to every notebook that declares it; all values are checked before the
    first kernel starts.
    """
    timeout = check_timeout(timeout)
    plans = _plan(bundled_notebooks(), list(cli_params))
    output_dir = Path(output_dir).absolute()
    for source, _ in plans:  # every output is checked before the first kernel starts
        check_output_path(output_dir / source.name, "--output-dir", source)
    result = RunAllResult(output_dir.resolve())
    for source, params in plans:
        if log:
            log(f"running {source.name} ...")
        run = execute_notebook(source, output_dir / source.name, params, timeout=timeout)
        result.runs.append(run)
        if log:
            log(run.line())
    return result


def _plan(notebooks: list[Path], pairs: list[tuple[str, str]]) -> list[tuple[Path, dict[str, Any]]]:
    """Each notebook with the `-p` values it declares; refuse names no notebook declares."""
    declared = {path: notebook_parameters(read_notebook(path), path.name) for path in notebooks}
    every_name = {name for defaults in declared.values() for name in defaults}
    for name, _ in pairs:
        if name not in every_name:
            raise unknown_parameter(name, every_name, "any notebook")
    return [
        (
            path,
            parse_cli_parameters(
                [(n, v) for n, v in pairs if n in defaults], defaults, f"notebook {path.name}"
            ),
        )
        for path, defaults in declared.items()
    ]
