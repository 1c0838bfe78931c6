"""The state of one cache build (`Build`: nodes, journal, failures, checkpoints) and the
fan-out that the per-item parts of phases 2 and 3 share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.fetch.client import FetchError, RegistryClient
from registry_tools.fetch.options import CacheOptions, Node, RunSummary
from registry_tools.journal import Journal
from registry_tools.progress import Reporter, report_status

log = logging.getLogger(__name__)

JOURNAL_FORMAT = 2
RECORD_KINDS = ("page", "vpage", "versions", "bulk", "meta")


class JournalKept(UserError):
    """A write failed (a full disk) after work was done: the journal is kept for a resume."""


def journal_path(output: Path) -> Path:
    return Path(f"{output}.journal")


def set_aside_path(output: Path) -> Path:
    """Where a journal of another job is moved (one slot: the newest one wins)."""
    return Path(f"{output}.journal.set-aside")


class Build:
    """The state of one run: nodes by id, journal, failures, checkpoint cadence."""

    def __init__(self, options: CacheOptions, nodes: dict[str, Node], reporter: Reporter):
        self.options = options
        self.nodes = nodes
        self.reporter = reporter
        self.failures: list[str] = []
        self.replayed: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RECORD_KINDS}
        self.progressed = False
        self.resumed = False
        self.phase_stats: dict[str, dict[str, Any]] = {}
        self.listing: dict[str, Any] = {}
        self.journal_seconds = 0.0
        self.client: RegistryClient | None = None
        self._units_since_checkpoint = 0
        self.journal = Journal(journal_path(options.output), {})

    def open_journal(self, input_digest: str | None) -> None:
        """Resume from the journal of an interrupted run of this same job, if any; a journal
        of another job (other registry, input or options) is set aside, never replayed."""
        o = self.options
        self.journal.header = {
            "format": JOURNAL_FORMAT,
            "job": "cache",
            "base_url": o.base_url,
            "input": input_digest,
            "options": [o.nodes, o.versions, o.metadata, o.nodes_per_page, o.max_versions, o.pages],
        }
        self._set_aside_foreign()
        records = list(self.journal.replay())
        for record in records:
            if isinstance(record, dict) and record.get("k") in self.replayed:
                self.replayed[record["k"]].append(record)
        if records:
            log.warning("resuming: %d items replayed from %s", len(records), self.journal.path)
            self.progressed = self.resumed = True
        try:
            self.journal.open(records)
        except OSError as exc:
            raise UserError(f"cannot write {self.journal.path}: {exc.strerror or exc}") from None

    def _set_aside_foreign(self) -> None:
        path = self.journal.path
        try:
            with open(path, "rb") as handle:
                first = handle.readline()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            header = orjson.loads(first)
        except orjson.JSONDecodeError:
            header = None
        if header == self.journal.header or not first.endswith(b"\n"):
            return  # ours, or empty or torn: a run killed before its header was written
        aside = set_aside_path(self.options.output)
        os.replace(path, aside)
        log.warning(
            "%s belongs to another job (%s); moved it to %s and did not replay it",
            path,
            _difference(header, self.journal.header),
            aside,
        )

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
        if self.journal.error is not None:  # the writer thread failed (a full disk)
            raise JournalKept(
                f"cannot write {self.journal.path}: "
                f"{self.journal.error.strerror or self.journal.error}; what it holds is kept: "
                "free some space and run the same command again to resume"
            )
        # What exists now is mostly the cache, alive until the end: move it out of the
        # collector's sight, or every full collection walks the whole growing cache and a
        # run's GC time grows faster than its size. `finish` hands it back.
        gc.freeze()

    def fail(self, what: str, error: FetchError | str) -> None:
        message = f"{what}: {error}"
        # INFO, not WARNING: every front door lists the failures in its summary, once.
        log.info("failed: %s", message)
        self.failures.append(message)

    def status(self, phase: str, **values: Any) -> None:
        """Tell the progress bar how the run goes (rate, 429s, pending, listing)."""
        client = self.client
        if client is not None:
            values = {
                "rate": f"{client.pacer.current_rate():.1f}/s",
                "429": client.stats.rate_limited,
                **values,
            }
        report_status(self.reporter, phase, values)

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
        versions = [v for node in cache["nodes"] for v in node.get("versions_list", [])]
        elapsed = max(time.monotonic() - client.stats.started, 1e-9)
        summary = RunSummary(
            output=self.options.output,
            nodes=cache["node_count"],
            versions=cache["versions_processed"],
            metadata_entries=cache["metadata_entries"],
            requests=client.stats.requests,
            retries=client.stats.retries,
            rate_limited=client.stats.rate_limited,
            resent=client.stats.resent,
            pending=sum(1 for v in versions if v.get("metadata_pending")),
            rate=round(client.stats.requests / elapsed, 2) if client.stats.requests else 0.0,
            listing=dict(self.listing),
            failures=sorted(self.failures),
            timeline=client.stats.timeline,
            phase_stats=self.phase_stats,
        )
        if self.progressed or not self.failures:
            begin = time.perf_counter()
            try:
                files.write_atomic(self.options.output, files.dumps(cache))
            except UserError as exc:
                if not self.progressed:
                    raise
                self.journal.close(remove=False)
                raise JournalKept(
                    f"{exc}; this run's work is kept in {self.journal.path}: free some space "
                    "and run the same command again to finish without fetching it again"
                ) from None
            summary.write_seconds = round(time.perf_counter() - begin, 4)
            summary.written = True
        with self._timed():
            self.journal.close(remove=True)
        if self.journal.error is not None:
            log.warning("checkpoint journal was not fully written: %s", self.journal.error)
        summary.journal_seconds = round(self.journal_seconds, 4)
        return summary


def _difference(found: Any, wanted: dict[str, Any]) -> str:
    """What differs between a journal's header and this run's, for the warning (no secret is
    in a header: the base URL cannot carry credentials, the token is never written)."""
    if not isinstance(found, dict):
        return "not a cache journal"
    for key in ("job", "format", "base_url", "input", "options"):
        if found.get(key) != wanted.get(key):
            return f"its {key} is {found.get(key)!r}, this run's is {wanted.get(key)!r}"
    return "its header differs"


async def fan_out(
    build: Build,
    phase: str,
    items: list[Any],
    fetch: Callable[[Any], Awaitable[dict[str, Any]]],
    apply: Callable[[dict[str, Node], dict[str, Any]], None],
    label: Callable[[Any], str],
    finished: Callable[[Any], None],
    shown: Callable[[], dict[str, Any]] = dict,
) -> None:
    """Fetch every item concurrently (the client bounds and paces requests); apply and journal
    each result as it lands, record each failure, report progress (and `shown()`, what the
    phase adds to the bar's status)."""
    build.reporter.grow(phase, len(items))

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
            build.status(phase, **shown())
            finished(item)

    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
    build.checkpoint()
