"""pytest plugin (entry point `pytest11`): registry cassettes, a live emulator, JSON snapshots.

Every project that installs registry-tools loads this module at each pytest start, so it costs
almost nothing to import (vcrpy, aiohttp and the emulator are imported by the fixtures that
need them) and it coexists with pytest-recording and syrupy: options are namespaced
(`plugin_options` explains the fallbacks to those plugins' short names), the snapshot fixture
is `registry_snapshot` with files outside syrupy's `__snapshots__/`, markers and fixtures all
start with `registry_`.

Fixtures: `registry_cassette` (one cassette for the test), `registry_phase_cassettes` (one per
phase, the `phase_context` of `run_cache`), `registry_cassette_dir`, `registry_record_mode`,
`registry_base_url`, `registry_emulator` and `registry_snapshot`. Markers:
`registry_cassette(name, record_mode=)`, `registry_block_network(allowed_hosts=,
allow_loopback=)`, `registry_emulator(**knobs)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from registry_tools.errors import UserError
from registry_tools.replay import plugin_options
from registry_tools.replay.naming import file_base
from registry_tools.replay.network import allowing, blocked_network, opened_network
from registry_tools.replay.snapshot_session import SnapshotSession
from registry_tools.replay.snapshots import Snapshot, explain_comparison, snapshot_dir

_CALL_OUTCOME = pytest.StashKey[str]()  # "passed", "failed" or "skipped"
_RECORDING = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    plugin_options.add_options(parser, pluginmanager)


def pytest_configure(config: pytest.Config) -> None:
    for line in plugin_options.MARKERS:
        config.addinivalue_line("markers", line)
    config.pluginmanager.register(SnapshotSession(config), SnapshotSession.name)


def _fail(message: str) -> None:
    """Fail the test with one line: no traceback, no chained exception."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def _setting(read: Callable[[], Any]) -> Any:
    """A marker or option value, or the test fails with its one-line problem."""
    try:
        return read()
    except ValueError as exc:
        _fail(str(exc))


# ---- the network guard -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _registry_network_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """`--registry-block-network` or `@registry_block_network`: the test runs guarded."""
    policy = _setting(lambda: plugin_options.guard_policy(request.node))
    if policy is None:
        yield
        return
    with blocked_network(policy):
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """While a registry cassette records, the test body may reach the network (any guard's
    block is lifted, as pytest-recording does for its own recording tests)."""
    if not item.stash.get(_RECORDING, False):
        return (yield)
    with opened_network():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Remember how the test body ended, for the cassette fixtures' teardown."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_OUTCOME] = report.outcome
    return report


# ---- cassettes -------------------------------------------------------------------------------


@pytest.fixture
def registry_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Where cassettes of this test module live; override the fixture to move them."""
    return request.path.parent / "cassettes" / request.path.stem


@pytest.fixture
def registry_record_mode(request: pytest.FixtureRequest) -> str:
    """`--registry-record-mode` (or pytest-recording's `--record-mode`), else the marker's
    `record_mode`, else `none`; `rewrite` is `all`."""
    return _setting(lambda: plugin_options.record_mode(request.node))


def _cassette_name(request: pytest.FixtureRequest) -> str:
    name, _ = _setting(lambda: plugin_options.cassette_marker(request.node))
    return name or file_base(request.node)


@contextlib.contextmanager
def _cassette_session(request: pytest.FixtureRequest, mode: str) -> Iterator[Any]:
    """Around a cassette fixture: the cassette module (imported now, with a clear message
    when vcrpy is unusable), the replay guard, and bad cassettes as one-line failures."""
    try:
        from registry_tools.replay import cassettes
    except ImportError as exc:
        _fail(
            f"registry cassettes cannot load ({exc}): they need vcrpy>=9.4.2,<10 and "
            "aiohttp>=3.10.0, the versions registry-tools declares"
        )
    if mode == "none":
        guard: AbstractContextManager = blocked_network(
            plugin_options.replay_policy(request.node, mode)
        )
    else:
        request.node.stash[_RECORDING] = True
        guard = contextlib.nullcontext()
    with guard, _as_test_failure(request, cassettes.MissingInteraction):
        yield cassettes


@contextlib.contextmanager
def _as_test_failure(request: pytest.FixtureRequest, missing: type[Exception]) -> Iterator[None]:
    """A bad cassette (missing, corrupt, other data set) fails the test with its one line.

    Misses the test body swallowed are reported at teardown; misses that already failed the
    test are not reported twice.
    """
    try:
        yield
        return
    except missing as exc:
        if request.node.stash.get(_CALL_OUTCOME, "") == "failed":
            return
        message = str(exc)
    except UserError as exc:
        message = str(exc)
    _fail(message)


@pytest.fixture
def registry_cassette(
    request: pytest.FixtureRequest, registry_cassette_dir: Path, registry_record_mode: str
) -> Iterator[Any]:
    """A vcrpy cassette (indexed replay, scrubbed) active for the whole test.

    A test that records and makes no request still leaves a cassette (an empty one), so its
    replay passes instead of failing on a missing file.
    """
    path = registry_cassette_dir / f"{_cassette_name(request)}.json"
    with _cassette_session(request, registry_record_mode) as cassettes:
        with cassettes.use_cassette(path, registry_record_mode) as cassette:
            yield cassette
        passed = request.node.stash.get(_CALL_OUTCOME, "") == "passed"
        if registry_record_mode != "none" and passed and not path.exists():
            cassette._save(force=True)  # vcrpy saves only cassettes that changed


@pytest.fixture(autouse=True)
def _registry_cassette_marker(
    request: pytest.FixtureRequest, _registry_network_guard: None
) -> None:
    """The marker alone switches its cassette on, as pytest-recording's `vcr` marker does
    (after the network guard, so that a replay's stricter guard is the one checked first)."""
    if request.node.get_closest_marker("registry_cassette") is None:
        return
    if {"registry_cassette", "registry_phase_cassettes"}.isdisjoint(request.fixturenames):
        request.getfixturevalue("registry_cassette")


@pytest.fixture
def registry_phase_cassettes(
    request: pytest.FixtureRequest, registry_cassette_dir: Path, registry_record_mode: str
) -> Iterator[Callable[[str], AbstractContextManager]]:
    """`run_cache(..., phase_context=registry_phase_cassettes)`: one cassette set per test."""
    directory = registry_cassette_dir / _cassette_name(request)
    with _cassette_session(request, registry_record_mode) as cassettes:
        yield cassettes.phase_cassettes(directory, registry_record_mode)


@pytest.fixture
def registry_base_url(request: pytest.FixtureRequest, registry_record_mode: str) -> str:
    """The registry a cassette test talks to: while recording, a `registry_emulator` started
    for the test; while replaying, `http://registry.invalid` (replay matches method, path and
    query only, and never connects). Override it to record a real registry instead:
    `return "https://api.comfy.org"`."""
    if registry_record_mode == "none":
        return "http://registry.invalid"
    return request.getfixturevalue("registry_emulator").url


# ---- emulator --------------------------------------------------------------------------------


@pytest.fixture
def registry_emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A running emulator over a synthetic registry (`.url`, `.counters`, `.reset_counters()`).

    Knobs, from the `registry_emulator` marker, then an indirect parametrization's dict:
    `nodes` and `seed` (the synthetic data set) or `cache` (a cache dict or file to serve),
    any `Faults` field (`rate_429=0.1`, ...) and the emulator's own options. The network guard
    lets the test through to it (a replaying cassette does not).
    """
    from dataclasses import fields
    from urllib.parse import urlsplit

    from registry_tools.registry import synth
    from registry_tools.registry.emulator import Faults, running_emulator

    marker = request.node.get_closest_marker("registry_emulator")
    knobs = {**(marker.kwargs if marker else {}), **getattr(request, "param", {})}
    nodes, seed = knobs.pop("nodes", 20), knobs.pop("seed", 0)
    cache = knobs.pop("cache", None) or synth.generate(nodes, seed)
    faults = Faults(**{f.name: knobs.pop(f.name) for f in fields(Faults) if f.name in knobs})
    with running_emulator(cache, faults, **knobs) as emulator:
        where = urlsplit(emulator.url)
        with allowing([(where.hostname or "127.0.0.1", where.port or 80)]):
            yield emulator


# ---- snapshots -------------------------------------------------------------------------------


@pytest.fixture
def registry_snapshot(request: pytest.FixtureRequest) -> Snapshot:
    """`assert registry_snapshot == value`: canonical JSON in `__registry_snapshots__/`."""
    session = request.config.pluginmanager.get_plugin(SnapshotSession.name)
    return Snapshot(session, snapshot_dir(request.path), file_base(request.node))


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    return explain_comparison(op, left, right)
