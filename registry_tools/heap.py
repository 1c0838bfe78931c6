"""Keeping the cyclic garbage collector away from large, long-lived data.

Every full collection walks every tracked object. Building a cache, a mappings file or a
cassette index allocates millions of objects that live until the end and form no cycles, so
collections during the build find nothing yet cost more the bigger the data gets: the run
time would grow faster than the data.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block (reference counting still frees everything
    that is not in a cycle); the collector's previous state is restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def frozen() -> Iterator[None]:
    """Move what exists now out of the collector's sight for the block (`gc.freeze`): data
    that outlives the block, such as a loaded cassette, is no longer walked again and again."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
