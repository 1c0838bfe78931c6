"""Progress reporting shared by the CLI (tqdm on stderr) and the notebooks (widgets).

The phases only talk to a `Reporter`; front doors choose the implementation. `status` (what
a bar shows beside its count: request rate, 429s, pending versions, listing state) came
later than the rest: reporters written before it need not have it, so the phases call it
through `report_status`, which skips reporters without one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

STATUS_INTERVAL = 0.25  # seconds between two redraws of a bar's status


class Reporter(Protocol):
    """Receives progress of each phase: `start`, any number of `advance`, then `finish`."""

    def start(self, phase: str, total: int) -> None: ...

    def grow(self, phase: str, extra: int) -> None: ...

    def advance(self, phase: str, n: int = 1) -> None: ...

    def finish(self, phase: str) -> None: ...

    def status(self, phase: str, values: Mapping[str, Any]) -> None:
        """Optional: how the phase goes, shown beside its count (default: ignored)."""


def report_status(reporter: Reporter, phase: str, values: Mapping[str, Any]) -> None:
    """`reporter.status(...)` if the reporter has one (older reporters do not)."""
    status = getattr(reporter, "status", None)
    if status is not None:
        status(phase, values)


class NullReporter:
    """Reports nothing."""

    def start(self, phase: str, total: int) -> None:
        pass

    def grow(self, phase: str, extra: int) -> None:
        pass

    def advance(self, phase: str, n: int = 1) -> None:
        pass

    def finish(self, phase: str) -> None:
        pass

    def status(self, phase: str, values: Mapping[str, Any]) -> None:
        pass


class TqdmReporter:
    """One tqdm bar per phase on stderr, its status as the bar's postfix.

    Log records must go through tqdm while bars are drawn, or each one breaks a bar in two:
    the CLI routes logging through `tqdm.contrib.logging` for that.
    """

    def __init__(self) -> None:
        self._bars: dict = {}
        self._drawn: dict[str, float] = {}

    def start(self, phase: str, total: int) -> None:
        from tqdm import tqdm

        self._bars[phase] = tqdm(total=total, desc=phase, unit="item", file=sys.stderr, leave=True)

    def grow(self, phase: str, extra: int) -> None:
        bar = self._bars[phase]
        bar.total += extra
        bar.refresh()

    def advance(self, phase: str, n: int = 1) -> None:
        self._bars[phase].update(n)

    def status(self, phase: str, values: Mapping[str, Any]) -> None:
        bar = self._bars.get(phase)
        now = time.monotonic()
        if bar is None or now - self._drawn.get(phase, 0.0) < STATUS_INTERVAL:
            return
        self._drawn[phase] = now
        bar.set_postfix({k: v for k, v in values.items()}, refresh=True)

    def finish(self, phase: str) -> None:
        self._bars.pop(phase).close()


def default_reporter(enabled: bool | None) -> Reporter:
    """tqdm when asked, or by default when stderr is a terminal; otherwise silent."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return TqdmReporter() if enabled else NullReporter()
