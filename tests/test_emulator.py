"""The registry emulator: endpoints, odd ids, deterministic faults, counters, `serve`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _registry_http import fetch, get, node_entry, post, url, version_entry
from yarl import URL

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry.emulator import Emulator, Faults, running_emulator

ODD_IDS = ["a/b", "..", "nœud-ü", "with space"]
_version, _node, _url = version_entry, node_entry, url


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    many = [_version(f"1.{i}.0") for i in range(30)]
    nodes = [
        _node(
            "pack",
            [
                _version("1.9.0", comfy=3),
                _version("1.10.0", comfy=120),
                _version("2.0.0-rc.1", comfy=0),
                _version("2.0 beta/x", metadata_cached=False, comfy_nodes=None),
                _version("0.1.0", download_url=None),
            ],
            description="Upscales IMAGES quickly",
        ),
        _node("many", many, name="Many Versions", latest_version={"version": "1.3.0"}),
        _node("banned-pack", [], versions_unavailable="banned"),
        _node("gone-pack", [], versions_unavailable="not_found"),
        *(_node(node_id, [_version("1.0.0")]) for node_id in ODD_IDS),
    ]
    return cache_file.build_cache(nodes)


@pytest.fixture(scope="module")
def emu(cache):
    with running_emulator(cache) as running:
        yield running


# ---- endpoints -------------------------------------------------------------------------------


def test_nodes_pages(emu) -> None:
    ids = sorted(["pack", "many", "banned-pack", "gone-pack", *ODD_IDS])
    status, _, body = get(emu.url, "nodes", page=3, limit=3)
    assert status == 200
    assert body == {
        "nodes": body["nodes"],
        "total": 8,
        "page": 3,
        "limit": 3,
        "totalPages": 3,
    }
    assert [n["id"] for n in body["nodes"]] == ids[6:]
    assert get(emu.url, "nodes")[2]["limit"] == 10
    assert [n["id"] for n in get(emu.url, "nodes")[2]["nodes"]] == ids
    assert get(emu.url, "nodes", page=4, limit=3)[2]["nodes"] == []


@pytest.mark.parametrize("query", [{"page": -1}, {"page": "x"}, {"limit": 0}, {"limit": "-2"}])
def test_nodes_bad_paging_is_400(emu, query) -> None:
    status, _, body = get(emu.url, "nodes", **query)
    assert status == 400 and "must be" in body["message"]
    assert body["error"] == "Bad Request"


def test_page_0_is_page_1(emu) -> None:
    assert get(emu.url, "nodes", page=0, limit=3)[2] == get(emu.url, "nodes", page=1, limit=3)[2]
    path = ("nodes", "pack", "versions", "1.10.0", "comfy-nodes")
    assert get(emu.url, *path, page=0)[2] == get(emu.url, *path, page=1)[2]


def test_node_is_served_without_local_keys(emu, cache) -> None:
    status, _, body = get(emu.url, "nodes", "pack")
    assert status == 200
    assert body["description"] == "Upscales IMAGES quickly"
    assert not set(cache_file.NODE_LOCAL_KEYS) & set(body)
    assert get(emu.url, "nodes", "nope")[0] == 404


@pytest.mark.parametrize("node_id", ODD_IDS)
def test_odd_ids_are_routed_by_raw_segments(emu, node_id) -> None:
    assert get(emu.url, "nodes", node_id)[2]["id"] == node_id
    status, _, versions = get(emu.url, "nodes", node_id, "versions")
    assert status == 200 and versions[0]["version"] == "1.0.0"
    assert get(emu.url, "nodes", node_id, "versions", "1.0.0", "comfy-nodes")[0] == 200


def test_versions_listing_newest_first_in_server_shape(emu) -> None:
    status, _, body = get(emu.url, "nodes", "pack", "versions")
    assert status == 200
    assert [v["version"] for v in body] == ["2.0.0-rc.1", "1.10.0", "1.9.0", "0.1.0", "2.0 beta/x"]
    for entry in body:
        assert not {"download_url", "comfy_nodes", "metadata_cached"} & set(entry)
    assert get(emu.url, "nodes", "pack", "versions", "2.0 beta/x")[2]["version"] == "2.0 beta/x"
    assert get(emu.url, "nodes", "pack", "versions", "9.9.9")[0] == 404


def test_banned_and_missing_versions(emu) -> None:
    assert get(emu.url, "nodes", "banned-pack", "versions")[0] == 403
    assert get(emu.url, "nodes", "gone-pack", "versions")[0] == 404
    assert get(emu.url, "nodes", "nope", "versions")[0] == 404
    assert get(emu.url, "nodes", "banned-pack")[0] == 200


def test_listing_omits_some_download_urls_and_install_has_them(cache) -> None:
    with running_emulator(cache, missing_download_rate=0.5) as emu:
        listing = get(emu.url, "nodes", "many", "versions")[2]
        omitted = [v["version"] for v in listing if "downloadUrl" not in v]
        assert 5 < len(omitted) < 25
        assert omitted == [
            v["version"] for v in listing if emu.emulator.omits_download("many", v["version"])
        ]
        for version in omitted:
            status, _, body = get(emu.url, "nodes", "many", "install", version=version)
            assert status == 200
            assert body["downloadUrl"] == f"https://cdn.example/{version}.zip"
    with running_emulator(cache, missing_download_rate=0.0) as emu:
        assert all("downloadUrl" in v for v in get(emu.url, "nodes", "many", "versions")[2])


def test_install(emu) -> None:
    assert get(emu.url, "nodes", "pack", "install", version="0.1.0")[2]["downloadUrl"] == ""
    assert get(emu.url, "nodes", "pack", "install")[2]["version"] == "2.0.0-rc.1"  # newest
    assert get(emu.url, "nodes", "many", "install")[2]["version"] == "1.3.0"  # latest_version
    assert get(emu.url, "nodes", "gone-pack", "install")[0] == 404
    assert get(emu.url, "nodes", "pack", "install", version="3.0.0")[0] == 404
    assert get(emu.url, "nodes", "banned-pack", "install", version="1.0.0")[0] == 403


def test_comfy_nodes_pages(emu) -> None:
    path = ("nodes", "pack", "versions", "1.10.0", "comfy-nodes")
    status, _, body = get(emu.url, *path, page=3, limit=50)
    assert status == 200
    assert body["totalNumberOfPages"] == 3 and "totalPages" not in body
    assert [c["comfy_node_name"] for c in body["comfy_nodes"]] == [f"N{i}" for i in range(100, 120)]
    assert get(emu.url, *path)[2]["totalNumberOfPages"] == 12
    assert len(get(emu.url, *path)[2]["comfy_nodes"]) == 10
    assert get(emu.url, *path, page=4, limit=50)[2]["comfy_nodes"] == []


def test_comfy_nodes_of_a_version_without_nodes_or_without_metadata(emu) -> None:
    empty = get(emu.url, "nodes", "pack", "versions", "2.0.0-rc.1", "comfy-nodes")
    assert empty[0] == 200 and empty[2] == {"comfy_nodes": [], "totalNumberOfPages": 0}
    unknown = get(emu.url, "nodes", "pack", "versions", "2.0 beta/x", "comfy-nodes")
    assert unknown[0] == 200 and unknown[2] == {"comfy_nodes": None, "totalNumberOfPages": 0}
    missing = get(emu.url, "nodes", "pack", "versions", "9.9.9", "comfy-nodes")
    assert missing[0] == 404 and missing[2]["error"] == "Not Found"


def test_legacy_total_pages(cache) -> None:
    with running_emulator(cache, legacy_total_pages=True) as emu:
        body = get(emu.url, "nodes", "pack", "versions", "1.9.0", "comfy-nodes", limit=2)[2]
    assert body == {"comfy_nodes": body["comfy_nodes"], "totalPages": 2}


def test_search(emu) -> None:
    status, _, body = get(emu.url, "nodes", "search", search="images", limit=1)
    assert status == 200
    assert [n["id"] for n in body["nodes"]] == ["pack"]
    assert body["total"] == 1 and body["totalPages"] == 1
    assert [n["id"] for n in get(emu.url, "nodes", "search", search="MANY")[2]["nodes"]] == ["many"]
    assert get(emu.url, "nodes", "search", search="PACK")[2]["total"] == 3


def test_unknown_endpoint(emu) -> None:
    assert get(emu.url, "users")[0] == 404


def test_counters_and_stats(cache) -> None:
    with running_emulator(cache) as emu:
        get(emu.url, "nodes")
        get(emu.url, "nodes", "pack", "versions")
        get(emu.url, "nodes", "nope")
        expected = {
            "requests": 3,
            "by_kind": {"node": 1, "nodes": 1, "versions": 1},
            "by_status": {"200": 2, "404": 1},
            "faults": {},
            "rate_limited": 0,
            "installs": 0,
        }
        assert emu.counters.as_dict() == expected
        assert get(emu.url, "_emulator", "stats")[2] == expected  # not counted itself
        emu.reset_counters()
        assert get(emu.url, "_emulator", "stats")[2]["requests"] == 0


def test_emulator_loads_a_cache_file(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    with running_emulator(path) as emu:
        assert get(emu.url, "nodes", "pack")[0] == 200


# ---- faults ----------------------------------------------------------------------------------

MIXED = Faults(rate_429=0.1, rate_429_bare=0.1, rate_500=0.1, rate_drop=0.1, rate_truncate=0.1)
# Request keys as (path segments, query): listing pages, a versions list, a node.
KEYS = [(("nodes",), {"page": page}) for page in range(1, 7)]
KEYS += [(("nodes", "pack", "versions"), {}), (("nodes", "many"), {})]


async def _outcome(session: aiohttp.ClientSession, base: str, key: int) -> str:
    """What one request saw: a status, or the kind of client error."""
    segments, query = KEYS[key]
    try:
        return str((await fetch(session, _url(base, *segments, **query)))[0])
    except aiohttp.ClientPayloadError:
        return "truncated"
    except aiohttp.ServerDisconnectedError:
        return "dropped"


def _outcomes(cache: dict, faults: Faults, order: str, attempts: int = 6) -> dict:
    """Each key's outcomes in its own request order, and the faults the emulator counted."""

    async def run(base: str) -> dict[int, list[str]]:
        seen: dict[int, list[str]] = {key: [] for key in range(len(KEYS))}
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one_key(key: int) -> None:
                for _ in range(attempts):
                    seen[key].append(await _outcome(session, base, key))

            if order == "concurrent":
                await asyncio.gather(*(one_key(key) for key in reversed(seen)))
            else:
                for _ in range(attempts):
                    for key in seen:
                        seen[key].append(await _outcome(session, base, key))
        return seen

    with running_emulator(cache, faults) as emu:
        seen = asyncio.run(run(emu.url))
        return {"outcomes": seen, "faults": dict(emu.counters.faults)}


def test_faults_are_deterministic_whatever_the_order(cache) -> None:
    round_robin = _outcomes(cache, MIXED, "round-robin")
    assert _outcomes(cache, MIXED, "concurrent") == round_robin
    seen = {outcome for outcomes in round_robin["outcomes"].values() for outcome in outcomes}
    assert {"200", "429", "500", "truncated"} <= seen
    assert set(round_robin["faults"]) == {"429", "429_bare", "500", "drop", "truncate"}
    other_seed = dataclasses.replace(MIXED, seed=1)
    assert _outcomes(cache, other_seed, "round-robin") != round_robin


def test_no_more_than_max_consecutive_faults(cache) -> None:
    always = Faults(rate_500=1.0, max_consecutive_faults=3)
    outcomes = _outcomes(cache, always, "round-robin", attempts=8)["outcomes"]
    assert set(map(tuple, outcomes.values())) == {("500", "500", "500", "200") * 2}


@pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (0, "0"), (0.25, "0.25")])
def test_429_retry_after(cache, retry_after, header) -> None:
    with running_emulator(cache, Faults(rate_429=1.0, retry_after=retry_after)) as emu:
        status, headers, _ = get(emu.url, "nodes")
    assert status == 429 and headers["Retry-After"] == header


def test_bare_429_has_no_retry_after(cache) -> None:
    with running_emulator(cache, Faults(rate_429_bare=1.0)) as emu:
        status, headers, _ = get(emu.url, "nodes")
        assert emu.counters.faults == {"429_bare": 1}
    assert status == 429 and "Retry-After" not in headers


def test_truncated_body_raises_in_the_client(cache) -> None:
    with running_emulator(cache, Faults(rate_truncate=1.0)) as emu:
        with pytest.raises(aiohttp.ClientPayloadError, match="content length"):
            get(emu.url, "nodes")
        assert emu.counters.faults == {"truncate": 1}


def test_dropped_connection_raises_in_the_client(cache) -> None:
    # aiohttp itself retries an idempotent request once when the server disconnects.
    with running_emulator(cache, Faults(rate_drop=1.0)) as emu:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            get(emu.url, "nodes")
        assert emu.counters.faults == {"drop": 2} and not emu.counters.by_status
    with running_emulator(cache, Faults(rate_drop=1.0, max_consecutive_faults=1)) as emu:
        assert get(emu.url, "nodes")[0] == 200
        assert emu.counters.faults == {"drop": 1} and emu.counters.by_status == {200: 1}


def test_latency_is_per_request_and_concurrent(cache) -> None:
    async def many(base: str) -> float:
        async with aiohttp.ClientSession() as session:
            start = time.perf_counter()
            await asyncio.gather(*(fetch(session, _url(base, "nodes")) for _ in range(10)))
            return time.perf_counter() - start

    with running_emulator(cache, Faults(latency_ms=200)) as emu:
        elapsed = asyncio.run(many(emu.url))
    assert 0.2 <= elapsed < 1.0


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        Faults(rate_429=0.6, rate_500=0.6)
    with pytest.raises(ValueError, match="at most 1"):
        Faults(rate_drop=-0.1)


def test_emulator_rejects_a_bad_cache(tmp_path) -> None:
    with pytest.raises(UserError, match="no such file"):
        Emulator(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="missing the 'nodes' list"):
        Emulator({"node": []})


def test_running_an_emulator_instance_keeps_its_state(cache) -> None:
    emulator = Emulator(cache, Faults(rate_500=1.0, max_consecutive_faults=1))
    with running_emulator(emulator) as emu:
        assert get(emu.url, "nodes")[0] == 500
    with running_emulator(emulator) as emu:
        assert get(emu.url, "nodes")[0] == 200  # the streak carried over
        assert emu.counters.requests == 2
    with pytest.raises(TypeError), running_emulator(emulator, legacy_total_pages=True):
        pass


# ---- the serve command -----------------------------------------------------------------------


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "registry_tools", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_serve_command(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    process = _serve("--cache", str(path), "--port", "0", "--latency-ms", "1")
    try:
        line = process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:")
        status, _, body = get(line.split()[1], "nodes", "pack")
        assert status == 200 and body["id"] == "pack"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out == ""
    assert "1 requests" in err and "node=1" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"[1, 2]", "not a registry cache"), (b"{", "not valid JSON")],
)
def test_serve_bad_cache_is_one_line(tmp_path: Path, content, message) -> None:
    path = tmp_path / "cache.json"
    if content is not None:
        path.write_bytes(content)
    process = _serve("--cache", str(path))
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools: error: --cache ") and message in err
    assert err.count("\n") == 1


def test_serve_on_a_taken_port_is_one_line(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    with running_emulator(cache) as emu:
        process = _serve("--cache", str(path), "--port", str(URL(emu.url).port))
        out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools: error: --host/--port: ") and err.count("\n") == 1


def _serving(*args: str) -> tuple[str, subprocess.Popen]:
    """Start `serve` with `args`; (its URL, the process)."""
    process = _serve(*args)
    line = process.stdout.readline()
    assert line.startswith("serving http://"), process.stderr.read()
    return line.split()[1], process


def _stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return out, err


def test_serve_realistic_with_a_flag_overriding_the_preset(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving("--cache", str(path), "--realistic", "--rate-limit", "0")
    try:
        assert get(base, "nodes", "pack", "install", version="2.0.0-rc.1")[0] == 400
        assert get(base, "nodes", "banned-pack")[0] == 403  # statuses enforced
        advanced = post(base, "_emulator", "advance", body={"finish_pending": 1.0})
        assert advanced[0] == 200 and "finished" in advanced[2]
        statuses = [get(base, "nodes")[0] for _ in range(6)]
    finally:
        _, err = _stop(process)
    assert statuses == [200] * 6  # --rate-limit 0 switched the preset's limit off
    assert "installs: 1" in err and "rate-limited: 0" in err


def test_serve_rate_limit_flags(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving(
        "--cache", str(path), "--rate-limit", "0.01", "--rate-burst", "2", "--rate-retry-after", "3"
    )
    try:
        answers = [get(base, "nodes") for _ in range(3)]
    finally:
        _, err = _stop(process)
    assert [status for status, _, _ in answers] == [200, 200, 429]
    assert answers[2][1]["Retry-After"] == "3"
    assert "rate-limited: 1" in err


def test_serve_on_every_interface_warns(tmp_path, cache) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    base, process = _serving("--cache", str(path), "--host", "0.0.0.0")
    port = URL(base).port
    try:
        assert get(f"http://127.0.0.1:{port}", "nodes", "pack")[0] == 200
    finally:
        _, err = _stop(process)
    assert "WARNING" in err and "every network interface" in err and "'0.0.0.0'" in err
    _, process = _serving("--cache", str(path))
    assert "WARNING" not in _stop(process)[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port: must be a port from 0 to 65535, got 70000"),
        (["--port", "-1"], "--port: must be 0 or more"),
        (["--rate-burst", "0.5"], "Behaviour.rate_burst must be at least 1"),
        (["--pending-share", "0.9", "--failed-share", "0.2"], "at most 1"),
        (["--drift-rows", "two"], "--drift-rows: not an integer"),
    ],
)
def test_serve_bad_numbers_are_one_line(tmp_path, cache, argv, message) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(files.dumps(cache))
    process = _serve("--cache", str(path), *argv)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2 and out == ""
    assert err.startswith("registry-tools") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
