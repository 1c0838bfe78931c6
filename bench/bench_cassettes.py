"""Replay throughput of the indexed cassettes, side by side with stock vcrpy.

For each size, a synthetic registry is served by the emulator and recorded once through the
three phases (`phase_cassettes(..., "all")`); then the same cassettes are replayed through
the three phases (`run_cache` with `phase_cassettes(..., "none")`, loading included) with
`IndexedCassette`, and, at the sizes given by `--stock-at`, with vcrpy's stock `Cassette`
(same files, serializer, matchers and hooks: only the lookup differs). Times are the
process's CPU time (replay is single-threaded, and CPU time does not count other processes on
a shared machine), wall time alongside, and the CPU time spent in full (generation-2) garbage
collections, which grow with the heap of the cache being built. The indexed replay runs
`--repeat` times and the best is kept; the stock one runs once. Every recording and every
replay runs in a fresh interpreter, so no measurement inherits an earlier step's heap.

    python bench/bench_cassettes.py                      # 2,000 / 8,000 / 32,000 interactions
    python bench/bench_cassettes.py --sizes 500 --stock-at 500
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vcr.cassette import Cassette

from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry import synth
from registry_tools.registry.emulator import running_emulator
from registry_tools.replay.cassettes import IndexedCassette, phase_cassettes, read_manifest

# Interactions one synthetic node cost with these options before issue 10 (1 versions listing,
# /install for some versions, comfy-nodes pages for the newest 5 versions): 5.1 to 5.3. Kept, so
# a size names the same registry as in earlier figures (388, 1,553 and 6,214 nodes); since
# issue 10 (a bulk version scan, no /install, comfy-nodes pages of 500) the same registries
# take about 3.2 a node: 1,227, 4,740 and 19,430 interactions, printed beside each size.
INTERACTIONS_PER_NODE = 5.15
FETCH = {"nodes_per_page": 100, "max_versions": 5, "progress": False}


def record(directory: Path, interactions: int) -> int:
    """Record a registry of about `interactions` interactions; return the exact count."""
    nodes = round(interactions / INTERACTIONS_PER_NODE)
    with running_emulator(synth.generate(nodes, seed=1)) as emulator:
        options = CacheOptions(
            output=directory / "recorded.json", base_url=emulator.url, concurrency=32, **FETCH
        )
        summary = run_cache(options, phase_context=phase_cassettes(directory, "all"))
    assert summary.ok, summary.failures
    return sum(read_manifest(directory)["phases"].values())


@dataclass(frozen=True, order=True)
class Timing:
    """CPU seconds (compared first), wall seconds, CPU seconds inside full (gen-2) GC runs,
    and wall seconds of the run's one final write of the cache it built."""

    cpu: float
    wall: float
    full_gc: float
    final_write: float


@contextlib.contextmanager
def full_gc_clock(spent: list[float]) -> Iterator[None]:
    """Add the CPU time of every generation-2 collection to `spent[0]`."""
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent[0] += time.process_time() - started[0]

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


def replay(directory: Path, cassette_class: type[Cassette], concurrency: int) -> Timing:
    """Replay every phase (cassette loading included)."""
    options = CacheOptions(
        output=directory / f"replayed-{cassette_class.__name__}.json",
        base_url="http://registry.invalid",
        concurrency=concurrency,
        **FETCH,
    )
    context = phase_cassettes(directory, "none", cassette_class=cassette_class)
    spent = [0.0]
    cpu, wall = time.process_time(), time.perf_counter()
    with full_gc_clock(spent):
        summary = run_cache(options, phase_context=context)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert summary.ok, summary.failures
    return Timing(cpu, wall, spent[0], summary.write_seconds)


def isolated(function, *args):
    """Run `function(*args)` in a fresh interpreter: each measurement starts from a clean
    heap, as a real replay run does, instead of inheriting the previous step's allocations."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--stock-at", type=int, nargs="*", default=[2000])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="indexed replays; best is kept")
    args = parser.parse_args()
    _row(
        "target", "interactions", "cassette", "CPU s", "wall s", "full GC s", "final write s",
        "interactions/s",
    )  # fmt: skip
    timings: dict[tuple[int, str], Timing] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cassettes-") as scratch:
        for size in args.sizes:
            directory = Path(scratch) / str(size)
            count = isolated(record, directory, size)
            classes = [IndexedCassette] + ([Cassette] if size in args.stock_at else [])
            for cassette_class in classes:
                runs = args.repeat if cassette_class is IndexedCassette else 1
                best = min(
                    isolated(replay, directory, cassette_class, args.concurrency)
                    for _ in range(runs)
                )
                name = "indexed" if cassette_class is IndexedCassette else "stock vcrpy"
                timings[size, name] = best
                cells = (
                    f"{best.cpu:.2f}",
                    f"{best.wall:.2f}",
                    f"{best.full_gc:.2f}",
                    f"{best.final_write:.2f}",
                )
                _row(size, count, name, *cells, f"{count / best.cpu:,.0f}")
    for small, large in zip(args.sizes, args.sizes[1:], strict=False):
        a, b = timings[small, "indexed"], timings[large, "indexed"]
        print(
            f"time({large}) / time({small}) = {b.cpu / a.cpu:.2f} CPU, {b.wall / a.wall:.2f} wall, "
            f"{(b.cpu - b.full_gc) / (a.cpu - a.full_gc):.2f} CPU outside full GC runs"
        )
    for size in args.stock_at:
        speedup = timings[size, "stock vcrpy"].cpu / timings[size, "indexed"].cpu
        print(f"indexed vs stock vcrpy at {size}: {speedup:.1f}x less CPU time")


def _row(*cells: object) -> None:
    print(" | ".join(str(cell) for cell in cells), flush=True)


if __name__ == "__main__":
    main()
