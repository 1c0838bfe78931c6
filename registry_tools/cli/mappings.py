"""`registry-tools mappings`: build node_mappings.json offline from a cache."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from registry_tools.cli.args import (
    add_log_level,
    add_progress,
    path,
    positive_int,
    versions_limit,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mappings", help="build node_mappings.json offline from a cache")
    p.add_argument("--cache", type=path, required=True, help="registry cache to read")
    p.add_argument(
        "--input", type=path, help="earlier mappings: only what changed in the cache is processed"
    )
    p.add_argument(
        "--output",
        type=path,
        default=Path("node_mappings.json"),
        help="mappings file to write ('-': standard output, without index or journal)",
    )
    p.add_argument(
        "--max-versions", type=versions_limit, default=-1, help="newest N versions (-1 all)"
    )
    p.add_argument(
        "--checkpoint-interval", type=positive_int, default=50, help="packages per checkpoint"
    )
    p.add_argument(
        "--manager",
        metavar="SOURCE",
        help="add ComfyUI-Manager's packs: a directory with its lists, a comfyui-manager wheel, "
        "'installed' (or a distribution name), or 'live' (its GitHub repository)",
    )
    p.add_argument(
        "--manager-url",
        help="with --manager live: where the lists are (default: $REGISTRY_TOOLS_MANAGER_URL, "
        "else the Manager's main branch on raw.githubusercontent.com)",
    )
    p.add_argument(
        "--manager-cassette",
        type=path,
        help="with --manager live: replay (or, with --record-mode, record) that traffic",
    )
    p.add_argument(
        "--record-mode",
        default="none",
        help="with --manager-cassette: none (replay only, default), once, new_episodes, all",
    )
    p.add_argument("--aliases", type=path, help="package aliases file (legacy id -> id)")
    add_progress(p)
    add_log_level(p)
    p.set_defaults(run=_run_mappings)


def _run_mappings(args: argparse.Namespace) -> int:
    from registry_tools.errors import UserError
    from registry_tools.mappings.build import MappingsOptions, build_mappings
    from registry_tools.progress import default_reporter

    options = MappingsOptions(
        cache=args.cache,
        output=args.output,
        input=args.input,
        max_versions=args.max_versions,
        checkpoint_interval=args.checkpoint_interval,
        manager=args.manager,
        manager_url=args.manager_url,
        aliases=args.aliases,
    )
    for flag, value in (
        ("--manager-url", args.manager_url),
        ("--manager-cassette", args.manager_cassette),
    ):
        if value is not None and args.manager != "live":
            raise UserError(f"{flag} needs --manager live")
    cassette: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.manager_cassette is not None:
        from registry_tools.replay.cassettes import use_cassette

        cassette = use_cassette(args.manager_cassette, args.record_mode)
    with cassette:
        report = build_mappings(options, default_reporter(args.progress))
    print(report.summary(), file=sys.stderr)
    for example in report.problem_examples[:5]:
        print(f"  malformed: {example}", file=sys.stderr)
    return 0
