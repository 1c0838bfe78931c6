"""`registry-tools record`: (re-)record a cassette set, so anyone can regenerate the bundled ones.

Without a base URL the data set is synthetic: `synth.generate` builds it from a recipe's node
count and seed, and the stand-in registry serves it the way the real one behaves (the recipe's
`Behaviour`: a rate limit with bare 429s, listing drift and page caches, pending extraction,
hidden banned and deleted packages) plus a few deterministic faults (a Retry-After sequence,
500s, dropped and truncated answers); the three phases run through `phase_cassettes` in mode
`all`. The emulator's clock runs `clock_speed` times faster, so its 12 requests/s admit a
recording in seconds: the client sees the same kinds of answers as at the real rate.

Which requests meet the rate limit depends on when they arrive, so two recordings are not
byte-identical; what they record is: replaying either gives the same cache. With a base URL
the same fetch options record a real registry instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
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
from registry_tools.registry.behaviour import Behaviour
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
    """A synthetic data set: what the emulator serves, how it behaves and misbehaves, how it
    is fetched."""

    nodes: int
    seed: int
    faults: Faults
    fetch: Fetch = field(default_factory=Fetch)
    behaviour: Behaviour = field(default_factory=Behaviour)
    clock_speed: float = 1.0
    # share of versions whose extraction is pending without the registry saying so in the
    # version (only `{"comfy_nodes": null}` tells), as in caches fetched before it did
    silent_pending: float = 0.0


GENERATED_AT = "2026-01-01T00:00:00Z"

RECIPES = {
    # 60 packages behind the realistic registry (its clock three times faster), listed in two
    # pages of 30 (rounds of them until complete), metadata of each package's newest 5
    # installable versions; a few % of each fault kind on top, with a short Retry-After so
    # replaying the 429s stays fast.
    "sample": Recipe(
        nodes=60,
        seed=7,
        faults=Faults(
            rate_429=0.02,
            rate_500=0.02,
            rate_drop=0.01,
            rate_truncate=0.01,
            retry_after=0.05,
            seed=3,
            max_consecutive_faults=2,
        ),
        # every realistic behaviour but hidden packages: the sample keeps its 60 (a banned
        # one answers 403, a deleted one 404, when their versions are asked for)
        behaviour=dataclasses.replace(Behaviour.realistic(seed=7), enforce_statuses=False),
        clock_speed=3.0,
        silent_pending=0.03,
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
    """The fetch options a cassette set was recorded with (empty if the manifest has none):
    its data set's, else those its last recording of each phase noted in the manifest's
    `fetch` (the notebooks note them: a set they record grows one phase at a time). Checked:
    a hand-edited manifest (`"max_versions": "5"`) is a one-line error here, not a TypeError
    later."""
    manifest = read_manifest(directory)
    where = f"cassette manifest {Path(directory) / 'manifest.json'}"
    merged: dict[str, Any] = {}
    for key, fetch in (("fetch", manifest.get("fetch", {})),
                       ("dataset.fetch", manifest["dataset"].get("fetch", {}))):  # fmt: skip
        _check_fetch(f"{where}: {key}", fetch)
        merged.update(fetch)
    return merged


def _check_fetch(where: str, fetch: Any) -> None:
    if not isinstance(fetch, dict):
        raise UserError(f"{where} is not an object")
    known = {f.name for f in fields(Fetch)}
    for name, value in fetch.items():
        if name not in known:
            raise UserError(f"{where}.{name}: not a fetch option ({', '.join(sorted(known))})")
        low = -1 if name == "max_versions" else 1
        if value is None and name == "pages":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or value == 0:
            raise UserError(f"{where}.{name} is {value!r}, expected an integer of at least {low}")


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
        "behaviour": asdict(recipe.behaviour),
        "fingerprint": "sha256:" + hashlib.sha256(files.dumps(cache)).hexdigest()[:16],
        "fetch": asdict(recipe.fetch),
    }
    started = time.monotonic()

    def fast() -> float:
        return started + (time.monotonic() - started) * recipe.clock_speed

    with running_emulator(cache, recipe.faults, behaviour=recipe.behaviour, clock=fast) as emulator:
        return _record(dataset, directory, emulator.url, recipe.fetch, concurrency, backoff=0.01)


def _generate(recipe: Recipe) -> dict[str, Any]:
    """The recipe's cache, with the clock pinned so its bytes (and fingerprint) never vary."""
    clock.pin(GENERATED_AT)
    try:
        cache = synth.generate(recipe.nodes, recipe.seed)
    finally:
        clock.pin(None)
    for node in cache["nodes"]:
        for version in node.get("versions_list", []):
            key = f"{recipe.seed}\0{node['id']}\0{version['version']}".encode()
            if int(hashlib.sha1(key).hexdigest()[:8], 16) / 2**32 < recipe.silent_pending:
                version.update(metadata_cached=False, metadata_pending="pending")
                version.pop("comfy_nodes", None)
    return cache


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
