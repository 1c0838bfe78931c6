"""Command line: parses flags and calls the library; every user error is one line, exit 2.

One module per subcommand (or pair of them), each with an `add(sub)` that declares its flags
and sets the library call it makes (`run`); `COMMANDS` lists them in `--help` order.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
        return _error(str(exc))
    except BrokenPipeError:  # `... | head` closed standard output: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the system refused something no check foresaw: still one line
        where = f" ({exc.filename})" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _error(message: str) -> int:
    """The one line every user error gets (exit 2)."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
