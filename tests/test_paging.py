"""`PagedScan` keeps its distinct-id count as pages arrive; it must always equal what
`unique()` builds from scratch, also when a page is fetched again and answers differently."""

from __future__ import annotations

from registry_tools.fetch.paging import Page, PagedScan
from registry_tools.fetch.version_scan import VERSIONS


def versions(*names: str) -> list[dict[str, str]]:
    return [{"id": name, "node_id": "n", "version": name} for name in names]


def test_the_running_count_matches_unique_as_pages_come_repeat_and_are_replaced() -> None:
    scan = PagedScan(VERSIONS, 2)
    steps = [
        ((1, 1), versions("a", "b")),
        ((1, 2), versions("b", "c")),  # drift: a repeat
        ((2, 2), versions("c", "d")),
        ((1, 2), versions("e", "f")),  # page 2 of round 1 again, other rows
        ((2, 2), versions("e")),  # again: "c" and "d" are in no page now
    ]
    counts = []
    for (round_, page), items in steps:
        scan.add(round_, page, Page(items, total=5, size=2, total_pages=3))
        assert scan.count() == len(scan.unique())
        counts.append(scan.count())
    assert counts == [2, 3, 4, 6, 4]
    assert scan.complete() is False
    scan.add(3, 3, Page(versions("g"), total=5, size=2, total_pages=3))
    assert scan.count() == 5 and scan.complete()
