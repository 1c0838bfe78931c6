"""Command line: parses flags and calls the library; every user error is one line, exit 2.

One module per subcommand (or pair of them), each with an `add(sub)` that declares its flags
and sets the library call it makes (`run`); `COMMANDS` lists them in `--help` order.
"""

from __future__ import annotations

import argparse
import logging
import sys

from registry_tools.cli import cache, mappings, notebook, record, registry, resolve
from registry_tools.cli.args import PROG, Parser
from registry_tools.errors import UserError

COMMANDS = (cache, notebook, registry, record, mappings, resolve)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
