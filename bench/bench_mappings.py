"""Benchmark `registry-tools mappings` at the registry's full scale: full build vs incremental,
without and with ComfyUI-Manager's lists, and the ComfyDock reference scripts beside it.

    python bench/bench_mappings.py [--nodes 2913] [--seed 1] [--repeat 3] [--workdir DIR]
                                   [--baseline DIR] [--reference DIR]

Builds a synthetic cache (`registry_tools.registry.synth`), a copy with 1 % more versions
(new releases of random packages, with changed inputs), and synthetic Manager lists the size
of the real ones (about 3,500 repositories and 27,000 node names; a third of the repositories
are registry packages' under another spelling of their URL, and one Manager-only pack in eight
lists registry packages' node names). Every file and timestamp is pinned
(`SOURCE_DATE_EPOCH`), so two runs build the same bytes. Then, each run in a fresh child
process so each peak RSS is that run's own: a full build of the grown cache, and an
incremental build of it from the mappings of the original cache, without and with
`--manager`. Prints wall time of the build call, CPU time, peak RSS, the ratios, and checks
that each incremental output is byte-identical to the full one. The load average is printed
before and after (the machine is shared: compare figures from one run).

`--baseline DIR` also times, in the same run and on the same files, the package found in DIR
(for instance `git archive HEAD registry_tools | tar -x -C DIR`), for before/after figures.

`--reference DIR` also times the ComfyDock pipelines' own scripts on the same files, in the
same run: `build_global_mappings.py` on the grown cache, then `augment_mappings.py` with the
Manager's `extension-node-map.json` (as their GitHub workflow runs them). DIR holds those
scripts and the `url_utils.py` they import (they are not part of this repository); they need
`comfygit_core` importable.
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

from registry_tools import clock, files
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
options = json.loads(sys.argv[1])
paths = ("cache", "output", "input")
options = {k: Path(v) if k in paths and v else v for k, v in options.items()}
start, cpu = time.perf_counter(), time.process_time()
report = build_mappings(MappingsOptions(**options))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
peak = int(status.split()[0]) * 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak": peak, "parsed": report.versions_parsed,
                  "reused": report.versions_reused, "summary": report.summary(),
                  "package": registry_tools.__file__}))
"""

# Runs a reference script as `python SCRIPT ARGS` would, and reports the same figures.
REFERENCE = """
import json, runpy, sys, time
from pathlib import Path
script, args = sys.argv[1], sys.argv[2:]
sys.argv = [script, *args]
sys.path.insert(0, str(Path(script).parent))
start, cpu = time.perf_counter(), time.process_time()
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exit:
    if exit.code not in (0, None):
        raise
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak": int(status.split()[0]) * 1024}),
      file=sys.__stdout__)
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
            status="NodeVersionStatusActive",
            download_url=f"https://cdn.example/{package['id']}/{serial}.zip",
        )
        release.pop("metadata_pending", None)  # its metadata is cached: extraction done
        if "comfy_node_extract_status" in release:
            release["comfy_node_extract_status"] = "success"
        comfy_nodes = release.setdefault("comfy_nodes", [])
        comfy_nodes.append(
            {"comfy_node_name": f"BenchNew{serial}", "input_types": '{"required": {}}'}
        )
        package["versions_list"].insert(0, release)
    return cache_file.build_cache(grown["nodes"])


def manager_lists(cache: dict[str, Any], directory: Path, seed: int) -> dict[str, int]:
    """Write Manager lists the size of the real ones (3,587 packs, 3,341 node-map entries,
    26,786 node names, 33 name patterns, 8 preemption lists in comfyui-manager 4.3) into
    `directory`: a third of the entries are registry packages (their URL in another case,
    their node names plus a few the registry lacks), the rest Manager-only packs."""
    rng = random.Random(seed)
    nodes = [n for n in cache["nodes"] if n.get("repository")]
    rng.shuffle(nodes)
    shared = nodes[: min(len(nodes), 1114)]
    packs, node_map, stats = [], {}, {}
    names_left = 26_786
    registry_names: list[str] = []
    for node in shared:
        url = node["repository"].removesuffix(".git")
        url = url[:19] + url[19:].swapcase()  # https://github.com/ + owner/repo, other case
        newest = (node.get("versions_list") or [{}])[0]
        names = [c.get("comfy_node_name") for c in newest.get("comfy_nodes") or []]
        names = sorted({n for n in names if isinstance(n, str)})
        names += [f"{node['id']}.Extra{i}" for i in range(rng.randint(0, 3))]
        names_left -= len(names)
        registry_names += names[:3]
        packs.append(_pack(url, node["id"]))
        node_map[url] = [names, {"title_aux": node.get("name") or node["id"]}]
        stats[url] = _stats(rng)
    only = 3341 - len(shared)
    for index in range(only):
        url = f"https://github.com/manager-user-{index % 900}/Pack-{index}"
        count = max(1, names_left // (only - index) + rng.randint(-3, 3))
        names_left -= count
        meta: dict[str, Any] = {"title_aux": f"Pack {index}"}
        if index < 33:
            meta["nodename_pattern"] = rf"\(Pack{index}\)$"
        if index < 8:
            meta["preemptions"] = [f"Pack{index}Node0"]
        packs.append(_pack(url, ""))
        names = [f"Pack{index}Node{j}" for j in range(count)]
        if registry_names and index % 8 == 0:  # forks and rewrites: a registry pack's names
            names[1:] = rng.sample(registry_names, min(len(registry_names), count - 1))
        node_map[url] = [names, meta]
        stats[url] = _stats(rng)
    for index in range(3587 - len(packs)):  # listed without a node map
        packs.append(_pack(f"https://github.com/listed-only/Pack-{index}", ""))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "custom-node-list.json").write_text(json.dumps({"custom_nodes": packs}))
    (directory / "extension-node-map.json").write_text(json.dumps(node_map))
    (directory / "github-stats.json").write_text(json.dumps(stats))
    names = sum(len(value[0]) for value in node_map.values())
    return {"packs": len(packs), "node_map": len(node_map), "names": names}


def _pack(url: str, registry_id: str) -> dict[str, Any]:
    pack = {"author": "someone", "title": url.rsplit("/", 1)[-1], "reference": url}
    pack.update(files=[url], install_type="git-clone", description="A synthetic pack.")
    if registry_id:
        pack["id"] = registry_id
    return pack


def _stats(rng: random.Random) -> dict[str, Any]:
    day = rng.randint(1, 28)
    return {
        "stars": rng.randint(0, 5000),
        "last_update": f"2026-{rng.randint(1, 11):02d}-{day:02d} 12:00:00",
    }


def run(options: dict[str, Any], package: Path | None = None) -> dict[str, Any]:
    """One build in a fresh interpreter (importing the package from `package` when given):
    its figures plus the command's wall time."""
    env = {**ENV, "PYTHONPATH": str(package)} if package else ENV
    cwd = Path(options["cache"]).parent  # not the checkout: `python -c` puts it first
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(options)],
        env=env,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(done.stdout)
    figures["process_seconds"] = time.perf_counter() - start
    return figures


def run_reference(script: Path, args: list[str], cwd: Path) -> dict[str, Any]:
    """One reference script in a fresh interpreter, run from `cwd` (its default config paths
    resolve there, to nothing: no schema filter, no community file, as with bare arguments)."""
    done = subprocess.run(
        [sys.executable, "-c", REFERENCE, str(script), *args],
        env=ENV,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(repeat: int, function: Any, *args: Any) -> dict[str, Any]:
    """Median (by wall time) of `repeat` calls, with the median CPU time and the largest RSS."""
    done = [function(*args) for _ in range(repeat)]
    best = sorted(done, key=lambda r: r["seconds"])[len(done) // 2]
    best["all_seconds"] = [round(r["seconds"], 3) for r in done]
    best["cpu"] = statistics.median(r["cpu"] for r in done)
    best["peak"] = max(r["peak"] for r in done)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2913)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--baseline", type=Path, help="also time the package found in this dir")
    parser.add_argument("--reference", type=Path, help="also time the ComfyDock scripts in it")
    args = parser.parse_args()
    clock.pin(int(ENV["SOURCE_DATE_EPOCH"]))  # the caches' cached_at: the ranking's reference
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        original = synth.generate(args.nodes, args.seed)
        print(f"synthetic cache: {synth.summary(original)}")
        grown = grow(original, 0.01, args.seed)
        print(f"grown by 1 %:    {synth.summary(grown)}")
        lists = work / "manager"
        sizes = manager_lists(original, lists, args.seed)
        print(
            f"Manager lists:   {sizes['packs']} packs, {sizes['node_map']} node-map entries, "
            f"{sizes['names']} node names"
        )
        old_cache, new_cache = work / "cache.json", work / "cache-grown.json"
        files.write_atomic(old_cache, files.dumps(original))
        files.write_atomic(new_cache, files.dumps(grown))
        del original, grown
        size = new_cache.stat().st_size
        identical = True
        for label, extra in (("registry only", {}), ("with --manager", {"manager": lists})):
            tag = "m" if extra else "r"
            previous = work / f"mappings-{tag}.json"
            run({"cache": old_cache, "output": previous, **extra})
            full_out, inc_out = work / f"full-{tag}.json", work / f"inc-{tag}.json"
            full = median_of(args.repeat, run, {"cache": new_cache, "output": full_out, **extra})
            inc_options = {"cache": new_cache, "output": inc_out, "input": previous, **extra}
            inc = median_of(args.repeat, run, inc_options)
            same = full_out.read_bytes() == inc_out.read_bytes()
            identical = identical and same
            print(f"== {label}  (package: {full['package']})")
            report(full, inc, size, same, full_out.stat().st_size)
            if args.baseline and not extra:
                baseline(args.baseline.resolve(), args.repeat, work, old_cache, new_cache, size)
        if args.reference:
            reference(args.reference.resolve(), args.repeat, work, new_cache, lists, size)
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if identical else 1


def baseline(package: Path, repeat: int, work: Path, old: Path, cache: Path, size: int) -> None:
    """The same registry-only builds with the package found in `package`, its incremental
    run from the mappings that package built of the original cache."""
    previous, full_out, inc_out = (
        work / "b-mappings.json",
        work / "b-full.json",
        work / "b-inc.json",
    )
    run({"cache": old, "output": previous}, package)
    full = median_of(repeat, run, {"cache": cache, "output": full_out}, package)
    inc = median_of(repeat, run, {"cache": cache, "output": inc_out, "input": previous}, package)
    print(f"== baseline, registry only  (package: {full['package']})")
    same = full_out.read_bytes() == inc_out.read_bytes()
    report(full, inc, size, same, full_out.stat().st_size)


def reference(scripts: Path, repeat: int, work: Path, cache: Path, lists: Path, size: int) -> None:
    """The ComfyDock pipeline's two steps on the same cache and Manager node map."""
    built, augmented = work / "ref.json", work / "ref-augmented.json"
    node_map = lists / "extension-node-map.json"
    step1 = median_of(
        repeat,
        run_reference,
        scripts / "build_global_mappings.py",
        ["--cache", str(cache), "--output", str(built)],
        work,
    )
    step2 = median_of(
        repeat,
        run_reference,
        scripts / "augment_mappings.py",
        ["--mappings", str(built), "--manager", str(node_map), "--output", str(augmented)],
        work,
    )
    mib = 1024 * 1024
    print(f"== reference scripts ({scripts})")
    print(
        f"  build_global_mappings.py: {step1['seconds']:8.2f} s  (runs {step1['all_seconds']}),"
        f" CPU {step1['cpu']:.2f} s, peak RSS {step1['peak'] / mib:.1f} MiB"
        f" ({step1['peak'] / size:.2f} x cache)"
    )
    print(
        f"  augment_mappings.py:      {step2['seconds']:8.2f} s  (runs {step2['all_seconds']}),"
        f" CPU {step2['cpu']:.2f} s, peak RSS {step2['peak'] / mib:.1f} MiB"
    )
    print(
        f"  both steps:               {step1['seconds'] + step2['seconds']:8.2f} s;"
        f" output {augmented.stat().st_size / mib:.1f} MiB (no incremental mode)"
    )


def report(full: dict, incremental: dict, size: int, identical: bool, output: int) -> None:
    mib = 1024 * 1024
    print(f"cache file size:           {size / mib:8.1f} MiB; output {output / mib:.1f} MiB")
    print(f"full build:                {full['seconds']:8.2f} s  (runs {full['all_seconds']})")
    print(f"  CPU time (user+sys):     {full['cpu']:8.2f} s  (median)")
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
