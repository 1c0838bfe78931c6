"""The real service's unstable listings: `/nodes` rows that drift between requests, a page
cache per server instance, and `/versions` pages whose ties are ordered arbitrarily.

Everything here depends only on the seed and on each URL's own request sequence, never on how
requests to different URLs interleave:
- Drift: the k-th computed answer to `/nodes` page p (at a given limit and filters) sees the
  order after s = (k - 1) * P + p drift steps, P being the page count at that limit: the order
  a client reading the pages one after the other, once per round, would see if `drift_rows`
  rows moved before each of its requests. A move takes the row at a seeded position and puts
  it at the end (an updated row gets a new place in the table, as in PostgreSQL's heap order).
- The page cache keeps an answer for `page_cache_seconds` of the emulator's clock, keyed by the
  query without `latest`; `latest=true` neither reads nor fills it.
- `/versions` is ordered by the version string; rows with the same string are ordered by a
  SHA-1 of (seed, the query, the URL's occurrence k, the row), so consecutive pages over a tie
  are not consistent with each other, and a repeated request sees another tie order.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from registry_tools.registry.faults import unit


class Occurrences:
    """How many times each key has been seen (1 for the first time)."""

    def __init__(self) -> None:
        self._seen: Counter[Hashable] = Counter()

    def next(self, key: Hashable) -> int:
        self._seen[key] += 1
        return self._seen[key]


class Drift:
    """The `/nodes` order after a number of drift steps, `rows` moves per step."""

    def __init__(self, seed: int, rows: int) -> None:
        self.seed = seed
        self.rows = rows

    def order(self, ids: list[str], steps: int) -> list[str]:
        """`ids` (in their resting order) after `steps` steps: rows never moved keep their
        places, moved rows follow in the order of their last move."""
        if not self.rows or not ids or steps <= 0:
            return ids
        last_move: dict[int, int] = {}
        for move in range(1, steps * self.rows + 1):
            last_move[int(unit(self.seed, "drift", move) * len(ids))] = move
        still = [row for index, row in enumerate(ids) if index not in last_move]
        moved = sorted(last_move, key=last_move.__getitem__)
        return still + [ids[index] for index in moved]


class PageCache:
    """Answers kept for `seconds` of `clock` time, per key."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self._pages: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> Any | None:
        if not self.seconds:
            return None
        hit = self._pages.get(key)
        if hit is None or self.clock() - hit[0] >= self.seconds:
            return None
        return hit[1]

    def put(self, key: Hashable, answer: Any) -> None:
        if self.seconds:
            self._pages[key] = (self.clock(), answer)

    def clear(self) -> None:
        self._pages.clear()


def tie_ordered_page(
    rows: list[tuple[str, str, Any]], start: int, size: int, tie_key: Callable[[str], float]
) -> list[Any]:
    """Items `start` to `start + size` of `rows` (version string, row id, item), sorted by the
    version string, rows with equal strings ordered by `tie_key(row id)`. Only the tie groups
    that reach into the page are ordered, so a page costs its size plus its ties."""
    keys = [row[0] for row in rows]
    end = min(start + size, len(rows))
    if start >= end:
        return []
    first = bisect.bisect_left(keys, keys[start])
    last = bisect.bisect_right(keys, keys[end - 1])
    window: list[Any] = []
    for _key, group in itertools.groupby(rows[first:last], key=lambda row: row[0]):
        window += [row[2] for row in sorted(group, key=lambda row: tie_key(row[1]))]
    return window[start - first : end - first]
