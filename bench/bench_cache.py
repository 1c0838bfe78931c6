"""Cache-builder benchmark: throughput against latency, and the cost of checkpoints.

1. Against `registry-tools serve` (a separate process, no rate limit) with 20 ms latency per
   request, build all three phases of a synthetic registry (`--nodes`) with default options
   (concurrency 10, `--max-versions 5`, the adaptive pacer on: it must not slow a server that
   never limits) and compare wall time with the ideal `requests x latency / concurrency`.
   Beside it, the floor of that server: a bare aiohttp session behind a semaphore of the same
   size, fetching the comfy-nodes pages the build fetched and doing nothing else.
2. At the seed's full scale (2,913 nodes) without latency, report the share of wall time
   spent writing and fsyncing the checkpoint journal (and, separately, the one final write).

Usage: python bench/bench_cache.py [--nodes 500] [--full-nodes 2913]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
from _serve import served

from registry_tools import clock, files
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.phase_metadata import PAGE_SIZE
from registry_tools.fetch.run import run_cache
from registry_tools.registry import synth


def build(workdir: Path, nodes: int, latency_ms: int, **overrides):
    """Build the cache of a synthetic registry of `nodes` with `CacheOptions` defaults but
    `overrides`; the summary and the cache's size."""
    source = workdir / f"registry-{nodes}.json"
    source.write_bytes(files.dumps(synth.generate(nodes, 1)))
    with served(source, "--latency-ms", str(latency_ms)) as url:
        options = CacheOptions(
            output=workdir / f"cache-{nodes}.json",
            base_url=url,
            progress=False,
            **overrides,
        )
        summary = run_cache(options)
    if not summary.ok:
        raise SystemExit(f"benchmark run failed: {summary.failures[:3]}")
    return summary, options.output.stat().st_size


def bare_floor(workdir: Path, nodes: int, latency_ms: int, concurrency: int) -> tuple[int, float]:
    """(requests, wall seconds) of a bare aiohttp client fetching the comfy-nodes pages the
    build of `nodes` cached, from a fresh server of the same registry and latency."""
    cache = orjson.loads((workdir / f"cache-{nodes}.json").read_bytes())
    paths = [
        f"/nodes/{quote(n['id'], safe='')}/versions/{quote(v['version'], safe='')}/comfy-nodes"
        for n in cache["nodes"]
        for v in n.get("versions_list", [])
        if v.get("metadata_cached")
    ]

    async def fetch_all(url: str) -> float:
        slots = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:

            async def one(path: str) -> None:
                async with slots, session.get(url + path, params={"limit": PAGE_SIZE}) as answer:
                    await answer.read()

            begin = time.monotonic()
            await asyncio.gather(*(one(path) for path in paths))
            return time.monotonic() - begin

    with served(workdir / f"registry-{nodes}.json", "--latency-ms", str(latency_ms)) as url:
        return len(paths), asyncio.run(fetch_all(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--full-nodes", type=int, default=2913)
    args = parser.parse_args()
    clock.pin("2026-01-01T00:00:00Z")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        latency = 20
        summary, _size = build(workdir, args.nodes, latency)
        concurrency = CacheOptions(output=workdir / "x").concurrency
        ideal = summary.requests * latency / 1000 / concurrency
        print(f"throughput: {args.nodes} nodes, latency {latency} ms, default options")
        print(f"  requests            {summary.requests}")
        print(f"  wall time           {summary.elapsed:.2f} s")
        print(f"  ideal               {ideal:.2f} s (requests x latency / concurrency)")
        print(f"  ratio wall/ideal    {summary.elapsed / ideal:.3f}   (target <= 1.3)")
        count, wall = bare_floor(workdir, args.nodes, latency, concurrency)
        floor = wall / (count * latency / 1000 / concurrency)
        print(f"  server floor        {floor:.3f}   (bare aiohttp, {count} comfy-nodes pages only)")

        summary, size = build(workdir, args.full_nodes, 0, concurrency=10, max_versions=10)
        share = summary.journal_seconds / summary.elapsed
        print(f"checkpoints: {args.full_nodes} nodes, no latency, concurrency 10, max-versions 10")
        print(f"  versions / metadata {summary.versions} / {summary.metadata_entries}")
        print(f"  requests            {summary.requests}")
        print(f"  wall time           {summary.elapsed:.2f} s")
        print(f"  journal+checkpoints {summary.journal_seconds:.3f} s")
        print(f"  checkpoint share    {100 * share:.2f} %   (target <= 5 %)")
        print(f"  final write         {summary.write_seconds:.3f} s ({size / 1e6:.1f} MB, once)")


if __name__ == "__main__":
    main()
