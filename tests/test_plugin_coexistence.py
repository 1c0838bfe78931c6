"""The plugin in one environment with pytest-recording and syrupy: all three keep working.

Two layers. Stand-ins that register exactly the options the real plugins register run in every
test run (in a subprocess, both plugin orders, since pytest loads plugins one at a time and the
second to register an option used to stop pytest with exit 3). The real plugins are exercised
when they are installed: `.ci/run` runs this file (and the other plugin tests) a second time in
a virtualenv with pytest-recording and syrupy, where `REGISTRY_TOOLS_COEXISTENCE=1` turns a
missing plugin into a failure instead of a skip.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import registry_tools.registry.emulator
import registry_tools.replay.cassettes  # noqa: F401  (kept across pytester's in-process runs)

pytest_plugins = ["pytester"]

# The options pytest-recording 0.14 and syrupy 5 register (names, dests, defaults).
RECORDING_STANDIN = """
def pytest_addoption(parser):
    group = parser.getgroup("recording")
    group.addoption("--record-mode", action="store", default=None,
                    choices=("once", "new_episodes", "none", "all", "rewrite"))
    group.addoption("--block-network", action="store_true", default=False)
    group.addoption("--allowed-hosts", action="store", default=None)
    group.addoption("--disable-recording", action="store_true", default=False)
"""
SYRUPY_STANDIN = """
def pytest_addoption(parser):
    group = parser.getgroup("syrupy")
    group.addoption("--snapshot-update", action="store_true", default=False,
                    dest="update_snapshots")
    group.addoption("--snapshot-warn-unused", action="store_true", default=False,
                    dest="warn_unused_snapshots")
"""
MODE_TEST = """
def test_mode(registry_record_mode, request):
    print("MODE", registry_record_mode, request.config.getoption("registry_snapshot_update"))
"""


def _standins(root: Path) -> Path:
    fakes = root / "fakes"
    (fakes / "pytest_recording").mkdir(parents=True)
    (fakes / "pytest_recording" / "__init__.py").write_text("")
    (fakes / "pytest_recording" / "plugin.py").write_text(RECORDING_STANDIN)
    (fakes / "syrupy").mkdir()
    (fakes / "syrupy" / "__init__.py").write_text(SYRUPY_STANDIN)
    return fakes


@pytest.mark.parametrize("ours_first", [True, False], ids=["ours-first", "theirs-first"])
def test_options_coexist_with_the_neighbours_options(tmp_path: Path, ours_first: bool) -> None:
    fakes = _standins(tmp_path)
    (tmp_path / "test_mode.py").write_text(MODE_TEST)
    ours = ["-p", "registry_tools.replay.plugin"]
    theirs = ["-p", "pytest_recording.plugin", "-p", "syrupy"]
    plugins = ours + theirs if ours_first else theirs + ours
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(fakes)}
    command = [sys.executable, "-m", "pytest", *plugins, "-s", "-q", "-p", "no:cacheprovider"]

    def pytest_run(*options: str) -> subprocess.CompletedProcess:
        argv = [*command, *options, "test_mode.py"]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)

    run = pytest_run("--record-mode", "once", "--snapshot-update")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "MODE once False" in run.stdout  # their options reach our fixtures as fallbacks
    run = pytest_run("--registry-record-mode", "all", "--registry-snapshot-update")
    assert "MODE all True" in run.stdout, run.stdout + run.stderr  # ours under their names


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("REGISTRY_TOOLS_COEXISTENCE"):
            pytest.fail(f"{module} is not installed in the coexistence run")
        pytest.skip(f"{module} not installed (.ci/run runs this in its coexistence venv)")


MIXED_PROJECT = """
import socket
import urllib.request
import pytest

def get(url):
    with urllib.request.urlopen(url) as response:
        return response.read()

@pytest.fixture
def vcr_config():
    return {"match_on": ["method", "path", "query"]}  # the emulator's port changes every run

@pytest.fixture
def local_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]

@pytest.mark.vcr
def test_vcr(request, registry_emulator):
    # pytest-recording's own cassette, recorded from the emulator, replayed after
    url = registry_emulator.url + "/nodes?limit=1&page=1"
    assert b"nodes" in get(url)

def test_syrupy(snapshot):
    assert snapshot == {"syrupy": "still works"}

def test_ours(registry_snapshot):
    assert registry_snapshot == {"registry": "snapshot"}

@pytest.mark.registry_cassette
def test_registry_recording(registry_record_mode, local_server):
    if registry_record_mode != "none":  # recording lifts any guard, pytest-recording's too
        socket.create_connection(("127.0.0.1", local_server)).close()
"""


def test_with_pytest_recording_and_syrupy_installed(pytester: pytest.Pytester) -> None:
    _require("pytest_recording")
    _require("syrupy")
    pytester.makepyfile(test_mixed=MIXED_PROJECT)
    recorded = pytester.runpytest("--record-mode", "once", "--snapshot-update")
    recorded.assert_outcomes(passed=4)
    assert (pytester.path / "cassettes" / "test_mixed" / "test_vcr.yaml").is_file()
    assert (pytester.path / "cassettes" / "test_mixed" / "test_registry_recording.json").is_file()
    assert (pytester.path / "__snapshots__" / "test_mixed.ambr").is_file()
    ours = pytester.path / "__registry_snapshots__" / "test_mixed" / "test_ours.json"
    assert ours.is_file()

    # Replayed: every plugin passes, neither reports the other's snapshots as unused, and
    # updating deletes nothing.
    for flags in ((), ("--snapshot-update",), ("--block-network", "--allowed-hosts", "127.*")):
        again = pytester.runpytest(*flags)
        again.assert_outcomes(passed=4)
        assert again.ret == 0
        assert "unused" not in again.stdout.str()
    assert ours.is_file() and (pytester.path / "__snapshots__" / "test_mixed.ambr").is_file()

    # pytest-recording's --block-network (no loopback allowed) is lifted while ours records
    rerecorded = pytester.runpytest(
        "--block-network", "--record-mode", "all", "-k", "registry_recording"
    )
    rerecorded.assert_outcomes(passed=1)
