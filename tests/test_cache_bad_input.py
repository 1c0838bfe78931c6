"""`registry-tools cache` and `run_cache` on bad input: one line on stderr, exit 2, no request
made, no file changed, no journal left (issues 10 and 13)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import types
from pathlib import Path

import orjson
import pytest
from _fetch_fixtures import run_cli, synthetic

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry.emulator import running_emulator
from registry_tools.replay.cassettes import bundled_cassettes


@pytest.fixture(scope="module")
def registry() -> dict:
    return synthetic(30, 6)


@pytest.fixture
def emulator(registry):
    with running_emulator(registry) as emu:
        yield emu


def _digest(directory: Path) -> dict[str, str]:
    """Every file under `directory` (links not followed) and its content hash."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(directory))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and re.match(r"registry-tools( \w+)?: error: ", err), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


# ---- outputs that are not plain files -----------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: Path("/dev/null"), "not a regular file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: Path("-"), "--output -: the cache is written to a file"),
        (lambda tmp: tmp / ("x" * 300 + ".json"), "file name too long"),
        # fits alone, but not with the temporary name of the atomic write or the journal
        (lambda tmp: tmp / ("y" * 245), "file name too long"),
    ],
    ids=["dev-null", "directory", "stdout", "300-characters", "no-room-for-the-journal"],
)
def test_outputs_that_cannot_be_written_are_refused_before_any_request(
    emulator, tmp_path, capsys, make, message
):
    output = make(tmp_path)
    before = _digest(tmp_path)
    code, err = run_cli(capsys, "cache", "--output", str(output), "--base-url", emulator.url)
    assert_refused(code, err, message)
    assert emulator.counters.requests == 0
    assert _digest(tmp_path) == before
    assert Path("/dev/null").is_char_device()


def test_a_journal_that_is_a_directory_is_refused(emulator, tmp_path, capsys):
    (tmp_path / "c.json.journal").mkdir()
    code, err = run_cli(
        capsys, "cache", "--output", str(tmp_path / "c.json"), "--base-url", emulator.url
    )
    assert_refused(code, err, "c.json.journal beside it", "is a directory")
    assert emulator.counters.requests == 0


def test_an_output_inside_the_cassette_set_being_replayed_is_refused(tmp_path, capsys):
    cassettes = tmp_path / "kas"
    files_before = {}
    import shutil

    shutil.copytree(bundled_cassettes("sample"), cassettes)
    files_before = _digest(cassettes)
    code, err = run_cli(
        capsys, "cache", "--cassette-dir", str(cassettes),
        "--output", str(cassettes / "phase1-nodes.json"),
    )  # fmt: skip
    assert_refused(code, err, "is inside", "kas")
    assert _digest(cassettes) == files_before
    assert not list(cassettes.glob("*.journal"))


def test_an_input_that_is_the_outputs_journal_is_refused(emulator, tmp_path, capsys):
    out = tmp_path / "c.json"
    journal = tmp_path / "c.json.journal"
    journal.write_bytes(b'{"nodes": []}\n')
    code, err = run_cli(
        capsys, "cache", "--input", str(journal), "--output", str(out),
        "--base-url", emulator.url,
    )  # fmt: skip
    assert_refused(code, err, "its c.json.journal would replace the input")
    assert journal.read_bytes() == b'{"nodes": []}\n'
    assert emulator.counters.requests == 0


# ---- inputs that never end or lie about their type -----------------------------------------


def _cache_with(registry: dict, change) -> bytes:
    cache = orjson.loads(files.dumps(registry))
    change(cache)
    return files.dumps(cache)


def _first_version(cache: dict) -> dict:
    return next(n for n in cache["nodes"] if n.get("versions_list"))["versions_list"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: _first_version(c).update(comfy_nodes=5), "'comfy_nodes' is a JSON number"),
        (lambda c: _first_version(c).update(comfy_nodes=[1]), "'comfy_nodes' holds a JSON number"),
        (lambda c: _first_version(c).update(deprecated="false"), "'deprecated' is a JSON string"),
        (
            lambda c: _first_version(c).update(metadata_cached=1),
            "'metadata_cached' is a JSON number",
        ),
        (
            lambda c: _first_version(c).update(metadata_pending="soon"),
            "'metadata_pending' is 'soon'",
        ),
        (lambda c: c["nodes"].append(dict(c["nodes"][0])), "appears twice"),
        (
            lambda c: c["nodes"][0]["versions_list"].append(
                dict(c["nodes"][0]["versions_list"][0])
            ),
            "appears twice",
        ),
        (lambda c: c["nodes"][0].update(fully_cached="yes"), "'fully_cached' is a JSON string"),
    ],
    ids=[
        "comfy-nodes-5",
        "comfy-nodes-of-numbers",
        "deprecated-string",
        "metadata-cached-number",
        "metadata-pending-unknown",
        "duplicate-node",
        "duplicate-version",
        "fully-cached-string",
    ],
)
def test_an_input_cache_of_the_wrong_shape_is_refused_before_any_request(
    registry, emulator, tmp_path, capsys, change, message
):
    source = tmp_path / "in.json"
    source.write_bytes(_cache_with(registry, change))
    out = tmp_path / "out.json"
    out.write_bytes(b"precious")
    before = _digest(tmp_path)
    code, err = run_cli(
        capsys, "cache", "--input", str(source), "--output", str(out),
        "--base-url", emulator.url,
    )  # fmt: skip
    assert_refused(code, err, "not a registry cache", message)
    assert emulator.counters.requests == 0
    assert _digest(tmp_path) == before


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_an_input_that_is_a_device_is_refused(emulator, tmp_path, capsys, device):
    code, err = run_cli(
        capsys, "cache", "--input", device, "--output", str(tmp_path / "c.json"),
        "--base-url", emulator.url,
    )  # fmt: skip
    assert_refused(code, err, "not a regular file")
    assert not list(tmp_path.iterdir())


# ---- numbers, URLs and the Python API ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-rate", "0"], "argument --max-rate: must be more than 0"),
        (["--max-rate", "-3"], "argument --max-rate: must be 0 or more"),
        (["--max-rate", "fast"], "argument --max-rate: not a number"),
        (["--base-url", "http://[::1"], "--base-url 'http://[::1': not a valid URL"),
        (["--base-url", "http://me:hunter2@example.com"], "credentials in the URL"),
        (["--base-url", "http://me:hunter2@[::1"], "not a valid URL"),
    ],
)
def test_bad_rates_and_base_urls(tmp_path, capsys, args, message):
    code, err = run_cli(capsys, "cache", "--output", str(tmp_path / "c.json"), *args)
    assert_refused(code, err, message)
    assert "hunter2" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_versions", 2.5, "--max-versions must be an integer, got 2.5"),
        ("concurrency", "10", "--concurrency must be an integer, got '10'"),
        ("concurrency", True, "--concurrency must be an integer, got True"),
        ("nodes_per_page", 0, "--nodes-per-page must be between 1 and"),
        ("max_rate", 0, "--max-rate must be more than 0"),
        ("max_rate", float("nan"), "--max-rate must be a finite number"),
        ("timeout", -1.0, "--timeout must be between"),
        ("backoff", "0.5", "--backoff must be a number"),
        ("nodes", "yes", "nodes must be True or False"),
        ("output", 3, "--output must be a file path"),
        ("base_url", "http://[::1", "not a valid URL"),
        ("token", "a\nb", "--token must be a non-empty string of printable characters"),
    ],
)
def test_the_python_api_checks_its_arguments_before_any_work(
    emulator, tmp_path, field, value, message
):
    settings = {"output": tmp_path / "c.json", "base_url": emulator.url, field: value}
    with pytest.raises(UserError, match=message):
        run_cache(CacheOptions(**settings))
    assert emulator.counters.requests == 0
    assert not list(tmp_path.iterdir()), "no journal, no output"


def test_options_changed_after_construction_are_checked_again(emulator, tmp_path):
    options = CacheOptions(output=tmp_path / "c.json", base_url=emulator.url)
    options.max_versions = 2.5
    with pytest.raises(UserError, match="--max-versions must be an integer"):
        run_cache(options)
    assert emulator.counters.requests == 0 and not list(tmp_path.iterdir())


# ---- a full disk ---------------------------------------------------------------------------------


def _failing_fsync(module, after: int):
    """A stand-in for `module.os` whose fsync fails with ENOSPC after `after` calls."""
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)

    return types.SimpleNamespace(**{**vars(os), "fsync": fsync})


def test_a_full_disk_at_the_final_write_keeps_the_old_output_and_the_journal(
    emulator, tmp_path, capsys, monkeypatch
):
    import registry_tools.files as files_module

    out = tmp_path / "c.json"
    out.write_bytes(b"old cache")
    monkeypatch.setattr(files_module, "os", _failing_fsync(files_module, 0))
    code, err = run_cli(capsys, "cache", "--output", str(out), "--base-url", emulator.url)
    assert_refused(code, err, "No space left on device", "run the same command again")
    assert out.read_bytes() == b"old cache"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "c.json.journal").is_file(), "the work is kept for a resume"
    monkeypatch.undo()
    sent = emulator.counters.requests
    code, err = run_cli(capsys, "cache", "--output", str(out), "--base-url", emulator.url)
    assert code == 0, err
    assert emulator.counters.requests == sent, "everything came back from the journal"
    assert cache_file.load_cache(out)["node_count"] == 30
    assert not (tmp_path / "c.json.journal").exists()


def test_a_full_disk_while_journaling_stops_the_run_in_one_line(
    emulator, tmp_path, capsys, monkeypatch
):
    import registry_tools.journal as journal_module

    out = tmp_path / "c.json"
    out.write_bytes(b"old cache")
    monkeypatch.setattr(journal_module, "os", _failing_fsync(journal_module, 1))
    code, err = run_cli(
        capsys, "cache", "--output", str(out), "--base-url", emulator.url,
        "--checkpoint-interval", "1", "--nodes-per-page", "10",
    )  # fmt: skip
    assert_refused(code, err, "c.json.journal", "No space left on device")
    assert out.read_bytes() == b"old cache"
