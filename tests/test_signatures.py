"""Input signatures and mappings keys: the shared test vectors and every malformed shape."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry_tools.mappings.signatures import (
    BAD_SHAPE,
    MISSING,
    NOT_JSON,
    NOT_OBJECT,
    SignatureError,
    node_key,
    registry_key,
    registry_signature,
    signature_hash,
    split_key,
    workflow_signature,
)

# The test vectors of shared/registry-api.md: input_types, signature, hash.
VECTORS = [
    (
        '{"required":{"mask":["MASK"],"scale":["FLOAT",{"default":1}]}}',
        "mask:MASK|scale:FLOAT",
        "1f54e5ac",
    ),
    ('{"required":{"image":["IMAGE"]}}', "image:IMAGE", "499010cc"),
    (
        '{"required":{"ckpt_name":[["a.safetensors","b.safetensors"]]}}',
        "ckpt_name:COMBO",
        "3772f7f7",
    ),
]


@pytest.mark.parametrize(("input_types", "signature", "digest"), VECTORS)
def test_signature_vectors(input_types: str, signature: str, digest: str) -> None:
    assert registry_signature(input_types) == signature
    assert signature_hash(signature) == digest
    assert registry_key("Node", input_types) == (f"Node::{digest}", None)


def test_optional_and_bare_string_inputs_count_and_hidden_does_not() -> None:
    spec = {
        "required": {"b": "INT"},
        "optional": {"a": ["LATENT"], "c": [["x"], {"default": "x"}]},
        "hidden": {"prompt": "PROMPT"},
    }
    assert registry_signature(json.dumps(spec)) == "a:LATENT|b:INT|c:COMBO"
    assert registry_signature(spec) == "a:LATENT|b:INT|c:COMBO"  # already decoded


def test_no_inputs_is_the_name_only_key() -> None:
    assert registry_key("N", '{"required": {}}') == ("N::_", None)
    assert registry_key("N", "{}") == ("N::_", None)
    assert signature_hash("") == "_"


def test_python_json_extensions_are_read_like_comfydock_does() -> None:
    """ComfyUI writes `Infinity` (json.dumps); orjson refuses it, the key must not change."""
    key, problem = registry_key("N", '{"required": {"x": ["FLOAT", {"max": Infinity}]}}')
    assert problem is None
    assert key == "N::" + hashlib.sha1(b"x:FLOAT").hexdigest()[:8]


@pytest.mark.parametrize(
    ("input_types", "kind"),
    [
        (None, MISSING),
        ("", MISSING),
        ("{not json", NOT_JSON),
        ("[1, 2]", NOT_OBJECT),
        ('"text"', NOT_OBJECT),
        (42, NOT_OBJECT),
        ('{"required": ["x"]}', BAD_SHAPE),
        ('{"required": {"x": []}}', BAD_SHAPE),
        ('{"required": {"x": [1]}}', BAD_SHAPE),
        ('{"optional": {"x": {"type": "INT"}}}', BAD_SHAPE),
        ('{"required": {"x": null}}', BAD_SHAPE),
    ],
)
def test_malformed_input_types_map_to_name_only_key(input_types: object, kind: str) -> None:
    assert registry_key("N", input_types) == ("N::_", kind)
    with pytest.raises(SignatureError):
        registry_signature(input_types)


def test_workflow_signature_matches_registry_rules() -> None:
    pairs = [("scale", "FLOAT"), ("mask", "MASK"), ("untyped", ""), ("ckpt", ["a", "b"])]
    assert workflow_signature(pairs) == "ckpt:COMBO|mask:MASK|scale:FLOAT"
    assert node_key("N", workflow_signature(pairs[:2])) == "N::1f54e5ac"


def test_split_key_keeps_colons_in_node_names() -> None:
    assert split_key("Pack::Node::1f54e5ac") == ("Pack::Node", "1f54e5ac")


@pytest.mark.parametrize("input_types", [v[0] for v in VECTORS] + ['{"optional": {"a": "X"}}'])
def test_same_keys_as_comfydock_core(input_types: str) -> None:
    from comfydock_core.utils import input_signature as signature  # a test dependency

    theirs = signature.create_node_key("N", signature.normalize_registry_inputs(input_types))
    assert registry_key("N", input_types)[0] == theirs
