"""`registry-tools record`: (re-)record a cassette set, so anyone can regenerate the bundled ones.

Without a base URL the data set is synthetic: `synth.generate` builds it from a recipe's node
count and seed, the emulator serves it with deterministic faults (so retries and a
Retry-After sequence are recorded), and the three phases run through `phase_cassettes` in
mode `all`. Faults are decided per request key, and cassettes are sorted by request, so
re-recording gives byte-identical files at any concurrency. With a base URL the same fetch
options record a real registry instead.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry_tools import clock, files
from registry_tools.errors import UserError
from registry_tools.fetch.options import (
    PHASE_METADATA,
    PHASE_NODES,
    PHASE_VERSIONS,
    CacheOptions,
    RunSummary,
)
from registry_tools.fetch.run import run_cache
from registry_tools.registry import synth
from registry_tools.registry.emulator import Faults, running_emulator
from registry_tools.replay.cassettes import phase_cassettes, read_manifest


@dataclass(frozen=True)
class Fetch:
    """The cache options a cassette set is recorded with; replay must use the same ones."""

    nodes_per_page: int = 30
    max_versions: int = 5
    pages: int | None = 2


@dataclass(frozen=True)
class Recipe:
    """A synthetic data set: what the emulator serves, how it misbehaves, how it is fetched."""

    nodes: int
    seed: int
    faults: Faults
    fetch: Fetch = field(default_factory=Fetch)


GENERATED_AT = "2026-01-01T00:00:00Z"

RECIPES = {
    # Two pages of 30 nodes (all of them); a few % of each fault kind, with a short Retry-After so
    # replaying the recorded 429s stays fast.
    "sample": Recipe(
        nodes=60,
        seed=7,
        faults=Faults(
            rate_429=0.03,
            rate_429_bare=0.02,
            rate_500=0.02,
            rate_drop=0.01,
            rate_truncate=0.01,
            retry_after=0.05,
            seed=3,
            max_consecutive_faults=2,
        ),
    ),
}


def record_dataset(
    name: str,
    directory: Path | None = None,
    base_url: str | None = None,
    concurrency: int = 8,
) -> RunSummary:
    """Record `cassettes/<name>/` (or `directory`) from the emulator, or from `base_url`."""
    directory = dataset_directory(name, directory)
    if base_url is None:
        recipe = _recipe(name)
        return _record_synthetic(name, recipe, directory, concurrency)
    if name in RECIPES:
        raise UserError(
            f"--dataset {name!r} is the synthetic data set; "
            "record a real registry under another name (e.g. --dataset live)"
        )
    dataset = {"name": name, "source": base_url, "fetch": asdict(Fetch())}
    return _record(dataset, directory, base_url, Fetch(), concurrency, backoff=0.5)


_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PACKAGE = Path(__file__).resolve().parents[1]


def dataset_directory(name: str, directory: Path | None = None) -> Path:
    """Where `record_dataset(name, directory)` writes: `directory`, else `cassettes/<name>`.

    A name that would leave `cassettes/` (`../x`, `/abs`) is refused, and so is any target
    inside an installed (non-editable) registry-tools: a recording never goes into
    site-packages. In a source checkout `cassettes/sample` is the bundled set, re-recorded in
    place on purpose.
    """
    if not isinstance(name, str) or not _DATASET_NAME.fullmatch(name):
        raise UserError(
            f"--dataset {name!r}: a data set name is letters, digits, '.', '_' and '-' "
            "(it names the directory cassettes/<dataset>)"
        )
    target = Path(directory) if directory is not None else Path("cassettes") / name
    resolved = target.resolve()
    checkout = (_PACKAGE.parent / "pyproject.toml").is_file()
    if not checkout and (resolved == _PACKAGE or _PACKAGE in resolved.parents):
        raise UserError(
            f"--cassette-dir {target}: inside the installed registry-tools package "
            f"({_PACKAGE}); record into a directory of your own"
        )
    return target


# Options that change which requests a phase makes: replay must use the recorded values.
REPLAY_SENSITIVE = {
    PHASE_NODES: ("nodes_per_page", "pages"),
    PHASE_VERSIONS: (),
    PHASE_METADATA: ("max_versions",),
}
# Replayed answers are fixed, so waiting between retries only slows a replay down.
REPLAY_BACKOFF = 0.01


def recorded_fetch(directory: Path) -> dict[str, Any]:
    """The fetch options a cassette set was recorded with (empty if the manifest has none)."""
    return dict(read_manifest(directory)["dataset"].get("fetch", {}))


def replay_defaults(directory: Path) -> dict[str, Any]:
    """CacheOptions fields a replay of `directory` should use unless told otherwise."""
    return {**recorded_fetch(directory), "backoff": REPLAY_BACKOFF}


def check_replayable(directory: Path, options: CacheOptions) -> None:
    """Replay answers only the requests that were recorded: refuse other fetch options."""
    recorded = recorded_fetch(directory)
    wanted = {"nodes": PHASE_NODES, "versions": PHASE_VERSIONS, "metadata": PHASE_METADATA}
    for flag, phase in wanted.items():
        if not getattr(options, flag):
            continue
        for name in REPLAY_SENSITIVE[phase]:
            if name in recorded and recorded[name] != getattr(options, name):
                raise UserError(
                    f"the cassettes in {directory} were recorded with "
                    f"{name}={_shown(recorded[name])}; replay needs the same value, "
                    f"got {name}={_shown(getattr(options, name))}"
                )


def _shown(value: Any) -> str:
    return "all" if value is None else str(value)


def replay_options(directory: Path, output: Path, **overrides: Any) -> CacheOptions:
    """Cache options that replay a recorded set: its fetch options, a base URL never used."""
    defaults = replay_defaults(directory)
    settings = {"base_url": "http://registry.invalid", "progress": False, **defaults, **overrides}
    return CacheOptions(output=Path(output), **settings)


def _recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(RECIPES))
        raise UserError(
            f"--dataset {name!r}: no synthetic data set of that name (known: {known}); "
            "pass --base-url to record a real registry"
        ) from None


def _record_synthetic(name: str, recipe: Recipe, directory: Path, concurrency: int) -> RunSummary:
    cache = _generate(recipe)
    dataset = {
        "name": name,
        "source": "registry-tools emulator",
        "synth": {"nodes": recipe.nodes, "seed": recipe.seed},
        "fingerprint": "sha256:" + hashlib.sha256(files.dumps(cache)).hexdigest()[:16],
        "fetch": asdict(recipe.fetch),
    }
    with running_emulator(cache, recipe.faults) as emulator:
        return _record(dataset, directory, emulator.url, recipe.fetch, concurrency, backoff=0.01)


def _generate(recipe: Recipe) -> dict[str, Any]:
    """The recipe's cache, with the clock pinned so its bytes (and fingerprint) never vary."""
    clock.pin(GENERATED_AT)
    try:
        return synth.generate(recipe.nodes, recipe.seed)
    finally:
        clock.pin(None)


def _record(
    dataset: dict[str, Any],
    directory: Path,
    base_url: str,
    fetch: Fetch,
    concurrency: int,
    backoff: float,
) -> RunSummary:
    """Run the three phases against `base_url`, re-recording every phase's cassette."""
    context = phase_cassettes(directory, "all", dataset)
    with tempfile.TemporaryDirectory(prefix="registry-tools-record-") as scratch:
        options = CacheOptions(
            output=Path(scratch) / "cache.json",
            base_url=base_url,
            concurrency=concurrency,
            backoff=backoff,
            progress=False,
            **asdict(fetch),
        )
        return run_cache(options, phase_context=context)
