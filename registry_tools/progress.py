"""Progress reporting shared by the CLI (tqdm on stderr) and the notebooks (widgets).

The phases only talk to a `Reporter`; front doors choose the implementation.
"""

from __future__ import annotations

import sys
from typing import Protocol


class Reporter(Protocol):
    """Receives progress of each phase: `start`, any number of `advance`, then `finish`."""

    def start(self, phase: str, total: int) -> None: ...

    def grow(self, phase: str, extra: int) -> None: ...

    def advance(self, phase: str, n: int = 1) -> None: ...

    def finish(self, phase: str) -> None: ...


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


class TqdmReporter:
    """One tqdm bar per phase on stderr."""

    def __init__(self) -> None:
        self._bars: dict = {}

    def start(self, phase: str, total: int) -> None:
        from tqdm import tqdm

        self._bars[phase] = tqdm(total=total, desc=phase, unit="item", file=sys.stderr, leave=True)

    def grow(self, phase: str, extra: int) -> None:
        bar = self._bars[phase]
        bar.total += extra
        bar.refresh()

    def advance(self, phase: str, n: int = 1) -> None:
        self._bars[phase].update(n)

    def finish(self, phase: str) -> None:
        self._bars.pop(phase).close()


def default_reporter(enabled: bool | None) -> Reporter:
    """tqdm when asked, or by default when stderr is a terminal; otherwise silent."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return TqdmReporter() if enabled else NullReporter()
