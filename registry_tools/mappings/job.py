"""What a `node_mappings.json` build is asked to do (`MappingsOptions`) and what it did
(`MappingsReport`): shared by the builder's modules, which fill the report as they go."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PHASE = "mappings"  # progress-bar name


@dataclass(frozen=True)
class MappingsOptions:
    """What `registry-tools mappings` was asked to do."""

    cache: Path
    output: Path
    input: Path | None = None
    max_versions: int = -1  # newest N feeding versions per package; -1 = all
    checkpoint_interval: int = 50  # packages between journal fsyncs


@dataclass
class MappingsReport:
    """What a build did. `problems` counts, by kind, the malformed comfy nodes of the versions
    parsed in this run (mapped to `<name>::_`, or skipped for `no_name`); `problem_examples`
    names the first 20."""

    output: Path
    packages: int = 0
    signatures: int = 0
    total_nodes: int = 0
    versions_fed: int = 0
    versions_parsed: int = 0
    versions_reused: int = 0
    packages_resumed: int = 0
    packages_unchanged: int = 0  # copied from --input without being parsed (its index matched)
    problems: Counter = field(default_factory=Counter)
    problem_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for humans (the CLI prints it on stderr)."""
        text = (
            f"wrote {self.output}: {self.packages} packages, {self.signatures} signatures, "
            f"{self.total_nodes} nodes; versions fed {self.versions_fed} "
            f"(parsed {self.versions_parsed}, reused {self.versions_reused})"
        )
        if self.packages_unchanged:
            text += f"; {self.packages_unchanged} packages unchanged since --input"
        if self.packages_resumed:
            text += f"; resumed {self.packages_resumed} packages from the journal"
        if self.problems:
            detail = ", ".join(f"{k}={n}" for k, n in sorted(self.problems.items()))
            count = sum(self.problems.values())
            text += f"; {count} malformed comfy nodes ({detail})"
        return text
