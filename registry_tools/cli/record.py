"""`registry-tools record`: (re-)record a cassette set."""

from __future__ import annotations

import argparse

from registry_tools.cli.args import (
    add_log_level,
    path,
    positive_int,
)


def add(sub: argparse._SubParsersAction) -> None:
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
        "--cassette-dir", type=path, help="where to write (default: cassettes/<dataset>)"
    )
    p.add_argument("--base-url", help="record this registry (e.g. https://api.comfy.org) instead")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight")
    add_log_level(p)
    p.set_defaults(run=_run_record)


def _run_record(args: argparse.Namespace) -> int:
    from registry_tools.fetch.client import check_base_url
    from registry_tools.replay.recording import record_dataset

    base_url = check_base_url(args.base_url) if args.base_url else None
    summary = record_dataset(args.dataset, args.cassette_dir, base_url, args.concurrency)
    print(summary.text())
    return 0 if summary.ok else 1
