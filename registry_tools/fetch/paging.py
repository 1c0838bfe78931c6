"""Paged listings whose order is not stable (`/nodes`, `/versions`): checked pages, bounded page
counts, and rounds until the de-duplicated items reach the server's `total`.

The registry pages by offset over rows that move while we page (install counters, page
caches, ties in the sort order), so one pass skips some items and repeats others. A
`PagedScan` keeps every page it got, keyed by (round, page); `unique` de-duplicates by id in a
fixed order, and `complete` compares that with the newest `total` the server announced. Page
counts come from the server but are bounded: never more than `total / page size` plus a small
margin, never above a hard cap, so an absurd `totalPages` or `total` cannot make a run send
millions of requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient

PAGE_MARGIN = 2


@dataclass(frozen=True)
class Listing:
    """What one kind of paged listing looks like on the wire."""

    path: str
    items_key: str  # "nodes" or "versions"
    size_param: str  # "limit" or "pageSize"
    max_items: int  # hard cap on `total` believed
    item_id: Callable[[Any], str | None]
    params: tuple[tuple[str, str], ...] = ()
    # What the server sorts by, when it says so (`/versions`: the version string only); ties
    # of it are where pages shift. None: no known order, a later round re-fetches every page.
    sort_key: Callable[[Any], Any] | None = None
    max_rounds: int = 5


@dataclass
class Page:
    """One page as the server answered it (checked)."""

    items: list[dict[str, Any]]
    total: int
    size: int  # the page size the server says it used
    total_pages: int | None

    def record(self, kind: str, round_: int, page: int) -> dict[str, Any]:
        return {
            "k": kind,
            "round": round_,
            "page": page,
            "items": self.items,
            "total": self.total,
            "size": self.size,
            "total_pages": self.total_pages,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Page:
        return cls(record["items"], record["total"], record["size"], record["total_pages"])


async def fetch_page(client: RegistryClient, listing: Listing, page: int, size: int) -> Page:
    """One page, or FetchError if the answer is not a page of this listing (`{}`, a list,
    no items list, no integer `total`, items without ids): never "no items"."""
    params = {**dict(listing.params), "page": page, listing.size_param: size}
    answer = await client.get(listing.path, params)
    data = answer.data
    problem = _page_problem(data, listing)
    if problem:
        raise FetchError(
            client.url(listing.path, params), f"not a {listing.items_key} page ({problem})"
        )
    items = data[listing.items_key]
    answered = data.get(listing.size_param, data.get("limit"))
    if not _is_count(answered) or not 1 <= answered <= size:
        answered = size
    if len(items) > answered:  # a server that ignores the size asked for
        answered = len(items)
    if page == 1 and items and len(items) < min(answered, data["total"]):
        answered = len(items)  # a server that caps the size without saying so
    pages = data.get("totalPages")
    return Page(
        data[listing.items_key], data["total"], answered, pages if _is_count(pages) else None
    )


MIN_PAGE_SIZE = 10


async def fetch_first_page(client: RegistryClient, listing: Listing, size: int) -> tuple[Page, int]:
    """Page 1 at the largest size the server accepts, starting from `size`: a 400 (a limit
    above the server's maximum, which the registry does not document) halves it, down to
    `MIN_PAGE_SIZE`. The page and the size to use for the other pages."""
    while True:
        try:
            return await fetch_page(client, listing, 1, size), size
        except FetchError as error:
            if not error.reason.startswith("HTTP 400") or size <= MIN_PAGE_SIZE:
                raise
            size = max(MIN_PAGE_SIZE, size // 2)


def _page_problem(data: Any, listing: Listing) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, expected an object"
    items = data.get(listing.items_key)
    if not isinstance(items, list):
        return f"no {listing.items_key!r} list"
    if not _is_count(data.get("total")):
        return "no integer 'total'"
    for item in items:
        if not isinstance(item, dict) or not listing.item_id(item):
            return f"an item without an id ({str(item)[:60]})"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class PagedScan:
    """The pages of one listing, over rounds."""

    listing: Listing
    size: int
    pages: dict[tuple[int, int], Page] = field(default_factory=dict)
    # the distinct ids so far, kept as pages arrive: counting them after every page (the
    # progress bar, `complete`) costs that page, not the whole scan again (with `unique`
    # a 20,000-version scan cost O(pages x versions): 17 s of a 40 s replay)
    _ids: set[str] = field(default_factory=set, init=False, repr=False)

    def add(self, round_: int, page: int, answer: Page) -> None:
        replaced = (round_, page) in self.pages
        self.pages[(round_, page)] = answer
        if replaced:
            items = (item for kept in self.pages.values() for item in kept.items)
            self._ids = {self.listing.item_id(item) for item in items}
        else:
            self._ids.update(self.listing.item_id(item) for item in answer.items)

    def count(self) -> int:
        """How many distinct ids the pages hold (`len(self.unique())`, without building it)."""
        return len(self._ids)

    @property
    def total(self) -> int | None:
        """The newest total the server announced (rows come and go while we page)."""
        if not self.pages:
            return None
        return self.pages[max(self.pages)].total

    def page_count(self) -> int:
        """How many pages a full pass takes, bounded (see the module docstring)."""
        if not self.pages:
            return 1
        newest = self.pages[max(self.pages)]
        total = min(newest.total, self.listing.max_items)
        size = max(1, newest.size)
        bound = math.ceil(total / size) + PAGE_MARGIN if total else 1
        announced = newest.total_pages
        wanted = announced if announced is not None else math.ceil(total / size)
        return max(1, min(wanted, bound, math.ceil(self.listing.max_items / size) + PAGE_MARGIN))

    def unique(self) -> dict[str, dict[str, Any]]:
        """Items by id, the first copy in (round, page) order: one fixed rule, whatever order
        the pages arrived in."""
        found: dict[str, dict[str, Any]] = {}
        for key in sorted(self.pages):
            for item in self.pages[key].items:
                found.setdefault(self.listing.item_id(item), item)
        return found

    def complete(self) -> bool:
        total = self.total
        return total is not None and self.count() >= total

    def missing(self, round_: int, last: int) -> list[int]:
        return [page for page in range(1, last + 1) if (round_, page) not in self.pages]

    def rounds(self) -> int:
        return max((key[0] for key in self.pages), default=0)

    def pages_to_refetch(self) -> list[int]:
        """The pages a next round should fetch: with a sort key, only those holding a tie of
        which fewer distinct items were seen than the tie has rows (every page otherwise, or
        when no tie explains the gap)."""
        every = list(range(1, self.page_count() + 1))
        if self.listing.sort_key is None:
            return every
        spans: dict[Any, list[int]] = {}
        members: dict[Any, set[str]] = {}
        for (_round, page), answer in self.pages.items():
            base = (page - 1) * answer.size
            for offset, item in enumerate(answer.items):
                key, position = self.listing.sort_key(item), base + offset
                span = spans.setdefault(key, [position, position])
                span[0], span[1] = min(span[0], position), max(span[1], position)
                members.setdefault(key, set()).add(self.listing.item_id(item))
        wanted: set[int] = set()
        for key, (low, high) in spans.items():
            if len(members[key]) < high - low + 1:
                wanted.update(range(low // self.size + 1, high // self.size + 2))
        return sorted(page for page in wanted if page <= every[-1]) or every


async def fetch_into(
    client: RegistryClient,
    build: Build,
    scan: PagedScan,
    where: tuple[int, int],
    phase: str,
    kind: str,
    label: str,
) -> None:
    """Fetch page `where` = (round, page) into `scan` and journal it as a `kind` record; a
    failure is recorded as `<phase>: <label> <page>`, not raised. Page 1 of round 1 also
    learns the largest page size the server accepts."""
    round_, page = where
    try:
        if where == (1, 1):
            answer, scan.size = await fetch_first_page(client, scan.listing, scan.size)
        else:
            answer = await fetch_page(client, scan.listing, page, scan.size)
    except FetchError as error:
        build.fail(f"{phase}: {label} {page}", error)
    else:
        scan.add(round_, page, answer)
        build.record(answer.record(kind, round_, page))
        build.unit_done()
    finally:
        build.reporter.advance(phase)
        build.status(phase, **{scan.listing.items_key: scan.count(), "total": scan.total})
