"""Mirror benchmark: a full mirror and a day's refresh of a synthetic registry served the way
the real one behaves, by this checkout's fetcher and by an older commit's (today's strategy),
side by side.

For each strategy, a fresh `registry-tools serve --realistic` (a separate process: a 12
requests/s token bucket with bare 429s, listing drift, page caches, 10 % pending extraction,
hidden banned and deleted packages; `--rate`/`--burst` scale the limit) serves `--packages`
synthetic packages. The strategy's `registry-tools cache` (default options) mirrors it; the
registry then moves by a day (`POST /_emulator/advance` with `Churn.day()`: every pending
extraction finished, 1 % of the versions deprecated or banned, 1 % new versions), and the
strategy refreshes its cache with `--input`. Request counts are the server's; every change
the day made is looked for in the refreshed cache, against an in-process twin of the served
registry moved by the same churn (a finished extraction's nodes exist only after the move).
Each finished extraction or new release in the metadata window costs one comfy-nodes read (no
endpoint answers several versions' nodes), so the refresh prints that floor beside the rest.

Each strategy is `branch` (this checkout) or a git ref whose fetcher runs from
`git archive REF | tar -x` (the same Python, its own package first on `PYTHONPATH`); `2bb0d66`
is the last commit before issue 10, today's strategy (per-node calls). Targets (issue 10):
full mirror 0 failures, complete listing, at most 11,000 requests and wall time at most
1.25 x requests / rate; refresh at most 300 requests, every change seen.

Usage: python bench/bench_mirror.py [--packages 3000] [--rate 12] [--burst 3]
                                     [--strategies branch,REF] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from _serve import ROOT, served

from registry_tools import clock, files
from registry_tools.registry import synth
from registry_tools.registry.behaviour import Behaviour, Churn
from registry_tools.registry.emulator import Emulator

BANNED = "NodeVersionStatusBanned"


def control(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/_emulator/{path}", data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def run_cache(code: Path, url: str, *args: str) -> tuple[float, str, int]:
    """`registry-tools cache` of the tree at `code`: wall seconds, its summary, exit status."""
    env = {**os.environ, "PYTHONPATH": str(code), "SOURCE_DATE_EPOCH": "1767225600"}
    command = [sys.executable, "-m", "registry_tools", "cache", "--base-url", url,
               "--no-progress", *args]  # fmt: skip
    begin = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=code)
    elapsed = time.monotonic() - begin
    lines = [line for line in done.stderr.splitlines() if re.match(r"\d+ nodes, ", line)]
    return elapsed, lines[-1] if lines else done.stderr.strip()[-300:], done.returncode


def failures(summary: str) -> int:
    found = re.search(r"(\d+) failures", summary)
    return int(found.group(1)) if found else -1


def listed_nodes(cache_path: Path) -> set[str]:
    return {n["id"] for n in json.loads(cache_path.read_bytes())["nodes"]}


def moved_twin(registry: dict, seed: int) -> tuple[dict, dict[tuple[str, str], list]]:
    """The day's changes and every version's extracted node names after it, from an
    in-process emulator of the same registry and behaviour moved by the same churn."""
    twin = Emulator(json.loads(files.dumps(registry)), behaviour=Behaviour.realistic(seed))
    changes = json.loads(json.dumps(twin.advance(Churn.day(seed=seed)).as_dict()))
    names = {
        key: [comfy.get("comfy_node_name") for comfy in extraction.nodes or []]
        for key, extraction in twin.registry.extraction.items()
    }
    return changes, names


def changes_seen(changes: dict, truth: dict, refreshed: Path) -> dict[str, tuple[int, int]]:
    """(seen, of) for each kind of change the day made, in the refreshed cache; `truth`: each
    version's extracted node names after the day."""
    cache = json.loads(refreshed.read_bytes())
    versions = {
        (n["id"], v["version"]): v for n in cache["nodes"] for v in n.get("versions_list", [])
    }
    deleted = set(changes["deleted"])
    live = lambda pairs: [tuple(p) for p in pairs if p[0] not in deleted]  # noqa: E731
    listed = {n["id"] for n in cache["nodes"]}

    def field(key: tuple[str, str], name: str) -> object:
        return versions.get(key, {}).get(name)

    def finished(key: tuple[str, str]) -> bool:
        """The extracted nodes cached, or (a version outside the metadata window) its
        extraction status seen to be done; never still recorded as pending."""
        got = versions.get(key, {})
        if got.get("metadata_pending"):
            return False
        if got.get("metadata_cached"):
            return [c.get("comfy_node_name") for c in got.get("comfy_nodes") or []] == truth[key]
        return got.get("comfy_node_extract_status") == "success"

    checks = {
        "finished": [finished(k) for k in live(changes["finished"])],
        "deprecated": [field(k, "deprecated") is True for k in live(changes["deprecated"])],
        "banned": [field(k, "status") == BANNED for k in live(changes["banned"])],
        "published": [k in versions for k in live(changes["published"])],
        "deleted": [node not in listed for node in deleted],
    }  # fmt: skip
    return {kind: (sum(found), len(found)) for kind, found in checks.items()}


def newly_extracted(before: Path, after: Path) -> int:
    """Versions whose nodes the refreshed cache has and the mirror had not: each took at least
    one comfy-nodes read, the floor of a refresh that sees every finished extraction."""

    def cached(path: Path) -> set[tuple[str, str]]:
        nodes = json.loads(path.read_bytes())["nodes"]
        return {
            (n["id"], v["version"])
            for n in nodes
            for v in n.get("versions_list", [])
            if v.get("metadata_cached")
        }

    return len(cached(after) - cached(before))


def bench(name: str, code: Path, registry_path: Path, twin: tuple[dict, dict], args, work: Path):
    """One strategy's full mirror and refresh, with what the server counted."""
    flags = ("--realistic", "--rate-limit", str(args.rate), "--rate-burst", str(args.burst),
             "--seed", str(args.seed))  # fmt: skip
    with served(registry_path, *flags, quiet=True) as url:
        full = work / f"{name}-full.json"
        wall, summary, status = run_cache(code, url, "--output", str(full))
        stats = control(url, "stats")
        total = control_total(url)
        mirror = {
            "wall": wall, "summary": summary, "exit": status, "requests": stats["requests"],
            "rate_limited": stats["rate_limited"], "installs": stats["installs"],
            "failures": failures(summary),
            "listed": len(listed_nodes(full)) if full.exists() else 0, "total": total,
        }  # fmt: skip
        changes = control(url, "advance", asdict(Churn.day(seed=args.seed)))
        if changes != twin[0]:
            raise SystemExit("the served registry and its twin moved differently")
        before = control(url, "stats")
        refreshed = work / f"{name}-refreshed.json"
        wall, summary, status = run_cache(
            code, url, "--input", str(full), "--output", str(refreshed)
        )
        after = control(url, "stats")
    refresh = {
        "wall": wall, "summary": summary, "exit": status,
        "requests": after["requests"] - before["requests"],
        "rate_limited": after["rate_limited"] - before["rate_limited"],
        "installs": after["installs"] - before["installs"], "failures": failures(summary),
        "seen": changes_seen(changes, twin[1], refreshed) if refreshed.exists() else {},
        "floor": newly_extracted(full, refreshed) if refreshed.exists() else 0,
        "kinds": {k: n - before["by_kind"].get(k, 0) for k, n in after["by_kind"].items()},
    }  # fmt: skip
    return {"mirror": mirror, "refresh": refresh}


def control_total(url: str) -> int:
    """The registry's node count as its listing says (one request, not part of a run)."""
    query = "/nodes?page=1&limit=1&include_banned=true&latest=true"
    for _attempt in range(20):
        try:
            with urllib.request.urlopen(url + query) as answer:
                return json.loads(answer.read())["total"]
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            time.sleep(0.5)
    raise SystemExit("the emulator kept answering 429")


def tree_at(work: Path, ref: str) -> Path:
    """The source tree of git `ref`, unpacked under `work`."""
    target = work / re.sub(r"[^\w.-]", "_", ref)
    target.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def report(results: dict, args) -> None:
    print(
        f"registry: {args.packages} synthetic packages (seed {args.seed}), realistic preset, "
        f"rate limit {args.rate:g}/s burst {args.burst:g}; refresh after Churn.day()"
    )
    for name, result in results.items():
        m, r = result["mirror"], result["refresh"]
        ideal = m["requests"] / args.rate
        print(f"[{name}] full mirror (default options)")
        print(f"  {m['summary']}")
        print(f"  server saw {m['requests']} requests, {m['rate_limited']} answered 429, "
              f"{m['installs']} /install; exit {m['exit']}")  # fmt: skip
        print(f"  failures {m['failures']}; listing {m['listed']} of {m['total']} nodes")
        print(f"  wall {m['wall']:.1f} s = {m['wall'] / ideal:.2f} x requests / rate "
              f"({ideal:.1f} s)   targets: <= 11000 requests, <= 1.25 x, 0 failures")  # fmt: skip
        print(f"[{name}] refresh after a day")
        print(f"  {r['summary']}")
        print(
            f"  server saw {r['requests']} requests ({r['kinds']}), {r['rate_limited']} "
            f"answered 429, {r['installs']} /install; exit {r['exit']}; wall {r['wall']:.1f} s"
        )
        seen = ", ".join(f"{kind} {a}/{b}" for kind, (a, b) in r["seen"].items())
        print(f"  changes seen: {seen}   targets: <= 300 requests, every change seen")
        metadata = r["kinds"].get("comfy_nodes", 0)
        print(
            f"  comfy-nodes reads {metadata}, floor {r['floor']} (versions newly extracted in "
            f"the metadata window, one read each); every other request: {r['requests'] - metadata}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument("--burst", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--strategies", default="branch,2bb0d66", help="`branch` or git refs, comma-separated"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        work = Path(tmp)
        clock.pin("2026-01-01T00:00:00Z")
        registry = synth.generate(args.packages, args.seed)
        clock.pin(None)
        registry_path = work / "registry.json"
        registry_path.write_bytes(files.dumps(registry))
        twin = moved_twin(registry, args.seed)
        results = {}
        for name in args.strategies.split(","):
            code = ROOT if name == "branch" else tree_at(work, name)
            print(f"... {name}: mirroring", flush=True)
            results[name] = bench(name, code, registry_path, twin, args, work)
        report(results, args)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
