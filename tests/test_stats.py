"""Statistics the notebooks plot, on a hand-made cache whose answers are known."""

from __future__ import annotations

import orjson
import pytest
from _mapping_fixtures import PINNED, sample_nodes, write_cache

from registry_tools import clock
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.notebooks.stats import (
    MetadataShare,
    collisions,
    metadata_share,
    node_types_per_package,
    signatures_per_node_type,
    versions_per_package,
)


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> tuple[dict, dict]:
    clock.pin(PINNED)
    try:
        folder = tmp_path_factory.mktemp("stats")
        cache = write_cache(folder / "cache.json", sample_nodes())
        build_mappings(MappingsOptions(cache=cache, output=folder / "m.json"))
    finally:
        clock.pin(None)
    return orjson.loads(cache.read_bytes()), orjson.loads((folder / "m.json").read_bytes())


def test_node_types_per_package(documents) -> None:
    _, mappings = documents
    assert node_types_per_package(mappings) == {"alpha-pack": 3, "beta-pack": 1, "gamma-odd": 5}


def test_signatures_per_node_type(documents) -> None:
    _, mappings = documents
    counts = signatures_per_node_type(mappings)
    assert counts["MaskScale"] == 2  # 1f54e5ac (alpha, gamma) and 499010cc (beta)
    assert counts["Loader"] == counts["BadJson"] == 1
    assert list(counts) == sorted(counts)


def test_collisions(documents) -> None:
    _, mappings = documents
    assert collisions(mappings) == {"MaskScale": ["alpha-pack", "beta-pack", "gamma-odd"]}


def test_versions_per_package(documents) -> None:
    cache, _ = documents
    assert versions_per_package(cache) == {"alpha-pack": 4, "beta-pack": 2, "gamma-odd": 1}


def test_metadata_share(documents) -> None:
    cache, _ = documents
    assert metadata_share(cache) == MetadataShare(7, 6, 6, 6 / 7)
    assert metadata_share({"nodes": []}).share == 0.0
