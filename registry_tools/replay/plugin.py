"""pytest plugin (entry point `pytest11`): registry cassettes, a live emulator, JSON snapshots.

Any project that installs registry-tools gets it. Options, in the style of pytest-recording
and syrupy:

- `--record-mode {none,once,new_episodes,all}` for the cassette fixtures (default `none`:
  replay only; then every socket connection, loopback included, fails during the test).
- `--block-network`: connections to anything but loopback fail (the emulator still works).
- `--snapshot-update`: rewrite snapshots that differ or are missing, delete unused ones.

Fixtures: `registry_cassette` (one cassette per test), `registry_phase_cassettes` (one per
phase, the `phase_context` of `run_cache`), `registry_emulator` and `snapshot`. Markers:
`registry_cassette(name, record_mode=...)` tags a cassette-backed test and names its cassette;
`registry_emulator(nodes=..., seed=..., <Faults field>=..., ...)` configures the emulator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from registry_tools.errors import UserError
from registry_tools.replay.cassettes import (
    RECORD_MODES,
    MissingInteraction,
    phase_cassettes,
    use_cassette,
)
from registry_tools.replay.network import blocked_network
from registry_tools.replay.snapshots import (
    Snapshot,
    SnapshotFile,
    SnapshotSession,
    snapshot_dir,
    snapshot_test_name,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("registry-tools", "registry-tools cassettes and snapshots")
    group.addoption(
        "--record-mode",
        choices=RECORD_MODES,
        default="none",
        help="cassette record mode for registry_cassette fixtures (default: none)",
    )
    group.addoption(
        "--block-network",
        action="store_true",
        help="fail any socket connection to a non-loopback address",
    )
    group.addoption(
        "--snapshot-update",
        action="store_true",
        help="write missing or differing snapshots, delete unused ones",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "registry_cassette(name=None, record_mode=None): the test replays/records registry "
        "traffic; name the cassette (default: the test's name) and optionally its mode",
    )
    config.addinivalue_line(
        "markers",
        "registry_emulator(nodes=20, seed=0, **knobs): data set and Faults of registry_emulator",
    )
    config.pluginmanager.register(SnapshotSession(config), SnapshotSession.name)


@pytest.fixture(autouse=True)
def _registry_block_network(request: pytest.FixtureRequest) -> Iterator[None]:
    if not request.config.getoption("--block-network"):
        yield
        return
    with blocked_network(allow_loopback=True):
        yield


# ---- cassettes -------------------------------------------------------------------------------


@pytest.fixture
def registry_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Where cassettes of this test module live; override the fixture to move them."""
    return request.path.parent / "cassettes" / request.path.stem


@pytest.fixture
def registry_record_mode(request: pytest.FixtureRequest) -> str:
    """The marker's `record_mode`, else `--record-mode`."""
    marker = request.node.get_closest_marker("registry_cassette")
    return (marker and marker.kwargs.get("record_mode")) or request.config.getoption(
        "--record-mode"
    )


def _cassette_name(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("registry_cassette")
    return str(marker.args[0]) if marker and marker.args else request.node.name


@contextlib.contextmanager
def _replay_guard(record_mode: str) -> Iterator[None]:
    """Replay must never touch a socket, not even the emulator's."""
    if record_mode == "none":
        with blocked_network(allow_loopback=False):
            yield
    else:
        yield


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Remember whether the test body failed, for the cassette fixtures' teardown."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@contextlib.contextmanager
def _as_test_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A bad cassette (missing, corrupt, other data set) fails the test with its one line.

    Misses the test body swallowed are reported at teardown; misses that already failed the
    test are not reported twice.
    """
    try:
        yield
        return
    except MissingInteraction as exc:
        if request.node.stash.get(_CALL_FAILED, False):
            return
        message = str(exc)
    except UserError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture
def registry_cassette(
    request: pytest.FixtureRequest, registry_cassette_dir: Path, registry_record_mode: str
) -> Iterator[Any]:
    """A vcrpy cassette (indexed replay, scrubbed) active for the whole test."""
    path = registry_cassette_dir / f"{_cassette_name(request)}.json"
    with (
        _replay_guard(registry_record_mode),
        _as_test_failure(request),
        use_cassette(path, registry_record_mode) as cassette,
    ):
        yield cassette


@pytest.fixture
def registry_phase_cassettes(
    request: pytest.FixtureRequest, registry_cassette_dir: Path, registry_record_mode: str
) -> Iterator[Callable[[str], AbstractContextManager]]:
    """`run_cache(..., phase_context=registry_phase_cassettes)`: one cassette set per test."""
    directory = registry_cassette_dir / _cassette_name(request)
    with _replay_guard(registry_record_mode), _as_test_failure(request):
        yield phase_cassettes(directory, registry_record_mode)


# ---- emulator --------------------------------------------------------------------------------


@pytest.fixture
def registry_emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A running emulator over a synthetic registry (`.url`, `.counters`, `.reset_counters()`).

    Knobs, from the `registry_emulator` marker, then an indirect parametrization's dict:
    `nodes` and `seed` (the synthetic data set) or `cache` (a cache dict or file to serve),
    any `Faults` field (`rate_429=0.1`, ...) and the emulator's own options.
    """
    # Imported on use: every pytest session of every project loads this plugin.
    from registry_tools.registry import synth
    from registry_tools.registry.emulator import Faults, running_emulator

    marker = request.node.get_closest_marker("registry_emulator")
    knobs = {**(marker.kwargs if marker else {}), **getattr(request, "param", {})}
    nodes, seed = knobs.pop("nodes", 20), knobs.pop("seed", 0)
    cache = knobs.pop("cache", None) or synth.generate(nodes, seed)
    faults = Faults(**{f.name: knobs.pop(f.name) for f in fields(Faults) if f.name in knobs})
    with running_emulator(cache, faults, **knobs) as emulator:
        yield emulator


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Snapshot:
    session = request.config.pluginmanager.get_plugin(SnapshotSession.name)
    return Snapshot(session, snapshot_dir(request.path), snapshot_test_name(request.node.nodeid))


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    if isinstance(left, Snapshot):
        left = left.last
    if op == "==" and isinstance(left, SnapshotFile):
        return left.explain()
    return None
