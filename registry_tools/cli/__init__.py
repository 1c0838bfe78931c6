"""Command line: parses flags and calls the library; every user error is one line, exit 2.

One module per subcommand (or pair of them), each with an `add(sub)` that declares its flags
and sets the library call it makes (`run`); `COMMANDS` lists them in `--help` order.

Manners every subcommand shares: one error prefix (`registry-tools: error: ...`), each failure
printed once (in the command's summary), log lines that never break a progress bar (logging
goes through tqdm while a command runs), `--version`, and `--help` showing defaults and
choices (`args.HelpFormatter`).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys

from registry_tools import __version__
from registry_tools.cli import cache, mappings, notebook, record, registry, resolve
from registry_tools.cli.args import PROG, Parser
from registry_tools.errors import UserError

COMMANDS = (cache, notebook, registry, record, mappings, resolve)

# Subcommands that need the `notebooks` extra, and the modules it installs that they import
# (checked before any work; any of them or their own dependencies missing later is the same
# one line).
NOTEBOOK_COMMANDS = frozenset({"notebook"})
NOTEBOOK_MODULES = ("nbclient", "nbformat", "ipykernel", "ipywidgets", "matplotlib", "zmq")
NOTEBOOK_STACK = frozenset(
    {*NOTEBOOK_MODULES, "traitlets", "jupyter_client", "jupyter_core", "IPython", "jupyterlab"}
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
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
        missing = _missing_notebook_module() if args.command in NOTEBOOK_COMMANDS else None
        if missing:
            return _no_notebooks_extra(args.command, missing)
        return _run(args)
    except UserError as exc:
        return _error(str(exc))
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in NOTEBOOK_STACK:
            raise
        return _no_notebooks_extra(args.command, exc.name or "")
    except BrokenPipeError:  # `... | head` closed standard output: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the system refused something no check foresaw: still one line
        where = f" ({exc.filename})" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """The subcommand, with log lines written through tqdm so they never break a bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        return int(args.run(args) or 0)


def _missing_notebook_module() -> str | None:
    return next((m for m in NOTEBOOK_MODULES if importlib.util.find_spec(m) is None), None)


def _no_notebooks_extra(command: str, module: str) -> int:
    return _error(
        f"{command}: needs the notebooks extra, which is not installed (no module "
        f"{module!r}): pip install 'registry-tools[notebooks]'"
    )


def _error(message: str) -> int:
    """The one line every user error gets (exit 2)."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
