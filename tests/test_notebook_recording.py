"""Recording from the notebooks' steps, and stopping a step: no kernel, a small emulator.

A re-recording is made in a scratch copy of the cassette set and replaces it only when the
run succeeded and recorded something for each phase it ran; an interrupt stops the worker
(its requests stop reaching the emulator) instead of letting it finish in the background.
"""

from __future__ import annotations

import _thread
import asyncio
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch.options import CacheOptions
from registry_tools.notebooks import cancel, steps, widgets
from registry_tools.notebooks.cassette_sets import StagedRecording
from registry_tools.progress import NullReporter
from registry_tools.registry import synth
from registry_tools.registry.emulator import Emulator, Faults, running_emulator
from registry_tools.replay.recording import recorded_fetch

PHASE_FILES = ("phase1-nodes.json", "phase2-versions.json", "phase3-metadata.json")


@pytest.fixture(scope="module")
def registry() -> Iterator[Any]:
    """A 12-package registry."""
    with running_emulator(Emulator(synth.generate(12, seed=4))) as running:
        yield running


@pytest.fixture
def slow_registry() -> Iterator[Any]:
    """The same registry answering in 100 ms: 12 one-node pages, one at a time, take 1.2 s."""
    with running_emulator(Emulator(synth.generate(12, seed=4), Faults(latency_ms=100))) as slow:
        yield slow


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording uses the live back-off (0.5 s first step): too slow for failing tests."""
    monkeypatch.setattr(CacheOptions, "backoff", 0.001)


def record_params(tmp_path: Path, url: str, **changes: Any) -> steps.Parameters:
    """The parameters of a notebook recording `url` into `tmp_path/set`, phase by phase."""
    values = {
        "concurrency": 4,
        "checkpoint_interval": 20,
        "nodes_per_page": 5,
        "pages": 0,
        "max_versions": 2,
        "base_url": url,
        "cassette_dir": str(tmp_path / "set"),
        "record_mode": "all",
        "output_dir": str(tmp_path / "out"),
        "input_cache": "cache.json",
        "output_cache": "cache.json",
        **changes,
    }
    return steps.Parameters.from_namespace(values)


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def record_all_phases(params: steps.Parameters) -> None:
    for step in (steps.nodes, steps.versions, steps.metadata):
        assert step(params, NullReporter()).ok


def test_a_set_recorded_phase_by_phase_replays_with_its_recorded_options(
    tmp_path: Path, registry: Any
) -> None:
    params = record_params(tmp_path, registry.url, input_cache="")
    assert steps.nodes(params, NullReporter()).ok
    record_all_phases(record_params(tmp_path, registry.url))
    directory = tmp_path / "set"
    assert sorted(p.name for p in directory.iterdir()) == sorted([*PHASE_FILES, "manifest.json"])
    assert recorded_fetch(directory) == {"nodes_per_page": 5, "pages": None, "max_versions": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".set.recording-")]

    replay = {
        "record_mode": "none",
        "output_dir": str(tmp_path / "replay"),
        "input_cache": "",
        "output_cache": "cache.json",
    }
    result = steps.metadata(record_params(tmp_path, "http://x.invalid", **replay), NullReporter())
    assert result.ok and result.summary["nodes"] == 12
    assert result.summary["max_versions"] == "2 (fixed by the recording)"
    # 02 does not choose nodes_per_page and pages: building phase 1 first, it replays the
    # recorded ones
    namespace = {**replay, "cassette_dir": str(directory), "output_dir": str(tmp_path / "r2")}
    assert steps.versions(steps.Parameters.from_namespace(namespace), NullReporter()).ok


def test_running_a_recording_twice_keeps_the_good_set(tmp_path: Path, registry: Any) -> None:
    """The second run of phase 3 has nothing left to fetch: it used to save an empty cassette."""
    params = record_params(tmp_path, registry.url)
    record_all_phases(params)
    before = digests(tmp_path / "set")
    again = steps.metadata(params, NullReporter())
    assert again.ok and again.summary["requests"] == 0
    assert "phase3-metadata recorded no request" in again.notes[0]
    assert "left as they were" in again.summary_line()
    assert digests(tmp_path / "set") == before
    cassette = json.loads((tmp_path / "set" / "phase3-metadata.json").read_text())
    assert cassette["interactions"]


def test_a_failed_recording_never_replaces_the_set(tmp_path: Path, fast_backoff: None) -> None:
    """The same registry (same URL), healthy for the first recording, failing for the next."""
    cache = synth.generate(12, seed=4)
    port = free_port()
    with running_emulator(Emulator(cache), port=port) as healthy:
        params = record_params(tmp_path, healthy.url, input_cache="")
        assert steps.nodes(params, NullReporter()).ok
    before = digests(tmp_path / "set")
    failing = Emulator(cache, Faults(rate_500=1.0, max_consecutive_faults=1000))
    with running_emulator(failing, port=port):
        failed = steps.nodes(params, NullReporter())
    assert not failed.ok and "recording had failures" in failed.notes[0]
    assert digests(tmp_path / "set") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".set.")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: d.write_text("x"), "not a directory"),
        (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), "not cassettes (notes.txt)"),
    ],
)
def test_recording_refuses_a_directory_that_is_not_a_cassette_set(
    tmp_path: Path, prepare: Any, message: str
) -> None:
    target = tmp_path / "set"
    prepare(target)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StagedRecording(target, "http://127.0.0.1:1", {})


def test_recording_refuses_the_bundled_set_and_another_registry(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is the bundled sample set"):
        StagedRecording(steps.bundled_cassette_dir(), "http://127.0.0.1:1", {})
    target = tmp_path / "set"
    target.mkdir()
    manifest = {"format": "registry-tools-cassettes/1", "dataset": {"name": "set", "source": "a"}}
    files.write_atomic(target / "manifest.json", files.dumps(manifest))
    with pytest.raises(UserError, match="holds a recording of a, not of http://127.0.0.1:1"):
        StagedRecording(target, "http://127.0.0.1:1", {})
    manifest["dataset"] = {"name": "set", "fetch": {"nodes_per_page": 30, "pages": None}}
    files.write_atomic(target / "manifest.json", files.dumps(manifest))
    with pytest.raises(UserError, match="recorded with pages=0 .part of its data set.; record"):
        StagedRecording(target, "http://127.0.0.1:1", {"nodes_per_page": 30, "pages": 2})
    assert (
        StagedRecording(target, "http://127.0.0.1:1", {"nodes_per_page": 30}).dataset
        == (manifest["dataset"])
    )


def test_recording_a_notebook_that_needs_earlier_options_says_which_to_run(
    tmp_path: Path, registry: Any
) -> None:
    namespace = {
        "base_url": registry.url,
        "cassette_dir": str(tmp_path / "new-set"),
        "record_mode": "all",
        "output_dir": str(tmp_path / "out"),
        "input_cache": "cache.json",
        "output_cache": "cache.json",
    }
    with pytest.raises(UserError, match="nodes_per_page .* run 01_nodes first"):
        steps.versions(steps.Parameters.from_namespace(namespace), NullReporter())
    assert not (tmp_path / "new-set").exists()


def test_replace_directory_swaps_in_one_step_and_leaves_nothing_behind(tmp_path: Path) -> None:
    old, new = tmp_path / "set", tmp_path / ".set.new"
    old.mkdir()
    (old / "a.json").write_text("old")
    new.mkdir()
    (new / "a.json").write_text("new")
    files.replace_directory(new, old)
    assert (old / "a.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    with pytest.raises(UserError, match="cannot replace"):
        files.replace_directory(tmp_path / "missing", old)
    assert (old / "a.json").read_text() == "new"


# ---- stopping a run ---------------------------------------------------------------------------


def interrupt_main_after(seconds: float) -> threading.Timer:
    """Kernel > Interrupt in miniature: a KeyboardInterrupt in the waiting (main) thread."""
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


def test_an_interrupt_stops_the_run_instead_of_letting_it_finish(
    tmp_path: Path, slow_registry: Any
) -> None:
    registry = slow_registry
    params = record_params(tmp_path, registry.url, input_cache="", nodes_per_page=1, concurrency=1)
    reporter = widgets.WidgetReporter(["phase1-nodes"])
    timer = interrupt_main_after(0.35)
    try:
        with pytest.raises(cancel.Interrupted, match="the run stopped"):
            widgets.run_with_progress(lambda: steps.nodes(params, reporter), reporter)
        time.sleep(0.2)  # a request already on the wire still reaches the server
        seen = registry.counters.requests
        time.sleep(0.5)
        assert registry.counters.requests == seen, "requests went on after the interrupt"
    finally:
        timer.cancel()
    assert 2 <= seen < 12, "the whole listing was fetched: the interrupt did not stop it"
    assert not (tmp_path / "set").exists(), "an interrupted recording is not kept"
    assert not (tmp_path / "out" / "cache.json").exists()
    bar = reporter.widget.children[0].children[0]
    assert bar.bar_style == "danger"


def test_an_interrupt_stops_a_run_started_outside_the_main_thread(
    tmp_path: Path, slow_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterLab 4.6 runs a Run click in a kernel subshell thread, where no KeyboardInterrupt
    arrives: the SIGINT must still stop the run, and the kernel's handler come back after."""
    registry = slow_registry
    params = record_params(tmp_path, registry.url, input_cache="", nodes_per_page=1, concurrency=1)
    reporter = widgets.WidgetReporter(["phase1-nodes"])
    outcome: dict[str, Any] = {}

    def click() -> None:
        try:
            widgets.run_with_progress(lambda: steps.nodes(params, reporter), reporter)
        except cancel.Interrupted as exc:
            outcome["interrupted"] = str(exc)

    async def kernel() -> None:  # the main thread: an event loop that ignores SIGINT
        cancel.remember_main_loop()
        thread = threading.Thread(target=click, name="subshell")
        thread.start()
        await asyncio.sleep(0.35)
        os.kill(os.getpid(), signal.SIGINT)
        while thread.is_alive():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the handler is removed by this loop, after the run
        outcome["handler after"] = signal.getsignal(signal.SIGINT)

    monkeypatch.setattr(cancel, "_MAIN_LOOP", None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as ipykernel's idle main thread
    try:
        asyncio.run(kernel())
        time.sleep(0.2)
        seen = registry.counters.requests
        time.sleep(0.5)
        assert registry.counters.requests == seen, "requests went on after the interrupt"
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "the run stopped" in outcome.get("interrupted", ""), outcome
    bar, label = reporter.widget.children[0].children
    done = int(label.value.split("/")[0])
    assert bar.bar_style == "danger" and label.value.endswith("/12 interrupted")
    assert done < 12, "the bar counts the cancelled pages as done"
    assert seen < 12 and outcome["handler after"] is signal.SIG_IGN
    assert not (tmp_path / "set").exists()


def test_synchronous_work_stops_at_its_next_progress_event() -> None:
    switch = cancel.Cancellation()
    with switch.active():
        reporter = cancel.checking(NullReporter())
    reporter.advance("p")
    switch.cancel()
    with pytest.raises(cancel.Interrupted):
        reporter.advance("p")


def test_a_cancelled_switch_runs_no_coroutine() -> None:
    switch = cancel.Cancellation()
    switch.cancel()

    async def never() -> None:
        raise AssertionError("ran")

    with pytest.raises(cancel.Interrupted):
        switch.run(never())
