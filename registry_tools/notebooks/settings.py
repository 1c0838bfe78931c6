"""A notebook's parameters as the steps and the control panel use them (`Parameters`).

One dataclass for the five notebooks: each notebook's `parameters` cell declares only the
fields its step uses (`Step.uses`), the others keep their defaults here. The fetch options
that decide which requests a phase makes (`nodes_per_page`, `pages`, `max_versions`) default
to None, "not chosen by this notebook": a notebook that has to run an earlier phase first
takes them from the cassette set's recording.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.replay.cassettes import RECORD_MODES, bundled_cassettes

DEFAULT_BASE_URL = "https://api.comfy.org"
# The smallest value of each integer parameter (None is allowed where it is the default; for
# max_versions -1 means all and 0 is refused).
_INT_RANGES = {
    "concurrency": 1,
    "checkpoint_interval": 1,
    "nodes_per_page": 1,
    "pages": 0,
    "max_versions": -1,
}


def bundled_cassette_dir() -> Path:
    """The bundled `sample` cassettes, wherever the kernel's working directory is."""
    return bundled_cassettes("sample")


@dataclass(frozen=True)
class Parameters:
    """The parameters a notebook declared (`declared`), with defaults for the others.

    Paths are strings, empty for "not set" (papermill shows their type as `str`); the path
    fields other than `output_dir` and `cassette_dir` are relative to `output_dir`.
    """

    concurrency: int = 8
    checkpoint_interval: int = 20
    nodes_per_page: int | None = None  # phase 1 page size; None = as recorded
    pages: int | None = None  # phase 1 pages to fetch, 0 = all; None = as recorded
    max_versions: int | None = None  # newest N versions per node, -1 = all; None = as recorded
    base_url: str = DEFAULT_BASE_URL
    cassette_dir: str = ""  # empty = the bundled sample set (replay only)
    record_mode: str = "none"
    output_dir: str = "notebook-output"
    input_cache: str = ""
    output_cache: str = ""
    output_mappings: str = ""
    input_mappings: str = ""
    workflow: str = ""  # empty = a demo workflow built from the mappings
    output_resolution: str = ""
    declared: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if item.name != "declared":
                _check(item.name, getattr(self, item.name), item.default)
        if self.record_mode not in RECORD_MODES:
            raise UserError(
                f"parameter 'record_mode' is {self.record_mode!r}; "
                f"expected one of {', '.join(RECORD_MODES)}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "declared")

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> Parameters:
        """This class's fields found in a notebook's globals (after its parameters cell).

        A path left as None (the convention of older notebooks) means "not set", as "" does.
        """
        values = {name: namespace[name] for name in cls.names() if name in namespace}
        for name, value in values.items():
            if value is None and isinstance(_default(name), str):
                values[name] = ""
        return cls(**values, declared=frozenset(values))

    def require(self, names: tuple[str, ...]) -> None:
        """Refuse a parameters cell that lacks what the notebook's step uses."""
        missing = [name for name in names if name not in self.declared]
        if missing:
            raise UserError(f"the parameters cell lacks {', '.join(missing)}")

    @property
    def replay(self) -> bool:
        return self.record_mode == "none"

    def directory(self) -> Path:
        """`output_dir`, absolute and created."""
        directory = Path(self.output_dir).expanduser().absolute()
        return files.make_directory(directory, "output_dir")

    def path(self, name: str | None, what: str) -> Path:
        """A path parameter, relative to `output_dir`."""
        if not name:
            raise UserError(f"parameter {what!r} is not set")
        return self.directory() / Path(name).expanduser()

    def cassettes(self) -> Path:
        """The cassette set to replay or record (absolute, so the summary says where)."""
        if not self.cassette_dir:
            return bundled_cassette_dir()
        return Path(self.cassette_dir).expanduser().absolute()


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(Parameters) if f.name == name)


def _check(name: str, value: Any, default: Any) -> None:
    """Types and ranges, checked before any work (the API's promise, as for the CLI)."""
    if name in _INT_RANGES:
        if value is None and default is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"parameter {name!r} expects int, got {value!r}")
        low = _INT_RANGES[name]
        if value < low or (name == "max_versions" and value == 0):
            what = "-1 (all) or at least 1" if name == "max_versions" else f"at least {low}"
            raise UserError(f"parameter {name!r} must be {what}, got {value}")
    elif not isinstance(value, str):
        raise UserError(f"parameter {name!r} expects str, got {value!r}")
