"""`registry-tools record`: (re-)record a cassette set."""

from __future__ import annotations

import argparse
import sys

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
    from registry_tools.replay.cassettes import read_manifest
    from registry_tools.replay.recording import dataset_directory, record_dataset

    base_url = check_base_url(args.base_url) if args.base_url else None
    directory = dataset_directory(args.dataset, args.cassette_dir)
    summary = record_dataset(args.dataset, directory, base_url, args.concurrency)
    phases = read_manifest(directory).get("phases", {}) if summary.ok else {}
    recorded = f"recorded {directory} ({sum(phases.values())} interactions in {len(phases)} "
    print(
        (recorded + "cassettes)" if summary.ok else f"recording {directory} failed")
        + f": {summary.nodes} nodes, {summary.versions} versions, "
        f"{summary.metadata_entries} metadata entries; {summary.requests} requests, "
        f"{summary.retries} retries, {len(summary.failures)} failures; {summary.elapsed:.2f} s"
    )
    for failure in summary.failures[:20]:
        print(f"  failed: {failure}", file=sys.stderr)
    return 0 if summary.ok else 1
