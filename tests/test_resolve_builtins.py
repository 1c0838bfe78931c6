"""The versioned built-ins: the shipped table, its refresh script, and the official workflow
templates (`comfyui-workflow-templates-json`, a test dependency pinned in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib import resources
from pathlib import Path

import pytest
from _resolve_fixtures import new_mappings

from registry_tools.resolve.builtins import builtin_table, parse_table
from registry_tools.resolve.reading import load_workflow
from registry_tools.resolve.resolver import resolve_workflow
from registry_tools.resolve.workflow import UUID

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "refresh_builtins.py"
# The two official templates by a community author that use custom nodes without recording
# their packs (ComfyUI_essentials' ImageRemoveAlpha+, ComfyUI-QwenVL's AILab_QwenVL).
CUSTOM_TEMPLATES = {
    "template_rob_realistic_2k_images_quick_variations",
    "templates_rob_realistic_2k_images_quick_variations.app",
}


def refresh_module():
    spec = importlib.util.spec_from_file_location("refresh_builtins", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_shipped_table() -> None:
    table = builtin_table()
    assert len(table.nodes) >= 1000
    assert table.header["comfyui-workflow-templates-json"] == "0.1.123, 0.1.0"
    assert table.nodes["Reroute"].kind == "frontend"
    assert {"MarkdownNote", "Note", "PrimitiveNode"} <= {
        n for n, t in table.nodes.items() if t.kind == "frontend"
    }
    assert table.nodes["LoadVideo"].introduced is not None
    assert "templates" in table.nodes["LoadVideo"].sources
    assert table.comfyui_version and table.header["comfyui-embedded-docs"]


def template_files() -> list[Path]:
    import comfyui_workflow_templates_json as package

    folder = Path(str(resources.files(package) / "templates"))
    return sorted(
        p for p in folder.glob("*.json") if not p.name.startswith(("index", "fuse_options"))
    )


def test_every_official_template_resolves_with_no_custom_pack() -> None:
    mappings = new_mappings()  # with packs that ship classes named like core ones
    templates = template_files()
    assert len(templates) > 600
    needing_packs = {}
    for path in templates:
        result = resolve_workflow(load_workflow(path), mappings, label=path.name)
        assert not result.packages, path.name
        if result.unresolved:
            needing_packs[path.stem] = result.unresolved
    assert set(needing_packs) == CUSTOM_TEMPLATES
    assert set(needing_packs.values()) == {("AILab_QwenVL", "ImageRemoveAlpha+")}


def write_sources(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs-pkg"
    for name in ("KSampler", "OldNode", "Reroute"):
        (docs / "comfyui_embedded_docs" / "docs" / name).mkdir(parents=True)
    (docs / "comfyui_embedded_docs-0.9.0.dist-info").mkdir()
    folder = tmp_path / "tpl" / "comfyui_workflow_templates_json" / "templates"
    folder.mkdir(parents=True)
    (tmp_path / "tpl" / "comfyui_workflow_templates_json-1.2.3.dist-info").mkdir()

    def core(kind: str, ver: str) -> dict:
        return {"id": 1, "type": kind, "properties": {"cnr_id": "comfy-core", "ver": ver}}

    uuid = "1f0c7c2e-aaaa-4bbb-8ccc-0123456789ab"
    first = {
        "nodes": [core("KSampler", "0.3.40"), core(uuid, "0.3.40")],
        "definitions": {"subgraphs": [{"id": uuid, "nodes": [core("NewNode", "0.4.0")]}]},
    }
    second = {"nodes": [core("KSampler", "0.3.50"), {"id": 2, "type": "CustomThing"}]}
    (folder / "a.json").write_text(json.dumps(first))
    (folder / "b.json").write_text(json.dumps(second))
    index = [{"templates": [{"name": "b", "minComfyUIVersion": "0.3.20"}]}]
    (folder / "index.json").write_text(json.dumps(index))
    return docs, tmp_path / "tpl"


def test_refresh_script_builds_the_table_from_its_sources(tmp_path: Path) -> None:
    docs, templates = write_sources(tmp_path)
    previous = tmp_path / "previous.tsv"
    previous.write_text(
        "# comfyui_version\t0.3.0\nname\tkind\tintroduced\tremoved\tsources\n"
        "GoneNode\tcore\t0.1.0\t\tdocs\nKSampler\tcore\t0.0.5\t\tdocs\n"
    )
    output = tmp_path / "out.tsv"
    args = ["--docs", str(docs), "--templates", str(templates), "--previous", str(previous)]
    assert refresh_module().main([*args, "--output", str(output)]) == 0
    table = parse_table(output.read_text())
    assert table.header == {
        "comfyui_version": "0.4.0",
        "comfyui-embedded-docs": "0.9.0",
        "comfyui-workflow-templates-json": "1.2.3",
    }
    assert table.nodes["KSampler"].introduced == "0.0.5"  # the previous file knew it earlier
    assert table.nodes["KSampler"].sources == ("docs", "templates")
    assert table.nodes["NewNode"].introduced == "0.4.0"  # inside a subgraph
    assert table.nodes["OldNode"].introduced is None  # documented, in no template
    assert table.nodes["GoneNode"].removed == "0.4.0"  # left the docs
    assert table.nodes["GoneNode"].sources == ("previous",)
    assert table.nodes["Reroute"].kind == "frontend"
    assert "CustomThing" not in table.nodes  # no cnr_id: not taken as core
    assert not any(len(name) == 36 for name in table.nodes)  # subgraph UUIDs are no types
    assert refresh_module().main([*args, "--output", str(output), "--check"]) == 0
    output.write_text(output.read_text() + "Extra\tcore\t\t\tdocs\n")
    assert refresh_module().main([*args, "--output", str(output), "--check"]) == 1


def test_template_minimum_versions_and_older_releases_date_types_earlier(tmp_path: Path) -> None:
    docs, templates = write_sources(tmp_path)
    output = tmp_path / "out.tsv"
    args = ["--docs", str(docs), "--templates", str(templates)]
    args += ["--previous", str(tmp_path / "none")]
    assert refresh_module().main([*args, "--output", str(output)]) == 0
    assert parse_table(output.read_text()).nodes["KSampler"].introduced == "0.3.20"
    older = tmp_path / "old-tpl"
    (older / "templates").mkdir(parents=True)
    node = {"id": 1, "type": "KSampler", "properties": {"cnr_id": "comfy-core", "ver": "0.2.0"}}
    (older / "templates" / "old.json").write_text(json.dumps({"nodes": [node]}))
    assert refresh_module().main([*args, "--templates", str(older), "--output", str(output)]) == 0
    table = parse_table(output.read_text())
    assert table.nodes["KSampler"].introduced == "0.2.0"
    assert table.header["comfyui-workflow-templates-json"] == "1.2.3, unknown"
    assert table.comfyui_version == "0.4.0"  # older releases never raise the coverage


@pytest.mark.parametrize("bad", ["KSampler\tcore", "\n\n# only a comment\n"])
def test_parse_table_tolerates_short_rows(bad: str) -> None:
    parse_table(bad)


def test_the_table_agrees_with_the_pinned_templates() -> None:
    """Every type an official template marks comfy-core is in the table, dated no later than
    the template shows it (the table was built from this release and an older one)."""
    from registry_tools.semver import version_key

    table = builtin_table()
    for path in template_files():
        document = json.loads(path.read_text("utf-8"))
        nodes = list(document["nodes"])
        for subgraph in (document.get("definitions") or {}).get("subgraphs") or []:
            nodes += subgraph.get("nodes") or []
        for node in nodes:
            props = node.get("properties") or {}
            kind = node.get("type")
            if props.get("cnr_id") != "comfy-core" or UUID.match(kind):
                continue
            row = table.nodes[kind]
            assert "templates" in row.sources, kind
            ver = props.get("ver")
            if ver:
                assert version_key(row.introduced) <= version_key(ver), (kind, ver)
