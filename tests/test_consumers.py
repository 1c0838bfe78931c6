"""The real consumers read our file: comfydock-core 1.0.11 and comfygit-core 0.7.1 (test
dependencies) load it, resolve nodes presented with all their inputs, only the linked ones, or
none, and their offline install choice is never a deprecated, banned, deleted or URL-less
version."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    CKPT,
    MASK_SCALE,
    comfy,
    node,
    pinned_clock,  # noqa: F401  (autouse)
    version,
    write_cache,
)
from test_manager import manager_lists

from registry_tools.mappings.build import MappingsOptions, build_mappings

CONSUMERS = ["comfydock_core", "comfygit_core"]


def troubled_nodes() -> list[dict]:
    """Packages whose highest version strings are the unusable ones, so a consumer that takes
    `max(packages[id].versions)` would install them if they were listed there."""
    loader = comfy("Loader", {**CKPT, "image": ["IMAGE"], "strength": ["FLOAT", {"default": 1}]})
    return [
        node(
            "alpha-pack",
            [
                version("9.0.0", nodes=[loader], deprecated=True),
                version("8.0.0", nodes=[loader], status="NodeVersionStatusBanned"),
                version("7.0.0", nodes=[loader], status="NodeVersionStatusDeleted"),
                version("6.0.0", nodes=[loader], url=None),
                version("5.0.0", nodes=[loader], status="NodeVersionStatusPending"),
                version("2.0.0", nodes=[loader, comfy("MaskScale", MASK_SCALE)]),
                version(
                    "10.0.0", nodes=[loader], url=""
                ),  # installable: "10.0.0" < "2.0.0" as text
            ],
            downloads=5000,
        ),
        node(
            "beta-pack",
            [version("1.0.0", nodes=[comfy("Loader", {"mask": ["MASK"]})])],
            downloads=10,
        ),
        node(
            "gone-pack",
            [version("3.0.0", nodes=[comfy("GoneNode")])],
            status="NodeStatusBanned",
        ),
    ]


@pytest.fixture
def mappings_file(tmp_path: Path) -> Path:
    cache = write_cache(tmp_path / "cache.json", troubled_nodes())
    lists = manager_lists(tmp_path / "manager")
    output = tmp_path / "node_mappings.json"
    build_mappings(MappingsOptions(cache=cache, output=output, manager=lists))
    return output


def consumer(name: str, mappings_file: Path):
    """The consumer's repository and resolver over our file, offline (no download)."""
    repositories = pytest.importorskip(f"{name}.repositories.node_mappings_repository")
    resolvers = pytest.importorskip(f"{name}.resolvers.global_node_resolver")
    models = pytest.importorskip(f"{name}.models.workflow")

    class LocalData:  # RegistryDataManager without the download: our file
        def get_mappings_path(self) -> Path:
            return mappings_file

    repository = repositories.NodeMappingsRepository(LocalData())
    return repository, resolvers.GlobalNodeResolver(repository), models


@pytest.mark.parametrize("name", CONSUMERS)
def test_they_load_the_file(name: str, mappings_file: Path) -> None:
    repository, _, _ = consumer(name, mappings_file)
    document = orjson.loads(mappings_file.read_bytes())
    loaded = repository.global_mappings
    assert len(loaded.mappings) == len(document["mappings"]) == loaded.stats.signatures
    assert len(loaded.packages) == len(document["packages"]) == loaded.stats.packages
    assert loaded.stats.manager_packages == document["stats"]["manager_packages"]
    cool = repository.get_package("manager_other_user_cool_nodes")
    assert cool.source == "manager" and cool.versions == {}


@pytest.mark.parametrize("name", CONSUMERS)
@pytest.mark.parametrize(
    ("shown", "match"),
    [
        ({"ckpt_name": "COMBO", "image": "IMAGE", "strength": "FLOAT"}, "exact"),  # all inputs
        ({"image": "IMAGE"}, "type_only"),  # only the linked input (widgets left out)
        ({}, "type_only"),  # none (an API export, an old file)
    ],
    ids=["all-inputs", "linked-only", "no-inputs"],
)
def test_they_resolve_whatever_inputs_a_workflow_shows(
    name: str, mappings_file: Path, shown: dict, match: str
) -> None:
    _, resolver, models = consumer(name, mappings_file)
    inputs = [models.NodeInput(input_name, kind) for input_name, kind in shown.items()]
    found = resolver.resolve_single_node_from_mapping(
        models.WorkflowNode("1", "Loader", inputs=inputs)
    )
    assert found, f"{name} did not resolve Loader with inputs {sorted(shown)}"
    assert {p.match_type for p in found} == {match}
    assert found[0].package_id == "alpha-pack" and found[0].rank == 1
    assert found[0].versions == ["10.0.0", "2.0.0"]  # installable ones, newest first
    if match == "type_only":
        assert [p.package_id for p in found] == ["alpha-pack", "beta-pack"]


@pytest.mark.parametrize("name", CONSUMERS)
def test_they_resolve_manager_only_packs(name: str, mappings_file: Path) -> None:
    _, resolver, models = consumer(name, mappings_file)
    (cool,) = resolver.resolve_single_node_from_mapping(models.WorkflowNode("1", "Cool"))
    assert (cool.package_id, cool.match_type, cool.versions) == (
        "manager_other_user_cool_nodes",
        "type_only",
        [],
    )
    if name == "comfygit_core":
        assert cool.is_manager_only_uninstallable


@pytest.mark.parametrize("name", CONSUMERS)
def test_their_offline_install_choice_is_always_installable(name: str, mappings_file: Path) -> None:
    repository, _, _ = consumer(name, mappings_file)
    shared = pytest.importorskip(f"{name}.models.shared")
    document = orjson.loads(mappings_file.read_bytes())
    chosen = {}
    for package_id, record in document["packages"].items():
        if not record["versions"]:
            continue
        info = shared.NodeInfo.from_global_package(repository.get_package(package_id))
        picked = record["versions"][info.version]
        assert picked["deprecated"] is False
        assert picked["status"] == "NodeVersionStatusActive"
        assert info.download_url and info.download_url == picked["download_url"]
        chosen[package_id] = info.version
    assert chosen["alpha-pack"] in ("2.0.0", "10.0.0")  # never 9.0.0, 8.0.0, 7.0.0, 6.0.0, 5.0.0
    assert "gone-pack" not in chosen  # a banned package offers nothing to install
    assert "GoneNode::_" not in document["mappings"]


@pytest.mark.parametrize("name", CONSUMERS)
def test_their_entry_versions_are_installable(name: str, mappings_file: Path) -> None:
    repository, _, _ = consumer(name, mappings_file)
    for mapping in repository.global_mappings.mappings.values():
        for entry in mapping.packages:
            package = repository.get_package(entry.package_id)
            assert package is not None
            for number in entry.versions:
                assert package.versions[number].deprecated is False
                assert package.versions[number].download_url
