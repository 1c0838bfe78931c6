"""The notebooks' control panel: sliders built from the parameters, a Run button, progress.

Two ways a notebook runs:
- headless (nbclient, papermill, `registry-tools notebook run`): nobody can click, so showing
  the panel runs the step at once with the parameter values and its results become ordinary
  cell outputs, readable in any static rendering of the executed notebook;
- interactive (a Jupyter server started the kernel): showing the panel runs nothing; the user
  moves the sliders and clicks Run, and results appear in the panel's results area.

The kernel tells them apart by `JPY_SESSION_NAME`, which a Jupyter server sets for the kernels
it starts; `REGISTRY_TOOLS_HEADLESS=1` or `=0` overrides that (the headless runner sets 1).

The step runs in a worker thread (its own asyncio loop, free of the kernel's); the worker only
queues progress events, and the thread that owns the widgets applies them while it waits, so
widgets are never touched from two threads.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import ipywidgets as w
from IPython.display import display

from registry_tools.errors import UserError
from registry_tools.replay.cassettes import RECORD_MODES

HEADLESS_ENV = "REGISTRY_TOOLS_HEADLESS"  # the headless runner sets "1" for its kernels
# Slider bounds per parameter; a default outside them widens the slider to include it.
SLIDERS = {
    "concurrency": (1, 64),
    "max_versions": (-1, 50),
    "nodes_per_page": (1, 100),
    "pages": (0, 50),
}
PUMP_SECONDS = 0.05

T = TypeVar("T")


def is_headless() -> bool:
    """True when no person can click: run with the parameter values right away."""
    override = os.environ.get(HEADLESS_ENV)
    if override in ("0", "1"):
        return override == "1"
    return "JPY_SESSION_NAME" not in os.environ


class Outcome(Protocol):
    """What a step returns: it can show itself and say whether it fully succeeded."""

    ok: bool

    def show(self) -> None: ...

    def problem(self) -> str: ...


class WidgetReporter:
    """A `progress.Reporter` drawing one IntProgress and a label per phase.

    `start`/`grow`/`advance`/`finish` may be called from any thread: they only queue an
    event. `pump()`, called by the thread that owns the widgets, applies what was queued.
    """

    def __init__(self, phases: Sequence[str] = ()) -> None:
        self._events: queue.SimpleQueue[tuple[str, str, int]] = queue.SimpleQueue()
        self._bars: dict[str, tuple[w.IntProgress, w.Label]] = {}
        self._status: dict[str, str] = {}  # written by the worker, read when pumping
        self.widget = w.VBox()
        for phase in phases:
            self._bar(phase)

    def start(self, phase: str, total: int) -> None:
        self._events.put(("start", phase, total))

    def grow(self, phase: str, extra: int) -> None:
        self._events.put(("grow", phase, extra))

    def advance(self, phase: str, n: int = 1) -> None:
        self._events.put(("advance", phase, n))

    def finish(self, phase: str) -> None:
        self._events.put(("finish", phase, 0))

    def status(self, phase: str, values: Mapping[str, Any]) -> None:
        """How the phase goes (request rate, 429s, ...), shown beside its count."""
        self._status[phase] = ", ".join(f"{k} {v}" for k, v in values.items())

    def reset(self) -> None:
        """Empty every bar before a new run."""
        for bar, label in self._bars.values():
            bar.value, bar.max, bar.bar_style = 0, 1, ""
            label.value = "waiting"

    def pump(self) -> None:
        """Apply the queued events to the widgets (call from the widgets' thread)."""
        while True:
            try:
                kind, phase, n = self._events.get_nowait()
            except queue.Empty:
                return
            self._apply(kind, phase, n)

    def _apply(self, kind: str, phase: str, n: int) -> None:
        bar, label = self._bar(phase)
        if kind == "start":
            bar.value, bar.max, bar.bar_style = 0, max(n, 1), "info"
        elif kind == "grow":
            bar.max += n
        elif kind == "advance":
            bar.value = min(bar.value + n, bar.max)
        else:
            bar.value, bar.bar_style = bar.max, "success"
        status = self._status.get(phase)
        label.value = f"{bar.value}/{bar.max}" + (" done" if kind == "finish" else "")
        label.value += f" ({status})" if status else ""

    def _bar(self, phase: str) -> tuple[w.IntProgress, w.Label]:
        if phase not in self._bars:
            bar = w.IntProgress(value=0, min=0, max=1, description=phase)
            bar.style.description_width = "initial"
            bar.add_class("registry-progress")
            label = w.Label("waiting")
            self._bars[phase] = (bar, label)
            self.widget.children = (*self.widget.children, w.HBox([bar, label]))
        return self._bars[phase]


def run_with_progress(job: Callable[[], T], reporter: WidgetReporter) -> T:
    """Run `job` in a worker thread, applying its progress events here until it ends."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="registry-step") as pool:
        future = pool.submit(job)
        while not future.done():
            reporter.pump()
            concurrent.futures.wait([future], timeout=PUMP_SECONDS)
        reporter.pump()
        return future.result()


class ControlPanel:
    """Sliders and a record-mode selector built from `params`, a Run button, progress, results.

    `params` is a dataclass of the notebook's parameters; `step(params, reporter)` does the
    work and returns an `Outcome`, and `step.phases` (if any) names the progress bars to
    draw up front. Only the fields the panel knows get a control; the others pass through.
    """

    def __init__(self, step: Callable[[Any, WidgetReporter], Outcome], params: Any) -> None:
        self.step = step
        self.params = params
        self.result: Outcome | None = None
        self.controls = _controls(params)
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.button.add_class("registry-run")
        self.button.on_click(self._clicked)
        self.reporter = WidgetReporter(getattr(step, "phases", ()))
        self.results = w.Output()
        self.results.add_class("registry-results")
        self.widget = w.VBox(
            [
                w.HBox([*self.controls.values(), self.button], layout=w.Layout(flex_flow="wrap")),
                self.reporter.widget,
                self.results,
            ]
        )

    def values(self) -> Any:
        """The parameters with the controls' current values."""
        return dataclasses.replace(
            self.params, **{name: control.value for name, control in self.controls.items()}
        )

    def show(self, headless: bool | None = None) -> None:
        """Display the panel; headless, also run now and fail the cell if the step failed.

        Returns nothing, so a notebook cell ending in `panel.show()` echoes nothing; the
        outcome is `panel.result`.
        """
        display(self.widget)
        if not (is_headless() if headless is None else headless):
            return
        result = self.run()
        result.show()
        if not result.ok:
            raise UserError(result.problem())

    def run(self) -> Outcome:
        """Run the step once with the controls' values, with live progress."""
        self.button.disabled = True
        self.reporter.reset()
        params = self.values()
        try:
            self.result = run_with_progress(lambda: self.step(params, self.reporter), self.reporter)
        finally:
            self.button.disabled = False
        return self.result

    def _clicked(self, _button: w.Button) -> None:
        """Run button: results (or the error) go to the results area, never to the log."""
        self.results.clear_output()
        with self.results:
            try:
                self.run().show()
            except UserError as exc:
                print(f"error: {exc}")


def _controls(params: Any) -> dict[str, w.ValueWidget]:
    controls: dict[str, w.ValueWidget] = {}
    for name, (low, high) in SLIDERS.items():
        if hasattr(params, name):
            value = getattr(params, name)
            controls[name] = w.IntSlider(
                value=value,
                min=min(low, value),
                max=max(high, value),
                description=name,
                continuous_update=False,
                style={"description_width": "initial"},
            )
            controls[name].add_class(f"registry-{name.replace('_', '-')}")
    if hasattr(params, "record_mode"):
        options = list(dict.fromkeys([*RECORD_MODES, params.record_mode]))
        controls["record_mode"] = w.Dropdown(
            options=options,
            value=params.record_mode,
            description="record_mode",
            style={"description_width": "initial"},
        )
    return controls
