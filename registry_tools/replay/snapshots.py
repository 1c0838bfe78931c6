"""JSON snapshots for the pytest plugin: canonical files under `__snapshots__/`, updated with
`--snapshot-update`, unused ones reported."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from registry_tools import files
from registry_tools.errors import UserError

SNAPSHOT_DIR = "__snapshots__"


def snapshot_test_name(nodeid: str) -> str:
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
            self.tests.setdefault(self._dirs[item.nodeid], set()).add(
                snapshot_test_name(item.nodeid)
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed and report.nodeid in self._dirs:
            self.passed.add((self._dirs[report.nodeid], snapshot_test_name(report.nodeid)))

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
        files.write_atomic(self.path, self.actual)
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
        return files.dumps(files.read_json(value, "file") if isinstance(value, Path) else value)
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
