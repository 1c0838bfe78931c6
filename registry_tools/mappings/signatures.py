"""Input signatures and the `<comfy_node_name>::<hash>` keys of `node_mappings.json`.

The rules are the ComfyDock family's (see docs/mappings.md): each input's type is the first
element of its spec when that is a string, `COMBO` when it is a list of choices, the spec itself
when it is a bare string; the canonical signature is `name:TYPE` pairs sorted by name and joined
with `|`; the hash is the first 8 hex digits of its SHA-1, or `_` when there are no inputs.

Where comfydock-core skips a malformed input and hashes the rest, we map the whole node to
`::_` and report why: a partial signature can never match a workflow, a name-only key can.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import orjson

NO_SIGNATURE = "_"
SECTIONS = ("required", "optional")

# Problems an `input_types` value can have; each maps the node to `<name>::_`.
MISSING = "missing"  # absent, null or an empty string
NOT_JSON = "not_json"  # a string that does not parse as JSON
NOT_OBJECT = "not_object"  # JSON, but not an object
BAD_SHAPE = "bad_shape"  # an object whose sections or input specs have unexpected shapes
# A lone surrogate (`"\\ud800"`) in an input's name or type (or in a node name): valid JSON
# that no UTF-8 text can hold, and that the consumers cannot hash (they raise).
SURROGATE = "surrogate"
PROBLEMS = (MISSING, NOT_JSON, NOT_OBJECT, BAD_SHAPE, SURROGATE)


class SignatureError(ValueError):
    """`input_types` cannot be turned into a signature; `kind` is one of PROBLEMS."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def canonical(inputs: dict[str, str]) -> str:
    """`name:TYPE` pairs sorted by name, joined with `|` ('' when there are none)."""
    return "|".join(f"{name}:{inputs[name]}" for name in sorted(inputs))


def signature_hash(signature: str) -> str:
    """First 8 hex digits of the SHA-1 of the signature, `_` for the empty signature."""
    if not signature:
        return NO_SIGNATURE
    # surrogatepass: a workflow's odd input name still gets a key (it matches nothing)
    return hashlib.sha1(signature.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def node_key(node_type: str, signature: str) -> str:
    """The mappings key for a node type with this canonical signature."""
    return f"{node_type}::{signature_hash(signature)}"


def split_key(key: str) -> tuple[str, str]:
    """(`node_type`, `hash`) of a mappings key; node names may themselves contain `::`."""
    node_type, _, digest = key.rpartition("::")
    return node_type, digest


def registry_signature(input_types: Any) -> str:
    """Canonical signature of a registry ComfyNode's `input_types` (a JSON string).

    Raises SignatureError for anything that is not a well-formed input description. An
    already-decoded object is accepted too, since some caches store it that way.
    """
    spec = _decode(input_types)
    inputs: dict[str, str] = {}
    for section in SECTIONS:
        entries = spec.get(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise SignatureError(BAD_SHAPE, f"{section!r} is a {type(entries).__name__}")
        for name, entry in entries.items():
            inputs[name] = _input_type(name, entry)
    signature = canonical(inputs)
    try:
        signature.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(SURROGATE, f"lone surrogate in {ascii(signature):.60}") from None
    return signature


def registry_hash(input_types: Any) -> tuple[str, str | None]:
    """(hash, problem kind or None) of a registry `input_types`; a problem gives `_`."""
    try:
        return signature_hash(registry_signature(input_types)), None
    except SignatureError as exc:
        return NO_SIGNATURE, exc.kind


def registry_key(node_type: str, input_types: Any) -> tuple[str, str | None]:
    """(mappings key, problem kind or None); a problem gives the name-only key `<type>::_`."""
    digest, problem = registry_hash(input_types)
    return f"{node_type}::{digest}", problem


def workflow_signature(inputs: Iterable[tuple[str, Any]]) -> str:
    """Canonical signature of (name, type) pairs seen in a workflow; typeless ones are skipped.

    A list-valued type (an old frontend's converted combo widget) counts as `COMBO`, as on the
    registry side.
    """
    seen: dict[str, str] = {}
    for name, kind in inputs:
        if isinstance(kind, list):
            kind = "COMBO"
        if isinstance(name, str) and name and isinstance(kind, str) and kind:
            seen[name] = kind
    return canonical(seen)


def _decode(input_types: Any) -> dict[str, Any]:
    if input_types is None or input_types == "":
        raise SignatureError(MISSING, "no input_types")
    if isinstance(input_types, str | bytes):
        try:
            spec = orjson.loads(input_types)
        except orjson.JSONDecodeError:
            spec = _decode_lenient(input_types)
    else:
        spec = input_types
    if not isinstance(spec, dict):
        raise SignatureError(NOT_OBJECT, f"input_types is a JSON {type(spec).__name__}")
    return spec


def _decode_lenient(text: str | bytes) -> Any:
    """Python's json module: it also reads `Infinity`/`NaN` and huge integers, which ComfyUI's
    `json.dumps` writes and orjson rejects (comfydock-core uses `json`, so must we)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SignatureError(NOT_JSON, str(exc).splitlines()[0]) from None


def _input_type(name: str, entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, list) and entry:
        first = entry[0]
        if isinstance(first, str):
            return first
        if isinstance(first, list):
            return "COMBO"
    raise SignatureError(BAD_SHAPE, f"input {name!r} has spec {entry!r:.60}")
