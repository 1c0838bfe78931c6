"""Benchmark `registry-tools mappings` at the registry's full scale, full build vs incremental.

    python bench/bench_mappings.py [--nodes 2913] [--seed 1] [--repeat 3] [--workdir DIR]
                                   [--baseline DIR]

Builds a synthetic cache (`registry_tools.synth`), a copy with 1 % more versions (new releases
of random packages, with changed inputs), then measures in fresh child processes, so each peak
RSS is that run's own: a full build of the grown cache, and an incremental build of it from
the mappings of the original cache. Prints wall time of the build call, wall time of the whole
`python -m registry_tools mappings` command, peak RSS, and the ratios; checks that the
incremental output is byte-identical to the full one. The load average is printed before and
after (the machine is shared: compare figures from one run).

`--baseline DIR` also times, in the same run and on the same files, the package found in DIR
(for instance `git archive HEAD registry_tools | tar -x -C DIR`), for before/after figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.fetch import cache_file
from registry_tools.registry import synth
from registry_tools.semver import version_key

# Runs one build and reports its own timing and peak RSS. VmHWM, not ru_maxrss: the latter
# survives exec, so a child forked from this (large) parent would report the parent's size.
CHILD = """
import json, sys, time
from pathlib import Path
from registry_tools.mappings.build import MappingsOptions, build_mappings
import registry_tools
cache, output, previous = sys.argv[1:4]
start, cpu = time.perf_counter(), time.process_time()
report = build_mappings(MappingsOptions(
    cache=Path(cache), output=Path(output), input=Path(previous) if previous else None))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
peak = int(status.split()[0]) * 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak": peak, "parsed": report.versions_parsed,
                  "reused": report.versions_reused, "summary": report.summary(),
                  "package": registry_tools.__file__}))
"""

ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1795478400"}


def grow(cache: dict[str, Any], share: float, seed: int) -> dict[str, Any]:
    """A copy of `cache` with `share` x its version count of new releases: each bumps the
    patch of a random package's newest version and adds an input to its first comfy node."""
    rng = random.Random(seed)
    grown = copy.deepcopy(cache)
    candidates = [n for n in grown["nodes"] if n.get("versions_list")]
    for serial in range(round(share * grown["versions_processed"])):
        package = rng.choice(candidates)
        newest = max(package["versions_list"], key=lambda v: version_key(v["version"]))
        release = copy.deepcopy(newest)
        release.update(
            version=f"{newest['version'].split('-')[0].split('+')[0]}.{serial + 1}",
            createdAt="2026-11-23T12:00:00.5Z",
            deprecated=False,
            metadata_cached=True,
        )
        comfy_nodes = release.setdefault("comfy_nodes", [])
        comfy_nodes.append(
            {"comfy_node_name": f"BenchNew{serial}", "input_types": '{"required": {}}'}
        )
        package["versions_list"].insert(0, release)
    return cache_file.build_cache(grown["nodes"])


def run(
    cache: Path, output: Path, previous: Path | None, package: Path | None = None
) -> dict[str, Any]:
    """One build in a fresh interpreter (importing the package from `package` when given):
    its figures plus the command's wall time."""
    env = {**ENV, "PYTHONPATH": str(package)} if package else ENV
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache), str(output), str(previous or "")],
        env=env,
        cwd=cache.parent,  # not the checkout: `python -c` puts the working directory first
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(done.stdout)
    figures["process_seconds"] = time.perf_counter() - start
    return figures


def cli_seconds(cache: Path, output: Path) -> float:
    """Wall time of the user-facing command (includes the CLI's imports)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "registry_tools", "mappings", "--cache", str(cache)]
    subprocess.run(
        [*command, "--output", str(output)],
        env=ENV,
        cwd=cache.parent,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def median_run(repeat: int, *args: Any) -> dict[str, Any]:
    """Median (by wall time) of `repeat` runs, with the median CPU time and the largest RSS."""
    runs = [run(*args) for _ in range(repeat)]
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    best["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    best["cpu"] = statistics.median(r["cpu"] for r in runs)
    best["peak"] = max(r["peak"] for r in runs)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2913)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--baseline", type=Path, help="also time the package found in this dir")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        original = synth.generate(args.nodes, args.seed)
        print(f"synthetic cache: {synth.summary(original)}")
        grown = grow(original, 0.01, args.seed)
        print(f"grown by 1 %:    {synth.summary(grown)}")
        old_cache, new_cache = work / "cache.json", work / "cache-grown.json"
        files.write_atomic(old_cache, files.dumps(original))
        files.write_atomic(new_cache, files.dumps(grown))
        del original, grown
        old_mappings = work / "mappings.json"
        run(old_cache, old_mappings, None)
        full = median_run(args.repeat, new_cache, work / "full.json", None)
        incremental = median_run(args.repeat, new_cache, work / "inc.json", old_mappings)
        command = statistics.median(cli_seconds(new_cache, work / "cli.json") for _ in range(3))
        identical = (work / "full.json").read_bytes() == (work / "inc.json").read_bytes()
        size = new_cache.stat().st_size
        print(f"package: {full['package']}")
        report(full, incremental, command, size, identical)
        if args.baseline:
            baseline = args.baseline.resolve()
            base_full = median_run(args.repeat, new_cache, work / "b-full.json", None, baseline)
            base_inc = median_run(
                args.repeat, new_cache, work / "b-inc.json", old_mappings, baseline
            )
            base_bytes = (work / "b-full.json").read_bytes()
            same = base_bytes == (work / "full.json").read_bytes()
            base_identical = base_bytes == (work / "b-inc.json").read_bytes()
            print(f"baseline package: {base_full['package']}")
            report(base_full, base_inc, None, size, base_identical)
            print(f"baseline outputs == this package's outputs: {same}")
            identical = identical and same and base_identical
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if identical else 1


def report(
    full: dict, incremental: dict, command: float | None, size: int, identical: bool
) -> None:
    mib = 1024 * 1024
    print(f"cache file size:           {size / mib:8.1f} MiB")
    print(f"full build:                {full['seconds']:8.2f} s  (runs {full['all_seconds']})")
    print(f"  CPU time (user+sys):     {full['cpu']:8.2f} s  (median)")
    if command is not None:
        print(f"  whole command (CLI):     {command:8.2f} s  (python -m registry_tools mappings)")
    print(f"  peak RSS:                {full['peak'] / mib:8.1f} MiB")
    print(f"  peak RSS / cache size:   {full['peak'] / size:8.2f}")
    print(f"  {full['summary']}")
    print(
        f"incremental (+1 %):        {incremental['seconds']:8.2f} s  "
        f"(runs {incremental['all_seconds']})"
    )
    print(f"  CPU time (user+sys):     {incremental['cpu']:8.2f} s  (median)")
    print(f"  incremental / full:      {incremental['seconds'] / full['seconds']:8.1%}  wall")
    print(f"  incremental / full:      {incremental['cpu'] / full['cpu']:8.1%}  CPU")
    print(f"  peak RSS:                {incremental['peak'] / mib:8.1f} MiB")
    print(f"  versions parsed/reused:  {incremental['parsed']} / {incremental['reused']}")
    print(f"incremental output == full output: {identical}")


if __name__ == "__main__":
    sys.exit(main())
