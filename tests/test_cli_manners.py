"""What every subcommand shares: `--version`, `--help` with defaults and choices, one error
prefix, each failure printed once, log lines that leave progress bars whole, `record`'s output
path, and one line when the notebooks extra is missing."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_tools.cli import build_parser, main
from registry_tools.registry import synth
from registry_tools.registry.emulator import Faults, running_emulator
from registry_tools.replay import recording


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """The installed command in a process of its own (logging is configured per process)."""
    return subprocess.run(
        [sys.executable, "-m", "registry_tools", *argv], capture_output=True, text=True, **kwargs
    )


def _subcommands(parser: argparse.ArgumentParser, path: str = "") -> Iterator:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}".strip(), sub
                yield from _subcommands(sub, f"{path} {name}")


def test_version(capsys) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out == f"registry-tools {importlib.metadata.version('registry-tools')}\n"


def test_every_subcommand_shows_defaults_and_choices_in_help() -> None:
    subcommands = dict(_subcommands(build_parser()))
    assert {"cache", "notebook run-all", "record", "serve"} <= set(subcommands)
    for name, parser in subcommands.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            shown = action.default not in (None, argparse.SUPPRESS, [], False, True)
            if action.help and shown and action.nargs != 0:
                assert "default" in formatter._expand_help(action), (name, action.dest)
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                assert "{" + ",".join(map(str, action.choices)) + "}" in parser.format_help()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["cache", "--concurrency", "x"], "cache: argument --concurrency: not an integer: 'x'"),
        (["notebook", "run", "--timeout", "-1", "01_nodes"], "notebook run: argument --timeout"),
        (["serve"], "serve: the following arguments are required: --cache"),
        (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
        (["record", "--dataset", "../../../x"], "--dataset '../../../x': a data set name is"),
    ],
)
def test_one_error_prefix(capsys, tmp_path, monkeypatch, argv, line) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"registry-tools: error: {line}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing written, `record` included


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failure_is_printed_once(tmp_path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    done = cli(
        "cache", "--base-url", url, "--output", str(tmp_path / "c.json"), "--max-attempts", "1"
    )
    assert done.returncode == 1
    assert done.stderr.count("page 1: GET") == 1, done.stderr
    # the summary lists it and the last line counts it; no log line repeats it
    assert done.stderr.splitlines()[-1].startswith("registry-tools: error: 1 item")


def test_log_lines_do_not_break_progress_bars(tmp_path) -> None:
    with running_emulator(synth.generate(12, 1), Faults(rate_500=0.2, seed=2)) as emulator:
        done = cli(
            "cache", "--base-url", emulator.url, "--output", str(tmp_path / "c.json"),
            "--backoff", "0.001", "--progress", "--log-level", "INFO", "--max-attempts", "20",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.split("\n") if " INFO " in line]
    assert logged and "%|" in done.stderr  # retries were logged while the bars ran
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ")
    for line in logged:  # a log line starts a line of its own, never the tail of a bar
        assert stamp.match(line.rsplit("\r", 1)[-1]), repr(line)


def test_record_prints_the_directory_it_wrote(capsys, tmp_path) -> None:
    target = tmp_path / "my-set"
    code, out, _ = run(capsys, "record", "--dataset", "sample", "--cassette-dir", str(target))
    assert code == 0
    phases = json.loads((target / "manifest.json").read_text())["phases"]
    assert len(phases) == 3
    interactions = sum(phases.values())
    assert out.startswith(f"recorded {target} ({interactions} interactions in 3 cassettes): 60 ")
    assert "registry-tools-record-" not in out  # not the deleted temporary cache
    assert sorted(p.name for p in target.iterdir()) == [
        "manifest.json",
        "phase1-nodes.json",
        "phase2-versions.json",
        "phase3-metadata.json",
    ]


def test_record_never_writes_into_an_installed_package(capsys, tmp_path, monkeypatch) -> None:
    package = tmp_path / "site-packages" / "registry_tools"
    monkeypatch.setattr(recording, "_PACKAGE", package)  # an install: no pyproject.toml beside
    target = package / "replay" / "bundled" / "sample"
    code, _, err = run(capsys, "record", "--dataset", "sample", "--cassette-dir", str(target))
    assert code == 2 and "inside the installed registry-tools package" in err
    assert not target.exists()
    package.mkdir(parents=True)
    (package.parent / "pyproject.toml").write_text("")  # a source checkout re-records in place
    assert recording.dataset_directory("sample", target) == target


@pytest.mark.parametrize("command", [["notebook", "run-all"], ["notebook", "strip", "--check"]])
def test_notebook_without_the_extra_is_one_line(capsys, tmp_path, monkeypatch, command) -> None:
    monkeypatch.setitem(sys.modules, "nbclient", None)  # as if the extra were not installed
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *command)
    assert code == 2
    assert err == (
        "registry-tools: error: notebook: needs the notebooks extra, which is not installed "
        "(no module 'nbclient'): pip install 'registry-tools[notebooks]'\n"
    )
    assert list(Path(tmp_path).iterdir()) == []
