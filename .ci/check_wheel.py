"""Check a built wheel: every bundled notebook, cassette and data table, the entry points, a
light core.

Usage: python .ci/check_wheel.py dist/registry_tools-*.whl (from the checkout). Exits non-zero
naming what is wrong; prints what the wheel holds otherwise.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = (
    "registry_tools/notebooks/bundled",
    "registry_tools/replay/bundled",
    "registry_tools/resolve/data",
)
NOT_CORE = ("jupyterlab", "ipywidgets", "nbclient", "nbformat", "ipykernel", "matplotlib")


def problems(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    wanted = {
        path.relative_to(ROOT).as_posix()
        for folder in BUNDLED
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts
    }
    found = [f"missing from the wheel: {name}" for name in sorted(wanted - names)]
    if "registry_tools = registry_tools.replay.plugin" not in entry_points:
        found.append("no pytest11 entry point registry_tools")
    if "registry-tools = registry_tools.cli:main" not in entry_points:
        found.append("no registry-tools console script")
    core = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    found += [f"core dependency {line!r}" for line in core if any(n in line for n in NOT_CORE)]
    print(f"{wheel.name}: {len(names)} files, {len(wanted)} bundled data files, {len(core)} core")
    return found


if __name__ == "__main__":
    issues = problems(Path(sys.argv[1]))
    for issue in issues:
        print(f"check_wheel: {issue}", file=sys.stderr)
    sys.exit(1 if issues else 0)
