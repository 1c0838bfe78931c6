"""Small hand-made registry caches for the mappings, resolve and stats tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry_tools import clock, files
from registry_tools.fetch import cache_file

PINNED = "2026-11-24T00:00:00Z"


@pytest.fixture(autouse=True)
def pinned_clock():
    """The project clock pinned (import it into a test module to use it there)."""
    clock.pin(PINNED)
    yield
    clock.pin(None)


def comfy(name: str, inputs: dict[str, Any] | None = None, raw: Any = None) -> dict[str, Any]:
    """A ComfyNode; `inputs` become the `required` section, `raw` is used verbatim."""
    input_types = raw if raw is not None else json.dumps({"required": inputs or {}})
    return {"comfy_node_name": name, "input_types": input_types, "return_types": "[]"}


def version(
    number: str,
    created: str = "2026-01-01T00:00:00.123Z",
    nodes: list[dict[str, Any]] | None = None,
    *,
    deprecated: bool = False,
    status: str = "NodeVersionStatusActive",
    metadata: bool = True,
    url: str | None = "",
    pending: str | None = None,
) -> dict[str, Any]:
    """A cached NodeVersion; `metadata=False` means phase 3 never got its comfy nodes
    (`pending`: the registry said its extraction is pending/failed). `url` '' gives the
    usual download URL, None or another string that value."""
    entry = {
        "version": number,
        "createdAt": created,
        "deprecated": deprecated,
        "status": status,
        "dependencies": ["numpy"],
        "download_url": f"https://cdn.example/{number}.zip" if url == "" else url,
        "changelog": "",
        "metadata_cached": metadata,
    }
    if metadata:
        entry["comfy_nodes"] = nodes or []
    if pending is not None:
        entry["metadata_pending"] = pending
    return entry


def node(package_id: str, versions: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A cached Node with its versions."""
    base = {
        "id": package_id,
        "name": package_id.replace("-", " ").title(),
        "repository": f"https://github.com/someone/{package_id}.git",
        "downloads": 100,
        "github_stars": 1,
        "status": "NodeStatusActive",
        "fully_cached": True,
        "versions_list": versions,
    }
    return {**base, **fields}


def write_cache(path: Path, nodes: list[dict[str, Any]]) -> Path:
    """Write a cache the way the cache builder does (canonical bytes, atomic)."""
    files.write_atomic(path, files.dumps(cache_file.build_cache(json.loads(json.dumps(nodes)))))
    return path


MASK_SCALE = {"mask": ["MASK"], "scale": ["FLOAT", {"default": 1}]}  # -> 1f54e5ac
IMAGE = {"image": ["IMAGE"]}  # -> 499010cc
CKPT = {"ckpt_name": [["a.safetensors", "b.safetensors"]]}  # -> 3772f7f7


def sample_nodes() -> list[dict[str, Any]]:
    """Three packages: a popular one, a rival providing a colliding node, an odd one."""
    return [
        node(
            "alpha-pack",
            [
                version("1.9.0", "2026-03-01T00:00:00Z", [comfy("MaskScale", MASK_SCALE)]),
                version(
                    "1.10.0",
                    "2026-04-01T00:00:00.5Z",
                    [comfy("MaskScale", MASK_SCALE), comfy("Loader", CKPT)],
                ),
                version("2.0.0-rc.1", "2026-05-01T00:00:00Z", [comfy("Beta", IMAGE)]),
                version("0.1.0", "2025-01-01T00:00:00Z", [comfy("Old", IMAGE)], deprecated=True),
            ],
            downloads=5000,
            github_stars=100,
        ),
        node(
            "beta-pack",
            [
                version("1.0.0", "2026-02-01T00:00:00.123456789Z", [comfy("MaskScale", IMAGE)]),
                version("1.1.0", "2026-02-02T00:00:00Z", metadata=False),
            ],
            downloads=10,
            github_stars=0,
        ),
        node(
            "gamma-odd",
            [
                version(
                    "0.0.1",
                    "2026-01-15T00:00:00Z",
                    [
                        comfy("BadJson", raw="{not json"),
                        comfy("BadShape", raw='{"required": {"x": [1]}}'),
                        comfy("NotObject", raw="[1, 2]"),
                        comfy("NoInputs", raw='{"required": {}}'),
                        comfy("MaskScale", MASK_SCALE),
                    ],
                )
            ],
            downloads=0,
            github_stars=0,
            repository="git@github.com:Someone/Gamma.git",
        ),
    ]


# ---- ComfyUI-Manager's lists, in its format (shapes as in comfyui-manager 4.3's files) -------


def manager_pack(
    reference: str, title: str = "", *, files: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    """An entry of `custom-node-list.json`."""
    return {
        "author": fields.pop("author", "someone"),
        "title": title or reference.rsplit("/", 1)[-1],
        "reference": reference,
        "files": files or [reference],
        "install_type": fields.pop("install_type", "git-clone"),
        "description": fields.pop("description", "A pack."),
        **fields,
    }


def write_manager(
    directory: Path,
    packs: list[dict[str, Any]],
    node_map: dict[str, Any],
    stats: dict[str, Any] | None = None,
) -> Path:
    """Write the three lists into `directory` as ComfyUI-Manager ships them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "custom-node-list.json").write_text(json.dumps({"custom_nodes": packs}, indent=1))
    (directory / "extension-node-map.json").write_text(json.dumps(node_map, indent=1))
    (directory / "github-stats.json").write_text(json.dumps(stats or {}, indent=1))
    return directory
