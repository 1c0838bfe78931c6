"""`registry-tools cache` as a user runs it: bad input, exit codes, SIGKILL and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cache_oracle import expected
from _fetch_fixtures import EPOCH, run_cli, synthetic
from aiohttp import web

from registry_tools import files
from registry_tools.registry.emulator import Faults, running_emulator
from registry_tools.replay.cassettes import bundled_cassettes


@pytest.fixture(scope="module")
def registry() -> dict:
    return synthetic(60, 4)


@pytest.fixture
def emulator(registry):
    with running_emulator(registry, Faults(latency_ms=2)) as emu:
        yield emu


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))


def test_cli_builds_the_cache_and_prints_a_summary(pinned, emulator, registry, tmp_path, capsys):
    out = tmp_path / "c.json"
    code, err = run_cli(capsys, "cache", "--output", str(out), "--base-url", emulator.url)
    assert code == 0
    assert "60 nodes" in err and "0 failures" in err and f"wrote {out}" in err
    assert out.read_bytes() == expected(registry, omitted=emulator.emulator.omits_download)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "argument --concurrency: must be at least 1, got 0"),
        (["--concurrency", "-3"], "argument --concurrency: must be at least 1, got -3"),
        (["--nodes-per-page", "0"], "argument --nodes-per-page: must be at least 1"),
        (["--pages", "-1"], "argument --pages: must be at least 1, got -1"),
        (["--max-versions", "0"], "argument --max-versions: must be -1 (all) or at least 1"),
        (["--concurrency", "ten"], "argument --concurrency: not an integer: 'ten'"),
        (["--base-url", "ftp://example"], "--base-url 'ftp://example': expected an http"),
        (["--output", "/nonexistent-dir/c.json"], "directory /nonexistent-dir does not exist"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, args, message):
    code, err = run_cli(capsys, "cache", *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"\x00garbage", "not valid JSON"),
        (b'{"nodes": {"a": 1}}', "not a registry cache (missing the 'nodes' list)"),
        (b'["x"]', "not a registry cache (top level is a JSON list"),
    ],
)
def test_bad_input_files_leave_everything_untouched(tmp_path, capsys, content, message):
    source = tmp_path / "in.json"
    if content is not None:
        source.write_bytes(content)
    out = tmp_path / "out.json"
    out.write_bytes(b"precious")
    code, err = run_cli(
        capsys, "cache", "--input", str(source), "--output", str(out), "--base-url", "http://x"
    )
    assert code == 2 and err.count("\n") == 1 and message in err
    assert out.read_bytes() == b"precious"
    assert content is None or source.read_bytes() == content


def test_unwritable_output_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *_args: False)
    code, err = run_cli(capsys, "cache", "--output", str(tmp_path / "c.json"))
    assert code == 2 and "is not writable" in err


def test_server_answering_html_fails_cleanly(tmp_path, capsys):
    async def html(_request):
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", html)
    out = tmp_path / "c.json"
    out.write_bytes(b"precious")
    code, err = _run_against(app, capsys, "--output", str(out), "--max-attempts", "2")
    assert code == 1
    assert "answer is not JSON (text/html" in err
    assert "1 item failed" in err
    assert out.read_bytes() == b"precious"


def test_server_answering_json_of_the_wrong_shape_fails_cleanly(tmp_path, capsys):
    async def garbage(_request):
        return web.json_response({"unexpected": [1, 2, 3]})

    app = web.Application()
    app.router.add_get("/{tail:.*}", garbage)
    code, err = _run_against(app, capsys, "--output", str(tmp_path / "c.json"))
    assert code == 1
    assert "phase1-nodes: page 1: GET http://127.0.0.1:" in err and "not a nodes page" in err
    assert not (tmp_path / "c.json").exists()


def _run_against(app: web.Application, capsys, *argv: str) -> tuple[int, str]:
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        return run_cli(
            capsys, "cache", "--base-url", f"http://127.0.0.1:{port}", "--backoff", "0.001", *argv
        )
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


# ---- SIGKILL and resume ---------------------------------------------------------------------


def _cache_command(url: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "registry_tools", "cache", "--output", str(out),
        "--base-url", url, "--concurrency", "2", "--checkpoint-interval", "3",
        "--nodes-per-page", "10", "--backoff", "0.001", "--no-progress", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}


def _kill_after(command: list[str], journal: Path, records: int) -> None:
    """Start `command`, SIGKILL it once its journal holds `records` checkpointed records."""
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") > records:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"


# 6 listing pages, then a dozen phase-2 records (scan pages, banned nodes, bulk reads), then
# phase 3 (the whole run journals about 200 records: 150 leaves room before the final write)
@pytest.mark.parametrize("records", [2, 9, 60, 150])
def test_sigkill_then_rerun_gives_the_uninterrupted_cache(registry, tmp_path, records):
    out = tmp_path / "c.json"
    journal = Path(f"{out}.journal")
    with running_emulator(registry, Faults(latency_ms=3, rate_500=0.05, seed=2)) as emu:
        command = _cache_command(emu.url, out)
        _kill_after(command, journal, records)
        assert not out.exists(), "no output before the run ends"
        resumed = subprocess.run(command, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert out.read_bytes() == expected(registry, omitted=emu.emulator.omits_download)
    assert not journal.exists()


def test_sigkill_during_in_place_refresh_leaves_the_input_intact(registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry, Faults(latency_ms=3)) as emu:
        listing = _cache_command(emu.url, out, "--no-versions", "--no-metadata")
        subprocess.run(listing, env=_env(), check=True, capture_output=True)
        before = out.read_bytes()
        command = _cache_command(emu.url, out, "--input", str(out), "--no-nodes")
        _kill_after(command, Path(f"{out}.journal"), 40)
        assert out.read_bytes() == before
        resumed = subprocess.run(command, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == expected(registry, omitted=emu.emulator.omits_download)


# ---- replaying cassettes from the command line -------------------------------------------------

SAMPLE = bundled_cassettes("sample")
SAMPLE_CACHE = (
    Path(__file__).parent
    / "__registry_snapshots__"
    / "test_cassettes"
    # the cache snapshot of the cassette tests: the same replay through the library
    / "test_replayed_sample_is_byte_identical_at_any_concurrency.cache.json"
)


def test_cli_replays_the_bundled_cassettes_with_their_recorded_options(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01, as the snapshot
    out = tmp_path / "c.json"
    for concurrency in ("1", "32"):
        code, err = run_cli(
            capsys, "cache", "--cassette-dir", str(SAMPLE), "--output", str(out),
            "--concurrency", concurrency,
        )  # fmt: skip
        assert code == 0, err
        assert out.read_bytes() == SAMPLE_CACHE.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes-per-page", "10"], "recorded with nodes_per_page=30; replay needs the same"),
        (["--max-versions", "-1"], "recorded with max_versions=5; replay needs the same value"),
        (["--record-mode", "sometimes"], "--record-mode 'sometimes': expected one of none"),
    ],
)
def test_cli_refuses_a_replay_that_cannot_match(tmp_path, capsys, args, message):
    out = tmp_path / "c.json"
    code, err = run_cli(capsys, "cache", "--cassette-dir", str(SAMPLE), "--output", str(out), *args)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


# ---- safe resume (issue 10 item 8) ------------------------------------------------------------


def _journal_header(path: Path) -> dict:
    import orjson

    return orjson.loads(path.read_bytes().split(b"\n")[0])


def test_a_journal_of_another_registry_is_set_aside_and_never_replayed(
    pinned, registry, tmp_path, capsys, caplog
):
    out = tmp_path / "c.json"
    journal = Path(f"{out}.journal")
    with running_emulator(registry) as emu:
        code, _ = run_cli(
            capsys, "cache", "--output", str(out), "--base-url", emu.url, "--no-metadata"
        )
        assert code == 0
        clean = out.read_bytes()
        out.unlink()
        # the journal a killed run against another registry left: same options, other URL
        other = {**_journal_header_for(emu.url), "base_url": "http://elsewhere.invalid"}
        poisoned = {"k": "page", "round": 1, "page": 1, "items": [{"id": "ghost"}], "total": 1,
                    "size": 100, "total_pages": 1}  # fmt: skip
        journal.write_bytes(files.dumps(other).replace(b"\n", b"") + b"\n"
                            + files.dumps(poisoned).replace(b"\n", b"") + b"\n")  # fmt: skip
        caplog.set_level("WARNING")
        code, err = run_cli(
            capsys, "cache", "--output", str(out), "--base-url", emu.url, "--no-metadata"
        )
    assert code == 0, err
    assert out.read_bytes() == clean, "nothing of the foreign journal was replayed"
    aside = Path(f"{out}.journal.set-aside")
    assert aside.is_file() and b"ghost" in aside.read_bytes()
    assert "belongs to another job" in caplog.text and "http://elsewhere.invalid" in caplog.text
    assert not journal.exists()


def _journal_header_for(url: str) -> dict:
    """The header a default `cache --no-metadata` run against `url` writes."""
    return {
        "format": 2, "job": "cache", "base_url": url, "input": None,
        "options": [True, True, False, 100, -1, None],
    }  # fmt: skip


def test_temporary_files_of_an_interrupted_final_write_are_cleaned(
    pinned, registry, tmp_path, capsys
):
    out = tmp_path / "c.json"
    stale = tmp_path / ".c.json.ab12cd_9.tmp"  # what a kill during write_atomic leaves
    stale.write_bytes(b"half a cache")
    unrelated = tmp_path / ".other.json.ab12cd_9.tmp"
    unrelated.write_bytes(b"not ours")
    with running_emulator(registry) as emu:
        code, err = run_cli(
            capsys, "cache", "--output", str(out), "--base-url", emu.url, "--no-metadata"
        )
    assert code == 0, err
    assert not stale.exists() and unrelated.exists()


def test_the_journal_header_ties_it_to_the_registry_and_the_input(pinned, registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry, Faults(latency_ms=3)) as emu:
        command = _cache_command(emu.url, out, "--no-metadata")
        _kill_after(command, Path(f"{out}.journal"), 3)
        header = _journal_header(Path(f"{out}.journal"))
    assert header["base_url"] == emu.url and header["input"] is None and header["job"] == "cache"
