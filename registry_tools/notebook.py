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

import ast
import difflib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import store
from .errors import UserError

if TYPE_CHECKING:  # nbformat is imported where used: `steps` (in every kernel) imports REPO_ROOT
    import nbformat

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
KERNEL_NAME = "python3"
DEFAULT_TIMEOUT = 600.0
DEFAULT_OUTPUT_DIR = Path("notebook-output")
REPO_ROOT = Path(__file__).resolve().parent.parent


class NotebookFailed(UserError):
    """A cell raised, timed out, or the kernel died: the notebook did not run to the end."""


@dataclass(frozen=True)
class NotebookRun:
    """Where one executed notebook went and how its wall time split."""

    name: str
    output: Path
    seconds: float
    kernel_start_seconds: float


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
    """The bundled notebooks: `notebooks/` of the checkout this package is imported from."""
    return REPO_ROOT / "notebooks"


def bundled_notebooks() -> list[Path]:
    """The numbered notebooks (`01_nodes.ipynb` ...), in the order `run_all` executes them."""
    found = sorted(notebook_dir().glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise UserError(
            f"no notebooks in {notebook_dir()}: they live in the source checkout, "
            "so install it editable (pip install -e .)"
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


# ---- parameters -----------------------------------------------------------------------------


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameters_cell_index(nb: nbformat.NotebookNode, name: str) -> int:
    """Index of the cell tagged `parameters`; a notebook without one cannot take parameters."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in _tags(cell):
            return index
    raise UserError(
        f"notebook {name}: no code cell tagged {PARAMETERS_TAG!r} "
        "(tag the cell that holds the defaults, as papermill expects)"
    )


def parse_parameters(source: str, name: str) -> dict[str, Any]:
    """The defaults of a parameters cell: `name = literal` lines only, evaluated with `ast`.

    Anything else (calls, imports, expressions) is refused: the defaults decide which values a
    caller may pass and of which type, so they must be readable without running code.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UserError(f"notebook {name}: parameters cell line {exc.lineno}: {exc.msg}") from None
    defaults: dict[str, Any] = {}
    for statement in tree.body:
        target, value = _assignment(statement)
        if target is None or value is None:
            raise UserError(
                f"notebook {name}: parameters cell line {statement.lineno}: "
                f"{ast.unparse(statement)!r} is not `name = literal`"
            )
        try:
            defaults[target] = ast.literal_eval(value)
        except ValueError:
            raise UserError(
                f"notebook {name}: parameter {target!r} default "
                f"{ast.unparse(value)!r} is not a plain Python literal"
            ) from None
    return defaults


def _assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
    ):
        return statement.targets[0].id, statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def notebook_parameters(nb: nbformat.NotebookNode, name: str) -> dict[str, Any]:
    """The defaults declared by a notebook's parameters cell."""
    return parse_parameters(nb.cells[parameters_cell_index(nb, name)].source, name)


def is_literal(value: Any) -> bool:
    """True when `repr(value)` is Python source that `ast.literal_eval` gives back unchanged."""
    if value is None or isinstance(value, bool | int | str | bytes):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple | set):
        return all(is_literal(item) for item in value)
    if isinstance(value, dict):
        return all(is_literal(k) and is_literal(v) for k, v in value.items())
    return False


def _type_name(default: Any) -> str:
    return type(default).__name__


def check_value(name: str, value: Any, default: Any, shown: str | None = None) -> Any:
    """`value` if it is a plain literal of the default's type (an int is fine for a float).

    A default of None accepts any literal. `shown` is how the value is quoted in the error
    (the user's text for command-line values).
    """
    shown = shown if shown is not None else repr(value)
    if not is_literal(value):
        raise UserError(f"parameter {name!r}: {shown} is not a plain Python literal")
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise UserError(f"parameter {name!r} expects {_type_name(default)}, got {shown}")
    return value


_NOT_A_LITERAL = object()


def parse_cli_value(name: str, text: str, default: Any) -> Any:
    """A `-p name value` value: a Python literal, or the text itself where a string is expected.

    `-p concurrency 4` gives 4; `-p base_url http://x` gives the string (the default is one);
    `-p concurrency ten` is refused because 'ten' is not an int literal.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = _NOT_A_LITERAL
    if isinstance(default, str) and not isinstance(value, str):
        return text
    if value is _NOT_A_LITERAL:
        if default is None:
            return text
        raise UserError(f"parameter {name!r} expects {_type_name(default)}, got {text!r}")
    return check_value(name, value, default, shown=repr(text))


def _unknown(name: str, known: Iterable[str], where: str) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (parameters: {', '.join(known)})"
    return UserError(f"unknown parameter {name!r} for {where}{hint}")


def check_parameters(
    params: Mapping[str, Any], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Validate Python values against a notebook's defaults: known names, literal, right type."""
    checked = {}
    for name, value in params.items():
        if name not in defaults:
            raise _unknown(name, defaults, where)
        checked[name] = check_value(name, value, defaults[name])
    return checked


def parse_cli_parameters(
    pairs: Iterable[tuple[str, str]], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Turn `-p name value` pairs into checked Python values."""
    parsed = {}
    for name, text in pairs:
        if name not in defaults:
            raise _unknown(name, defaults, where)
        parsed[name] = parse_cli_value(name, text, defaults[name])
    return parsed


def inject_parameters(nb: nbformat.NotebookNode, params: Mapping[str, Any], name: str) -> None:
    """Put an `injected-parameters` cell after the parameters cell (replacing an old one)."""
    from nbformat.v4 import new_code_cell

    nb.cells = [cell for cell in nb.cells if INJECTED_TAG not in _tags(cell)]
    index = parameters_cell_index(nb, name)
    lines = ["# Parameters injected by registry-tools"]
    lines += [f"{key} = {value!r}" for key, value in params.items()]
    cell = new_code_cell("\n".join(lines) + "\n")
    cell.metadata["tags"] = [INJECTED_TAG]
    if nb.nbformat_minor < 5:
        del cell["id"]  # cell ids arrived with nbformat 4.5
    nb.cells.insert(index + 1, cell)


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
    """Strip outputs from notebooks (default: the bundled ones); the ones that had any."""
    paths = [find_notebook(name) for name in names] or bundled_notebooks()
    dirty = []
    for path in paths:
        nb = read_notebook(path)
        if strip_outputs(nb):
            dirty.append(path)
            if write:
                write_notebook(nb, path)
    return dirty


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook atomically: a reader never sees half of it."""
    import nbformat

    store.write_atomic(path, nbformat.writes(nb).encode("utf-8") + b"\n")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _kernel_config() -> Any:
    """Encrypt the loopback kernel channels when pyzmq can (and the kernelspec says it can)."""
    import zmq
    from traitlets.config import Config

    policy = "auto" if zmq.has("curve") else "disabled"
    return Config({"KernelManager": {"transport_encryption": policy}})


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
    source, output = Path(source), Path(output).resolve()
    store.check_writable(output, "--output")
    nb = read_notebook(source)
    defaults = notebook_parameters(nb, source.name)
    params = check_parameters(params or {}, defaults, f"notebook {source.name}")
    if "output_dir" in defaults and "output_dir" not in params:
        params["output_dir"] = str(output.parent)
    inject_parameters(nb, params, source.name)
    strip_outputs(nb)
    return _execute(nb, source.name, output, timeout, kernel_name)


def _execute(
    nb: nbformat.NotebookNode, name: str, output: Path, timeout: float, kernel_name: str
) -> NotebookRun:
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from .widgets import HEADLESS_ENV

    tracker = _Tracker()
    client = NotebookClient(
        nb,
        config=_kernel_config(),
        kernel_name=kernel_name,
        timeout=timeout,
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
    return NotebookRun(name, output, finished - started, ready - started)


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
    output.parent.mkdir(parents=True, exist_ok=True)
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
    plans = _plan(bundled_notebooks(), list(cli_params))
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    result = RunAllResult(output_dir)
    for source, params in plans:
        if log:
            log(f"running {source.name} ...")
        run = execute_notebook(source, output_dir / source.name, params, timeout=timeout)
        result.runs.append(run)
        if log:
            log(f"{source.name}: done in {run.seconds:.1f} s")
    return result


def _plan(notebooks: list[Path], pairs: list[tuple[str, str]]) -> list[tuple[Path, dict[str, Any]]]:
    """Each notebook with the `-p` values it declares; refuse names no notebook declares."""
    declared = {path: notebook_parameters(read_notebook(path), path.name) for path in notebooks}
    every_name = {name for defaults in declared.values() for name in defaults}
    for name, _ in pairs:
        if name not in every_name:
            raise _unknown(name, every_name, "any notebook")
    return [
        (
            path,
            parse_cli_parameters(
                [(n, v) for n, v in pairs if n in defaults], defaults, f"notebook {path.name}"
            ),
        )
        for path, defaults in declared.items()
    ]
