"""`run_cache`: the three phases of a cache build, with incremental refresh and crash-safe
checkpoints.

Phase 1 lists every node (`phase_nodes`: rounds of `/nodes` pages until the listing is
complete); phase 2 learns every version and its status (`phase_versions`: the bulk `/versions`
scan where it is cheaper, per-node listings otherwise and for what the scan missed, download
URLs from the bulk version read); phase 3 fetches comfy-nodes metadata for the newest
`max_versions` usable versions of each node (`phase_metadata`). Every finished unit of work is
one journal record, so a killed run resumes where it stopped, and the same record is applied
whether it was just fetched or replayed: one code path, one result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file, phase_metadata, phase_nodes, phase_versions
from registry_tools.fetch.build import Build, JournalKept, journal_path, set_aside_path
from registry_tools.fetch.client import RegistryClient, RetryPolicy
from registry_tools.fetch.options import (
    PHASE_METADATA,
    PHASE_NODES,
    PHASE_VERSIONS,
    CacheOptions,
    Node,
    PhaseContext,
    RunSummary,
)
from registry_tools.progress import Reporter, default_reporter

log = logging.getLogger(__name__)


def run_cache(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
    protected: Iterable[Path | None] = (),
) -> RunSummary:
    """Build or refresh a cache; safe to call from a notebook whose event loop is running.

    `protected` are directories the output must not be inside (the cassette set being
    replayed). Options and paths are checked before any work.
    """
    if not isinstance(options, CacheOptions):
        raise UserError(f"run_cache needs CacheOptions, got {type(options).__name__}")
    options.validate()
    check_paths(options, protected)
    job = run_cache_async(options, reporter, phase_context)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()


def check_paths(options: CacheOptions, protected: Iterable[Path | None] = ()) -> None:
    """Refuse, before any work, an output that cannot or must not be written: see
    `files.check_output`; also `-` (a cache build keeps a journal beside its output to
    resume from, which standard output cannot have) and an input that is the journal."""
    if files.is_stdio(options.output):
        raise UserError(
            "--output -: the cache is written to a file (it keeps a resumable journal beside "
            "it); write it to a file and read that"
        )
    files.check_output(  # `--input` may be the output (read first), not its journal
        options.output,
        "--output",
        protected=list(protected),
        companions=[journal_path(options.output), set_aside_path(options.output)],
        replaces=[options.input],
    )


async def run_cache_async(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
) -> RunSummary:
    """The asynchronous body of `run_cache` (options and paths already checked)."""
    started = time.monotonic()
    nodes, input_digest = _load_input(options.input)
    for stale in files.remove_stale_temporaries(options.output):
        log.info("removed %s, left by an interrupted write", stale)
    build = Build(options, nodes, reporter or default_reporter(options.progress))
    build.open_journal(input_digest)
    enter = phase_context or (lambda _phase: contextlib.nullcontext())
    policy = RetryPolicy(options.max_attempts, options.backoff, timeout=options.timeout)
    try:
        async with RegistryClient(
            options.base_url,
            options.concurrency,
            policy,
            options.token,
            max_rate=options.max_rate,
        ) as client:
            build.client = client
            for phase, wanted, body in (
                (PHASE_NODES, options.nodes, phase_nodes.run),
                (PHASE_VERSIONS, options.versions, phase_versions.run),
                (PHASE_METADATA, options.metadata, phase_metadata.run),
            ):
                if wanted:
                    with enter(phase) as context:
                        # answers replayed from a read-only cassette: no server to pace for
                        client.pacer.enabled = not getattr(context, "write_protected", False)
                        await body(client, build)
            summary = build.finish(client)
    except BaseException as exc:
        error = _user_error(exc)
        if isinstance(error, JournalKept):  # a full disk: the journal holds the work done
            build.journal.close(remove=False)
            raise error from None
        if error is not None:
            # Bad input found late (a cassette that cannot answer, say): exit 2 promises that
            # nothing was done, so this run's journal goes; a resumed one stays as it was.
            build.journal.close(remove=not build.resumed)
            raise error from None
        build.journal.close(remove=False)  # a crash or Ctrl-C: resumable
        raise
    summary.elapsed = round(time.monotonic() - started, 3)
    return summary


def _user_error(exc: BaseException) -> UserError | None:
    """The UserError that ended the run, also when a task group wrapped it."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _user_error(inner)) is not None:
                return found
    return None


def _load_input(path: Path | None) -> tuple[dict[str, Node], str | None]:
    """The input cache's nodes by id, and a digest that ties a journal to this input."""
    if path is None:
        return {}, None
    cache = cache_file.load_cache(path, strict=True)
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha1").hexdigest()
    except OSError as exc:
        raise UserError(f"--input {path}: cannot read ({exc.strerror or exc})") from None
    return {node["id"]: node for node in cache["nodes"]}, digest
