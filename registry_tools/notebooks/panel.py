"""A notebook's control panel: a control for each parameter its step uses, a Run button,
progress bars and a results area.

Only the parameters the step uses get a control (`Step.uses`): 04 and 05 show no fetch
controls. When replaying, the fetch options the recording fixed (`cassette_sets`) show their
recorded value and are disabled, as is `base_url` (never contacted); switching `record_mode`
to a recording mode enables them, with the notebook's values. A status line says what Run
will do: replay which set, or record from where into where.

Headless (see `widgets`), showing the panel runs the step at once with the parameters as
they are, so a parameter that contradicts the recording is an error there, not silently
replaced by the recorded value.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w
from IPython.display import display

from registry_tools.errors import UserError
from registry_tools.fetch.options import PHASES
from registry_tools.notebooks import cancel
from registry_tools.notebooks.cassette_sets import describe, fixed_options
from registry_tools.notebooks.settings import Parameters
from registry_tools.notebooks.widgets import Outcome, WidgetReporter, is_headless, run_with_progress
from registry_tools.replay.cassettes import RECORD_MODES

# Slider bounds per parameter; a value outside them widens the slider to include it.
SLIDERS = {
    "concurrency": (1, 64),
    "nodes_per_page": (1, 100),
    "pages": (0, 50),
    "max_versions": (-1, 50),
}
TEXTS = {
    "cassette_dir": "empty: the bundled sample set",
    "base_url": "the registry to record from",
    "workflow": "empty: a demo workflow",
}
STYLE = {"description_width": "initial"}
ORDER = (*SLIDERS, "record_mode", "cassette_dir", "base_url", "workflow")  # how controls sit


class ControlPanel:
    """Controls built from `params` for what `step` uses, a Run button, progress, results.

    `step(params, reporter)` does the work and returns an `Outcome`; `step.phases` (if any)
    names the progress bars drawn up front, `step.uses` the parameters it needs (a plain
    function gets a control for every declared parameter that has one).
    """

    def __init__(self, step: Callable[[Any, WidgetReporter], Outcome], params: Parameters) -> None:
        self.step = step
        self.params = params
        cancel.remember_main_loop()  # a Run click may come in another thread (a subshell)
        uses = tuple(getattr(step, "uses", ()) or sorted(params.declared))
        params.require(uses)
        self.result: Outcome | None = None
        self.controls = _controls(params, uses)
        self.fixed: dict[str, Any] = {}
        self.status = w.HTML()
        self.status.add_class("registry-status")
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.button.add_class("registry-run")
        self.button.on_click(self._clicked)
        self.reporter = WidgetReporter(getattr(step, "phases", ()))
        self.results = w.Output()
        self.results.add_class("registry-results")
        rows = [_row([c for n, c in self.controls.items() if n in SLIDERS])]
        rows.append(_row([c for n, c in self.controls.items() if n not in SLIDERS]))
        self.widget = w.VBox([*rows, self.status, self.button, self.reporter.widget, self.results])
        for name in ("record_mode", "cassette_dir"):
            if name in self.controls:
                self.controls[name].observe(self._sync, names="value")
        self._sync()

    def values(self) -> Parameters:
        """The parameters with the controls' current values."""
        changes = {name: control.value for name, control in self.controls.items()}
        return dataclasses.replace(self.params, **changes)

    def show(self, headless: bool | None = None) -> None:
        """Display the panel; headless, also run now and fail the cell if the step failed.

        Returns nothing, so a notebook cell ending in `panel.show()` echoes nothing; the
        outcome is `panel.result`.
        """
        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = self.text()
        display(bundle, raw=True)
        if not (is_headless() if headless is None else headless):
            return
        result = self.run(self.params)
        result.show()
        if not result.ok:
            raise UserError(result.problem())

    def text(self) -> str:
        """The panel as plain text, for an executed notebook read in a CI log."""
        shown = [
            f"{name}={control.value!r}" + _why_disabled(name, control)
            for name, control in self.controls.items()
        ]
        text = f"control panel: {', '.join(shown) or 'no controls'}"
        return "\n".join(filter(None, [text, _plain(self.status.value)]))

    def run(self, params: Parameters | None = None) -> Outcome:
        """Run the step once (with the controls' values unless given), with live progress."""
        params = self.values() if params is None else params
        self.button.disabled = True
        self.reporter.reset()
        try:
            self.result = run_with_progress(lambda: self.step(params, self.reporter), self.reporter)
        finally:
            self._sync()
        return self.result

    def _clicked(self, _button: w.Button) -> None:
        """Run button: results (or the error) go to the results area, never to the log."""
        self.results.clear_output()
        with self.results:
            try:
                self.run().show()
            except UserError as exc:
                print(f"error: {exc}")
            except KeyboardInterrupt as exc:  # Kernel > Interrupt: `Interrupted` says more
                print(f"interrupted: {exc or 'the run stopped'}")

    def _sync(self, _change: Any = None) -> None:
        """Fix or free the recording's options and say what Run will do."""
        params = self.values()
        self.fixed = {}
        if "record_mode" not in self.controls:  # 04 and 05: nothing is fetched or recorded
            self.button.disabled = False
            return
        problem = None
        if params.replay:
            try:
                recorded = fixed_options(params.cassettes(), PHASES)
            except UserError as exc:
                problem = str(exc)
            else:
                self.fixed = {k: v for k, v in recorded.items() if k in self.controls}
        for name, control in self.controls.items():
            if name not in SLIDERS or (name not in self.fixed and not control.disabled):
                continue  # a free control keeps what the user set
            # fixed now: the recorded value; fixed before: back to the notebook's own value
            value = self.fixed.get(name, getattr(self.params, name))
            control.min, control.max = min(control.min, value), max(control.max, value)
            control.value = value
            control.disabled = name in self.fixed
        if "base_url" in self.controls:
            self.controls["base_url"].disabled = params.replay
        if not params.replay and not params.cassette_dir:
            problem = "set cassette_dir to a directory of your own to record into"
        self.button.disabled = problem is not None
        self.status.value = _status(params, self.fixed, problem)


def _status(params: Parameters, fixed: dict[str, Any], problem: str | None) -> str:
    where = describe(params.cassettes())
    if problem:
        text = f"<b>cannot run:</b> {html.escape(problem)}"
    elif params.replay:
        pinned = ", ".join(f"{name} = {value}" for name, value in fixed.items())
        text = f"Replays {html.escape(where)}, offline" + (
            f"; fixed by the recording: {html.escape(pinned)}" if pinned else ""
        )
    else:
        text = (
            f"Records from {html.escape(params.base_url)} into {html.escape(where)} (mode "
            f"{params.record_mode}), in a copy beside it that replaces it only if the run "
            "succeeds"
        )
    return f"{text}. Kernel &gt; Interrupt stops a run."


def _why_disabled(name: str, control: w.ValueWidget) -> str:
    if not control.disabled:
        return ""
    return " (not used when replaying)" if name == "base_url" else " (fixed by the recording)"


def _plain(markup: str) -> str:
    return html.unescape(markup.replace("<b>", "").replace("</b>", ""))


def _row(children: list[w.Widget]) -> w.HBox:
    return w.HBox(children, layout=w.Layout(flex_flow="row wrap"))


def _controls(params: Parameters, uses: tuple[str, ...]) -> dict[str, w.ValueWidget]:
    controls: dict[str, w.ValueWidget] = {}
    for name in sorted(uses, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        value = getattr(params, name)
        if name in SLIDERS and value is not None:
            low, high = SLIDERS[name]
            control = w.IntSlider(
                value=value,
                min=min(low, value),
                max=max(high, value),
                description=name,
                continuous_update=False,
                style=STYLE,
            )
        elif name == "record_mode":
            control = w.Dropdown(
                options=list(RECORD_MODES), value=value, description=name, style=STYLE
            )
        elif name in TEXTS:
            control = w.Text(
                value=value,
                placeholder=TEXTS[name],
                description=name,
                continuous_update=False,
                style=STYLE,
                layout=w.Layout(width="32em"),
            )
        else:
            continue
        control.add_class(f"registry-{name.replace('_', '-')}")
        controls[name] = control
    return controls
