"""`registry-tools resolve`: a workflow's node types to packages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from registry_tools.cli.args import (
    add_log_level,
    path,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resolve",
        help="list candidate packages for a workflow's custom nodes (exit 1 if any unresolved)",
    )
    p.add_argument("workflow", type=path, help="ComfyUI workflow (UI or API format)")
    p.add_argument(
        "--mappings", type=path, default=Path("node_mappings.json"), help="mappings file"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    add_log_level(p)
    p.set_defaults(run=_run_resolve)


def _run_resolve(args: argparse.Namespace) -> int:
    from registry_tools.resolve.resolver import format_text, resolve_files

    resolution = resolve_files(args.workflow, args.mappings)
    if args.json:
        from registry_tools.files import dumps

        sys.stdout.write(dumps(resolution.to_json()).decode("utf-8"))
    else:
        print(format_text(resolution))
    return 1 if resolution.unresolved else 0
