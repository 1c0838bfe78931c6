"""What the stand-in registry's tests share: small caches, and plain HTTP against a running
emulator (each path segment percent-encoded, never normalised)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from registry_tools.fetch import cache_file


def version_entry(version: str, comfy: int = 1, **extra: Any) -> dict[str, Any]:
    """A cached NodeVersion with `comfy` comfy nodes named N0, N1, ..."""
    entry = {
        "version": version,
        "createdAt": "2024-05-01T10:00:05.32703Z",
        "download_url": f"https://cdn.example/{quote(version)}.zip",
        "dependencies": [],
        "deprecated": False,
        "metadata_cached": True,
        "comfy_nodes": [{"comfy_node_name": f"N{i}", "input_types": "{}"} for i in range(comfy)],
    }
    entry.update(extra)
    return entry


def node_entry(node_id: str, versions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A cached Node with its versions."""
    node = {
        "id": node_id,
        "name": f"Name of {node_id}",
        "description": "",
        "fully_cached": True,
        "versions_cached_at": "2026-01-01T00:00:00Z",
        "versions_cached_for": versions[0]["version"] if versions else "",
        "versions_list": versions,
    }
    node.update(extra)
    return node


def small_registry(count: int, versions: int = 3, comfy: int = 2) -> dict[str, Any]:
    """`count` packages p000, p001, ... with `versions` releases 1.0.0, 1.1.0, ... each."""
    nodes = [
        node_entry(
            f"p{i:03d}",
            [
                version_entry(f"1.{v}.0", comfy, id=f"v-{i}-{v}", node_id=f"p{i:03d}")
                for v in range(versions)
            ],
            downloads=i,
            created_at="2024-01-01T00:00:00Z",
            latest_version={"version": f"1.{versions - 1}.0", "downloadUrl": ""},
        )
        for i in range(count)
    ]
    return cache_file.build_cache(nodes)


ODD_IDS = ["a/b", "..", "nœud-ü", "with space"]


def odd_registry() -> dict[str, Any]:
    """Packages with odd versions (`1.10.0`, a pre-release, a string with `/` and a space, no
    metadata, no download URL), a banned and a gone package, and ids that need quoting."""
    many = [version_entry(f"1.{i}.0") for i in range(30)]
    nodes = [
        node_entry(
            "pack",
            [
                version_entry("1.9.0", comfy=3),
                version_entry("1.10.0", comfy=120),
                version_entry("2.0.0-rc.1", comfy=0),
                version_entry("2.0 beta/x", metadata_cached=False, comfy_nodes=None),
                version_entry("0.1.0", download_url=None),
            ],
            description="Upscales IMAGES quickly",
        ),
        node_entry("many", many, name="Many Versions", latest_version={"version": "1.3.0"}),
        node_entry("banned-pack", [], versions_unavailable="banned"),
        node_entry("gone-pack", [], versions_unavailable="not_found"),
        *(node_entry(node_id, [version_entry("1.0.0")]) for node_id in ODD_IDS),
    ]
    return cache_file.build_cache(nodes)


def url(base: str, *segments: str, **query: Any) -> URL:
    """A URL with each path segment percent-encoded, kept verbatim (`..` is not resolved).
    A list value repeats the parameter."""
    path = "/".join(quote(s, safe="") for s in segments)
    target = URL(f"{base}/{path}", encoded=True)
    pairs = [
        (key, str(item))
        for key, value in query.items()
        for item in (value if isinstance(value, list) else [value])
    ]
    return target.with_query(pairs) if pairs else target


async def fetch(
    session: aiohttp.ClientSession, target: URL, method: str = "GET", body: Any = None
) -> tuple[int, Any, Any]:
    """(status, headers, JSON body) of one request."""
    data = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.request(method, target, data=data) as response:
        return response.status, response.headers, orjson.loads(await response.read())


def request(base: str, method: str, segments: tuple[str, ...], body: Any = None, **query: Any):
    async def run() -> tuple[int, Any, Any]:
        async with aiohttp.ClientSession() as session:
            return await fetch(session, url(base, *segments, **query), method, body)

    return asyncio.run(run())


def get(base: str, *segments: str, **query: Any) -> tuple[int, Any, Any]:
    """GET one URL: (status, headers, JSON body)."""
    return request(base, "GET", segments, **query)


def post(base: str, *segments: str, body: Any = None, **query: Any) -> tuple[int, Any, Any]:
    """POST a JSON body (or raw bytes): (status, headers, JSON body)."""
    return request(base, "POST", segments, body, **query)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds
