"""`resolve --online`: unknown types looked up through `/comfy-nodes/{name}/node` and
`/nodes/search?comfy_node_search=`, marked in the plan, recordable as a cassette."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _resolve_fixtures import new_mappings, ui_node, ui_workflow
from aiohttp import web

from registry_tools import files
from registry_tools.cli import main
from registry_tools.resolve.online import OnlineLookup
from registry_tools.resolve.resolver import resolve_workflow

NODES = {
    "fresh-pack": {
        "id": "fresh-pack",
        "name": "Fresh Pack",
        "repository": "https://github.com/fresh/fresh-pack",
        "latest_version": {"version": "0.2.0", "downloadUrl": ""},
        "provides": ["FreshNode"],
    },
    "other-fresh": {
        "id": "other-fresh",
        "name": "Other",
        "repository": "https://github.com/other/fresh",
        "latest_version": {"version": "1.0.0", "downloadUrl": ""},
        "provides": ["FreshNode"],
    },
}


def _app(counts: dict[str, int], broken: set[str]) -> web.Application:
    """The two look-up reads and the version read, as registry-api.md describes them."""

    async def preferred(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        counts["requests"] = counts.get("requests", 0) + 1
        if name in broken:
            return web.json_response({"message": "no"}, status=400)
        for node in NODES.values():
            if name in node["provides"]:
                return web.json_response(node)
        return web.json_response({"message": "not found"}, status=404)

    async def search(request: web.Request) -> web.Response:
        counts["requests"] = counts.get("requests", 0) + 1
        name = request.query.get("comfy_node_search", "")
        found = [n for n in reversed(list(NODES.values())) if name in n["provides"]]
        return web.json_response({"nodes": found, "total": len(found), "page": 1, "limit": 20})

    async def version(request: web.Request) -> web.Response:
        counts["requests"] = counts.get("requests", 0) + 1
        node_id, number = request.match_info["id"], request.match_info["version"]
        url = f"https://cdn.example/{node_id}/{number}.zip"
        return web.json_response({"version": number, "downloadUrl": url, "deprecated": False})

    app = web.Application()
    app.router.add_get("/comfy-nodes/{name}/node", preferred)
    app.router.add_get("/nodes/search", search)
    app.router.add_get("/nodes/{id}/versions/{version}", version)
    return app


@contextlib.contextmanager
def registry(broken: set[str] = frozenset()) -> Iterator[tuple[str, dict[str, int]]]:
    counts: dict[str, int] = {}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(_app(counts, set(broken)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return runner, f"http://127.0.0.1:{port}"

    runner, url = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield url, counts
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_unknown_types_are_looked_up_and_marked() -> None:
    workflow = ui_workflow(ui_node(1, "FreshNode"), ui_node(2, "Blur"), ui_node(3, "Nowhere"))
    with registry() as (url, counts):
        lookup = OnlineLookup(url)
        result = resolve_workflow(workflow, new_mappings(), lookup=lookup)
    fresh = next(p for p in result.packages if p.package_id == "fresh-pack")
    assert (fresh.source, fresh.version) == ("online", "0.2.0")
    assert fresh.download_url == "https://cdn.example/fresh-pack/0.2.0.zip"
    assert fresh.repository == "https://github.com/fresh/fresh-pack"
    freshtype = next(t for t in result.types if t.node_type == "FreshNode")
    assert freshtype.match == "online"
    assert [c.package_id for c in freshtype.candidates] == ["fresh-pack", "other-fresh"]
    assert result.unresolved == ("Nowhere",) and result.online
    # Blur is in the mappings: only FreshNode and Nowhere were asked (2 reads each), plus the
    # version read of each package found
    assert counts["requests"] == 6


def test_a_failed_look_up_is_not_reported_as_nothing_found() -> None:
    workflow = ui_workflow(ui_node(1, "FreshNode"))
    with registry(broken={"FreshNode"}) as (url, _):
        result = resolve_workflow(workflow, new_mappings(), lookup=OnlineLookup(url))
    (item,) = result.unresolved_types
    assert "online look-up failed (HTTP 400)" in item.detail


def test_cli_records_and_replays_the_look_up(tmp_path: Path, capsys) -> None:
    mappings = tmp_path / "m.json"
    files.write_atomic(mappings, files.dumps(new_mappings()))
    workflow = tmp_path / "w.json"
    workflow.write_text(json.dumps(ui_workflow(ui_node(1, "FreshNode"))))
    cassette = tmp_path / "online.json"
    base = ["resolve", str(workflow), "--mappings", str(mappings), "--online", "--json"]
    with registry() as (url, _):
        recorded = [*base, "--base-url", url, "--cassette", str(cassette), "--record-mode", "once"]
        assert main(recorded) == 0
    first = json.loads(capsys.readouterr().out)
    assert cassette.is_file() and "comfy_node_search" in cassette.read_text()
    # the registry is gone: the cassette answers, for any base URL
    replay = [*base, "--base-url", "http://registry.invalid", "--cassette", str(cassette)]
    assert main(replay) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert first["packages"][0]["source"] == "online"


@pytest.mark.parametrize("bad", [{"base_url": ""}, {"base_url": "x", "concurrency": "4"}])
def test_lookup_checks_its_arguments(bad) -> None:
    from registry_tools.errors import UserError

    with pytest.raises(UserError):
        OnlineLookup(**bad)
