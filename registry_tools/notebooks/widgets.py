"""Progress bars for the notebooks, and running a step in a worker thread that an interrupt stops.

Two ways a notebook runs (the control panel, `panel.py`, does the same in both):
- headless (nbclient, papermill, `registry-tools notebook run`): nobody can click, so showing
  the panel runs the step at once with the parameter values and its results become ordinary
  cell outputs, readable in any static rendering of the executed notebook;
- interactive (a Jupyter server started the kernel): showing the panel runs nothing; the user
  moves the sliders and clicks Run, and results appear in the panel's results area.

The kernel tells them apart by `JPY_SESSION_NAME`, which a Jupyter server sets for the kernels
it starts; `REGISTRY_TOOLS_HEADLESS=1` or `=0` overrides that (the headless runner sets 1).

The step runs in a worker thread (its own asyncio loop, free of the kernel's); the worker only
queues progress events, and the thread that owns the widgets applies them while it waits, so
widgets are never touched from two threads. An interrupt of the kernel (Kernel > Interrupt,
or nbclient's cell timeout) stops the worker (`cancel.Cancellation`) instead of leaving it to
finish in the background: as a KeyboardInterrupt in that waiting thread when it is the main
one, through `cancel.interruptible` when it is a kernel subshell's (a Run click in
JupyterLab 4.6).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import ipywidgets as w

from registry_tools.notebooks.cancel import Cancellation, Interrupted, interruptible

HEADLESS_ENV = "REGISTRY_TOOLS_HEADLESS"  # the headless runner sets "1" for its kernels
PUMP_SECONDS = 0.05
STOP_SECONDS = 10.0  # how long an interrupted run may take to stop before we stop waiting

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
        self._frozen = False
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
        self._frozen = False
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
            if not self._frozen:
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

    def interrupted(self) -> None:
        """Mark the bars that had not finished and stop following the run (call from the
        widgets' thread). Events queued from now on are dropped: the tasks being cancelled
        still report their end, which would fill the bars."""
        if self._frozen:
            return
        self._frozen = True
        for bar, label in self._bars.values():
            if bar.bar_style != "success":
                bar.bar_style = "danger"
                label.value = f"{bar.value}/{bar.max} interrupted"

    def _bar(self, phase: str) -> tuple[w.IntProgress, w.Label]:
        if phase not in self._bars:
            bar = w.IntProgress(value=0, min=0, max=1, description=phase)
            bar.style.description_width = "initial"
            bar.add_class("registry-progress")
            label = w.Label("waiting")
            self._bars[phase] = (bar, label)
            self.widget.children = (*self.widget.children, w.HBox([bar, label]))
        return self._bars[phase]


def run_with_progress(
    job: Callable[[], T], reporter: WidgetReporter, cancellation: Cancellation | None = None
) -> T:
    """Run `job` in a worker thread, applying its progress events here until it ends.

    An interrupt cancels the job: as a KeyboardInterrupt while this thread waits (then it
    waits at most `STOP_SECONDS` more for the job to stop; a second interrupt stops the
    waiting at once), or through `cancel.interruptible` when this is not the main thread.
    Either way `Interrupted` is raised.
    """
    cancellation = cancellation or Cancellation()

    def under_cancellation() -> T:
        with cancellation.active():
            return job()

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="registry-step")
    try:
        with interruptible(cancellation):
            future = pool.submit(under_cancellation)
            try:
                _wait(future, reporter, cancellation, None)
            except KeyboardInterrupt:
                cancellation.cancel()
                reporter.interrupted()
                stopped = _wait(future, reporter, cancellation, STOP_SECONDS)
                raise _interrupted(reporter, stopped) from None
        reporter.pump()
        failure = future.exception()
        if isinstance(failure, KeyboardInterrupt) or (cancellation.cancelled and failure):
            raise _interrupted(reporter, True) from None
        return future.result()
    finally:
        pool.shutdown(wait=False)


def _interrupted(reporter: WidgetReporter, stopped: bool) -> Interrupted:
    reporter.interrupted()
    return Interrupted(
        "the run stopped; its output was not written (the journal beside it keeps what was "
        "fetched, for the next run) and cassettes being recorded were not kept"
        if stopped
        else f"the run did not stop within {STOP_SECONDS:g} s; it stops at its next request, "
        "in the background"
    )


def _wait(
    future: concurrent.futures.Future,
    reporter: WidgetReporter,
    cancellation: Cancellation,
    limit: float | None,
) -> bool:
    """Pump progress until `future` is done (True) or `limit` seconds passed (False)."""
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        if cancellation.cancelled:  # also when a signal handler cancelled it
            reporter.interrupted()
        reporter.pump()
        if future.done():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        concurrent.futures.wait([future], timeout=PUMP_SECONDS)
