"""Which registry snapshots a session used, wrote and left unused; update and report them.

A snapshot is **unused** only when the session can prove it: its test ran and passed without
reading it, or its test no longer exists. "No longer exists" is decided from pytest's collect
reports, never from what was selected: `pytest tests/test_x.py::TestA` collects the module
(so its functions and classes are known) but not `TestB`'s methods, so a `TestB.*` snapshot is
kept, whatever the update flag says. A snapshot whose module was not collected completely (a
class left out by a node selection, a collection error, `--lf` filtering) or whose test was
deselected, skipped or failed is never unused. Snapshot directories of test modules deleted
from disk are unused as a whole.

Unused snapshots fail the run (exit 1), as in syrupy, unless `--registry-snapshot-warn-unused`
(or syrupy's `--snapshot-warn-unused`) asks for a warning; `--registry-snapshot-update` (or
syrupy's `--snapshot-update`) deletes them. Under pytest-xdist nothing is reported: no single
process sees every collect report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from registry_tools.replay.naming import file_base
from registry_tools.replay.plugin_options import snapshot_update, snapshot_warn_unused
from registry_tools.replay.snapshots import SNAPSHOT_DIR, snapshot_dir


@dataclass(frozen=True)
class _Child:
    nodeid: str
    base: str | None  # an item's file base; None for a collector


@dataclass(eq=False)  # pluggy keeps plugins in sets: identity hashing
class SnapshotSession:
    """The plugin object that tracks snapshots over one pytest session."""

    config: pytest.Config
    name: ClassVar[str] = "registry-tools-snapshots"
    used: set[Path] = field(default_factory=set)
    written: list[Path] = field(default_factory=list)
    unused: list[Path] = field(default_factory=list)
    _children: dict[str, list[_Child]] = field(default_factory=dict)  # collector -> children
    _broken: set[str] = field(default_factory=set)  # collectors whose collection failed
    _modules: dict[str, Path] = field(default_factory=dict)  # module nodeid -> test file
    _passed: set[str] = field(default_factory=set)

    @property
    def update(self) -> bool:
        return snapshot_update(self.config)

    def note_used(self, path: Path) -> None:
        self.used.add(path)

    def note_written(self, path: Path) -> None:
        self.written.append(path)

    # ---- what pytest tells us ----------------------------------------------------------------

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.passed:
            self._broken.add(report.nodeid)
            return
        children = []
        for node in report.result:
            if isinstance(node, pytest.Module):
                self._modules[node.nodeid] = node.path
            is_item = isinstance(node, pytest.Item)
            children.append(_Child(node.nodeid, file_base(node) if is_item else None))
        self._children[report.nodeid] = children

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self._passed.add(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Find unused snapshots; delete them on update, else fail the run unless warned."""
        if not self._decidable(exitstatus):
            return
        self.unused = self.find_unused()
        if not self.unused:
            return
        if self.update:
            for path in self.unused:
                path.unlink(missing_ok=True)
        elif not snapshot_warn_unused(self.config) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _decidable(self, exitstatus: int) -> bool:
        config = self.config
        if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") != "no":
            return False  # pytest-xdist: no process sees every report
        if config.option.collectonly:
            return False
        return exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            terminalreporter.write_line(f"{len(self.written)} registry snapshot(s) written.")
        if not self.unused:
            return
        if self.update:
            verb = "deleted"
        elif snapshot_warn_unused(self.config):
            verb = "unused (--registry-snapshot-update deletes them)"
        else:
            verb = (
                "unused, which fails the run (--registry-snapshot-update deletes them, "
                "--registry-snapshot-warn-unused only warns)"
            )
        terminalreporter.write_line(f"{len(self.unused)} registry snapshot(s) {verb}:")
        for path in self.unused:
            terminalreporter.write_line(f"  {path}")

    # ---- deciding -----------------------------------------------------------------------------

    def find_unused(self) -> list[Path]:
        found: list[Path] = []
        for module, test_file in sorted(self._modules.items()):
            if module not in self._children:
                continue  # not collected (or broken): nothing is known about its tests
            items = list(self._items(module))
            complete = self._complete(module) and not self.config.getoption("lf", False)
            directory = snapshot_dir(test_file)
            for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
                if path in self.used:
                    continue
                owner = _owner(path.name, items)
                if owner is None:
                    if complete:
                        found.append(path)  # its test is gone
                elif owner.nodeid in self._passed:
                    found.append(path)  # its test ran, passed, and did not read it
        found.extend(self._orphaned_directories())
        return found

    def _items(self, collector: str) -> Any:
        for child in self._children.get(collector, ()):
            if child.base is not None:
                yield child
            else:
                yield from self._items(child.nodeid)

    def _complete(self, collector: str) -> bool:
        """Whether every collector below `collector` was collected without error."""
        if collector in self._broken or collector not in self._children:
            return False
        return all(
            self._complete(child.nodeid)
            for child in self._children[collector]
            if child.base is None
        )

    def _orphaned_directories(self) -> list[Path]:
        """Snapshots of test modules that no longer exist, beside collected test modules."""
        found = []
        for folder in sorted({path.parent for path in self._modules.values()}):
            root = folder / SNAPSHOT_DIR
            for module_dir in sorted(root.iterdir()) if root.is_dir() else ():
                if module_dir.is_dir() and not (folder / f"{module_dir.name}.py").exists():
                    found.extend(p for p in sorted(module_dir.glob("*.json")) if p not in self.used)
        return found


def _owner(filename: str, items: list[_Child]) -> _Child | None:
    """The test a snapshot file belongs to: `<base>.json` or `<base>.<suffix>.json`."""
    owners = [
        item
        for item in items
        if item.base and (filename == f"{item.base}.json" or filename.startswith(f"{item.base}."))
    ]
    return max(owners, key=lambda item: len(item.base or ""), default=None)
