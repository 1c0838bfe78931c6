"""The library behind the notebooks, without a kernel: parameters, the control panel (which
controls, which of them fixed by the recording), progress, and what a result shows.

The panel is exercised through its widgets' values, as a browser would change them; the
real-browser test (`test_browser.py`) checks the same panel in JupyterLab.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from registry_tools.errors import UserError
from registry_tools.notebooks import panel, parameters, runner, steps, widgets
from registry_tools.notebooks.results import StepResult
from registry_tools.progress import NullReporter

FETCH_CONTROLS = {"concurrency", "nodes_per_page", "pages", "base_url", "cassette_dir"}
STEPS = steps.BY_NOTEBOOK


def _params(tmp_path: Path, notebook: str = "01_nodes", **changes: Any) -> steps.Parameters:
    nb = nbformat.read(runner.notebook_dir() / f"{notebook}.ipynb", as_version=4)
    values = parameters.notebook_parameters(nb, notebook)
    return steps.Parameters.from_namespace({**values, "output_dir": str(tmp_path), **changes})


def test_replay_refuses_fetch_options_the_cassettes_were_not_recorded_with(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="recorded with nodes_per_page=30; replay .* got nodes_"):
        steps.nodes(_params(tmp_path, nodes_per_page=10), NullReporter())
    with pytest.raises(UserError, match="recorded with pages=2; replay .* got pages=0"):
        steps.nodes(_params(tmp_path, pages=0), NullReporter())
    assert not list(tmp_path.iterdir())


def test_recording_over_the_bundled_cassettes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="would overwrite the bundled cassettes"):
        steps.nodes(_params(tmp_path, record_mode="all"), NullReporter())
    cassettes = str(steps.bundled_cassette_dir())
    with pytest.raises(UserError, match="is the bundled sample set"):
        steps.nodes(_params(tmp_path, record_mode="all", cassette_dir=cassettes), NullReporter())


def test_a_panel_needs_the_parameters_its_step_uses() -> None:
    with pytest.raises(UserError, match="the parameters cell lacks concurrency, checkpoint_"):
        panel.ControlPanel(steps.versions, steps.Parameters.from_namespace({"pages": 0}))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"concurrency": "8"}, "parameter 'concurrency' expects int, got '8'"),
        ({"concurrency": 0}, "parameter 'concurrency' must be at least 1, got 0"),
        ({"max_versions": 0}, "'max_versions' must be -1 \\(all\\) or at least 1"),
        ({"cassette_dir": 3}, "parameter 'cassette_dir' expects str"),
        ({"record_mode": "sometimes"}, "expected one of none, once, new_episodes, all"),
    ],
)
def test_parameters_are_checked_before_any_work(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        steps.Parameters.from_namespace(values)


def test_widget_reporter_applies_queued_events_only_when_pumped() -> None:
    reporter = widgets.WidgetReporter(["phase1-nodes"])
    reporter.start("phase1-nodes", 1)
    reporter.grow("phase1-nodes", 3)
    reporter.advance("phase1-nodes", 2)
    bar = reporter.widget.children[0].children[0]
    assert (bar.value, bar.max) == (0, 1)
    reporter.pump()
    assert (bar.value, bar.max) == (2, 4)
    reporter.finish("phase1-nodes")
    reporter.advance("later-phase")
    reporter.pump()
    assert (bar.value, bar.bar_style) == (4, "success")
    assert len(reporter.widget.children) == 2


def test_control_panel_runs_with_slider_values_and_fails_headless_on_failures() -> None:
    seen = []

    class Outcome:
        ok = False

        def show(self) -> None:
            seen.append("shown")

        def problem(self) -> str:
            return "step: 1 item failed: page 2"

    def step(params: Any, reporter: widgets.WidgetReporter) -> Outcome:
        reporter.start("p", 2)
        reporter.advance("p", 2)
        reporter.finish("p")
        seen.append(params.concurrency)
        return Outcome()

    shown = panel.ControlPanel(step, _params(Path("unused")))
    shown.controls["concurrency"].value = 3
    with pytest.raises(UserError, match="page 2"):
        shown.show(headless=True)  # headless runs with the parameters, as they are
    assert seen == [8, "shown"]
    assert not shown.button.disabled
    assert shown.show(headless=False) is None and seen == [8, "shown"]
    shown.run()  # Run in a browser: the controls' values
    assert seen == [8, "shown", 3]


def test_run_with_progress_passes_on_the_job_s_own_timeout_error() -> None:
    def job() -> None:
        raise TimeoutError("from the job")

    with pytest.raises(TimeoutError, match="from the job"):
        widgets.run_with_progress(job, widgets.WidgetReporter())


def test_a_step_result_lists_its_failures() -> None:
    result = steps.StepResult("phase2-versions", {"nodes": 3}, failures=["node a: HTTP 500"])
    assert not result.ok and "node a: HTTP 500" in result.html()
    assert result.problem() == "phase2-versions: 1 item failed: node a: HTTP 500"


# ---- which controls, and which of them the recording fixes ----------------------------------

RECORDING = {"base_url", "cassette_dir", "record_mode"}
CONTROLS = {
    "01_nodes": {"concurrency", "nodes_per_page", "pages", *RECORDING},
    "02_versions": {"concurrency", *RECORDING},
    "03_metadata": {"concurrency", "max_versions", *RECORDING},
    "04_mappings": {"max_versions"},
    "05_resolve": {"workflow"},
}


@pytest.mark.parametrize("name", list(STEPS))
def test_each_panel_shows_only_the_controls_its_step_uses(name: str) -> None:
    shown = panel.ControlPanel(STEPS[name], _params(Path("unused"), name))
    assert set(shown.controls) == CONTROLS[name]
    if name in ("04_mappings", "05_resolve"):  # they fetch nothing
        assert not set(shown.controls) & FETCH_CONTROLS
        assert not any(control.disabled for control in shown.controls.values())
        assert shown.status.value == "" and not shown.button.disabled


def test_replay_shows_the_recorded_options_fixed_and_recording_frees_them(tmp_path: Path) -> None:
    # the parameters cell says 10 and 0, but the bundled set was recorded with 30 and 2
    shown = panel.ControlPanel(steps.nodes, _params(tmp_path, nodes_per_page=10, pages=0))
    size, pages, mode = (shown.controls[n] for n in ("nodes_per_page", "pages", "record_mode"))
    assert (size.value, size.disabled, pages.value, pages.disabled) == (30, True, 2, True)
    assert shown.controls["base_url"].disabled and not shown.controls["concurrency"].disabled
    assert "fixed by the recording: nodes_per_page = 30, pages = 2" in shown.status.value
    assert "nodes_per_page=30 (fixed by the recording)" in shown.text()
    assert shown.values().nodes_per_page == 30

    mode.value = "all"
    assert (size.value, size.disabled, pages.value, pages.disabled) == (10, False, 0, False)
    assert shown.button.disabled and "set cassette_dir" in shown.status.value
    shown.controls["cassette_dir"].value = str(tmp_path / "mine")
    assert not shown.button.disabled and "Records from https://api.comfy.org" in shown.status.value

    mode.value = "none"  # a directory without cassettes cannot be replayed
    assert shown.button.disabled and "cassette manifest" in shown.status.value
    shown.controls["cassette_dir"].value = ""
    assert (size.value, size.disabled) == (30, True) and not shown.button.disabled


def test_a_free_control_keeps_what_the_user_set_after_a_run() -> None:
    class Done:
        ok = True

        def show(self) -> None: ...

        def problem(self) -> str:
            return ""

    shown = panel.ControlPanel(steps.nodes, _params(Path("unused")))
    shown.step = lambda params, reporter: Done()
    shown.controls["concurrency"].value = 5
    shown.run()
    assert shown.controls["concurrency"].value == 5 and not shown.button.disabled


# ---- what a result shows -----------------------------------------------------------------------


def _result() -> StepResult:
    return StepResult(
        "phase1-nodes (replay)",
        {"nodes": 2, "plot pages": "/x/01_nodes-pages.png"},
        tables={"top": [{"node type": "A", "packages": 2}]},
        data={"nodes": [{"id": "a", "downloads": 3}, {"id": "b", "downloads": 5}]},
        notes=["kept as it was"],
    )


def test_a_result_reads_as_plain_text_and_in_one_line() -> None:
    result = _result()
    assert result.text().splitlines() == [
        "phase1-nodes (replay)",
        "  nodes       2",
        "  plot pages  /x/01_nodes-pages.png",
        "note: kept as it was",
        "",
        "top",
        "  node type  packages",
        "  A          2",
    ]
    assert result.summary_line() == "phase1-nodes (replay): nodes 2 (note: kept as it was)"
    result.headline = "phase1-nodes (replay): 2 nodes"
    assert result.summary_line() == "phase1-nodes (replay): 2 nodes (note: kept as it was)"


def test_results_are_dataframes_for_exploration() -> None:
    frames = _result().frames()
    assert list(frames) == ["summary", "top", "nodes"]
    assert frames["nodes"]["downloads"].sum() == 8
    assert frames["summary"].loc["nodes", "value"] == 2


def test_without_pandas_a_result_says_how_to_get_dataframes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(UserError, match=r"need pandas: pip install pandas .*notebooks\]"):
        _result().frames()


def test_the_notebooks_never_import_pandas() -> None:
    """pandas is optional: only `frames()` imports it."""
    code = (
        "import sys, registry_tools.notebooks.steps, registry_tools.notebooks.panel;"
        "sys.exit('pandas' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_an_interrupt_marks_unfinished_bars() -> None:
    reporter = widgets.WidgetReporter(["a", "b"])
    reporter.start("a", 1)
    reporter.finish("a")
    reporter.start("b", 4)
    reporter.advance("b")
    reporter.pump()
    reporter.interrupted()
    reporter.advance("b", 3)  # the cancelled tasks still report their end: not shown
    reporter.finish("b")
    reporter.pump()
    (bar_a, _), (bar_b, label_b) = (row.children for row in reporter.widget.children)
    assert bar_a.bar_style == "success" and bar_b.bar_style == "danger"
    assert label_b.value == "1/4 interrupted"
