"""Stand-in registry benchmark: what a client sees of `Behaviour.realistic()`, and how fast
the ideal emulator answers.

1. Ideal emulator (no behaviour): GETs per second it answers on loopback, `--concurrency` in
   flight, over a synthetic registry of `--nodes` packages.
2. The realistic preset's rate limit with its real clock: an unpaced client (`--concurrency`
   in flight, `--seconds` long) sees how many requests admitted per second and what share of
   429s; a client paced at 12 requests per second sees how many 429s.
3. The realistic preset's drift: one sweep of `/nodes` pages (`limit=30`, one after the other,
   no `latest`) over the registry: how many packages it misses and how many rows it repeats,
   for seeds 0-9.

Usage: python bench/bench_emulator.py [--nodes 300] [--concurrency 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

import aiohttp

from registry_tools.registry import synth
from registry_tools.registry.behaviour import Behaviour
from registry_tools.registry.emulator import running_emulator


async def _hammer(base: str, paths: list[str], concurrency: int, seconds: float, pace: float):
    """GET `paths` round-robin for `seconds`; `pace` > 0 spaces request starts 1/pace apart."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    next_start = time.monotonic()
    lock = asyncio.Lock()
    async with aiohttp.ClientSession() as session:

        async def worker(offset: int) -> None:
            nonlocal next_start
            index = offset
            while time.monotonic() < deadline:
                if pace:
                    async with lock:
                        wait = next_start - time.monotonic()
                        next_start = max(next_start, time.monotonic()) + 1 / pace
                    if wait > 0:
                        await asyncio.sleep(wait)
                async with session.get(base + paths[index % len(paths)]) as response:
                    await response.read()
                    statuses.append(response.status)
                index += concurrency

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return statuses


def _sweep(cache: dict, seed: int) -> tuple[int, int]:
    """(packages missed, rows repeated) by one sequential sweep of /nodes?limit=30."""
    behaviour = dataclasses.replace(Behaviour.realistic(seed), rate_limit=0.0)
    seen: list[str] = []

    async def run(base: str) -> None:
        async with aiohttp.ClientSession() as session:
            page, pages = 1, 1
            while page <= pages:
                async with session.get(f"{base}/nodes?page={page}&limit=30") as response:
                    body = await response.json()
                seen.extend(node["id"] for node in body["nodes"])
                pages, page = body["totalPages"], page + 1

    with running_emulator(cache, behaviour=behaviour) as emu:
        asyncio.run(run(emu.url))
        registry = emu.emulator.registry
        listed = {i for i, package in registry.packages.items() if registry.listed(package)}
    return len(listed - set(seen)), len(seen) - len(set(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cache = synth.generate(args.nodes, 1)
    paths = [f"/nodes/{node['id']}/versions" for node in cache["nodes"]]

    with running_emulator(cache) as emu:
        start = time.monotonic()
        statuses = asyncio.run(_hammer(emu.url, paths, args.concurrency, args.seconds, 0))
        elapsed = time.monotonic() - start
    print(
        f"ideal: {len(statuses) / elapsed:.0f} requests/s answered "
        f"({len(statuses)} in {elapsed:.1f} s, concurrency {args.concurrency})"
    )

    for label, pace in (("unpaced", 0.0), ("paced at 12/s", 12.0)):
        with running_emulator(cache, behaviour=Behaviour.realistic()) as emu:
            start = time.monotonic()
            statuses = asyncio.run(_hammer(emu.url, paths, args.concurrency, args.seconds, pace))
            elapsed = time.monotonic() - start
        admitted = statuses.count(200) + statuses.count(403) + statuses.count(404)
        limited = statuses.count(429)
        print(
            f"realistic, {label}: {len(statuses)} requests in {elapsed:.1f} s, "
            f"{admitted / elapsed:.1f} admitted/s, {limited} rate-limited "
            f"({100 * limited / max(1, len(statuses)):.1f} %)"
        )

    results = [_sweep(cache, seed) for seed in range(10)]
    missed = [m for m, _ in results]
    repeated = [r for _, r in results]
    print(
        f"realistic drift, one sweep of limit=30 pages over {args.nodes} packages, seeds 0-9: "
        f"missed {min(missed)}-{max(missed)} (mean {sum(missed) / len(missed):.1f}), "
        f"repeated {min(repeated)}-{max(repeated)} rows"
    )


if __name__ == "__main__":
    main()
