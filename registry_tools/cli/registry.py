"""`registry-tools synth` and `serve`: the stand-in registry's data and server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from registry_tools.cli.args import (
    add_log_level,
    non_negative_float,
    non_negative_int,
    path,
    positive_int,
    rate,
)
from registry_tools.errors import UserError


def _node_count(text: str) -> int:
    """argparse type: a package count from 1 to synth's MAX_NODES."""
    from registry_tools.registry.synth_tables import MAX_NODES

    value = positive_int(text)
    if value > MAX_NODES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_NODES:,} (about twice the real registry), got {value:,}"
        )
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {value}")
    return value


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a realistic synthetic registry cache")
    p.add_argument(
        "--nodes",
        type=_node_count,
        required=True,
        help="number of nodes (packages), 1 to 10,000; the cache takes about 45 MB per 1,000",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument(
        "--ideal",
        action="store_true",
        help="every extraction finished and every version's metadata kept (default: as a "
        "fetch leaves them, some pending or failed, none for unusable versions)",
    )
    p.add_argument("--output", type=path, required=True, help="cache file to write (- for stdout)")
    add_log_level(p)
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from registry_tools import files
    from registry_tools.registry import synth

    if not files.is_stdio(args.output):
        files.check_output(args.output)
    cache = synth.generate(args.nodes, args.seed, ideal=args.ideal)
    files.write_output(args.output, files.dumps(cache))
    print(f"wrote {args.output}: {synth.summary(cache)}", file=sys.stderr)
    return 0


# Behaviour fields and their flags: (field, argparse type, what it does).
BEHAVIOUR_FLAGS = (
    ("rate_limit", non_negative_float, "requests per second over all requests; 0: no limit"),
    ("rate_burst", non_negative_float, "token-bucket size: requests admitted at once"),
    ("rate_retry_after", non_negative_float, "Retry-After seconds on a rate-limit 429"),
    ("drift_rows", non_negative_int, "rows of the /nodes order moved before each request"),
    ("page_cache_seconds", non_negative_float, "seconds a /nodes page is cached"),
    ("pending_share", rate, "share of versions whose extraction is pending"),
    ("failed_share", rate, "share of versions whose extraction failed"),
)
SWITCHES = (
    ("install_effects", "/install increments downloads and refuses a non x.y.z version (400)"),
    ("enforce_statuses", "hide banned/deleted packages from listings; 403/404 on their pages"),
)


def add_serve(sub: argparse._SubParsersAction) -> None:
    from registry_tools.registry.behaviour import Behaviour

    p = sub.add_parser("serve", help="serve a cache as the registry API (emulator, offline mirror)")
    p.add_argument("--cache", type=path, required=True, help="cache file to serve")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 or :: serve every network, with a "
        "warning)",
    )
    p.add_argument("--port", type=_port, default=0, help="TCP port (default 0: any free one)")
    faults = p.add_argument_group("injected faults (off unless given)")
    faults.add_argument(
        "--latency-ms", type=non_negative_float, default=0, help="delay per request (default 0)"
    )
    for kind, what in (
        ("429", "429 with Retry-After"),
        ("429-bare", "429 without Retry-After"),
        ("500", "500"),
        ("drop", "connection closed without an answer"),
        ("truncate", "half a body, then the connection closed"),
    ):
        faults.add_argument(
            f"--rate-{kind}", type=rate, default=0.0, help=f"share of {what} (default 0)"
        )
    faults.add_argument(
        "--retry-after",
        type=non_negative_float,
        default=1.0,
        help="Retry-After seconds of --rate-429 (default 1)",
    )
    faults.add_argument(
        "--max-consecutive-faults",
        type=non_negative_int,
        default=3,
        help="at most this many faults in a row per request (default 3)",
    )
    real = Behaviour.realistic()
    behaviours = p.add_argument_group(
        "real-service behaviours (off unless given; --realistic turns all on, flags override)"
    )
    behaviours.add_argument(
        "--realistic",
        action="store_true",
        help="every behaviour at the real registry's magnitudes (docs/emulator.md)",
    )
    for name, kind, what in BEHAVIOUR_FLAGS:
        preset = getattr(real, name)
        behaviours.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=None,
            help=f"{what} (default {_shown(getattr(Behaviour(), name))}; "
            f"--realistic: {_shown(preset)})",
        )
    for name, what in SWITCHES:
        behaviours.add_argument(
            "--" + name.replace("_", "-"),
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{what} (off by default; on with --realistic)",
        )
    p.add_argument("--seed", type=int, default=0, help="seed of faults and behaviours (default 0)")
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


def _shown(value: object) -> str:
    return "none (bare 429s)" if value is None else f"{value:g}"


def behaviour_from_args(args: argparse.Namespace) -> Any:
    """The Behaviour the flags ask for: the preset (or none), then each flag given."""
    from dataclasses import replace

    from registry_tools.registry.behaviour import Behaviour

    base = Behaviour.realistic(args.seed) if args.realistic else Behaviour(seed=args.seed)
    names = [name for name, *_ in BEHAVIOUR_FLAGS] + [name for name, _ in SWITCHES]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return replace(base, **given)


def _run_serve(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import fields

    from registry_tools.fetch import cache_file
    from registry_tools.registry.emulator import Emulator, Faults, serve

    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    behaviour = behaviour_from_args(args)
    emulator = Emulator(
        cache_file.load_cache(args.cache, "--cache"),
        faults,
        missing_download_rate=args.missing_download_rate,
        legacy_total_pages=args.legacy_total_pages,
        behaviour=behaviour,
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
