"""Hand-made mappings documents and workflows for the resolver tests.

`new_mappings()` has this round's shapes, written by hand (the mappings builder may not write
them yet): a `Type::_` entry per type listing every provider, only installable versions under
`packages[id].versions` (the others under `unavailable_versions`), `package_aliases`, and a
package known only to ComfyUI-Manager (`source: "manager"`, `versions: {}`).
"""

from __future__ import annotations

from typing import Any


def _versions(*numbers: str) -> dict[str, Any]:
    return {
        n: {"version": n, "download_url": f"https://cdn.example/{n}.zip", "deprecated": False}
        for n in numbers
    }


def package(repository: str, *versions: str, downloads: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "display_name": repository.rsplit("/", 1)[-1],
        "repository": repository,
        "downloads": downloads,
        "github_stars": 0,
        "source": "registry",
        "versions": _versions(*versions),
        **extra,
    }


def entry(package_id: str, rank: int, *versions: str) -> dict[str, Any]:
    return {"package_id": package_id, "rank": rank, "versions": list(versions)}


def new_mappings() -> dict[str, Any]:
    packages = {
        "hakuimg": package(
            "https://github.com/KohakuBlueleaf/HakuImg",
            "1.2.0",
            "1.0.0",
            unavailable_versions={"1.1.0": {"version": "1.1.0", "deprecated": True}},
        ),
        "rival-img": package("https://github.com/rival/rival-img", "5.0.0", downloads=90000),
        "comfyui_instantid": package("https://github.com/cubiq/ComfyUI_InstantID", "1.0.0"),
        "instantid-fork": package("https://github.com/fork/InstantID", "2.0.0", downloads=50000),
        "comfyui-kjnodes": package("https://github.com/kijai/ComfyUI-KJNodes", "1.1.0"),
        "core-clash": package("https://github.com/clash/core-clash", "1.0.0", downloads=10**6),
        "stale-pack": {
            **package("https://github.com/stale/stale-pack"),
            "unavailable_versions": {"0.9.0": {"deprecated": True}},
        },
        "manager_someone_lonely": {
            **package("https://github.com/someone/lonely"),
            "source": "manager",
        },
    }
    mappings = {
        "Blur::_": [entry("rival-img", 1, "5.0.0"), entry("hakuimg", 2, "1.2.0", "1.0.0")],
        "Blur::499010cc": [entry("hakuimg", 1, "1.2.0", "1.0.0")],
        "Sharpen::_": [entry("hakuimg", 1, "1.2.0", "1.0.0")],
        "ApplyInstantID::_": [
            entry("instantid-fork", 1, "2.0.0"),
            entry("comfyui_instantid", 2, "1.0.0"),
        ],
        "InstantIDModelLoader::_": [entry("comfyui_instantid", 1, "1.0.0")],
        "InstantIDFaceAnalysis::_": [
            entry("instantid-fork", 1, "2.0.0"),
            entry("comfyui_instantid", 2, "1.0.0"),
        ],
        "ImageResizeKJ::_": [entry("comfyui-kjnodes", 1, "1.1.0")],
        # custom packs that also ship classes named like core ones: built-ins must win
        "GetImageSize::_": [entry("core-clash", 1, "1.0.0")],
        "LoadVideo::_": [entry("core-clash", 1, "1.0.0")],
        "StringConcatenate::_": [entry("core-clash", 1, "1.0.0")],
        "StaleNode::_": [entry("stale-pack", 1)],
        "LonelyNode::_": [entry("manager_someone_lonely", 1)],
    }
    return {
        "version": "2026.12.01",
        "generated_at": "2026-12-01T00:00:00Z",
        "stats": {"packages": len(packages), "signatures": len(mappings), "total_nodes": 0},
        "mappings": mappings,
        "packages": packages,
        "package_aliases": {"comfyui-hakuimg": "hakuimg", "KJNodes": "comfyui-kjnodes"},
    }


def ui_node(node_id: int, node_type: str, *inputs: tuple[str, str], **properties: Any) -> dict:
    listed = [{"name": n, "type": t, "link": None} for n, t in inputs]
    return {"id": node_id, "type": node_type, "inputs": listed, "properties": properties}


def ui_workflow(*nodes: dict, **top: Any) -> dict[str, Any]:
    return {"last_node_id": len(nodes), "nodes": list(nodes), "links": [], "version": 0.4, **top}
