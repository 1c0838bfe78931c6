"""Where the notebooks replay from and record into: the options a recording fixes, and
re-recording that never replaces a good cassette set with a failed or empty one.

Replaying answers only the requests that were recorded, so the fetch options that decide
which requests a phase makes are fixed by the recording (`fixed_options`); the panel shows
them with their recorded value, disabled.

Recording (`StagedRecording`) happens in a scratch copy of the set made beside it; only a
run without failures that recorded at least one interaction for every phase it ran replaces
the set, in one step (`files.replace_directory`). Pressing Run twice in mode `all` used to
leave an empty phase-3 cassette (the second run had nothing left to fetch); now that second
recording is simply not kept, and the panel says why.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch.client import check_base_url
from registry_tools.fetch.options import PHASES
from registry_tools.replay.cassettes import BUNDLED, MANIFEST, read_manifest
from registry_tools.replay.recording import REPLAY_SENSITIVE, recorded_fetch

# The files a cassette set directory may hold; anything else means it is not one.
SET_FILES = frozenset({MANIFEST, *(f"{phase}.json" for phase in PHASES)})


def phase_options(phases: Iterable[str]) -> tuple[str, ...]:
    """The fetch options that decide which requests `phases` make (fixed when replaying)."""
    return tuple(name for phase in PHASES if phase in phases for name in REPLAY_SENSITIVE[phase])


def to_notebook(name: str, value: Any) -> Any:
    """A recorded option in the notebooks' convention: `pages` None (all) is 0 there."""
    return 0 if name == "pages" and value is None else value


def to_fetch(name: str, value: Any) -> Any:
    """The inverse of `to_notebook`: `pages = 0` is CacheOptions' None (every page)."""
    return None if name == "pages" and value == 0 else value


def fixed_options(directory: Path, phases: Iterable[str]) -> dict[str, Any]:
    """{option: recorded value} for the options of `phases` the set's manifest records.

    An option the manifest does not record (a set recorded by `cache --record-mode` before
    the notebooks noted their options) is absent: nothing says which value replays it.
    """
    recorded = recorded_fetch(directory)
    fixed = {}
    for name in phase_options(phases):
        if name not in recorded:
            continue
        value = recorded[name]
        if not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
            raise UserError(
                f"cassette manifest {Path(directory) / MANIFEST}: {name} is {value!r}, "
                "not an integer"
            )
        fixed[name] = to_notebook(name, value)
    return fixed


def describe(directory: Path) -> str:
    """One line naming a cassette set: bundled or where, and what it recorded."""
    where = "the bundled sample cassettes" if _is_bundled(directory) else str(directory)
    try:
        dataset = read_manifest(directory)["dataset"]
    except UserError:
        return where
    source = dataset.get("source")
    return f"{where} ({dataset.get('name')}" + (f", from {source})" if source else ")")


def _is_bundled(path: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(BUNDLED.resolve())
    except OSError:
        return False


class StagedRecording:
    """Record into a scratch copy of `target` beside it; `keep()` swaps it in.

    Checked before any request: `target` is not the bundled set, is a directory holding only
    a cassette set (or nothing), its recording comes from the same registry (`base_url`), and
    the options its data set pins are the ones asked for. Leaving the block without `keep()`
    succeeding (a failure, an interrupt, an empty phase) deletes the scratch copy: the set is
    exactly as it was.
    """

    def __init__(self, target: Path, base_url: str, options: Mapping[str, Any]) -> None:
        self.target = _checked_target(Path(target))
        self.base_url = check_base_url(base_url)
        self.options = dict(options)
        self.dataset = self._dataset()
        self.directory: Path | None = None
        self.kept = False

    def _dataset(self) -> dict[str, Any]:
        """The set's identity: the existing one, or a new one naming the registry."""
        if not (self.target / MANIFEST).exists():
            return {"name": self.target.name, "source": self.base_url}
        known = read_manifest(self.target)["dataset"]
        source = known.get("source")
        if source is not None and source != self.base_url:
            raise UserError(
                f"cassette_dir {self.target} holds a recording of {source}, not of "
                f"{self.base_url}; record into another directory"
            )
        for name, value in known.get("fetch", {}).items():
            if name in self.options and self.options[name] != value:
                raise UserError(
                    f"cassette_dir {self.target} was recorded with {name}="
                    f"{to_notebook(name, value)} (part of its data set); record "
                    f"{name}={to_notebook(name, self.options[name])} into another directory"
                )
        return dict(known)

    def __enter__(self) -> StagedRecording:
        try:
            scratch = tempfile.mkdtemp(
                prefix=f".{self.target.name}.recording-", dir=self.target.parent
            )
        except OSError as exc:
            raise UserError(
                f"cassette_dir {self.target}: cannot record beside it ({exc.strerror or exc})"
            ) from None
        self.directory = Path(scratch)
        for name in SET_FILES:
            if (self.target / name).is_file():
                shutil.copy2(self.target / name, self.directory / name)
        return self

    def keep(self, phases: Iterable[str]) -> str | None:
        """Swap the recording in, noting its fetch options; else say why it was not kept."""
        assert self.directory is not None, "keep() inside the with block"
        manifest = read_manifest(self.directory)
        counts = manifest.get("phases", {})
        empty = [phase for phase in phases if not counts.get(phase)]
        if empty:
            return (
                f"{', '.join(empty)} recorded no request (the input cache already held what it "
                f"would fetch), so the cassettes in {self.target} were left as they were"
            )
        manifest["fetch"] = {**manifest.get("fetch", {}), **self.options}
        files.write_atomic(self.directory / MANIFEST, files.dumps(manifest))
        files.replace_directory(self.directory, self.target)
        self.kept = True
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.kept and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _checked_target(target: Path) -> Path:
    """`target` resolved, if recording may replace it; else a one-line UserError."""
    target = target.expanduser().resolve()  # a link is replaced where it points
    if _is_bundled(target):
        raise UserError(
            f"cassette_dir {target} is the bundled sample set, which recording would "
            "overwrite; set cassette_dir to a directory of your own"
        )
    files.make_directory(target.parent, "cassette_dir")
    if target.exists() and not target.is_dir():
        raise UserError(f"cassette_dir {target}: not a directory")
    if target.is_dir():
        strangers = sorted(
            p.name for p in target.iterdir() if p.name not in SET_FILES and not _leftover(p.name)
        )
        if strangers:
            shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
            raise UserError(
                f"cassette_dir {target} holds files that are not cassettes ({shown}); "
                "record into a new or empty directory, or into a cassette set"
            )
    return target


def _leftover(name: str) -> bool:
    """A temporary file an interrupted atomic write of a set file left behind."""
    return name.startswith(".") and name.endswith(".tmp")
