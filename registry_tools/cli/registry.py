"""`registry-tools synth` and `serve`: the stand-in registry's data and server."""

from __future__ import annotations

import argparse
import sys

from registry_tools.cli.args import (
    add_log_level,
    non_negative_float,
    non_negative_int,
    path,
    positive_int,
    rate,
)
from registry_tools.errors import UserError


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a realistic synthetic registry cache")
    p.add_argument("--nodes", type=positive_int, required=True, help="number of nodes (packages)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--output", type=path, required=True, help="cache file to write")
    add_log_level(p)
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from registry_tools import files
    from registry_tools.registry import synth

    files.check_output(args.output)
    cache = synth.generate(args.nodes, args.seed)
    files.write_atomic(args.output, files.dumps(cache))
    print(f"wrote {args.output}: {synth.summary(cache)}", file=sys.stderr)
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a cache as the registry API (emulator)")
    p.add_argument("--cache", type=path, required=True, help="cache file to serve")
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
    add_log_level(p)
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import fields

    from registry_tools.fetch import cache_file
    from registry_tools.registry.emulator import Emulator, Faults, serve

    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    emulator = Emulator(
        cache_file.load_cache(args.cache, "--cache"),
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


def add(sub: argparse._SubParsersAction) -> None:
    add_synth(sub)
    add_serve(sub)
