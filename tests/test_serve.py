"""`registry-tools serve`: the one line it prints, its counters, `--realistic` and the
behaviour flags, the host warning, and one-line errors for bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _registry_http import get, odd_registry, post
from yarl import URL

from registry_tools import files
from registry_tools.registry.emulator import running_emulator


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    return odd_registry()


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "registry_tools", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_serve_command(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    process = _serve("--cache", str(path), "--port", "0", "--latency-ms", "1")
    try:
        line = process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:")
        status, _, body = get(line.split()[1], "nodes", "pack")
        assert status == 200 and body["id"] == "pack"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out == ""
    assert "1 requests" in err and "node=1" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"[1, 2]", "not a registry cache"), (b"{", "not valid JSON")],
)
def test_serve_bad_cache_is_one_line(tmp_path: Path, content, message) -> None:
    path = tmp_path / "cache.json"
    if content is not None:
        path.write_bytes(content)
    process = _serve("--cache", str(path))
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools: error: --cache ") and message in err
    assert err.count("\n") == 1


def test_serve_on_a_taken_port_is_one_line(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    with running_emulator(cache) as emu:
        process = _serve("--cache", str(path), "--port", str(URL(emu.url).port))
        out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools: error: --host/--port: ") and err.count("\n") == 1


def _serving(*args: str) -> tuple[str, subprocess.Popen]:
    """Start `serve` with `args`; (its URL, the process)."""
    process = _serve(*args)
    line = process.stdout.readline()
    assert line.startswith("serving http://"), process.stderr.read()
    return line.split()[1], process


def _stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return out, err


def test_serve_realistic_with_a_flag_overriding_the_preset(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving("--cache", str(path), "--realistic", "--rate-limit", "0")
    try:
        assert get(base, "nodes", "pack", "install", version="2.0.0-rc.1")[0] == 400
        assert get(base, "nodes", "banned-pack")[0] == 403  # statuses enforced
        advanced = post(base, "_emulator", "advance", body={"finish_pending": 1.0})
        assert advanced[0] == 200 and "finished" in advanced[2]
        statuses = [get(base, "nodes")[0] for _ in range(6)]
    finally:
        _, err = _stop(process)
    assert statuses == [200] * 6  # --rate-limit 0 switched the preset's limit off
    assert "installs: 1" in err and "rate-limited: 0" in err


def test_serve_rate_limit_flags(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving(
        "--cache", str(path), "--rate-limit", "0.01", "--rate-burst", "2", "--rate-retry-after", "3"
    )
    try:
        answers = [get(base, "nodes") for _ in range(3)]
    finally:
        _, err = _stop(process)
    assert [status for status, _, _ in answers] == [200, 200, 429]
    assert answers[2][1]["Retry-After"] == "3"
    assert "rate-limited: 1" in err


def test_serve_on_every_interface_warns(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving("--cache", str(path), "--host", "0.0.0.0")
    port = URL(base).port
    try:
        assert get(f"http://127.0.0.1:{port}", "nodes", "pack")[0] == 200
    finally:
        _, err = _stop(process)
    assert "WARNING" in err and "every network interface" in err and "'0.0.0.0'" in err
    _, process = _serving("--cache", str(path))
    assert "WARNING" not in _stop(process)[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port: must be a port from 0 to 65535, got 70000"),
        (["--port", "-1"], "--port: must be 0 or more"),
        (["--rate-burst", "0.5"], "Behaviour.rate_burst must be at least 1"),
        (["--pending-share", "0.9", "--failed-share", "0.2"], "at most 1"),
        (["--drift-rows", "two"], "--drift-rows: not an integer"),
    ],
)
def test_serve_bad_numbers_are_one_line(tmp_path, cache, argv, message) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    process = _serve("--cache", str(path), *argv)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
