"""Benchmark `registry-tools resolve` on a 100,000-node workflow at the registry's full scale.

    python bench/bench_resolve.py [--nodes 2913] [--workflow-nodes 100000] [--seed 1]
                                  [--repeat 3] [--workdir DIR]

Builds a synthetic registry cache (`registry_tools.registry.synth`) and its mappings, then a
UI workflow of `--workflow-nodes` nodes drawn like a real one: custom types of the mappings with
the inputs their registry metadata lists (so exact signatures match), half of those types
recording their pack (`cnr_id`, `ver`) and the others left to the matching and the set cover;
core types recorded as `comfy-core`, frontend-only ones, subgraph and group-node references,
and unknown types. Each run is a fresh child process running the whole command
(`python -m registry_tools resolve WORKFLOW --mappings M --json --output OUT`): wall time of
the command and of the `main()` call inside it, the CPU time of the whole process (steadier
than wall time on a busy machine), and its peak RSS (VmHWM). Targets: under 5 s and under
300 MB. The load average is printed (the machine may be shared).
"""

from __future__ import annotations

import argparse
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
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.mappings.signatures import SignatureError, registry_signature
from registry_tools.registry import synth
from registry_tools.resolve.builtins import builtin_table

CHILD = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from registry_tools.cli import main
code = main(sys.argv[1:])
seconds, cpu = time.perf_counter() - start, time.process_time()
peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"code": code, "seconds": seconds, "cpu": cpu, "peak": peak}), file=sys.stderr)
"""
ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1795478400"}


def custom_types(cache: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(package, node type, registry inputs) for the newest version of every package."""
    found = []
    for package in cache["nodes"]:
        versions = package.get("versions_list") or []
        for comfy in (versions[0].get("comfy_nodes") or []) if versions else []:
            try:
                signature = registry_signature(comfy.get("input_types"))
            except SignatureError:
                continue
            pairs = [tuple(p.rsplit(":", 1)) for p in signature.split("|")] if signature else []
            found.append((package["id"], comfy["comfy_node_name"], pairs))
    return found


def workflow(cache: dict[str, Any], count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    pool = rng.sample(custom_types(cache), 400)
    core = sorted(n for n, t in builtin_table().nodes.items() if t.kind == "core")[:300]
    recorded = {kind for _, kind, _ in rng.sample(pool, len(pool) // 2)}  # saved with cnr_id
    nodes = []
    for number in range(1, count + 1):
        roll = rng.random()
        properties: dict[str, Any] = {}
        inputs: list[dict[str, Any]] = []
        if roll < 0.55:
            package, kind, pairs = rng.choice(pool)
            inputs = [{"name": n, "type": t, "link": None} for n, t in pairs]
            if kind in recorded:
                properties = {"cnr_id": package, "ver": "1.0.0"}
        elif roll < 0.9:
            kind = rng.choice(core)
            properties = {"cnr_id": "comfy-core", "ver": "0.3.60"}
        elif roll < 0.95:
            kind = rng.choice(["Reroute", "Note", "PrimitiveNode", "SetNode", "GetNode"])
        elif roll < 0.97:
            kind = rng.choice(["workflow>Group", "1f0c7c2e-aaaa-4bbb-8ccc-0123456789ab"])
        else:
            kind = f"Unknown{rng.randrange(200)}"
        node = {"id": number, "type": kind, "pos": [number, number], "size": [200, 100]}
        nodes.append({**node, "inputs": inputs, "properties": properties, "widgets_values": []})
    return {"last_node_id": count, "nodes": nodes, "links": [], "version": 0.4}


def run_once(workflow_path: Path, mappings: Path, output: Path) -> dict[str, Any]:
    command = [sys.executable, "-c", CHILD, "resolve", str(workflow_path), "--mappings",
               str(mappings), "--json", "--output", str(output)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)
    wall = time.perf_counter() - start
    figures = json.loads(done.stderr.strip().splitlines()[-1])
    return {**figures, "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2913)
    parser.add_argument("--workflow-nodes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        cache_path, mappings = work / "cache.json", work / "node_mappings.json"
        cache = synth.generate(args.nodes, seed=args.seed)
        files.write_atomic(cache_path, files.dumps(cache))
        build_mappings(MappingsOptions(cache=cache_path, output=mappings))
        flow = work / "workflow.json"
        files.write_atomic(flow, files.dumps(workflow(cache, args.workflow_nodes, args.seed)))
        size = {p.name: p.stat().st_size / 2**20 for p in (mappings, flow)}
        print(f"load average {os.getloadavg()[0]:.2f}; mappings {size[mappings.name]:.1f} MiB, "
              f"workflow {args.workflow_nodes} nodes, {size[flow.name]:.1f} MiB")  # fmt: skip
        runs = [run_once(flow, mappings, work / "plan.json") for _ in range(args.repeat)]
        plan = json.loads((work / "plan.json").read_text())
        print(f"plan: {len(plan['packages'])} packs, {len(plan['unresolved'])} unresolved, "
              f"{len(plan['builtin'])} built-in types; exit {runs[-1]['code']}")  # fmt: skip
        figures = (
            ("wall", "whole command"),
            ("seconds", "main() inside it"),
            ("cpu", "CPU of the command"),
        )
        for key, label in figures:
            values = [r[key] for r in runs]
            print(f"  {label:<18} median {statistics.median(values):.2f} s "
                  f"(runs {', '.join(f'{v:.2f}' for v in values)}; target < 5 s)")  # fmt: skip
        peaks = [r["peak"] / 2**20 for r in runs]
        print(f"  peak RSS           max {max(peaks):.0f} MiB (target < 300 MB)")
        print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
