"""Benchmark what the pytest plugin costs every pytest start in the environment.

    python bench/bench_plugin.py [--repeat 15] [--ref GIT_REF]

In fresh processes (pytest imported first, as pytest does before loading plugins):

1. the plugin's import time, `time.perf_counter` around `import registry_tools.replay.plugin`,
   and its cumulative figure in `python -X importtime` (the target: under 20 ms);
2. which of vcrpy, aiohttp, yaml and the emulator that import pulled in (none, by design);
3. a whole `pytest --collect-only` of an empty project, with the plugin and without it
   (`-p no:registry_tools`): the difference is what a user of any project pays.

`--ref` measures the plugin of another commit the same way (its `registry_tools/` exported to
a temporary directory), for a before/after figure. Prints medians over `--repeat` runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("vcr", "aiohttp", "yaml", "multidict", "registry_tools.registry.emulator")
IMPORT = (
    "import sys, time, pytest\n"
    "begin = time.perf_counter()\n"
    "import registry_tools.replay.plugin\n"
    "print((time.perf_counter() - begin) * 1000)\n"
    f"print(','.join(sorted(set({HEAVY!r}) & set(sys.modules))))\n"
)
CUMULATIVE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| registry_tools\.replay\.plugin$")


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)


def measure(repeat: int, env: dict[str, str], cwd: Path) -> dict[str, float | str]:
    wall, cumulative, heavy = [], [], ""
    for _ in range(repeat):
        lines = _run([sys.executable, "-c", IMPORT], cwd, env).stdout.splitlines()
        wall.append(float(lines[0]))
        heavy = lines[1] if len(lines) > 1 else ""
        traced = _run([sys.executable, "-X", "importtime", "-c", IMPORT], cwd, env).stderr
        found = [int(m.group(1)) for m in map(CUMULATIVE.search, traced.splitlines()) if m]
        cumulative.append(found[-1] / 1000)
    return {
        "import_ms": statistics.median(wall),
        "importtime_ms": statistics.median(cumulative),
        "heavy": heavy or "none",
    }


def pytest_start(repeat: int, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Median wall times (ms) of `pytest --collect-only -q` in an empty project, with the
    plugin and without it, run alternately so that the machine's drift hits both alike."""
    runs: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeat):
        for loaded in (True, False):
            extra = [] if loaded else ["-p", "no:registry_tools"]
            begin = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
                + extra,
                cwd=cwd,
                env=env,
                capture_output=True,
            )
            runs[loaded].append(time.perf_counter() - begin)
    return statistics.median(runs[True]) * 1000, statistics.median(runs[False]) * 1000


def report(label: str, env: dict[str, str], repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as empty:
        cwd = Path(empty)
        figures = measure(repeat, env, cwd)
        with_plugin, without = pytest_start(repeat, env, cwd)
    print(f"{label}:")
    print(f"  import registry_tools.replay.plugin  {figures['import_ms']:7.1f} ms (perf_counter)")
    print(f"  -X importtime cumulative            {figures['importtime_ms']:7.1f} ms")
    print(f"  heavy modules imported              {figures['heavy']}")
    print(f"  pytest --collect-only, empty project {with_plugin:6.0f} ms with the plugin")
    print(f"  the same, -p no:registry_tools       {without:6.0f} ms")
    print(f"  cost per pytest start                {with_plugin - without:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--ref", help="also measure this commit's plugin (e.g. a parent)")
    args = parser.parse_args()
    print(f"median of {args.repeat} fresh processes, Python {sys.version.split()[0]}\n")
    report("this checkout", dict(os.environ), args.repeat)
    if args.ref:
        with tempfile.TemporaryDirectory(prefix="bench-plugin-ref-") as old:
            archive = subprocess.run(
                ["git", "archive", args.ref, "registry_tools"], cwd=ROOT, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
            env = {**os.environ, "PYTHONPATH": old}
            print()
            report(f"{args.ref}", env, args.repeat)


if __name__ == "__main__":
    main()
