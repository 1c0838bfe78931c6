"""`registry-tools resolve`: both workflow formats, matching rules, exit codes, comfydock-core."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    CKPT,
    MASK_SCALE,
    PINNED,
    comfy,
    node,
    sample_nodes,
    version,
    write_cache,
)

from registry_tools import clock
from registry_tools.cli import main
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.resolve.builtins import builtin_nodes
from registry_tools.resolve.resolver import resolve_workflow


@pytest.fixture(scope="module")
def mappings_file(tmp_path_factory) -> Path:
    clock.pin(PINNED)
    try:
        nodes = [
            *sample_nodes(),
            node(
                "rival-pack",
                [version("3.0.0", "2026-04-20T00:00:00Z", [comfy("Loader", CKPT)])],
                downloads=9000,
            ),
        ]
        folder = tmp_path_factory.mktemp("resolve")
        cache = write_cache(folder / "cache.json", nodes)
        build_mappings(MappingsOptions(cache=cache, output=folder / "node_mappings.json"))
    finally:
        clock.pin(None)
    return folder / "node_mappings.json"


@pytest.fixture(scope="module")
def mappings(mappings_file: Path) -> dict:
    return orjson.loads(mappings_file.read_bytes())


def ui_node(node_id: int, node_type: str, *inputs: tuple[str, str], **extra) -> dict:
    listed = [{"name": n, "type": t, "link": None} for n, t in inputs]
    return {"id": node_id, "type": node_type, "inputs": listed, "widgets_values": [], **extra}


UI_WORKFLOW = {
    "last_node_id": 9,
    "nodes": [
        ui_node(1, "KSampler", ("model", "MODEL")),
        ui_node(2, "MaskScale", ("mask", "MASK"), ("scale", "FLOAT")),  # exact 1f54e5ac
        ui_node(3, "MaskScale", ("image", "IMAGE")),  # exact 499010cc (beta-pack)
        ui_node(4, "Loader"),  # widgets not listed: name-only
        ui_node(5, "Reroute", ("", "*")),
        ui_node(6, "Note"),
        ui_node(7, "PrimitiveNode"),
        ui_node(8, "NoInputs"),  # the registry node has no inputs: NoInputs::_
        ui_node(9, "NotInRegistry", ("x", "INT")),
        ui_node(10, "3f2a-subgraph-uuid"),
        ui_node(11, "workflow>MyGroup"),
        {"id": 12, "type": None},
        "garbage",
    ],
    "links": [],
    "groups": [{"title": "a group", "bounding": [0, 0, 10, 10]}],
    "definitions": {"subgraphs": [{"id": "3f2a-subgraph-uuid", "nodes": [ui_node(1, "Beta")]}]},
    "extra": {"groupNodes": {"MyGroup": {"nodes": [ui_node(0, "BadJson")]}}},
}


def test_ui_workflow(mappings: dict) -> None:
    result = resolve_workflow(UI_WORKFLOW, mappings)
    assert result.format == "ui"
    by_type = {t.node_type: t for t in result.types}
    assert sorted(by_type) == [
        "BadJson",
        "Beta",
        "Loader",
        "MaskScale",
        "NoInputs",
        "NotInRegistry",
    ]
    mask = by_type["MaskScale"]
    assert (mask.match, mask.key, mask.node_ids) == ("exact", "MaskScale::1f54e5ac", ("2", "3"))
    assert [(c.package_id, c.rank, c.version) for c in mask.candidates] == [
        ("alpha-pack", 1, "1.10.0"),
        ("gamma-odd", 2, "0.0.1"),
    ]
    loader = by_type["Loader"]
    assert (loader.match, loader.key) == ("type_only", "Loader::_")  # every provider
    assert [(c.package_id, c.rank, c.version) for c in loader.candidates] == [
        ("rival-pack", 1, "3.0.0"),
        ("alpha-pack", 2, "1.10.0"),
    ]
    assert (by_type["NoInputs"].match, by_type["NoInputs"].key) == ("type_only", "NoInputs::_")
    assert by_type["Beta"].candidates[0].package_id == "alpha-pack"  # inside a subgraph
    assert by_type["BadJson"].candidates[0].package_id == "gamma-odd"  # inside a group node
    assert result.unresolved == ("NotInRegistry",)
    assert result.builtin == ("KSampler", "Note", "PrimitiveNode", "Reroute")
    assert result.references == ("3f2a-subgraph-uuid", "workflow>MyGroup")
    # the plan: one pack per type, MaskScale and Beta both from alpha-pack (fewest packs)
    plan = {p.package_id: p.node_types for p in result.packages}
    assert plan["alpha-pack"] == ("Beta", "Loader", "MaskScale")
    assert plan["gamma-odd"] == ("BadJson", "NoInputs")


def test_the_exact_signature_decides_between_packages(mappings: dict) -> None:
    workflow = {"nodes": [ui_node(1, "MaskScale", ("image", "IMAGE"))]}
    (only,) = resolve_workflow(workflow, mappings).types
    assert (only.key, [c.package_id for c in only.candidates]) == (
        "MaskScale::499010cc",
        ["beta-pack"],
    )


def test_unknown_signature_falls_back_to_every_provider(mappings: dict) -> None:
    workflow = {"nodes": [ui_node(1, "MaskScale", ("mask", "MASK"))]}
    (only,) = resolve_workflow(workflow, mappings).types
    assert (only.match, only.key) == ("type_only", "MaskScale::_")  # every provider, ranked
    assert [c.package_id for c in only.candidates] == ["alpha-pack", "beta-pack", "gamma-odd"]
    assert [c.rank for c in only.candidates] == [1, 2, 3]


API_WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
    "4": {"class_type": "Loader", "inputs": {"ckpt_name": "a.safetensors"}},
    "5": {"class_type": "MaskScale", "inputs": {"mask": ["6", 0], "scale": 1.0}},
    "6": {"class_type": "Nowhere", "inputs": {}},
}


def test_api_workflow(mappings: dict) -> None:
    result = resolve_workflow(API_WORKFLOW, mappings)
    assert result.format == "api"
    by_type = {t.node_type: t for t in result.types}
    assert by_type["Loader"].candidates[0].package_id == "rival-pack"
    assert by_type["MaskScale"].candidates[0].package_id == "alpha-pack"
    assert by_type["MaskScale"].node_ids == ("5",)
    assert result.unresolved == ("Nowhere",)
    assert resolve_workflow({"prompt": API_WORKFLOW}, mappings).types == result.types


def test_builtin_list_is_shipped() -> None:
    assert {"KSampler", "CheckpointLoaderSimple", "SaveImage", "Reroute"} <= builtin_nodes()
    assert {"GetImageSize", "LoadVideo", "StringConcatenate", "MarkdownNote"} <= builtin_nodes()
    assert "MaskScale" not in builtin_nodes()
    assert len(builtin_nodes()) >= 1000


# ---- CLI -----------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_cli_exit_codes_and_json(tmp_path: Path, mappings_file: Path, capsys) -> None:
    resolved = write(tmp_path, "ok.json", {"nodes": [ui_node(1, "Beta", ("image", "IMAGE"))]})
    assert main(["resolve", str(resolved), "--mappings", str(mappings_file)]) == 0
    assert "alpha-pack" in capsys.readouterr().out
    args = ["resolve", str(write(tmp_path, "api.json", API_WORKFLOW)), "--json"]
    assert main([*args, "--mappings", str(mappings_file)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["unresolved"] == ["Nowhere"]
    assert report["unresolved_types"][0]["reason"] == "unknown"
    assert report["types"][0]["candidates"][0] == {
        "package_id": "rival-pack",
        "rank": 1,
        "version": "3.0.0",
        "versions": ["3.0.0"],
    }
    # rival-pack ranks first for Loader, but alpha-pack is needed for MaskScale anyway
    (alpha,) = report["packages"]
    assert (alpha["package_id"], alpha["node_types"]) == ("alpha-pack", ["Loader", "MaskScale"])
    assert (alpha["version"], alpha["download_url"]) == ("1.10.0", "https://cdn.example/1.10.0.zip")
    loader = next(t for t in report["types"] if t["node_type"] == "Loader")
    assert (
        loader["why"] == "rank 2 of 2 candidates; alpha-pack also provides MaskScale (fewest packs)"
    )


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        "{}",
        '{"nodes": 3}',
        '{"a": {"inputs": {}}}',
        "not json",
        '"text"',
        '{"cached_at": "x", "nodes": [{"id": "pack", "name": "Pack"}]}',  # a registry cache
        '{"nodes": []}',
    ],
)
def test_cli_rejects_what_is_not_a_workflow(
    tmp_path: Path, mappings_file: Path, capsys, content: str
) -> None:
    path = write(tmp_path, "w.json", content)
    assert main(["resolve", str(path), "--mappings", str(mappings_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_cli_rejects_bad_mappings(tmp_path: Path, capsys) -> None:
    workflow = write(tmp_path, "w.json", API_WORKFLOW)
    for bad in (write(tmp_path, "m.json", '{"nodes": []}'), tmp_path / "missing.json"):
        assert main(["resolve", str(workflow), "--mappings", str(bad)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ---- a real consumer -----------------------------------------------------------------------


def test_comfydock_core_loads_and_resolves_our_output(mappings_file: Path) -> None:
    from comfydock_core.models.workflow import NodeInput, WorkflowNode
    from comfydock_core.repositories import node_mappings_repository as repository_module
    from comfydock_core.resolvers.global_node_resolver import GlobalNodeResolver

    class LocalData:  # RegistryDataManager without the download: our file, offline
        def get_mappings_path(self) -> Path:
            return mappings_file

    repository = repository_module.NodeMappingsRepository(LocalData())
    resolver = GlobalNodeResolver(repository)
    inputs = [NodeInput(name, spec[0]) for name, spec in MASK_SCALE.items()]
    exact = resolver.resolve_single_node_from_mapping(WorkflowNode("1", "MaskScale", inputs=inputs))
    assert [(p.package_id, p.rank, p.match_type) for p in exact] == [
        ("alpha-pack", 1, "exact"),
        ("gamma-odd", 2, "exact"),
    ]
    assert exact[0].versions == ["1.10.0", "1.9.0"]
    (no_inputs,) = resolver.resolve_single_node_from_mapping(WorkflowNode("2", "NoInputs"))
    assert (no_inputs.package_id, no_inputs.match_type) == ("gamma-odd", "type_only")
    package = repository.get_package("alpha-pack")
    assert "0.1.0" not in package.versions  # deprecated: never offered for installation
    assert package.versions["1.9.0"].download_url == "https://cdn.example/1.9.0.zip"
    assert repository.resolve_github_url("git@github.com:Someone/Gamma.git").id == "gamma-odd"
    assert repository.global_mappings.stats.signatures == len(
        orjson.loads(mappings_file.read_bytes())["mappings"]
    )
