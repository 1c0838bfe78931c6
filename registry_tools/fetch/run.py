"""`run_cache`: the three phases of a cache build, with incremental refresh and crash-safe
checkpoints.

Phase 1 pages `/nodes` (`phase_nodes`); phase 2 fetches each node's versions, and `/install`
for versions whose listing lacks a download URL (`phase_versions`); phase 3 fetches comfy-nodes
metadata for the newest `max_versions` versions of each node (`phase_metadata`). Every finished
unit of work is one journal record, so a killed run resumes where it stopped, and the same
record is applied whether it was just fetched or replayed: one code path, one result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import time
from pathlib import Path

from registry_tools import files
from registry_tools.fetch import cache_file, phase_metadata, phase_nodes, phase_versions
from registry_tools.fetch.build import Build
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


def run_cache(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
) -> RunSummary:
    """Build or refresh a cache; safe to call from a notebook whose event loop is running."""
    options.validate()
    job = run_cache_async(options, reporter, phase_context)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()


async def run_cache_async(
    options: CacheOptions,
    reporter: Reporter | None = None,
    phase_context: PhaseContext | None = None,
) -> RunSummary:
    """The asynchronous body of `run_cache` (options already validated)."""
    started = time.monotonic()
    files.check_output(options.output)
    nodes, input_digest = _load_input(options.input)
    build = Build(options, nodes, reporter or default_reporter(options.progress))
    build.open_journal(input_digest)
    enter = phase_context or (lambda _phase: contextlib.nullcontext())
    policy = RetryPolicy(options.max_attempts, options.backoff, timeout=options.timeout)
    try:
        async with RegistryClient(
            options.base_url, options.concurrency, policy, options.token
        ) as client:
            for phase, wanted, body in (
                (PHASE_NODES, options.nodes, phase_nodes.run),
                (PHASE_VERSIONS, options.versions, phase_versions.run),
                (PHASE_METADATA, options.metadata, phase_metadata.run),
            ):
                if wanted:
                    with enter(phase):
                        await body(client, build)
            summary = build.finish(client)
    except BaseException:
        build.journal.close(remove=False)
        raise
    summary.elapsed = round(time.monotonic() - started, 3)
    return summary


def _load_input(path: Path | None) -> tuple[dict[str, Node], str | None]:
    """The input cache's nodes by id, and a digest that ties a journal to this input."""
    if path is None:
        return {}, None
    cache = cache_file.load_cache(path)
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha1").hexdigest()
    return {node["id"]: node for node in cache["nodes"]}, digest
