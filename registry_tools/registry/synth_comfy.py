"""The comfy nodes of a synthetic package: a catalogue that changes over its versions, and
`input_types` strings shaped like the registry's (a few broken on purpose)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from registry_tools.registry.synth_tables import (
    BROKEN_INPUTS,
    CATALOGUE_SIZES,
    COMBOS,
    HIDDEN,
    NOUNS,
    POLICIES,
    TENSOR_TYPES,
    UNICODE_NAMES,
    VERBS,
    Package,
    draw,
    unique,
)


def attach_comfy_nodes(
    rng: random.Random,
    package: Package,
    versions: list[dict[str, Any]],
    shared_specs: dict[str, str],
) -> None:
    """Give every version (newest first) its comfy nodes; ~10% have none (extracted, empty).

    Older versions offer a prefix of the newest catalogue, and some nodes changed their
    inputs at some version, so consecutive versions mostly share names.
    """
    catalogue = _catalogue(rng, package, shared_specs, len(versions))
    shrink = rng.choice((0, 0, 0, 1, 2))
    for age, version in enumerate(versions):
        if rng.random() < 0.1:
            version["comfy_nodes"] = []
            continue
        size = max(1, len(catalogue) - shrink * age)
        version["comfy_nodes"] = [entry.at(age) for entry in catalogue[:size]]


@dataclass
class _Entry:
    """A comfy node over a package's history: `old_inputs` apply from `changed_at` on back."""

    node: dict[str, Any]
    old_inputs: str | None = None
    changed_at: int = 0

    def at(self, age: int) -> dict[str, Any]:
        copy = dict(self.node, output_is_list=list(self.node["output_is_list"]))
        if self.old_inputs is not None and age > self.changed_at:
            copy["input_types"] = self.old_inputs
        return copy


def _catalogue(
    rng: random.Random, package: Package, shared_specs: dict[str, str], versions: int
) -> list[_Entry]:
    prefix = "".join(word.capitalize() for word in package.words)
    seen = set(package.shared_names)
    names = [
        unique(f"{prefix}{rng.choice(VERBS)}{rng.choice(NOUNS)}", seen)
        for _ in range(draw(rng, CATALOGUE_SIZES))
    ]
    if rng.random() < 0.02:
        names.append(unique(rng.choice(UNICODE_NAMES), seen))
    # A shared name is sometimes the same class copied around (same inputs), sometimes not.
    entries = [
        _Entry(_comfy_node(rng, name, prefix, shared_specs[name] if rng.random() < 0.5 else None))
        for name in package.shared_names
    ]
    entries += [_Entry(_comfy_node(rng, name, prefix, None)) for name in names]
    for entry in entries:
        if versions > 1 and rng.random() < 0.15:
            entry.old_inputs = random_input_types(rng)
            entry.changed_at = rng.randrange(versions - 1)
    return entries


def _comfy_node(
    rng: random.Random, name: str, prefix: str, input_types: str | None
) -> dict[str, Any]:
    outputs = rng.sample(TENSOR_TYPES, rng.choice((0, 1, 1, 1, 2, 3)))
    return {
        "comfy_node_name": name,
        "category": f"{prefix}/{rng.choice(NOUNS).lower()}",
        "description": "" if rng.random() < 0.85 else f"{name}: does what it says.",
        "input_types": input_types if input_types is not None else random_input_types(rng),
        "return_types": _json_list(outputs),
        "return_names": _json_list([o.lower() for o in outputs]),
        "output_is_list": [rng.random() < 0.05 for _ in outputs],
        "function": rng.choice(("execute", "run", "process", "apply", "doit", "main")),
        "deprecated": rng.random() < 0.02,
        "experimental": rng.random() < 0.04,
        "policy": _policy(rng.random()),
    }


def _policy(draw: float) -> str:
    return next(policy for bound, policy in POLICIES if draw < bound)


def _json_list(items: list[str]) -> str:
    """A list as the registry stores it: JSON text with `", "` separators."""
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def random_input_types(rng: random.Random) -> str:
    """The JSON *string* the registry stores; a few are empty, broken or not an object."""
    u = rng.random()
    if u < 0.01:
        return rng.choice(BROKEN_INPUTS)
    if u < 0.04:
        return "{}"
    spec: dict[str, Any] = {"required": _inputs(rng, rng.randint(1, 5))}
    if rng.random() < 0.4:
        spec["optional"] = _inputs(rng, rng.randint(1, 3))
    if rng.random() < 0.25:
        spec["hidden"] = dict(rng.sample(sorted(HIDDEN.items()), rng.randint(1, 3)))
    return orjson.dumps(spec).decode()


def _inputs(rng: random.Random, count: int) -> dict[str, Any]:
    return {f"{rng.choice(NOUNS).lower()}_{i}": _input(rng) for i in range(count)}


def _input(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.35:
        return [rng.choice(TENSOR_TYPES)]
    if kind < 0.5:
        return ["INT", {"default": rng.choice((0, 1, 512, 1024))}]
    if kind < 0.65:
        return ["FLOAT", {"default": rng.choice((0.0, 0.5, 1.0))}]
    if kind < 0.75:
        return ["STRING", {"multiline": rng.random() < 0.5, "default": ""}]
    if kind < 0.8:
        return ["BOOLEAN", {"default": False}]
    if kind < 0.95:
        return [list(rng.choice(COMBOS))]
    return rng.choice(("INT", "FLOAT", "STRING"))
