"""JSON snapshots for the pytest plugin: `assert registry_snapshot == value`.

A snapshot is one canonical JSON file (sorted keys, two-space indent, UTF-8, what
`files.dumps` writes) in `__registry_snapshots__/<test module>/`, next to the test file. The
directory is deliberately not `__snapshots__/`: syrupy owns that one, and it reports (and,
with `--snapshot-update`, deletes) every file there that it did not write. The session side
(which snapshots are unused, updating, the report) is `snapshot_session`.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Protocol

import pytest

from registry_tools.errors import UserError
from registry_tools.replay.naming import checked_name

SNAPSHOT_DIR = "__registry_snapshots__"
_DIFF_LINES = 60


def snapshot_dir(test_file: Path) -> Path:
    return test_file.parent / SNAPSHOT_DIR / test_file.stem


class Ledger(Protocol):
    """What a snapshot tells the session: whether to update, what it read and wrote."""

    update: bool

    def note_used(self, path: Path) -> None: ...

    def note_written(self, path: Path) -> None: ...


class SnapshotFile:
    """One stored snapshot; `==` compares canonical JSON bytes (and rewrites on update)."""

    def __init__(self, ledger: Ledger, path: Path) -> None:
        self.ledger = ledger
        self.path = path
        self.expected: bytes | None = None
        self.actual = b""

    def __eq__(self, value: object) -> bool:
        from registry_tools import files

        self.ledger.note_used(self.path)
        self.actual = canonical(value)
        self.expected = _stored(self.path)
        if self.expected == self.actual:
            return True
        if not self.ledger.update:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(self.path, self.actual)
        self.ledger.note_written(self.path)
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"registry_snapshot({self.path.name})"

    def explain(self) -> list[str]:
        """The assertion message: what is missing, or a unified diff (stored -> actual)."""
        if self.expected is None:
            return [
                f"snapshot {self.path} does not exist (create it with --registry-snapshot-update)"
            ]
        diff = difflib.unified_diff(
            self.expected.decode().splitlines(),
            self.actual.decode().splitlines(),
            "snapshot",
            "value",
            lineterm="",
            n=2,
        )
        lines = list(diff)
        shown = lines[:_DIFF_LINES]
        if len(lines) > _DIFF_LINES:
            shown.append(f"... {len(lines) - _DIFF_LINES} more diff lines")
        return [
            f"value differs from snapshot {self.path} (--registry-snapshot-update rewrites it)",
            *shown,
        ]


def canonical(value: object) -> bytes:
    """Canonical JSON bytes of a JSON value, or of the JSON file a `Path` points to.

    Anything JSON cannot hold faithfully fails the test with one line: objects orjson cannot
    encode, and NaN or infinities (which orjson would silently write as `null`).
    """
    import orjson

    from registry_tools import files

    if isinstance(value, Path):
        try:
            value = files.read_json(value, "snapshot value")
        except UserError as exc:
            pytest.fail(str(exc), pytrace=False)
    where = _non_finite(value, "value")
    if where:
        pytest.fail(f"registry_snapshot: {where} is not JSON (NaN or infinity)", pytrace=False)
    try:
        return files.dumps(value)
    except orjson.JSONEncodeError as exc:
        pytest.fail(
            f"registry_snapshot: a {type(value).__name__} value cannot be stored as JSON ({exc})",
            pytrace=False,
        )


def _non_finite(value: Any, where: str) -> str | None:
    """The path of the first NaN/infinity inside `value`, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = ((f"{where}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next((found for path, item in items if (found := _non_finite(item, path))), None)


def _stored(path: Path) -> bytes | None:
    """The snapshot's bytes, None if there is none; a file that is not JSON stops the test
    (even under update: it may be something else, so it is never overwritten)."""
    import orjson

    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        pytest.fail(f"snapshot {path}: not valid JSON ({exc}); fix or delete it", pytrace=False)
    return data


class Snapshot:
    """The `registry_snapshot` fixture: `assert registry_snapshot == value`, or
    `assert registry_snapshot("name") == value`.

    Unnamed assertions are stored as `<test>.json`, `<test>.1.json`, ...; named ones as
    `<test>.<name>.json`, where `<test>` is the test's qualified, file-safe name.
    """

    def __init__(self, ledger: Ledger, directory: Path, test: str) -> None:
        self._ledger = ledger
        self._directory = directory
        self._test = test
        self._unnamed = 0
        self.last: SnapshotFile | None = None

    def __call__(self, name: str) -> SnapshotFile:
        try:
            checked_name(name, "registry_snapshot name")
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        return SnapshotFile(self._ledger, self._directory / f"{self._test}.{name}.json")

    def __eq__(self, value: object) -> bool:
        suffix = f".{self._unnamed}" if self._unnamed else ""
        self._unnamed += 1
        self.last = SnapshotFile(self._ledger, self._directory / f"{self._test}{suffix}.json")
        return self.last == value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"registry_snapshot({self._test})"


def explain_comparison(op: str, left: object, right: object) -> list[str] | None:
    """`pytest_assertrepr_compare` for snapshots, on either side of `==`."""
    snapshot = _file_of(left) or _file_of(right)
    return snapshot.explain() if op == "==" and snapshot is not None else None


def _file_of(side: object) -> SnapshotFile | None:
    if isinstance(side, Snapshot):
        return side.last
    return side if isinstance(side, SnapshotFile) else None
