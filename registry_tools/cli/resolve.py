"""`registry-tools resolve`: workflows (JSON, images, videos, `-`) to an installation plan."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from registry_tools.cli.args import add_log_level, add_registry_access, path, positive_int


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resolve",
        help="the packs a workflow needs: an installation plan (exit 1 if any type unresolved)",
    )
    p.add_argument(
        "workflow",
        nargs="+",
        help="ComfyUI workflow: UI or API JSON, a PNG/WebP/video ComfyUI saved, or - (stdin)",
    )
    p.add_argument(
        "--mappings",
        type=path,
        default=Path("node_mappings.json"),
        help="mappings file (default node_mappings.json)",
    )
    p.add_argument("--json", action="store_true", help="the plan as JSON (for tools)")
    p.add_argument("--details", action="store_true", help="text: every type's candidates too")
    p.add_argument("--combined", action="store_true", help="one plan for all the workflows")
    p.add_argument("--output", default="-", help="file to write the plan to (default - = stdout)")
    online = p.add_argument_group("live look-up of types the mappings do not know")
    online.add_argument("--online", action="store_true", help="ask the registry about them")
    add_registry_access(online)
    online.add_argument(
        "--concurrency", type=positive_int, default=4, help="requests in flight (default 4)"
    )
    online.add_argument("--cassette", type=path, help="record or replay the look-up's traffic")
    online.add_argument(
        "--record-mode",
        default="none",
        help="with --cassette: none (replay only, default), once, new_episodes, all",
    )
    add_log_level(p)
    p.set_defaults(run=_run_resolve)


def _run_resolve(args: argparse.Namespace) -> int:
    from registry_tools import files
    from registry_tools.errors import UserError
    from registry_tools.resolve.plan import format_details, format_text
    from registry_tools.resolve.resolver import resolve_files

    if args.cassette and not args.online:
        raise UserError("--cassette records or replays the --online look-up: add --online")
    output = None if files.is_stdio(args.output) else Path(args.output)
    if output is not None:
        inputs = [Path(w) for w in args.workflow if not files.is_stdio(w)]
        files.check_output(output, inputs=[*inputs, args.mappings, args.cassette])
    if sum(files.is_stdio(w) for w in args.workflow) > 1:
        raise UserError("standard input (-) can be read only once")
    lookup = _lookup(args) if args.online else None
    with _cassette(args):
        plans = resolve_files(args.workflow, args.mappings, combined=args.combined, lookup=lookup)
    if args.json:
        documents = [plan.to_json() for plan in plans]
        data = files.dumps(documents[0] if len(documents) == 1 else {"plans": documents})
    else:
        blocks = [
            format_text(plan) + (f"\n{format_details(plan)}" if args.details else "")
            for plan in plans
        ]
        data = ("\n\n".join(blocks) + "\n").encode("utf-8")
    files.write_output(args.output if output is None else output, data)
    return 1 if any(p.unresolved for p in plans) else 0


def _lookup(args: argparse.Namespace):
    from registry_tools.fetch.client import TOKEN_ENV, default_base_url
    from registry_tools.resolve.online import OnlineLookup

    return OnlineLookup(
        args.base_url or default_base_url(),
        args.concurrency,
        token=args.token or os.environ.get(TOKEN_ENV),
    )


@contextlib.contextmanager
def _cassette(args: argparse.Namespace) -> Iterator[None]:
    if not args.cassette:
        yield
        return
    from registry_tools.files import check_output
    from registry_tools.replay.cassettes import check_record_mode, use_cassette

    check_record_mode(args.record_mode)
    if args.record_mode != "none":
        check_output(args.cassette, "--cassette", inputs=[args.mappings])
    with use_cassette(args.cassette, args.record_mode):
        yield
