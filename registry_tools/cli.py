"""Command line: parses flags and calls the library; every user error is one line, exit 2.

Each subcommand has one `_add_<name>` function below that declares its flags and the library
call it makes; `_SUBCOMMANDS` lists them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from .errors import UserError

PROG = "registry-tools"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging verbosity on stderr (default WARNING)",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def subcommand(add: Callable[[argparse._SubParsersAction], None]):
    """Register an `_add_<name>` function that declares one subcommand."""
    _SUBCOMMANDS.append(add)
    return add


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
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


# ---- subcommands ---------------------------------------------------------------------------
# Each `_add_<name>` is decorated with @subcommand, declares flags, and sets `run`.


def _path(text: str) -> Path:
    return Path(text)


@subcommand
def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="build or refresh the registry cache (three phases)")
    p.add_argument("--output", type=_path, default=Path("cache.json"), help="cache file to write")
    p.add_argument("--input", type=_path, help="existing cache to refresh incrementally")
    p.add_argument("--no-nodes", dest="nodes", action="store_false", help="skip phase 1")
    p.add_argument("--no-versions", dest="versions", action="store_false", help="skip phase 2")
    p.add_argument("--no-metadata", dest="metadata", action="store_false", help="skip phase 3")
    p.add_argument("--nodes-per-page", type=positive_int, help="phase 1 page size (default 100)")
    p.add_argument(
        "--max-versions", type=versions_limit, help="newest N versions (default -1: all)"
    )
    p.add_argument("--concurrency", type=positive_int, default=10, help="requests in flight")
    p.add_argument(
        "--checkpoint-interval", type=positive_int, default=20, help="nodes per checkpoint"
    )
    p.add_argument("--pages", type=positive_int, help="fetch at most this many pages (default all)")
    p.add_argument(
        "--base-url",
        help="registry API (default: $REGISTRY_TOOLS_BASE_URL, else https://api.comfy.org)",
    )
    p.add_argument("--max-attempts", type=positive_int, default=6, help="tries per request")
    p.add_argument(
        "--backoff", type=non_negative_float, help="first back-off in seconds (default 0.5)"
    )
    p.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per request")
    p.add_argument("--token", help="bearer token (default: $REGISTRY_TOOLS_TOKEN)")
    p.add_argument("--cassette-dir", type=_path, help="record or replay one cassette per phase")
    p.add_argument(
        "--record-mode",
        default="none",
        help="with --cassette-dir: none (replay only, default), once, new_episodes, all",
    )
    _add_progress(p)
    _add_log_level(p)
    p.set_defaults(run=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from .client import TOKEN_ENV, default_base_url
    from .phases import CacheOptions, run_cache

    args.base_url = args.base_url or default_base_url()
    args.token = args.token or os.environ.get(TOKEN_ENV)
    context = _cache_cassettes(args) if args.cassette_dir else None
    defaults = {"nodes_per_page": 100, "max_versions": -1, "backoff": CacheOptions.backoff}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    options = CacheOptions(**{f.name: getattr(args, f.name) for f in fields(CacheOptions)})
    if context is not None and args.record_mode == "none":
        from .recording import check_replayable

        check_replayable(args.cassette_dir, options)
    summary = run_cache(options, phase_context=context)
    print(summary.text(), file=sys.stderr)
    for failure in summary.failures[:20]:
        print(f"  failed: {failure}", file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"  ... and {len(summary.failures) - 20} more failures", file=sys.stderr)
    if summary.failures:
        retry = options.output if summary.written else options.input
        hint = f" (re-run with --input {retry} to retry only those)" if retry else ""
        print(f"{PROG}: error: {len(summary.failures)} items failed{hint}", file=sys.stderr)
        return 1
    return 0


def _cache_cassettes(args: argparse.Namespace):
    """The per-phase cassettes; a replay takes unset fetch options from the manifest."""
    from .cassettes import phase_cassettes

    context = phase_cassettes(args.cassette_dir, args.record_mode)
    if args.record_mode == "none":
        from .recording import replay_defaults

        for name, value in replay_defaults(args.cassette_dir).items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
    return context


@subcommand
def _add_notebook(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebook", help="run the notebooks headless (papermill-style parameters)")
    actions = p.add_subparsers(dest="notebook_command", required=True, parser_class=_Parser)
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
        "--timeout", type=positive_float, default=600.0, help="seconds allowed per cell"
    )
    _add_log_level(params)
    run = actions.add_parser("run", parents=[params], help="execute one notebook")
    run.add_argument("notebook", help="a bundled notebook name (01_nodes) or an .ipynb path")
    run.add_argument(
        "--output", type=_path, help="executed notebook (default notebook-output/NAME.ipynb)"
    )
    run.set_defaults(run=_run_notebook)
    run_all = actions.add_parser("run-all", parents=[params], help="execute 01..05 in order")
    run_all.add_argument(
        "--output-dir",
        type=_path,
        default=Path("notebook-output"),
        help="where everything goes (default notebook-output)",
    )
    run_all.set_defaults(run=_run_all_notebooks)
    strip = actions.add_parser("strip", help="remove outputs from notebooks before committing")
    strip.add_argument("notebooks", nargs="*", help="notebooks (default: the bundled ones)")
    strip.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    strip.set_defaults(run=_strip_notebooks)


def _run_notebook(args: argparse.Namespace) -> int:
    from .notebook import NotebookFailed, run_notebook

    try:
        done = run_notebook(args.notebook, args.output, args.params, timeout=args.timeout)
    except NotebookFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"executed notebook: {done.output} ({done.seconds:.1f} s)")
    return 0


def _run_all_notebooks(args: argparse.Namespace) -> int:
    from .notebook import NotebookFailed, run_all

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
    from .notebook import strip_files

    dirty = strip_files(args.notebooks, write=not args.check)
    for path in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {path}", file=sys.stderr)
    return 1 if dirty and args.check else 0


@subcommand
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a realistic synthetic registry cache")
    p.add_argument("--nodes", type=positive_int, required=True, help="number of nodes (packages)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--output", type=_path, required=True, help="cache file to write")
    _add_log_level(p)
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from . import store, synth

    store.check_writable(args.output)
    cache = synth.generate(args.nodes, args.seed)
    store.write_atomic(args.output, store.dumps(cache))
    print(f"wrote {args.output}: {synth.summary(cache)}", file=sys.stderr)
    return 0


@subcommand
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a cache as the registry API (emulator)")
    p.add_argument("--cache", type=_path, required=True, help="cache file to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=non_negative_int, default=0, help="port (default 0: any free)")
    p.add_argument("--latency-ms", type=non_negative_float, default=0, help="delay per request")
    for kind, what in (
        ("429", "429 with Retry-After"),
        ("429-bare", "429 without Retry-After"),
        ("500", "500"),
        ("drop", "connection closed without an answer"),
        ("truncate", "half a body, then the connection closed"),
    ):
        p.add_argument(f"--rate-{kind}", type=rate, default=0.0, help=f"share of {what}")
    p.add_argument(
        "--retry-after", type=non_negative_float, default=1.0, help="Retry-After seconds"
    )
    p.add_argument("--seed", type=int, default=0, help="fault seed (same seed, same faults)")
    p.add_argument(
        "--max-consecutive-faults", type=non_negative_int, default=3, help="fault streak cap"
    )
    p.add_argument(
        "--missing-download-rate",
        type=rate,
        default=0.1,
        help="share of versions listed without downloadUrl (default 0.1)",
    )
    p.add_argument(
        "--legacy-total-pages", action="store_true", help="comfy-nodes pages say totalPages"
    )
    _add_log_level(p)
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import fields

    from . import store
    from .emulator import Emulator, Faults, serve

    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    emulator = Emulator(
        store.load_cache(args.cache, "--cache"),
        faults,
        missing_download_rate=args.missing_download_rate,
        legacy_total_pages=args.legacy_total_pages,
    )

    def ready(url: str) -> None:
        print(f"serving {url}", flush=True)

    try:
        asyncio.run(serve(emulator, args.host, args.port, ready))
    except OSError as exc:  # the address is taken or not ours
        raise UserError(f"--host/--port: {exc.strerror or exc}") from None
    print(f"emulator: {emulator.counters.summary()}", file=sys.stderr)
    return 0


@subcommand
def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="re-record a cassette set: a synthetic one from the emulator, or a real registry",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="data set name: a synthetic recipe (sample) or, with --base-url, any label",
    )
    p.add_argument(
        "--cassette-dir", type=_path, help="where to write (default: cassettes/<dataset>)"
    )
    p.add_argument("--base-url", help="record this registry (e.g. https://api.comfy.org) instead")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight")
    _add_log_level(p)
    p.set_defaults(run=_run_record)


def _run_record(args: argparse.Namespace) -> int:
    from .client import check_base_url
    from .recording import record_dataset

    base_url = check_base_url(args.base_url) if args.base_url else None
    summary = record_dataset(args.dataset, args.cassette_dir, base_url, args.concurrency)
    print(summary.text())
    return 0 if summary.ok else 1


@subcommand
def _add_mappings(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mappings", help="build node_mappings.json offline from a cache")
    p.add_argument("--cache", type=_path, required=True, help="registry cache to read")
    p.add_argument(
        "--input", type=_path, help="earlier mappings: only what changed in the cache is processed"
    )
    p.add_argument(
        "--output", type=_path, default=Path("node_mappings.json"), help="mappings file to write"
    )
    p.add_argument(
        "--max-versions", type=versions_limit, default=-1, help="newest N versions (-1 all)"
    )
    p.add_argument(
        "--checkpoint-interval", type=positive_int, default=50, help="packages per checkpoint"
    )
    _add_progress(p)
    _add_log_level(p)
    p.set_defaults(run=_run_mappings)


def _run_mappings(args: argparse.Namespace) -> int:
    from .mappings import MappingsOptions, build_mappings
    from .progress import default_reporter

    options = MappingsOptions(
        cache=args.cache,
        output=args.output,
        input=args.input,
        max_versions=args.max_versions,
        checkpoint_interval=args.checkpoint_interval,
    )
    report = build_mappings(options, default_reporter(args.progress))
    print(report.summary(), file=sys.stderr)
    for example in report.problem_examples[:5]:
        print(f"  malformed: {example}", file=sys.stderr)
    return 0


@subcommand
def _add_resolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resolve",
        help="list candidate packages for a workflow's custom nodes (exit 1 if any unresolved)",
    )
    p.add_argument("workflow", type=_path, help="ComfyUI workflow (UI or API format)")
    p.add_argument(
        "--mappings", type=_path, default=Path("node_mappings.json"), help="mappings file"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    _add_log_level(p)
    p.set_defaults(run=_run_resolve)


def _run_resolve(args: argparse.Namespace) -> int:
    from .resolve import format_text, resolve_files

    resolution = resolve_files(args.workflow, args.mappings)
    if args.json:
        from .store import dumps

        sys.stdout.write(dumps(resolution.to_json()).decode("utf-8"))
    else:
        print(format_text(resolution))
    return 1 if resolution.unresolved else 0
