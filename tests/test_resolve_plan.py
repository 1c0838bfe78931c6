"""The resolver against this round's mappings shapes: what the workflow records (cnr_id,
aux_id, ver, node_versions), the workflow-wide choice, frontend-only types, the plan's
reasons, and argument checks."""

from __future__ import annotations

import pytest
from _resolve_fixtures import new_mappings, ui_node, ui_workflow

from registry_tools.errors import UserError
from registry_tools.resolve.builtins import builtin_table
from registry_tools.resolve.plan import format_details, format_text
from registry_tools.resolve.resolver import resolve_files, resolve_workflow


@pytest.fixture
def mappings() -> dict:
    return new_mappings()


def plan_of(result) -> dict[str, tuple]:
    return {p.package_id: (p.version, p.node_types) for p in result.packages}


def reasons(result) -> dict[str, str]:
    return {u.node_type: u.reason for u in result.unresolved_types}


def test_cnr_id_beats_the_rank_and_goes_through_package_aliases(mappings) -> None:
    # rival-img ranks first for Blur; the node says it came from hakuimg (by a legacy id)
    workflow = ui_workflow(ui_node(1, "Blur", cnr_id="comfyui-hakuimg", ver="1.0.0"))
    result = resolve_workflow(workflow, mappings)
    assert plan_of(result) == {"hakuimg": ("1.0.0", ("Blur",))}
    (blur,) = result.types
    assert (blur.match, blur.why) == ("cnr_id", "recorded in the workflow (cnr_id comfyui-hakuimg)")
    (package,) = result.packages
    assert package.download_url == "https://cdn.example/1.0.0.zip"
    assert package.repository == "https://github.com/KohakuBlueleaf/HakuImg"


def test_without_cnr_id_rank_one_wins(mappings) -> None:
    result = resolve_workflow(ui_workflow(ui_node(1, "Blur")), mappings)
    assert plan_of(result) == {"rival-img": ("5.0.0", ("Blur",))}


def test_a_recorded_version_that_is_not_installable_falls_back_to_the_newest(mappings) -> None:
    workflow = ui_workflow(ui_node(1, "Sharpen", cnr_id="hakuimg", ver="1.1.0"))
    (package,) = resolve_workflow(workflow, mappings).packages
    assert package.version == "1.2.0"
    assert package.notes == (
        "the workflow records version 1.1.0, which is deprecated; newest installable instead",
    )
    workflow = ui_workflow(ui_node(1, "Sharpen", cnr_id="hakuimg", ver="9.9.9"))
    (package,) = resolve_workflow(workflow, mappings).packages
    assert package.version == "1.2.0"
    assert "not a registry version of this package" in package.notes[0]


def test_aux_id_names_a_pack_outside_the_registry(mappings) -> None:
    workflow = ui_workflow(
        ui_node(1, "LonelyNode", aux_id="someone/lonely", ver="5f3a2c1"),
        ui_node(2, "Whatever", aux_id="Owner/Elsewhere", ver="abc1234"),
    )
    result = resolve_workflow(workflow, mappings)
    packages = {p.package_id: p for p in result.packages}
    lonely = packages["manager_someone_lonely"]  # found by its repository, case-insensitively
    assert (lonely.source, lonely.version, lonely.download_url) == ("manager", "5f3a2c1", None)
    assert lonely.notes == ("not installable from the registry: install from the repository",)
    elsewhere = packages["github:Owner/Elsewhere"]
    assert (elsewhere.source, elsewhere.version) == ("aux_id", "abc1234")
    assert elsewhere.repository == "https://github.com/Owner/Elsewhere"
    assert not result.unresolved


def test_old_node_versions_pin_and_prefer_a_pack(mappings) -> None:
    workflow = ui_workflow(
        ui_node(1, "Blur"), extra={"node_versions": {"comfy-core": "0.3.10", "HakuImg": "1.0.0"}}
    )
    result = resolve_workflow(workflow, mappings)
    assert plan_of(result) == {"hakuimg": ("1.0.0", ("Blur",))}
    assert "extra.node_versions (HakuImg)" in result.types[0].why
    assert result.comfyui["saved_with"] == "0.3.10"
    commit = ui_workflow(ui_node(1, "Blur"), extra={"node_versions": {"comfy-core": "5f3a2c1d"}})
    assert resolve_workflow(commit, mappings).comfyui["saved_with"] is None


def test_the_whole_workflow_is_covered_by_the_fewest_packs(mappings) -> None:
    # the fork ranks first for two types, but comfyui_instantid is needed for the loader
    workflow = ui_workflow(
        ui_node(1, "ApplyInstantID"),
        ui_node(2, "InstantIDModelLoader"),
        ui_node(3, "InstantIDFaceAnalysis"),
    )
    result = resolve_workflow(workflow, mappings)
    assert plan_of(result) == {
        "comfyui_instantid": (
            "1.0.0",
            ("ApplyInstantID", "InstantIDFaceAnalysis", "InstantIDModelLoader"),
        )
    }
    assert (
        result.packages[0].why == "provides 3 of the workflow's types: the fewest packs cover them"
    )
    apply = next(t for t in result.types if t.node_type == "ApplyInstantID")
    assert apply.why == (
        "rank 2 of 2 candidates; comfyui_instantid also provides InstantIDFaceAnalysis, "
        "InstantIDModelLoader (fewest packs)"
    )
    alone = resolve_workflow(ui_workflow(ui_node(1, "ApplyInstantID")), mappings)
    assert plan_of(alone) == {"instantid-fork": ("2.0.0", ("ApplyInstantID",))}


def test_a_recorded_pack_covers_its_other_types(mappings) -> None:
    workflow = ui_workflow(ui_node(1, "Sharpen", cnr_id="hakuimg"), ui_node(2, "Blur"))
    result = resolve_workflow(workflow, mappings)
    assert plan_of(result) == {"hakuimg": ("1.2.0", ("Blur", "Sharpen"))}
    blur = next(t for t in result.types if t.node_type == "Blur")
    assert blur.why.startswith("rank 2 of 2 candidates; hakuimg is in the plan anyway")


def test_core_types_are_built_in_even_when_a_pack_ships_the_same_name(mappings) -> None:
    workflow = ui_workflow(
        ui_node(1, "GetImageSize"),
        ui_node(2, "LoadVideo", cnr_id="comfy-core", ver="0.3.60"),
        ui_node(3, "StringConcatenate"),
        ui_node(4, "KSampler"),
    )
    result = resolve_workflow(workflow, mappings)
    assert result.packages == () and result.unresolved == ()
    assert result.builtin == ("GetImageSize", "KSampler", "LoadVideo", "StringConcatenate")
    assert result.comfyui["saved_with"] == "0.3.60"
    assert result.comfyui["sufficient"] is not None


def test_an_unknown_comfy_core_type_needs_a_newer_comfyui(mappings) -> None:
    workflow = ui_workflow(ui_node(1, "FutureNode2030", cnr_id="comfy-core", ver="9.0.0"))
    result = resolve_workflow(workflow, mappings)
    assert reasons(result) == {"FutureNode2030": "core_newer"}
    detail = result.unresolved_types[0].detail
    assert "saved with ComfyUI 9.0.0" in detail
    assert f"covers ComfyUI up to {builtin_table().comfyui_version}" in detail


def test_frontend_only_types(mappings) -> None:
    workflow = ui_workflow(
        ui_node(1, "Reroute"),
        ui_node(2, "MarkdownNote"),
        ui_node(3, "SetNode"),
        ui_node(4, "GetNode"),
        ui_node(5, "ImageResizeKJ"),
        ui_node(6, "Fast Groups Muter (rgthree)"),
    )
    result = resolve_workflow(workflow, mappings)
    assert result.builtin == ("MarkdownNote", "Reroute")
    assert plan_of(result) == {
        "comfyui-kjnodes": ("1.1.0", ("GetNode", "ImageResizeKJ", "SetNode"))
    }
    # rgthree-comfy is not in these mappings: a frontend-only node of a pack we cannot install
    assert reasons(result) == {"Fast Groups Muter (rgthree)": "frontend_only"}
    assert "https://github.com/rgthree/rgthree-comfy" in result.unresolved_types[0].detail


def test_reasons_for_what_cannot_be_installed(mappings) -> None:
    workflow = ui_workflow(
        ui_node(1, "LonelyNode"), ui_node(2, "StaleNode"), ui_node(3, "Nowhere", cnr_id="ghost")
    )
    result = resolve_workflow(workflow, mappings)
    assert reasons(result) == {
        "LonelyNode": "manager_only",
        "Nowhere": "unknown",
        "StaleNode": "not_installable",
    }
    details = {u.node_type: u.detail for u in result.unresolved_types}
    assert "manager_someone_lonely (https://github.com/someone/lonely)" in details["LonelyNode"]
    assert "records pack ghost" in details["Nowhere"]
    text = format_text(result)
    assert "unresolved:" in text and "[manager_only]" in text
    assert "LonelyNode" in format_details(result)


def test_group_nodes_and_subgraphs_are_references_not_types(mappings) -> None:
    uuid = "1f0c7c2e-aaaa-4bbb-8ccc-0123456789ab"
    workflow = ui_workflow(
        ui_node(1, "workflow>NewGroup"),
        ui_node(2, "workflow/OldGroup"),
        ui_node(3, uuid),
        ui_node(4, "9d3e1a55-1111-4222-8333-444455556666"),  # an undefined subgraph: still one
        definitions={"subgraphs": [{"id": uuid, "nodes": [ui_node(1, "Sharpen")]}]},
        extra={
            "groupNodes": {
                "NewGroup": {"nodes": [ui_node(0, "ImageResizeKJ")]},
                "OldGroup": {"nodes": [ui_node(0, "InstantIDModelLoader")]},
            }
        },
    )
    result = resolve_workflow(workflow, mappings)
    assert result.references == (
        uuid,
        "9d3e1a55-1111-4222-8333-444455556666",
        "workflow/OldGroup",
        "workflow>NewGroup",
    )
    assert {t.node_type for t in result.types} == {
        "ImageResizeKJ",
        "InstantIDModelLoader",
        "Sharpen",
    }
    assert not result.unresolved


def test_api_exports_name_stray_keys_and_skip_empty_class_types(mappings) -> None:
    api = {
        "1": {"class_type": "Blur", "inputs": {}},
        "2": {"class_type": "", "inputs": {}},
        "extra_pnginfo": {"workflow": "..."},
    }
    result = resolve_workflow(api, mappings)
    assert [t.node_type for t in result.types] == ["Blur"]
    assert result.notes == ("ignored key 'extra_pnginfo': not a node (no class_type)",)


def test_older_mappings_without_the_new_keys_still_resolve(mappings) -> None:
    old = new_mappings()
    del old["package_aliases"]
    for record in old["packages"].values():
        record.pop("source", None)
        record.pop("unavailable_versions", None)
    old["packages"]["hakuimg"]["versions"]["1.1.0"] = {"deprecated": True, "download_url": "u"}
    workflow = ui_workflow(ui_node(1, "Sharpen", cnr_id="hakuimg", ver="1.1.0"))
    (package,) = resolve_workflow(workflow, old).packages
    assert package.version == "1.2.0"  # a deprecated version listed in old files is skipped
    assert "deprecated" in package.notes[0]
    # without package_aliases, a legacy id is not recognised: the rank decides
    legacy = ui_workflow(ui_node(1, "Blur", cnr_id="comfyui-hakuimg"))
    assert plan_of(resolve_workflow(legacy, old)) == {"rival-img": ("5.0.0", ("Blur",))}


@pytest.mark.parametrize(
    ("workflow", "mappings_doc", "label"),
    [
        ({"nodes": [ui_node(1, "Blur")]}, {}, "workflow"),
        ({"nodes": [ui_node(1, "Blur")]}, {"mappings": [], "packages": {}}, "workflow"),
        ({"nodes": [ui_node(1, "Blur")]}, "node_mappings.json", "workflow"),
        ({}, None, "workflow"),
        ([1, 2], None, "workflow"),
        ({"nodes": [ui_node(1, "Blur")]}, None, 5),
    ],
)
def test_wrong_arguments_raise_user_error_before_any_work(workflow, mappings_doc, label) -> None:
    with pytest.raises(UserError):
        resolve_workflow(
            workflow, new_mappings() if mappings_doc is None else mappings_doc, label=label
        )


def test_to_json_is_plain_data(mappings) -> None:
    result = resolve_workflow(ui_workflow(ui_node(1, "Blur"), ui_node(2, "Nowhere")), mappings)
    document = result.to_json()
    assert document["unresolved"] == ["Nowhere"]
    assert document["packages"][0]["package_id"] == "rival-img"
    assert document["comfyui"]["data_covers"] == builtin_table().comfyui_version


def test_a_recorded_pack_the_mappings_lack_is_named(mappings) -> None:
    result = resolve_workflow(ui_workflow(ui_node(1, "Blur", cnr_id="ghost-pack")), mappings)
    assert plan_of(result) == {"rival-img": ("5.0.0", ("Blur",))}
    assert result.types[0].why.endswith("records pack ghost-pack, which the mappings do not list")


def test_a_removed_core_type_is_noted(mappings, monkeypatch) -> None:
    from registry_tools.resolve import resolver
    from registry_tools.resolve.builtins import parse_table

    table = parse_table("# comfyui_version\t0.5.0\nOldCore\tcore\t0.1.0\t0.4.0\tdocs,previous\n")
    monkeypatch.setattr(resolver, "builtin_table", lambda: table)
    result = resolve_workflow(ui_workflow(ui_node(1, "OldCore")), mappings)
    assert result.builtin == ("OldCore",)
    assert result.notes == ("OldCore is a ComfyUI core type removed by ComfyUI 0.4.0",)
    assert result.comfyui == {"saved_with": None, "sufficient": "0.1.0", "data_covers": "0.5.0"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resolve_files("w.json", "m.json"), "a list of paths"),
        (lambda: resolve_files([], "m.json"), "no workflow"),
        (lambda: resolve_files([3], "m.json"), "must be paths"),
        (lambda: resolve_files(["w.json"], {"mappings": {}}), "mappings must be a path"),
        (lambda: resolve_files(["w.json"], "m.json", combined="yes"), "combined"),
        (lambda: resolve_files(["w.json"], "m.json", lookup="online"), "lookup must be"),
        (lambda: resolve_workflow(ui_workflow(), new_mappings(), lookup=5), "lookup must be"),
    ],
)
def test_resolve_files_checks_its_arguments_first(call, message: str) -> None:
    with pytest.raises(UserError, match=message):
        call()


def test_alias_chains_and_the_builders_reasons(mappings) -> None:
    mappings["package_aliases"] = {
        "oldest-haku": "old-haku",
        "old-haku": "hakuimg",
        "a": "b",
        "b": "a",
    }
    mappings["packages"]["hakuimg"]["unavailable_versions"]["1.1.0"]["reasons"] = [
        "banned",
        "no_download_url",
    ]
    workflow = ui_workflow(
        ui_node(1, "Blur", cnr_id="oldest-haku", ver="1.1.0"), ui_node(2, "Sharpen", cnr_id="a")
    )
    (package,) = resolve_workflow(workflow, mappings).packages
    assert (package.package_id, package.node_types) == ("hakuimg", ("Blur", "Sharpen"))
    assert package.notes == (
        "the workflow records version 1.1.0, which is banned, no download url; "
        "newest installable instead",
    )
