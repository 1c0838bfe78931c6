"""What a cache build is asked (`CacheOptions`) and what it did (`RunSummary`), and the
names of its three phases (progress bars and cassette files use them)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools.errors import UserError
from registry_tools.fetch.client import check_base_url as _check_base_url
from registry_tools.fetch.client import default_base_url

PHASE_NODES = "phase1-nodes"
PHASE_VERSIONS = "phase2-versions"
PHASE_METADATA = "phase3-metadata"
PHASES = (PHASE_NODES, PHASE_VERSIONS, PHASE_METADATA)

PhaseContext = Callable[[str], AbstractContextManager]
Node = dict[str, Any]


@dataclass
class CacheOptions:
    """Everything `registry-tools cache` can be told; the notebooks fill the same fields."""

    output: Path
    input: Path | None = None
    nodes: bool = True
    versions: bool = True
    metadata: bool = True
    nodes_per_page: int = 100
    max_versions: int = -1
    concurrency: int = 10
    checkpoint_interval: int = 20
    pages: int | None = None
    base_url: str = field(default_factory=default_base_url)
    max_attempts: int = 6
    backoff: float = 0.5
    timeout: float = 30.0
    token: str | None = None
    progress: bool | None = None

    def validate(self) -> None:
        """Raise UserError for values no run could use."""
        self.output = Path(self.output)
        self.input = Path(self.input) if self.input is not None else None
        for name in ("nodes_per_page", "concurrency", "checkpoint_interval", "max_attempts"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.pages is not None and self.pages < 1:
            raise UserError("--pages must be at least 1")
        if self.max_versions == 0 or self.max_versions < -1:
            raise UserError("--max-versions must be -1 (all) or at least 1")
        self.base_url = _check_base_url(self.base_url)


@dataclass
class RunSummary:
    """What a run did: the notebooks plot it, the CLI prints `text()`."""

    output: Path
    written: bool = False
    nodes: int = 0
    versions: int = 0
    metadata_entries: int = 0
    requests: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    journal_seconds: float = 0.0
    write_seconds: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    phase_stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        where = f"wrote {self.output}" if self.written else f"did not write {self.output}"
        return (
            f"{self.nodes} nodes, {self.versions} versions, {self.metadata_entries} metadata "
            f"entries; {self.requests} requests, {self.retries} retries, "
            f"{len(self.failures)} failures; {self.elapsed:.2f} s; {where}"
        )
