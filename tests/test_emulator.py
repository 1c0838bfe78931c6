"""The registry emulator: endpoints, odd ids, deterministic faults, counters, options
(`serve` itself: tests/test_serve.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import aiohttp
import pytest
from _registry_http import ODD_IDS, fetch, get, odd_registry, url

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry.emulator import Emulator, Faults, running_emulator

_url = url


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    return odd_registry()


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"behaviour": {"rate_limit": 1}}, "behaviour must be a Behaviour"),
        ({"clock": 5}, "clock must be a function"),
        ({"missing_download_rate": 1.5}, "missing_download_rate must be from 0 to 1"),
        ({"missing_download_rate": "0.1"}, "missing_download_rate must be from 0 to 1"),
    ],
)
def test_emulator_checks_its_options(cache, options, message) -> None:
    with pytest.raises(UserError, match=message):
        Emulator(cache, **options)
