"""The notebooks and their headless runner: parameters, injection, failures, run-all, papermill.

Kernel starts cost about a second each, so the real notebooks run once (a module-scoped
run-all through the CLI) and every end-to-end assertion reads that one output directory;
the runner's failure modes use tiny throwaway notebooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from registry_tools.cli import main
from registry_tools.errors import UserError
from registry_tools.notebooks import parameters, plots, runner, steps
from registry_tools.replay.cassettes import read_manifest

STEPS = steps.BY_NOTEBOOK
PARAMS_SOURCE = "concurrency = 8\nname = 'x'\nrate = 0.5\noptional = None\n"


def make_notebook(path: Path, parameters: str | None, *cells: str) -> Path:
    """A throwaway notebook: an optional parameters cell, then code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ---- parameters (no kernel) ----------------------------------------------------------------


def test_parameters_cell_defaults_are_parsed_as_literals() -> None:
    source = "# comment\nconcurrency = 8\npages: int = 0\nurl = 'http://x'\nnothing = None\n"
    assert parameters.parse_parameters(source, "nb") == {
        "concurrency": 8,
        "pages": 0,
        "url": "http://x",
        "nothing": None,
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("concurrency = os.cpu_count()\n", "not a plain Python literal"),
        ("import os\n", "is not `name = literal`"),
        ("a = b = 1\n", "is not `name = literal`"),
        ("x = (\n", "parameters cell line"),
    ],
)
def test_parameters_cell_refuses_code(source: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parameters.parse_parameters(source, "nb")


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("4", 8, 4),
        ("-1", 8, -1),
        ("2", 0.5, 2.0),
        ("http://x:1/a", "u", "http://x:1/a"),
        ("none", "all", "none"),
        ("123", "s", "123"),
        ("'quoted'", "s", "quoted"),
        ("[1, 2]", None, [1, 2]),
        ("free text", None, "free text"),
        ("True", False, True),
    ],
)
def test_cli_values_are_literals_or_strings_where_strings_are_expected(
    text: str, default: Any, expected: Any
) -> None:
    assert parameters.parse_cli_value("p", text, default) == expected


@pytest.mark.parametrize(
    ("text", "default", "message"),
    [
        ("ten", 8, "parameter 'concurrency' expects int, got 'ten'"),
        ("4.5", 8, "parameter 'concurrency' expects int, got '4.5'"),
        ("True", 8, "parameter 'concurrency' expects int, got 'True'"),
        ("__import__('os')", 8, "expects int"),
        ("1", False, "expects bool"),
    ],
)
def test_cli_values_of_the_wrong_type_are_refused(text: str, default: Any, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parameters.parse_cli_value("concurrency", text, default)


def test_python_values_must_be_known_plain_literals_of_the_right_type() -> None:
    defaults = {"concurrency": 8, "rate": 0.5, "optional": None}
    assert parameters.check_parameters({"rate": 1, "optional": (1, "a")}, defaults, "nb") == {
        "rate": 1.0,
        "optional": (1, "a"),
    }
    with pytest.raises(UserError, match="unknown parameter 'concurency'.*'concurrency'"):
        parameters.check_parameters({"concurency": 1}, defaults, "notebook nb")
    with pytest.raises(UserError, match="not a plain Python literal"):
        parameters.check_parameters({"optional": object()}, defaults, "nb")
    with pytest.raises(UserError, match="not a plain Python literal"):
        parameters.check_parameters({"rate": math.nan}, defaults, "nb")


def test_injected_cell_follows_the_parameters_cell_and_replaces_an_old_one(
    tmp_path: Path,
) -> None:
    path = make_notebook(tmp_path / "t.ipynb", PARAMS_SOURCE, "print(name)")
    nb = nbformat.read(path, as_version=4)
    parameters.inject_parameters(nb, {"concurrency": 1}, "t")
    sneaky = "x'); import os; ('"
    parameters.inject_parameters(nb, {"name": sneaky, "optional": [1, None]}, "t")
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and nb.cells[1] is injected[0]
    namespace: dict[str, Any] = {}
    exec(injected[0].source, namespace)  # the literal text, evaluated: a string stays a string
    assert namespace["name"] == sneaky and namespace["optional"] == [1, None]
    assert "concurrency" not in namespace
    nbformat.validate(nb)


def test_a_notebook_without_parameters_cell_is_refused(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "bare.ipynb", None, "print(1)")
    argv = ["notebook", "run", str(path), "-p", "concurrency", "2", "--output", str(tmp_path / "o")]
    code, _, err = run_cli(*argv)
    assert code == 2 and not (tmp_path / "o").exists()
    assert "notebook bare.ipynb: no code cell tagged 'parameters'" in err


def test_unknown_notebook_lists_the_bundled_ones() -> None:
    code, _, err = run_cli("notebook", "run", "06_nope")
    assert code == 2
    assert "unknown notebook '06_nope'" in err and "01_nodes" in err and "05_resolve" in err


def test_wrong_type_on_a_bundled_notebook_is_refused_before_any_kernel(tmp_path: Path) -> None:
    out = tmp_path / "x.ipynb"
    code, _, err = run_cli(
        "notebook", "run", "01_nodes", "-p", "concurrency", "ten", "--output", str(out)
    )
    assert code == 2
    assert err.strip() == "registry-tools: error: parameter 'concurrency' expects int, got 'ten'"
    assert not out.exists()


def test_run_all_refuses_a_parameter_no_notebook_declares(tmp_path: Path) -> None:
    code, _, err = run_cli(
        "notebook", "run-all", "--output-dir", str(tmp_path), "-p", "concurency", "2"
    )
    assert code == 2
    assert "unknown parameter 'concurency' for any notebook; did you mean 'concurrency'?" in err
    assert not list(tmp_path.iterdir())


# ---- committed notebooks -------------------------------------------------------------------


def test_committed_notebooks_carry_no_outputs() -> None:
    assert runner.strip_files([], write=False) == [], "run `registry-tools notebook strip`"


@pytest.mark.parametrize("path", runner.bundled_notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_are_thin_and_declare_what_their_step_uses(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert parameters.parameters_cell_index(nb, path.name) == 0
    assert set(parameters.notebook_parameters(nb, path.name)) == set(STEPS[path.stem].uses)
    code = [c for c in nb.cells[1:] if c.cell_type == "code"]
    assert all(len(c.source.splitlines()) <= 6 for c in code), "logic belongs in the library"


@pytest.mark.parametrize("path", runner.bundled_notebooks(), ids=lambda p: p.stem)
def test_notebook_defaults_replay_the_bundled_cassettes(path: Path) -> None:
    defaults = parameters.notebook_parameters(nbformat.read(path, as_version=4), path.name)
    recorded = read_manifest(steps.bundled_cassette_dir())["dataset"]["fetch"]
    if "record_mode" in defaults:
        assert defaults["record_mode"] == "none" and defaults["cassette_dir"] == ""
    for name in ("nodes_per_page", "pages", "max_versions"):
        if name in defaults:
            assert defaults[name] == recorded[name], name


@pytest.mark.parametrize("path", runner.bundled_notebooks(), ids=lambda p: p.stem)
def test_papermill_sees_every_parameter_with_its_type(path: Path) -> None:
    """`papermill --help-notebook` listed 6 of 11: comments holding `=` hid the others."""
    import papermill  # a test dependency
    from click.testing import CliRunner
    from papermill.cli import papermill as papermill_cli

    nb = nbformat.read(path, as_version=4)
    ours = parameters.notebook_parameters(nb, path.name)
    seen = papermill.inspect_notebook(str(path))
    assert list(seen) == list(ours)
    for name, default in ours.items():
        assert seen[name]["inferred_type_name"] == type(default).__name__, name
        assert seen[name]["help"], f"{name} has no help text"
    listed = CliRunner().invoke(papermill_cli, ["--help-notebook", str(path)]).output
    assert all(f"  {name}: " in listed for name in ours), listed


def test_bundled_notebooks_are_the_five_steps_in_order() -> None:
    names = [p.stem for p in runner.bundled_notebooks()]
    assert names == ["01_nodes", "02_versions", "03_metadata", "04_mappings", "05_resolve"]


# ---- the runner with throwaway notebooks (one kernel each) ---------------------------------


def test_injected_values_reach_a_kernel_started_in_the_output_directory(tmp_path: Path) -> None:
    source = make_notebook(
        tmp_path / "echo.ipynb",
        PARAMS_SOURCE + "output_dir = '.'\n",
        "import json, os\n"
        "json.dump({'c': concurrency, 'o': optional, 'cwd': os.getcwd(), 'out': output_dir,"
        " 'headless': os.environ.get('REGISTRY_TOOLS_HEADLESS')}, open('seen.json', 'w'))",
    )
    out = tmp_path / "run" / "echo.ipynb"
    code, stdout, _ = run_cli(
        "notebook", "run", str(source), "-p", "concurrency", "3", "-p", "optional", "{'a': 1}",
        "--output", str(out),
    )  # fmt: skip
    assert code == 0 and str(out) in stdout
    seen = json.loads((tmp_path / "run" / "seen.json").read_text())
    assert seen == {
        "c": 3,
        "o": {"a": 1},
        "cwd": str(out.parent),
        "out": str(out.parent),
        "headless": "1",
    }
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[1].metadata["tags"] == ["injected-parameters"]


def test_the_first_failing_cell_is_named_and_the_executed_notebook_kept(tmp_path: Path) -> None:
    source = make_notebook(
        tmp_path / "02_fail.ipynb", PARAMS_SOURCE, "x = 1", "1 / (concurrency - 3)", "never = 1"
    )
    out = tmp_path / "out.ipynb"
    code, _, err = run_cli(
        "notebook", "run", str(source), "-p", "concurrency", "3", "--output", str(out)
    )
    assert code == 1
    assert (
        "registry-tools: error: notebook 02_fail.ipynb: cell 4 failed: "
        "ZeroDivisionError: division by zero" in err
    )
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[3].outputs[0]["ename"] == "ZeroDivisionError"
    assert executed.cells[4].outputs == []


def test_a_dying_kernel_is_reported_with_a_non_zero_exit(tmp_path: Path) -> None:
    source = make_notebook(tmp_path / "dies.ipynb", PARAMS_SOURCE, "import os\nos._exit(3)")
    code, _, err = run_cli("notebook", "run", str(source), "--output", str(tmp_path / "o.ipynb"))
    assert code == 1
    assert "notebook dies.ipynb: the kernel died while running cell 3" in err


PLOTS = [
    lambda: plots.nodes_per_page({1: 30, 2: 12}),
    lambda: plots.versions_per_package([1, 3, 3, 0]),
    lambda: plots.metadata_coverage({"with comfy nodes": 3, "not fetched": 1}),
    lambda: plots.requests_over_time([(0.0, "request"), (0.1, "retry"), (0.2, "request")]),
    lambda: plots.collisions({"A": 3, "B": 2}),
    lambda: plots.signature_counts([1, 1, 2]),
    lambda: plots.candidates_per_node({"A": 2, "Missing": 0}),
]


@pytest.mark.parametrize("make", PLOTS)
def test_plots_give_the_same_png_for_the_same_data(make) -> None:
    png = plots.png_bytes(make())
    assert png.startswith(b"\x89PNG") and png == plots.png_bytes(make())


# ---- the real notebooks, end to end (one run-all shared by the assertions) -----------------


@pytest.fixture(scope="module")
def run_all(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path, str]:
    directory = tmp_path_factory.mktemp("run-all")
    code, stdout, stderr = run_cli(
        "notebook", "run-all", "--output-dir", str(directory), "-p", "concurrency", "4"
    )
    return code, stdout, directory, stderr


def test_run_all_replays_offline_and_says_where_everything_is(run_all) -> None:
    code, stdout, directory, _ = run_all
    assert code == 0, stdout
    for name in ("cache.json", "node_mappings.json", "01_nodes.ipynb", "05_resolve.ipynb"):
        assert f"{directory / name}" in stdout
    assert len(list(directory.glob("*.png"))) >= 9
    assert f"{directory / '04_mappings-collisions.png'}" in stdout


def test_run_all_prints_each_notebook_s_summary_line(run_all) -> None:
    _, _, directory, stderr = run_all
    said = {line.split(": ", 1)[0]: line for line in stderr.splitlines() if ": " in line}
    cache = json.loads((directory / "cache.json").read_text())
    nodes, entries = cache["node_count"], cache["metadata_entries"]
    versions = sum(len(node["versions_list"]) for node in cache["nodes"])
    expected = {
        "01_nodes.ipynb": f"phase1-nodes (replay): {nodes} nodes, 0 versions",
        "02_versions.ipynb": f"phase2-versions (replay): {nodes} nodes, {versions} versions",
        "03_metadata.ipynb": f"phase3-metadata (replay): {nodes} nodes, {versions} versions, "
        f"{entries} metadata entries",
        "04_mappings.ipynb": f"mappings: {nodes} packages, ",
        "05_resolve.ipynb": "resolution: ",
    }
    for name, start in expected.items():
        assert said[name].startswith(f"{name}: {start}"), stderr
    assert f"wrote {directory / 'node_mappings.json'}" in said["04_mappings.ipynb"]


def test_run_all_chains_the_data_files(run_all) -> None:
    _, _, directory, _ = run_all
    cache = json.loads((directory / "cache.json").read_text())
    assert cache["node_count"] > 0 and cache["metadata_entries"] > 0
    mappings = json.loads((directory / "node_mappings.json").read_text())
    assert mappings["stats"]["packages"] == cache["node_count"] and mappings["mappings"]
    resolution = json.loads((directory / "resolution.json").read_text())
    assert resolution["unresolved"] == [steps.MISSING_TYPE]


@pytest.mark.parametrize("name", [p.stem for p in runner.bundled_notebooks()])
def test_executed_notebooks_show_a_summary_and_plots_without_errors(run_all, name: str) -> None:
    _, _, directory, _ = run_all
    executed = nbformat.read(directory / f"{name}.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert 'class="registry-summary"' in html
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # read as text (a CI log), every output says something: no `<... object>` placeholders
    rich = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    texts = [o.data.get("text/plain", "") for o in rich]
    assert all(texts) and not [t for t in texts if "object" in t and t.startswith("<")], texts
    assert texts[0].startswith("control panel: ")
    assert [t for t in texts if t.startswith("[figure: ")]
    assert runner.summaries(executed)
    injected = executed.cells[1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert str(directory) in injected.source
    assert ("concurrency = 4" in injected.source) == ("concurrency" in STEPS[name].uses)


def test_notebooks_run_unchanged_under_papermill(tmp_path: Path) -> None:
    import papermill  # a test dependency

    out = tmp_path / "01_nodes.ipynb"
    papermill.execute_notebook(
        str(runner.notebook_dir() / "01_nodes.ipynb"),
        str(out),
        parameters={"output_dir": str(tmp_path), "concurrency": 2},
        cwd=str(tmp_path),
        progress_bar=False,
    )
    cache = json.loads((tmp_path / "cache.json").read_text())
    assert cache["node_count"] > 0
    assert (tmp_path / "01_nodes-pages.png").is_file()


# ---- bad input: one line on stderr, exit 2, no file changed (issue 13) ---------------------


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("registry-tools: error: "), err
    return lines[0]


def tree(directory: Path) -> dict[str, str]:
    """Every file under `directory` with a digest of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_an_output_whose_parent_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "01.ipynb"
    code, _, err = run_cli("notebook", "run", "01_nodes", "--output", str(out))
    assert code == 2
    assert "not a directory" in one_error_line(err) and "afile is a file" in err
    assert tree(tmp_path) == {"afile": hashlib.sha256(b"x").hexdigest()}


def test_run_all_into_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("notebook", "run-all", "--output-dir", str(tmp_path / "afile"))
    assert code == 2 and "--output-dir" in one_error_line(err) and "not a directory" in err
    assert (tmp_path / "afile").read_text() == "x" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("through_link", [False, True], ids=["package", "checkout-link"])
def test_run_all_into_the_bundled_notebooks_is_refused(through_link: bool) -> None:
    directory = runner.notebook_dir()
    if through_link:
        directory = Path(__file__).resolve().parents[1] / "notebooks"
        if not directory.is_symlink():
            pytest.skip("not a checkout with the notebooks/ link")
    before = tree(runner.notebook_dir())
    code, _, err = run_cli("notebook", "run-all", "--output-dir", str(directory))
    assert code == 2 and "inside the bundled notebooks" in one_error_line(err)
    assert tree(runner.notebook_dir()) == before


def test_a_parameter_putting_data_files_among_the_bundled_notebooks_is_refused(
    tmp_path: Path,
) -> None:
    before = tree(runner.notebook_dir())
    out = tmp_path / "01.ipynb"
    argv = ["notebook", "run", "01_nodes", "--output", str(out)]
    code, _, err = run_cli(*argv, "-p", "output_dir", str(runner.notebook_dir()))
    assert code == 2 and "parameter 'output_dir'" in one_error_line(err)
    assert tree(runner.notebook_dir()) == before and not out.exists()


def test_running_a_notebook_over_itself_is_refused(tmp_path: Path) -> None:
    source = make_notebook(tmp_path / "my.ipynb", PARAMS_SOURCE, "print(1)")
    before = tree(tmp_path)
    code, _, err = run_cli("notebook", "run", str(source), "--output", str(source))
    assert code == 2 and "is the input" in one_error_line(err)
    assert tree(tmp_path) == before


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Act as `nobody` while the block runs when root (root may write anywhere)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def executed(path: Path) -> Path:
    """A throwaway notebook with an output, as if it had been run."""
    make_notebook(path, PARAMS_SOURCE, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nbformat.write(nb, path)
    return path


def test_strip_changes_nothing_when_one_notebook_cannot_be_written() -> None:
    base = Path(tempfile.mkdtemp(prefix="registry-tools-strip-"))
    try:
        base.chmod(0o755)
        (base / "ok").mkdir()
        (base / "ok").chmod(0o777)  # writable by whoever runs the command
        (base / "locked").mkdir(mode=0o755)
        notebooks = [executed(base / "ok" / "a.ipynb"), executed(base / "locked" / "b.ipynb")]
        for path in notebooks:
            path.chmod(0o644)
        (base / "locked").chmod(0o555)
        before = tree(base)
        assert run_cli("notebook", "strip", "--check", *map(str, notebooks))[0] == 1
        with unprivileged():
            code, _, err = run_cli("notebook", "strip", *map(str, notebooks))
        assert code == 2 and "locked is not writable" in one_error_line(err)
        assert tree(base) == before, "the writable notebook was stripped anyway"
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)


def test_a_fractional_timeout_is_accepted(tmp_path: Path) -> None:
    source = make_notebook(tmp_path / "quick.ipynb", PARAMS_SOURCE, "x = 1")
    out = tmp_path / "out.ipynb"
    code, _, err = run_cli("notebook", "run", str(source), "--timeout", "2.5", "--output", str(out))
    assert code == 0, err
    assert out.is_file()


@pytest.mark.parametrize("value", [0, -1, math.inf, 1e9, True, "5"])
def test_a_timeout_out_of_range_is_refused_before_any_kernel(value: Any) -> None:
    with pytest.raises(UserError, match="--timeout"):
        runner.check_timeout(value)
