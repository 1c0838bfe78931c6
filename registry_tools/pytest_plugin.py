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
import difflib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson
import pytest

from . import store
from .cassettes import RECORD_MODES, MissingInteraction, phase_cassettes, use_cassette
from .errors import UserError

SNAPSHOT_DIR = "__snapshots__"


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


# ---- network blocking ------------------------------------------------------------------------


class NetworkBlocked(RuntimeError):
    """A socket connection a test is not allowed to make (deliberately not an OSError, so a
    client's retry logic cannot mistake it for a flaky network)."""


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def blocked_network(allow_loopback: bool) -> Iterator[None]:
    """Make `socket.connect` fail for internet addresses (loopback too unless allowed)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
            allow_loopback and _is_loopback(address)
        ):
            raise NetworkBlocked(f"network access blocked during this test: connect to {address}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex


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
    from . import synth
    from .emulator import Faults, running_emulator

    marker = request.node.get_closest_marker("registry_emulator")
    knobs = {**(marker.kwargs if marker else {}), **getattr(request, "param", {})}
    nodes, seed = knobs.pop("nodes", 20), knobs.pop("seed", 0)
    cache = knobs.pop("cache", None) or synth.generate(nodes, seed)
    faults = Faults(**{f.name: knobs.pop(f.name) for f in fields(Faults) if f.name in knobs})
    with running_emulator(cache, faults, **knobs) as emulator:
        yield emulator


# ---- snapshots -------------------------------------------------------------------------------


def _test_name(nodeid: str) -> str:
    """`tests/test_x.py::TestY::test_z[a]` -> `TestY.test_z[a]` (unique within a module)."""
    return ".".join(nodeid.split("::")[1:])


@dataclass(eq=False)  # pluggy keeps plugins in sets: identity hashing
class SnapshotSession:
    """Which snapshots the session used and wrote, to report unused ones at the end."""

    config: pytest.Config
    name = "registry-tools-snapshots"
    used: set[Path] = field(default_factory=set)
    written: list[Path] = field(default_factory=list)
    tests: dict[Path, set[str]] = field(default_factory=dict)  # snapshot dir -> collected
    passed: set[tuple[Path, str]] = field(default_factory=set)  # (snapshot dir, test)
    _dirs: dict[str, Path] = field(default_factory=dict)  # nodeid -> snapshot dir

    @property
    def update(self) -> bool:
        return bool(self.config.getoption("--snapshot-update"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Every collected test, before -k/-m deselection: a snapshot whose test is merely
        deselected is not unused, one whose test no longer exists is."""
        for item in items:
            self._dirs[item.nodeid] = snapshot_dir(item.path)
            self.tests.setdefault(self._dirs[item.nodeid], set()).add(_test_name(item.nodeid))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed and report.nodeid in self._dirs:
            self.passed.add((self._dirs[report.nodeid], _test_name(report.nodeid)))

    def unused(self) -> list[Path]:
        """Snapshots of passed (or vanished) tests that no assertion read."""
        found = []
        for directory, tests in self.tests.items():
            for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
                owner = _owner(path.name, tests)
                ran = owner is None or (directory, owner) in self.passed
                if ran and path not in self.used:
                    found.append(path)
        return found

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            terminalreporter.write_line(f"{len(self.written)} snapshot(s) written.")
        unused = self.unused()
        if not unused:
            return
        if self.update:
            for path in unused:
                path.unlink()
        verb = "deleted" if self.update else "unused (delete with --snapshot-update)"
        terminalreporter.write_line(f"{len(unused)} snapshot(s) {verb}:")
        for path in unused:
            terminalreporter.write_line(f"  {path}")


def snapshot_dir(test_file: Path) -> Path:
    return test_file.parent / SNAPSHOT_DIR / test_file.stem


def _owner(filename: str, tests: set[str]) -> str | None:
    """The test a snapshot file belongs to: `<test>.json` or `<test>.<name>.json`."""
    owners = [t for t in tests if filename == f"{t}.json" or filename.startswith(f"{t}.")]
    return max(owners, key=len, default=None)


class SnapshotFile:
    """One stored snapshot; `==` compares canonical JSON bytes (and rewrites on update)."""

    def __init__(self, session: SnapshotSession, path: Path) -> None:
        self.session = session
        self.path = path
        self.expected: bytes | None = None
        self.actual = b""

    def __eq__(self, value: object) -> bool:
        self.session.used.add(self.path)
        self.actual = _canonical(value)
        self.expected = _stored(self.path)
        if self.expected == self.actual:
            return True
        if not self.session.update:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store.write_atomic(self.path, self.actual)
        self.session.written.append(self.path)
        return True

    __hash__ = None  # type: ignore[assignment]

    def explain(self) -> list[str]:
        """The assertion message: what is missing, or a unified diff (stored -> actual)."""
        if self.expected is None:
            return [f"snapshot {self.path} does not exist (create it with --snapshot-update)"]
        diff = difflib.unified_diff(
            self.expected.decode().splitlines(),
            self.actual.decode().splitlines(),
            "snapshot",
            "value",
            lineterm="",
            n=2,
        )
        lines = list(diff)
        shown = lines[:60] + ([f"... {len(lines) - 60} more diff lines"] if len(lines) > 60 else [])
        return [f"value differs from snapshot {self.path} (--snapshot-update rewrites it)", *shown]


def _canonical(value: object) -> bytes:
    """Canonical JSON bytes of a JSON-able value, or of the JSON file a path points to."""
    try:
        return store.dumps(store.read_json(value, "file") if isinstance(value, Path) else value)
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)


def _stored(path: Path) -> bytes | None:
    """The snapshot's bytes, None if there is none; a file that is not JSON stops the test
    (even under --snapshot-update: it may be something else, so it is not overwritten)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        pytest.fail(f"snapshot {path}: not valid JSON ({exc}); fix or delete it", pytrace=False)
    return data


class Snapshot:
    """The `snapshot` fixture: `assert snapshot == value`, `assert snapshot("name") == value`.

    Unnamed assertions are stored as `<test>.json`, `<test>.1.json`, ...; named ones as
    `<test>.<name>.json`, in `__snapshots__/<test module>/` next to the test file.
    """

    def __init__(self, session: SnapshotSession, directory: Path, test: str) -> None:
        self._session = session
        self._directory = directory
        self._test = test
        self._unnamed = 0
        self.last: SnapshotFile | None = None

    def __call__(self, name: str) -> SnapshotFile:
        return SnapshotFile(self._session, self._directory / f"{self._test}.{name}.json")

    def __eq__(self, value: object) -> bool:
        suffix = f".{self._unnamed}" if self._unnamed else ""
        self._unnamed += 1
        self.last = SnapshotFile(self._session, self._directory / f"{self._test}{suffix}.json")
        return self.last == value

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Snapshot:
    session = request.config.pluginmanager.get_plugin(SnapshotSession.name)
    return Snapshot(session, snapshot_dir(request.path), _test_name(request.node.nodeid))


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    if isinstance(left, Snapshot):
        left = left.last
    if op == "==" and isinstance(left, SnapshotFile):
        return left.explain()
    return None
