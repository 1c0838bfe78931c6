"""argparse pieces every subcommand shares: one-line errors, value types, common flags."""

from __future__ import annotations

import argparse
from pathlib import Path

PROG = "registry-tools"


class HelpFormatter(argparse.HelpFormatter):
    """`--help` shows every option's default (unless its help already says it) and choices.

    argparse's `ArgumentDefaultsHelpFormatter` would repeat defaults the help text already
    states and print `(default: None)` for options without one.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.nargs == 0:  # said already, or a flag (on when given)
            return text
        if action.default is None or action.default is argparse.SUPPRESS or action.default == []:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's manners: a bad flag is one line on stderr with the one error
    prefix every failure has (`registry-tools: error: ...`, naming the subcommand), exit 2;
    `--help` shows defaults and choices."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"{PROG}: error: {where}{message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def versions_limit(text: str) -> int:
    """argparse type: -1 (all) or an integer >= 1."""
    value = _int(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (all) or at least 1, got {value}")
    return value


def rate(text: str) -> float:
    """argparse type: a probability between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging verbosity on stderr (default WARNING)",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )


def add_registry_access(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--base-url` and `--token`, as every command that talks to the registry has them."""
    parser.add_argument(
        "--base-url",
        help="registry API (default: $REGISTRY_TOOLS_BASE_URL, else https://api.comfy.org)",
    )
    parser.add_argument("--token", help="bearer token (default: $REGISTRY_TOOLS_TOKEN)")


def path(text: str) -> Path:
    return Path(text)
