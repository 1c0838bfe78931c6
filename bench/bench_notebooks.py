"""Benchmark `registry-tools notebook run-all` in replay mode: where the wall time goes.

    python bench/bench_notebooks.py [--repeat 3] [--workdir DIR]

Runs the five notebooks headless (fresh kernel each, bundled cassettes, offline) `--repeat`
times and splits each notebook's wall time into kernel start (process launch until the
kernel answers), cells (from the execution timestamps nbclient records in the executed
notebook: imports, the step itself, plots) and the rest (kernel shutdown, writing the
notebook). Prints one table per run and the median totals.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

import nbformat

from registry_tools.notebooks.runner import NotebookRun, run_all


def cell_seconds(executed: Path) -> float:
    """Sum of the cells' execution times recorded by nbclient (`metadata.execution`)."""
    total = 0.0
    for cell in nbformat.read(executed, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            begin = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            total += (end - begin).total_seconds()
    return total


def measure(workdir: Path) -> list[tuple[NotebookRun, float]]:
    result = run_all(workdir)
    return [(run, cell_seconds(run.output)) for run in result.runs]


def report(rows: list[tuple[NotebookRun, float]]) -> tuple[float, float, float]:
    print(f"{'notebook':<20}{'wall':>8}{'kernel':>9}{'cells':>8}{'rest':>8}")
    for run, cells in rows:
        rest = run.seconds - run.kernel_start_seconds - cells
        print(
            f"{run.name:<20}{run.seconds:>7.2f}s{run.kernel_start_seconds:>8.2f}s"
            f"{cells:>7.2f}s{rest:>7.2f}s"
        )
    wall = sum(run.seconds for run, _ in rows)
    kernel = sum(run.kernel_start_seconds for run, _ in rows)
    cells = sum(c for _, c in rows)
    print(
        f"{'total':<20}{wall:>7.2f}s{kernel:>8.2f}s{cells:>7.2f}s{wall - kernel - cells:>7.2f}s"
        f"   kernel start {kernel / wall:.0%}, cells {cells / wall:.0%}\n"
    )
    return wall, kernel, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the outputs here (default: temp)")
    args = parser.parse_args()
    totals = []
    for index in range(args.repeat):
        with tempfile.TemporaryDirectory() as scratch:
            workdir = (args.workdir or Path(scratch)) / f"run{index + 1}"
            print(f"run {index + 1}: {workdir}")
            totals.append(report(measure(workdir)))
    wall, kernel, cells = (statistics.median(column) for column in zip(*totals, strict=True))
    print(
        f"median of {args.repeat}: wall {wall:.2f} s, kernel start {kernel:.2f} s "
        f"({kernel / wall:.0%}), cells {cells:.2f} s ({cells / wall:.0%}), "
        f"rest {wall - kernel - cells:.2f} s"
    )


if __name__ == "__main__":
    main()
