"""What the distribution promises, checked offline: package data, a light core, entry points.

The wheel itself is built, inspected and installed (non-editable, from an unrelated
directory) by `.ci/wheel.sh`, which needs PyPI; these checks catch the same mistakes early.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import registry_tools

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(registry_tools.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The notebook stack: none of it may be needed by the core commands or the pytest plugin.
NOTEBOOK_STACK = {"nbclient", "nbformat", "ipykernel", "ipywidgets", "matplotlib", "zmq"} | {
    "jupyterlab",
    "jupyter_client",
    "IPython",
    "traitlets",
    "pandas",
}


def _package_data_matches(path: Path) -> bool:
    """Whether `[tool.setuptools.package-data]` ships this file of the package."""
    relative = path.relative_to(PACKAGE.parent)
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        base = PACKAGE.parent.joinpath(*package.split("."))
        if base in path.parents:
            inside = path.relative_to(base).as_posix()
            if any(fnmatch.fnmatch(inside, pattern) for pattern in patterns):
                return True
    return str(relative).endswith(".py")


def test_every_bundled_file_is_package_data() -> None:
    bundled = [
        path
        for folder in (PACKAGE / "notebooks" / "bundled", PACKAGE / "replay" / "bundled")
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
    ]
    assert any(p.suffix == ".ipynb" for p in bundled)
    assert any(p.name == "manifest.json" for p in bundled)
    missing = [str(p.relative_to(PACKAGE)) for p in bundled if not _package_data_matches(p)]
    assert missing == []


def test_the_checkout_links_point_into_the_package() -> None:
    assert (ROOT / "notebooks").resolve() == PACKAGE / "notebooks" / "bundled"
    assert (ROOT / "cassettes" / "sample").resolve() == PACKAGE / "replay" / "bundled" / "sample"


def test_the_core_never_imports_the_notebook_stack() -> None:
    """`pip install registry-tools` (no extra) must run everything but the notebooks."""
    code = (
        "import sys\n"
        "import registry_tools.cli, registry_tools.fetch.run, registry_tools.mappings.build\n"
        "import registry_tools.resolve.resolver, registry_tools.registry.emulator\n"
        "import registry_tools.replay.plugin, registry_tools.replay.cassettes\n"
        "import registry_tools.replay.recording\n"
        "registry_tools.cli.build_parser().format_help()\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *sorted(NOTEBOOK_STACK)], capture_output=True, text=True
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_notebook_stack_is_an_extra_not_a_dependency() -> None:
    core = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["notebooks"]).lower()
    for name in ("jupyterlab", "ipywidgets", "nbclient", "nbformat", "ipykernel", "matplotlib"):
        assert name not in core and name in extra
    assert "pyyaml" not in core  # vcrpy brings it; this project never imports yaml


def test_entry_points_are_installed() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "registry_tools.replay.plugin" for ep in plugins)
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert ("registry-tools", "registry_tools.cli:main") in {(e.name, e.value) for e in scripts}
