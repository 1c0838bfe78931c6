"""`registry-tools notebook run|run-all|strip`: the notebooks, headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from registry_tools.cli.args import (
    PROG,
    Parser,
    add_log_level,
    path,
    positive_float,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebook", help="run the notebooks headless (papermill-style parameters)")
    actions = p.add_subparsers(dest="notebook_command", required=True, parser_class=Parser)
    params = argparse.ArgumentParser(add_help=False)
    params.add_argument(
        "-p",
        "--parameter",
        dest="params",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter with a Python literal (repeatable)",
    )
    params.add_argument(
        "--timeout",
        type=positive_float,
        default=600.0,
        help="seconds allowed per cell, fractions allowed (default 600, at most a week)",
    )
    add_log_level(params)
    run = actions.add_parser("run", parents=[params], help="execute one notebook")
    run.add_argument("notebook", help="a bundled notebook name (01_nodes) or an .ipynb path")
    run.add_argument(
        "--output", type=path, help="executed notebook (default notebook-output/NAME.ipynb)"
    )
    run.set_defaults(run=_run_notebook)
    run_all = actions.add_parser("run-all", parents=[params], help="execute 01..05 in order")
    run_all.add_argument(
        "--output-dir",
        type=path,
        default=Path("notebook-output"),
        help="where everything goes (default notebook-output)",
    )
    run_all.set_defaults(run=_run_all_notebooks)
    strip = actions.add_parser("strip", help="remove outputs from notebooks before committing")
    strip.add_argument("notebooks", nargs="*", help="notebooks (default: the bundled ones)")
    strip.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    strip.set_defaults(run=_strip_notebooks)


def _run_notebook(args: argparse.Namespace) -> int:
    from registry_tools.notebooks.runner import NotebookFailed, run_notebook

    try:
        done = run_notebook(args.notebook, args.output, args.params, timeout=args.timeout)
    except NotebookFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"executed notebook: {done.output} ({done.seconds:.1f} s)")
    for line in done.summaries:
        print(f"  {line}")
    return 0


def _run_all_notebooks(args: argparse.Namespace) -> int:
    from registry_tools.notebooks.runner import NotebookFailed, run_all

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = run_all(args.output_dir, args.params, timeout=args.timeout, log=log)
    except NotebookFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(result.text())
    return 0


def _strip_notebooks(args: argparse.Namespace) -> int:
    from registry_tools.notebooks.runner import strip_files

    dirty = strip_files(args.notebooks, write=not args.check)
    for notebook in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {notebook}", file=sys.stderr)
    return 1 if dirty and args.check else 0
