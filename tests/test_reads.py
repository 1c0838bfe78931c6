"""The stand-in registry's read endpoints beyond the listing: one version, `/versions` over
every package, the bulk read, filters, search by text, class name and repository, and the
package the registry prefers for a comfy node."""

from __future__ import annotations

from typing import Any

import pytest
from _registry_http import get, node_entry, post, version_entry

from registry_tools.fetch import cache_file
from registry_tools.registry import synth
from registry_tools.registry.emulator import running_emulator

ACTIVE, PENDING, BANNED = (
    "NodeVersionStatusActive",
    "NodeVersionStatusPending",
    "NodeVersionStatusBanned",
)


def _comfy(name: str) -> dict[str, Any]:
    return {"comfy_node_name": name, "input_types": "{}"}


@pytest.fixture(scope="module")
def emu():
    nodes = [
        node_entry(
            "alpha",
            [
                version_entry("1.0.0", comfy_nodes=[_comfy("Resize"), _comfy("AlphaOnly")]),
                version_entry("1.1.0", status=PENDING, createdAt="2025-03-01T00:00:00Z"),
                version_entry("0.9.0", status=BANNED, download_url=None),
            ],
            repository="https://github.com/Someone/Alpha-Nodes",
            downloads=5,
            created_at="2024-01-01T00:00:00Z",
        ),
        node_entry(
            "beta",
            [version_entry("1.0.0", comfy_nodes=[_comfy("Resize")])],
            repository="https://github.com/other/beta",
            downloads=50,
            created_at="2025-06-01T00:00:00Z",
        ),
        node_entry(
            "gamma",
            [version_entry("1.0.0", comfy_nodes=[_comfy("Resize")])],
            preempted_comfy_node_names=["Resize"],
            downloads=1,
            created_at="2024-02-01T00:00:00Z",
        ),
    ]
    with running_emulator(cache_file.build_cache(nodes)) as running:
        yield running


def test_one_version_with_its_download_url(emu) -> None:
    status, _, body = get(emu.url, "nodes", "alpha", "versions", "1.0.0")
    assert status == 200 and body["downloadUrl"] == "https://cdn.example/1.0.0.zip"
    assert not {"download_url", "comfy_nodes", "metadata_cached"} & set(body)
    assert get(emu.url, "nodes", "alpha", "versions", "0.9.0")[2]["downloadUrl"] == ""
    assert get(emu.url, "nodes", "alpha", "versions", "7.0.0")[0] == 404
    assert emu.counters.installs == 0


def test_statuses_filter_is_repeatable(emu) -> None:
    def listed(**query: Any) -> list[str]:
        return [v["version"] for v in get(emu.url, "nodes", "alpha", "versions", **query)[2]]

    assert listed() == ["1.1.0", "1.0.0", "0.9.0"]
    assert listed(statuses=ACTIVE) == ["1.0.0"]
    assert listed(statuses=[ACTIVE, BANNED]) == ["1.0.0", "0.9.0"]
    assert listed(statuses=f"{PENDING},{BANNED}") == ["1.1.0", "0.9.0"]
    status, _, body = get(emu.url, "nodes", "alpha", "versions", statuses="Active")
    assert status == 400 and "Active" in body["message"]


def test_all_versions_pages(emu) -> None:
    status, _, body = get(emu.url, "versions", pageSize=2)
    assert status == 200
    assert (body["total"], body["page"], body["pageSize"], body["totalPages"]) == (5, 1, 2, 3)
    rows = [
        v["version"]
        for page in (1, 2, 3)
        for v in get(emu.url, "versions", page=page, pageSize=2)[2]["versions"]
    ]
    assert rows == ["0.9.0", "1.0.0", "1.0.0", "1.0.0", "1.1.0"]
    assert get(emu.url, "versions", page=0, pageSize=2)[2] == body
    assert get(emu.url, "versions", pageSize=100)[0] == 200
    status, _, error = get(emu.url, "versions", pageSize=101)
    assert status == 400 and error["error"] == "Bad Request" and "100" in error["message"]
    pending = get(emu.url, "versions", statuses=PENDING)[2]
    assert [v["version"] for v in pending["versions"]] == ["1.1.0"]
    assert get(emu.url, "versions", nodeId="beta")[2]["total"] == 1
    assert get(emu.url, "versions", nodeId="nope")[2]["total"] == 0


def test_bulk_read(emu) -> None:
    wanted = [
        {"node_id": "alpha", "version": "1.0.0"},
        {"node_id": "alpha", "version": "5.0.0"},
        {"node_id": "nope", "version": "1.0.0"},
    ]
    status, _, body = post(emu.url, "bulk", "nodes", "versions", body={"node_versions": wanted})
    assert status == 200
    results = body["node_versions"]
    assert [r["identifier"] for r in results] == wanted
    assert [r["status"] for r in results] == ["success", "not_found", "not_found"]
    assert results[0]["node_version"]["downloadUrl"] == "https://cdn.example/1.0.0.zip"
    assert "5.0.0" in results[1]["error_message"]
    assert post(emu.url, "bulk", "nodes", "versions", body={"node_versions": []})[2] == {
        "node_versions": []
    }
    for bad in ({}, [], {"node_versions": [{"node_id": "alpha"}]}, b"{"):
        status, _, error = post(emu.url, "bulk", "nodes", "versions", body=bad)
        assert status == 400 and set(error) == {"error", "message"}
    status, headers, error = get(emu.url, "bulk", "nodes", "versions")
    assert status == 405 and "POST" in error["message"]


def test_search_by_text_class_name_and_repository(emu) -> None:
    def found(**query: Any) -> list[str]:
        return [n["id"] for n in get(emu.url, "nodes", "search", **query)[2]["nodes"]]

    assert found(search="ALPHA") == ["alpha"]
    assert found(comfy_node_search="Resize") == ["alpha", "beta", "gamma"]
    assert found(comfy_node_search="AlphaOnly") == ["alpha"]
    assert found(comfy_node_search="resize") == []  # a class name is exact
    assert found(repository_url_search="github.com/someone") == ["alpha"]
    assert found(repository_url_search="github.com", comfy_node_search="Resize") == [
        "alpha",
        "beta",
    ]
    assert found() == ["alpha", "beta", "gamma"]


def test_the_preferred_package_of_a_comfy_node(emu) -> None:
    status, _, body = get(emu.url, "comfy-nodes", "Resize", "node")
    assert status == 200 and body["id"] == "gamma"  # it preempts the name
    assert get(emu.url, "comfy-nodes", "AlphaOnly", "node")[2]["id"] == "alpha"
    status, _, error = get(emu.url, "comfy-nodes", "Missing", "node")
    assert status == 404 and error["error"] == "Not Found"


def test_timestamp_lists_what_was_created_or_updated_after(emu) -> None:
    def listed(when: str) -> list[str]:
        return [n["id"] for n in get(emu.url, "nodes", timestamp=when)[2]["nodes"]]

    assert listed("2023-01-01T00:00:00Z") == ["alpha", "beta", "gamma"]
    assert listed("2025-01-01T00:00:00Z") == ["alpha", "beta"]  # alpha 1.1.0 is newer
    assert listed("2025-05-01T00:00:00.5Z") == ["beta"]
    assert listed("2030-01-01T00:00:00Z") == []
    status, _, body = get(emu.url, "nodes", timestamp="yesterday")
    assert status == 400 and "timestamp" in body["message"]


def test_every_error_body_has_error_and_message(emu) -> None:
    for segments, query in [
        (("nodes", "nope"), {}),
        (("nodes",), {"limit": "many"}),
        (("nodes",), {"include_banned": "perhaps"}),
        (("nodes", "alpha", "versions", "1.0.0", "comfy-nodes"), {"limit": -3}),
        (("unknown", "path"), {}),
    ]:
        status, _, body = get(emu.url, *segments, **query)
        assert status in (400, 404) and set(body) == {"error", "message"}


def test_a_synthetic_cache_is_served_exactly_as_it_holds_it() -> None:
    """What a fetch following docs/cache-format.md needs to give the cache back: every
    version's fields, its extraction status, and its comfy nodes or a pending answer."""
    cache = synth.generate(30, 5)
    with running_emulator(cache, missing_download_rate=0) as emu:
        for node in cache["nodes"]:
            if node.get("versions_unavailable"):
                continue
            listed = {v["version"]: v for v in get(emu.url, "nodes", node["id"], "versions")[2]}
            for entry in node["versions_list"]:
                served = listed[entry["version"]]
                local = ("download_url", "comfy_nodes", "metadata_cached", "metadata_pending")
                assert {k: v for k, v in entry.items() if k not in local} == {
                    k: v for k, v in served.items() if k != "downloadUrl"
                }
                assert served["downloadUrl"] == (entry["download_url"] or "")
                path = ("nodes", node["id"], "versions", entry["version"], "comfy-nodes")
                body = get(emu.url, *path, limit=500)[2]
                if entry["metadata_cached"]:
                    assert body["comfy_nodes"] == entry["comfy_nodes"]
                else:
                    assert body == {"comfy_nodes": None, "totalNumberOfPages": 0}
                    if "metadata_pending" in entry:
                        assert served["comfy_node_extract_status"] == entry["metadata_pending"]
