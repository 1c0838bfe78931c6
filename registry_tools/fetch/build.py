"""The state of one cache build (`Build`: nodes, journal, failures, checkpoints) and the
fan-out that phases 2 and 3 share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.fetch import cache_file
from registry_tools.fetch.client import FetchError, RegistryClient
from registry_tools.fetch.options import CacheOptions, Node, RunSummary
from registry_tools.journal import Journal
from registry_tools.progress import Reporter

log = logging.getLogger(__name__)

JOURNAL_FORMAT = 1


class Build:
    """The state of one run: nodes by id, journal, failures, checkpoint cadence."""

    def __init__(self, options: CacheOptions, nodes: dict[str, Node], reporter: Reporter):
        self.options = options
        self.nodes = nodes
        self.reporter = reporter
        self.failures: list[str] = []
        self.replayed: dict[str, list[dict[str, Any]]] = {"page": [], "versions": [], "meta": []}
        self.progressed = False
        self.phase_stats: dict[str, dict[str, Any]] = {}
        self.journal_seconds = 0.0
        self._units_since_checkpoint = 0
        self.journal = Journal(Path(f"{options.output}.journal"), {})

    def open_journal(self, input_digest: str | None) -> None:
        """Resume from the journal of an interrupted run of this same job, if any."""
        o = self.options
        self.journal.header = {
            "format": JOURNAL_FORMAT,
            "job": "cache",
            "input": input_digest,
            "options": [o.nodes, o.versions, o.metadata, o.nodes_per_page, o.max_versions, o.pages],
        }
        records = list(self.journal.replay())
        for record in records:
            self.replayed[record["k"]].append(record)
        if records:
            log.warning("resuming: %d items replayed from %s", len(records), self.journal.path)
            self.progressed = True
        self.journal.open(records)

    def record(self, record: dict[str, Any]) -> None:
        """Journal a finished unit of work (applied by the caller)."""
        self.progressed = True
        with self._timed():
            self.journal.append(record)

    def unit_done(self) -> None:
        """Count a finished node; checkpoint every `checkpoint_interval` of them."""
        self._units_since_checkpoint += 1
        if self._units_since_checkpoint >= self.options.checkpoint_interval:
            self.checkpoint()

    def checkpoint(self) -> None:
        self._units_since_checkpoint = 0
        with self._timed():
            self.journal.checkpoint()
        # What exists now is mostly the cache, alive until the end: move it out of the
        # collector's sight, or every full collection walks the whole growing cache and a
        # run's GC time grows faster than its size. `finish` hands it back.
        gc.freeze()

    def fail(self, what: str, error: FetchError) -> None:
        message = f"{what}: {error}"
        # INFO, not WARNING: every front door lists the failures in its summary, once.
        log.info("failed: %s", message)
        self.failures.append(message)

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.journal_seconds += time.perf_counter() - begin

    def finish(self, client: RegistryClient) -> RunSummary:
        """Write the cache once, atomically, unless the run failed without learning anything."""
        gc.unfreeze()
        cache = cache_file.build_cache(self.nodes.values())
        summary = RunSummary(
            output=self.options.output,
            nodes=cache["node_count"],
            versions=cache["versions_processed"],
            metadata_entries=cache["metadata_entries"],
            requests=client.stats.requests,
            retries=client.stats.retries,
            failures=sorted(self.failures),
            timeline=client.stats.timeline,
            phase_stats=self.phase_stats,
        )
        if self.progressed or not self.failures:
            begin = time.perf_counter()
            files.write_atomic(self.options.output, files.dumps(cache))
            summary.write_seconds = round(time.perf_counter() - begin, 4)
            summary.written = True
        with self._timed():
            self.journal.close(remove=True)
        if self.journal.error is not None:
            log.warning("checkpoint journal was not fully written: %s", self.journal.error)
        summary.journal_seconds = round(self.journal_seconds, 4)
        return summary


async def fan_out(
    build: Build,
    phase: str,
    items: list[Any],
    fetch: Callable[[Any], Awaitable[dict[str, Any]]],
    apply: Callable[[dict[str, Node], dict[str, Any]], None],
    label: Callable[[Any], str],
    finished: Callable[[Any], None],
) -> None:
    """Fetch every item concurrently (the client bounds requests in flight); apply and
    journal each result as it lands, record each failure, report progress."""
    build.reporter.start(phase, len(items))

    async def one(item: Any) -> None:
        try:
            record = await fetch(item)
        except FetchError as error:
            build.fail(f"{phase}: {label(item)}", error)
        else:
            apply(build.nodes, record)
            build.record(record)
        finally:
            build.reporter.advance(phase)
            finished(item)

    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
    build.checkpoint()
    build.reporter.finish(phase)
