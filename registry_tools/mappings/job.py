"""What a `node_mappings.json` build is asked to do (`MappingsOptions`) and what it did
(`MappingsReport`): shared by the builder's modules, which fill the report as they go."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_tools.errors import UserError

PHASE = "mappings"  # progress-bar name
STDOUT = Path("-")  # `--output -`: the document on standard output, no index or journal


@dataclass(frozen=True)
class MappingsOptions:
    """What `registry-tools mappings` was asked to do. Checked on creation (types and ranges),
    before any work: a wrong value raises UserError, as a wrong flag would."""

    cache: Path
    output: Path
    input: Path | None = None
    max_versions: int = -1  # newest N feeding versions per package; -1 = all
    checkpoint_interval: int = 50  # packages between journal fsyncs
    manager: str | Path | None = None  # ComfyUI-Manager's lists: a dir, a wheel, `live`...
    manager_url: str | None = None  # where `live` fetches them (default: `manager.default_url`)
    aliases: Path | None = None  # the `package_aliases` file

    def __post_init__(self) -> None:
        for name in ("cache", "output", "input", "aliases"):
            value = getattr(self, name)
            if value is None and name in ("input", "aliases"):
                continue
            object.__setattr__(self, name, _path(name, value))
        for name in ("max_versions", "checkpoint_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UserError(f"{_flag(name)} must be an integer, got {value!r}")
        if self.max_versions == 0 or self.max_versions < -1:
            raise UserError(
                f"--max-versions must be -1 (all) or at least 1, got {self.max_versions}"
            )
        if self.checkpoint_interval < 1:
            raise UserError(
                f"--checkpoint-interval must be at least 1, got {self.checkpoint_interval}"
            )
        if self.manager is not None and not isinstance(self.manager, str | os.PathLike):
            raise UserError(f"--manager must be a path or 'live', got {self.manager!r}")
        if self.manager_url is not None and not isinstance(self.manager_url, str):
            raise UserError(f"--manager-url must be a URL, got {self.manager_url!r}")
        if str(self.cache) == "-" or str(self.input) == "-":
            raise UserError("--cache and --input must be files (standard input is not supported)")

    @property
    def to_stdout(self) -> bool:
        return self.output == STDOUT


def _path(name: str, value: Any) -> Path:
    if isinstance(value, str | os.PathLike) and str(os.fspath(value)):
        return Path(value)
    raise UserError(f"{_flag(name)} must be a path, got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class MappingsReport:
    """What a build did. `problems` counts, by kind, the malformed comfy nodes of the versions
    parsed in this run (mapped to `<name>::_`, or skipped for `no_name`); `problem_examples`
    names the first 20. `unfed` counts installable versions that fed nothing for lack of
    cached metadata, by why (`pending`, `failed`, `not_fetched`)."""

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
    unfed: Counter = field(default_factory=Counter)
    manager: dict[str, Any] | None = None  # what --manager added (origin, packages, keys...)
    aliases: int = 0
    aliases_unknown: int = 0  # aliases whose canonical id is no package of the file

    def summary(self) -> str:
        """One line for humans (the CLI prints it on stderr)."""
        where = "standard output" if self.output == STDOUT else self.output
        text = (
            f"wrote {where}: {self.packages} packages, {self.signatures} signatures, "
            f"{self.total_nodes} nodes; versions fed {self.versions_fed} "
            f"(parsed {self.versions_parsed}, reused {self.versions_reused})"
        )
        if self.unfed:
            detail = ", ".join(f"{k} {n}" for k, n in sorted(self.unfed.items()))
            text += (
                f"; {sum(self.unfed.values())} installable versions feed nothing for lack of "
                f"metadata ({detail})"
            )
        if self.manager is not None:
            m = self.manager
            text += (
                f"; Manager ({m['origin']}): {m['packages']} packages, {m['keys']} keys, "
                f"{m['registry_packages']} registry packages matched"
            )
            if m["skipped"] or m["bad_patterns"]:
                text += f", {m['skipped']} entries and {m['bad_patterns']} patterns unusable"
        if self.aliases:
            text += f"; {self.aliases} package aliases"
            if self.aliases_unknown:
                text += f" ({self.aliases_unknown} to unknown packages)"
        if self.packages_unchanged:
            text += f"; {self.packages_unchanged} packages unchanged since --input"
        if self.packages_resumed:
            text += f"; resumed {self.packages_resumed} packages from the journal"
        if self.problems:
            detail = ", ".join(f"{k}={n}" for k, n in sorted(self.problems.items()))
            count = sum(self.problems.values())
            text += f"; {count} malformed comfy nodes ({detail})"
        return text
