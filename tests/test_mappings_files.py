"""`registry-tools mappings` and the files around it: every bad path is one line, exit 2, and
changes nothing (issue 13's holes in the mappings path), and `--output -` is standard output."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    pinned_clock,  # noqa: F401  (autouse)
    sample_nodes,
    write_cache,
)

from registry_tools.cli import main
from registry_tools.mappings.build import index_path, journal_path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return write_cache(tmp_path / "cache.json", sample_nodes())


def refused(capsys, *args: str) -> str:
    """Run `mappings ARGS`; it must exit 2 with exactly one line on stderr, which is returned."""
    assert main(["mappings", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("registry-tools: error: ")
    return err


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def command(cache: Path, output: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m registry_tools mappings` in a fresh process, its clock pinned."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1795478400"}
    args = ["mappings", "--cache", str(cache), "--output", output]
    return subprocess.run(
        [sys.executable, "-m", "registry_tools", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=True,
    )


def test_output_dash_writes_the_document_to_standard_output(tmp_path: Path, cache: Path) -> None:
    before = listing(tmp_path)
    done = command(cache, "-", tmp_path)
    assert listing(tmp_path) == before  # no file named '-', no index, no journal
    document = orjson.loads(done.stdout)
    assert "MaskScale::_" in document["mappings"]
    assert b"wrote standard output" in done.stderr
    written = tmp_path / "m.json"
    command(cache, str(written), tmp_path)
    assert written.read_bytes() == done.stdout


def test_output_dash_into_a_closed_pipe_is_quiet(tmp_path: Path, cache: Path) -> None:
    command = f"{sys.executable} -m registry_tools mappings --cache {cache} --output - | head -c 10"
    done = subprocess.run(command, shell=True, capture_output=True, cwd=tmp_path)
    assert done.stdout == b'{\n  "gener'
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("target", ["/dev/null", "directory"])
def test_outputs_that_are_not_regular_files_are_refused(
    tmp_path: Path, cache: Path, capsys, target: str
) -> None:
    output = Path(target) if target.startswith("/") else tmp_path
    kind = output.stat().st_mode
    err = refused(capsys, "--cache", str(cache), "--output", str(output))
    assert "--output" in err
    assert output.stat().st_mode == kind
    if target == "/dev/null":
        assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)


def test_a_file_name_too_long_is_one_line(tmp_path: Path, cache: Path, capsys) -> None:
    err = refused(capsys, "--cache", str(cache), "--output", str(tmp_path / ("x" * 300)))
    assert "too long" in err


@pytest.mark.parametrize("companion", [journal_path, index_path])
def test_a_companion_that_is_a_directory_is_refused_before_work(
    tmp_path: Path, cache: Path, capsys, companion
) -> None:
    output = tmp_path / "m.json"
    output.write_text("precious")
    companion(output).mkdir()
    err = refused(capsys, "--cache", str(cache), "--output", str(output))
    assert "--output" in err and companion(output).name in err and "directory" in err
    assert output.read_text() == "precious"


def test_a_full_disk_is_one_line_and_keeps_the_old_output(
    tmp_path: Path, cache: Path, capsys, monkeypatch
) -> None:
    output = tmp_path / "m.json"
    output.write_text("precious")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    err = refused(capsys, "--cache", str(cache), "--output", str(output))
    assert "No space left on device" in err
    assert output.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "m.json"]  # no journal


@pytest.mark.parametrize("flag", ["--cache", "--input", "--aliases"])
def test_inputs_that_never_end_are_refused(tmp_path: Path, cache: Path, capsys, flag: str) -> None:
    args = ["--cache", str(cache), "--output", str(tmp_path / "m.json")]
    if flag == "--cache":
        args[1] = "/dev/zero"
    else:
        args += [flag, "/dev/zero"]
    err = refused(capsys, *args)
    assert "not a regular file" in err


def test_an_input_that_is_the_outputs_journal_is_refused(
    tmp_path: Path, cache: Path, capsys
) -> None:
    output = tmp_path / "m.json"
    assert main(["mappings", "--cache", str(cache), "--output", str(tmp_path / "old.json")]) == 0
    capsys.readouterr()
    disguised = journal_path(output)
    disguised.write_bytes((tmp_path / "old.json").read_bytes())
    before = disguised.read_bytes()
    err = refused(capsys, "--cache", str(cache), "--input", str(disguised), "--output", str(output))
    assert "journal" in err
    assert disguised.read_bytes() == before
    assert not output.exists()


@pytest.mark.parametrize("companion", [journal_path, index_path])
def test_a_cache_that_is_the_outputs_companion_is_refused(
    tmp_path: Path, cache: Path, capsys, companion
) -> None:
    output = tmp_path / "m.json"
    disguised = companion(output)
    os.replace(cache, disguised)
    before = disguised.read_bytes()
    refused(capsys, "--cache", str(disguised), "--output", str(output))
    assert disguised.read_bytes() == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_output_that_is_a_link_to_the_cache_is_refused(
    tmp_path: Path, cache: Path, capsys, link: str
) -> None:
    output = tmp_path / "m.json"
    (os.link if link == "hard" else os.symlink)(cache, output)
    before = cache.read_bytes()
    err = refused(capsys, "--cache", str(cache), "--output", str(output))
    assert "is the input" in err
    assert cache.read_bytes() == before and output.read_bytes() == before


def test_an_output_that_is_the_aliases_file_is_refused(tmp_path: Path, cache: Path, capsys) -> None:
    aliases = tmp_path / "aliases.json"
    aliases.write_text('{"a": "b"}')
    err = refused(
        capsys, "--cache", str(cache), "--aliases", str(aliases), "--output", str(aliases)
    )
    assert "is the input" in err
    assert aliases.read_text() == '{"a": "b"}'


def test_the_output_may_be_its_own_input(tmp_path: Path, cache: Path) -> None:
    output = tmp_path / "m.json"
    assert main(["mappings", "--cache", str(cache), "--output", str(output)]) == 0
    first = output.read_bytes()
    assert (
        main(["mappings", "--cache", str(cache), "--output", str(output), "--input", str(output)])
        == 0
    )
    assert output.read_bytes() == first
