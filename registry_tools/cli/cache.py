"""`registry-tools cache`: build or refresh the registry cache, live or from cassettes."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from registry_tools.cli.args import (
    PROG,
    add_log_level,
    add_progress,
    add_registry_access,
    non_negative_float,
    path,
    positive_float,
    positive_int,
    versions_limit,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="build or refresh the registry cache (three phases)")
    p.add_argument("--output", type=path, default=Path("cache.json"), help="cache file to write")
    p.add_argument("--input", type=path, help="existing cache to refresh incrementally")
    p.add_argument("--no-nodes", dest="nodes", action="store_false", help="skip phase 1")
    p.add_argument("--no-versions", dest="versions", action="store_false", help="skip phase 2")
    p.add_argument("--no-metadata", dest="metadata", action="store_false", help="skip phase 3")
    p.add_argument("--nodes-per-page", type=positive_int, help="phase 1 page size (default 500)")
    p.add_argument(
        "--max-versions",
        type=versions_limit,
        help="metadata of each node's newest N installable versions (default 5; -1: all)",
    )
    p.add_argument("--concurrency", type=positive_int, default=10, help="requests in flight")
    p.add_argument(
        "--max-rate",
        type=positive_float,
        help="most requests per second; the rate adapts below it on 429s (default: 15 for "
        "the public registry, no ceiling for other hosts)",
    )
    p.add_argument(
        "--checkpoint-interval", type=positive_int, default=20, help="nodes per checkpoint"
    )
    p.add_argument("--pages", type=positive_int, help="fetch at most this many pages (default all)")
    add_registry_access(p)
    p.add_argument("--max-attempts", type=positive_int, default=6, help="tries per request")
    p.add_argument(
        "--backoff", type=non_negative_float, help="first back-off in seconds (default 0.5)"
    )
    p.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per request")
    p.add_argument("--cassette-dir", type=path, help="record or replay one cassette per phase")
    p.add_argument(
        "--record-mode",
        default="none",
        help="with --cassette-dir: none (replay only, default), once, new_episodes, all",
    )
    add_progress(p)
    add_log_level(p)
    p.set_defaults(run=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from registry_tools.fetch.client import TOKEN_ENV, default_base_url
    from registry_tools.fetch.run import check_paths, run_cache

    args.base_url = args.base_url or default_base_url()
    args.token = args.token or os.environ.get(TOKEN_ENV)
    if args.cassette_dir:
        check_paths(_options(args), protected=[args.cassette_dir])
    context = _cache_cassettes(args) if args.cassette_dir else None
    options = _options(args)
    if context is not None and args.record_mode == "none":
        from registry_tools.replay.recording import check_replayable

        check_replayable(args.cassette_dir, options)
    summary = run_cache(options, phase_context=context, protected=[args.cassette_dir])
    print(summary.text(), file=sys.stderr)
    for failure in summary.failures[:20]:
        print(f"  failed: {failure}", file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"  ... and {len(summary.failures) - 20} more failures", file=sys.stderr)
    if summary.failures:
        retry = options.output if summary.written else options.input
        hint = f" (re-run with --input {retry} to retry only those)" if retry else ""
        items = "item" if len(summary.failures) == 1 else "items"
        print(f"{PROG}: error: {len(summary.failures)} {items} failed{hint}", file=sys.stderr)
        return 1
    return 0


def _options(args: argparse.Namespace):
    """The CacheOptions of the flags (checked: a bad combination is one line, exit 2)."""
    from registry_tools.fetch.options import CacheOptions

    defaults = {
        "nodes_per_page": CacheOptions.nodes_per_page,
        "max_versions": CacheOptions.max_versions,
        "backoff": CacheOptions.backoff,
    }
    values = {f.name: getattr(args, f.name, None) for f in fields(CacheOptions)}
    for name, value in defaults.items():
        if values[name] is None:
            values[name] = value
    return CacheOptions(**values)


def _cache_cassettes(args: argparse.Namespace):
    """The per-phase cassettes; a replay takes unset fetch options from the manifest."""
    from registry_tools.replay.cassettes import phase_cassettes

    context = phase_cassettes(args.cassette_dir, args.record_mode)
    if args.record_mode == "none":
        from registry_tools.replay.recording import replay_defaults

        for name, value in replay_defaults(args.cassette_dir).items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
    return context
