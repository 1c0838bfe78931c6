"""Pieces the cache builder's tests share: the pinned clock, synthetic registries, the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from registry_tools import clock
from registry_tools.cli import main
from registry_tools.registry import synth

EPOCH = 1767323045  # 2026-01-02T03:04:05Z: registries are generated, and runs pinned, at it


def synthetic(nodes: int, seed: int, ideal: bool = True) -> dict:
    """A synthetic registry generated with the clock pinned to `EPOCH`; `ideal` (every
    extraction finished, every version's metadata kept) unless a test wants the registry's
    own pending states: the stand-in registry's behaviours add their own."""
    before = clock._pinned  # restored: a test may have pinned the clock itself
    clock.pin(EPOCH)
    try:
        return synth.generate(nodes, seed, ideal=ideal)
    finally:
        clock.pin(before)


@pytest.fixture
def pinned_clock():
    """Pin the clock to `EPOCH` for the test (import it as an autouse fixture)."""
    clock.pin(EPOCH)
    yield
    clock.pin(None)


def fast_clock(speed: float) -> Callable[[], float]:
    """A monotonic clock running `speed` times faster than the wall clock: the stand-in
    registry's rate limit then admits `speed` times more requests a second."""
    start = time.monotonic()
    return lambda: start + (time.monotonic() - start) * speed


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stderr, whether argparse or the library rejected the input."""
    try:
        code = main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err
