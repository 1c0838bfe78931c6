"""The stand-in registry's clock: `Emulator.advance(Churn)` and `POST /_emulator/advance`
finish extractions, deprecate and ban old versions without a release, publish new versions,
delete packages, and say exactly what they changed."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from _registry_http import get, node_entry, post, small_registry, version_entry

from registry_tools import clock
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry.behaviour import Behaviour, Changes, Churn
from registry_tools.registry.emulator import Emulator, running_emulator


@pytest.fixture(scope="module")
def registry() -> dict[str, Any]:
    return small_registry(40, versions=5)


def _versions(base: str, node_id: str) -> dict[str, dict[str, Any]]:
    return {v["version"]: v for v in get(base, "nodes", node_id, "versions")[2]}


def test_finishing_pending_extractions_shows_the_kept_metadata(registry) -> None:
    behaviour = Behaviour(pending_share=0.4, seed=2)
    with running_emulator(registry, behaviour=behaviour) as emu:
        pending = [
            (node["id"], version)
            for node in registry["nodes"]
            for version, v in _versions(emu.url, node["id"]).items()
            if v["comfy_node_extract_status"] == "pending"
        ]
        assert 50 <= len(pending) <= 110
        half = emu.advance(Churn(finish_pending=0.5, seed=1))
        assert len(half.finished) == round(0.5 * len(pending))
        assert set(half.finished) < set(pending) and half.finished == sorted(half.finished)
        rest = emu.advance()  # the default Churn finishes every pending extraction
        assert sorted(half.finished + rest.finished) == sorted(pending)
        for node_id, version in pending[:10]:
            body = get(emu.url, "nodes", node_id, "versions", version, "comfy-nodes")[2]
            cached = next(
                v
                for n in registry["nodes"]
                if n["id"] == node_id
                for v in n["versions_list"]
                if v["version"] == version
            )
            assert body == {"comfy_nodes": cached["comfy_nodes"], "totalNumberOfPages": 1}
            single = get(emu.url, "nodes", node_id, "versions", version)[2]
            assert single["comfy_node_extract_status"] == "success"
        assert emu.advance().finished == []


def test_a_fetched_caches_pending_version_finishes_with_its_predecessors_nodes() -> None:
    newest = version_entry("1.1.0", metadata_cached=False, metadata_pending="pending")
    del newest["comfy_nodes"]
    cache = cache_file.build_cache([node_entry("pack", [newest, version_entry("1.0.0", 3)])])
    with running_emulator(cache) as emu:
        assert emu.advance().finished == [("pack", "1.1.0")]
        body = get(emu.url, "nodes", "pack", "versions", "1.1.0", "comfy-nodes")[2]
    assert [c["comfy_node_name"] for c in body["comfy_nodes"]] == ["N0", "N1", "N2"]


def test_deprecations_and_bans_without_a_release(registry) -> None:
    with running_emulator(registry) as emu:
        listing = get(emu.url, "nodes", limit=100)[2]
        changes = emu.advance(Churn(deprecate_share=0.1, ban_share=0.05, seed=3))
        # 40 packages of 5 versions; the latest of each cannot change: 160 candidates
        assert (len(changes.deprecated), len(changes.banned)) == (16, 8)
        assert not set(changes.deprecated) & set(changes.banned)
        for node_id, version in changes.deprecated:
            assert _versions(emu.url, node_id)[version]["deprecated"] is True
        for node_id, version in changes.banned:
            entry = _versions(emu.url, node_id)[version]
            assert entry["status"] == "NodeVersionStatusBanned" and entry["status_reason"]
        changed = {node_id for node_id, _ in changes.deprecated + changes.banned}
        assert all(version != "1.4.0" for _, version in changes.deprecated + changes.banned)
        after = get(emu.url, "nodes", limit=100)[2]
        latest = [n["latest_version"]["version"] for n in after["nodes"]]
        assert latest == [n["latest_version"]["version"] for n in listing["nodes"]]
        assert set(latest) == {"1.4.0"}  # no release, so latest_version did not move
        touched = get(emu.url, "nodes", limit=100, timestamp=_before(changes.now))[2]
        assert {n["id"] for n in touched["nodes"]} == changed
        again = emu.advance(Churn(deprecate_share=0.1, seed=3))
        assert not set(again.deprecated) & set(changes.deprecated)  # a new draw


def _before(iso: str) -> str:
    """An ISO time one second before `iso` (whole seconds, `Z`)."""
    return (clock.parse_time(iso) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_new_versions_are_published_as_the_latest(registry) -> None:
    with running_emulator(registry, behaviour=Behaviour(pending_share=0.5, seed=4)) as emu:
        changes = emu.advance(Churn(new_version_share=0.05, hours=48, seed=5))
        assert len(changes.published) == 10  # 5 % of 200 versions, each in its own package
        assert len({node_id for node_id, _ in changes.published}) == 10
        moved = clock.parse_time(changes.now) - clock.parse_time(registry["cached_at"])
        assert moved == timedelta(hours=48)
        for node_id, version in changes.published:
            assert version == "1.4.1"  # a patch after the newest release, 1.4.0
            listed = get(emu.url, "nodes", node_id, "versions")[2]
            assert listed[0]["version"] == "1.4.1"
            assert listed[0]["status"] == "NodeVersionStatusActive"
            assert listed[0]["createdAt"].startswith(changes.now[:19])
            assert listed[0]["comfy_node_extract_status"] in ("pending", "success")
            node = get(emu.url, "nodes", node_id)[2]
            assert node["latest_version"]["version"] == "1.4.1"
            assert node["latest_version"]["downloadUrl"] == ""
            single = get(emu.url, "nodes", node_id, "versions", "1.4.1")[2]
            assert single["downloadUrl"] == "https://cdn.example/1.4.1.zip"
        states = [
            _versions(emu.url, n)[v]["comfy_node_extract_status"] for n, v in changes.published
        ]
        assert "pending" in states  # a new upload waits for its extraction too
        emu.advance()
        node_id, version = changes.published[0]
        body = get(emu.url, "nodes", node_id, "versions", version, "comfy-nodes")[2]
        assert [c["comfy_node_name"] for c in body["comfy_nodes"]] == ["N0", "N1"]


def test_deleted_packages_leave_the_listing(registry) -> None:
    behaviour = Behaviour(enforce_statuses=True)
    with running_emulator(registry, behaviour=behaviour) as emu:
        changes = emu.advance(Churn(delete_packages=3, seed=6))
        assert len(changes.deleted) == 3 and changes.deleted == sorted(changes.deleted)
        listing = get(emu.url, "nodes", limit=100)[2]
        assert listing["total"] == 37
        assert not set(changes.deleted) & {n["id"] for n in listing["nodes"]}
        assert get(emu.url, "nodes", changes.deleted[0])[0] == 404
    with running_emulator(registry) as emu:  # statuses not enforced: the status says it
        deleted = emu.advance(Churn(delete_packages=3, seed=6)).deleted
        assert deleted == changes.deleted
        assert get(emu.url, "nodes", deleted[0])[2]["status"] == "NodeStatusDeleted"


def test_the_same_churn_changes_the_same_things_and_the_cache_is_left_alone(registry) -> None:
    before = copy.deepcopy(registry)
    churn = Churn(deprecate_share=0.1, ban_share=0.1, new_version_share=0.05, delete_packages=2)
    behaviour = Behaviour(pending_share=0.2)
    first = Emulator(registry, behaviour=behaviour).advance(churn)
    second = Emulator(registry, behaviour=behaviour).advance(churn)
    assert first.as_dict() == second.as_dict() and len(first) > 0
    assert Emulator(registry, behaviour=behaviour).advance(Churn(seed=9)).as_dict() != (
        first.as_dict()
    )
    assert registry == before


def test_changes_as_json_and_the_day_preset() -> None:
    changes = Changes(finished=[("a", "1.0.0")], deleted=["b"], now="2026-01-02T00:00:00Z")
    assert changes.as_dict() == {
        "finished": [["a", "1.0.0"]],
        "deprecated": [],
        "banned": [],
        "published": [],
        "deleted": ["b"],
        "now": "2026-01-02T00:00:00Z",
    }
    assert len(changes) == 2
    day = Churn.day()
    assert (day.finish_pending, day.deprecate_share + day.ban_share, day.new_version_share) == (
        1.0,
        0.01,
        0.01,
    )


def test_advance_over_http(registry) -> None:
    with running_emulator(registry, behaviour=Behaviour(pending_share=0.3)) as emu:
        status, _, body = post(
            emu.url, "_emulator", "advance", body={"deprecate_share": 0.1, "seed": 1}
        )
        assert status == 200 and len(body["deprecated"]) == 16 and body["finished"]
        assert set(body) == {"finished", "deprecated", "banned", "published", "deleted", "now"}
        assert post(emu.url, "_emulator", "advance")[2]["finished"] == []  # {} by default
        for bad, message in [
            ({"shares": 1}, "unknown Churn field(s): shares"),
            ({"ban_share": 2}, "ban_share must be between 0 and 1"),
            ([1], "JSON object"),
            (b"{", "not valid JSON"),
        ]:
            status, _, error = post(emu.url, "_emulator", "advance", body=bad)
            assert status == 400 and message in error["message"], error
        assert get(emu.url, "_emulator", "advance")[0] == 404
        assert emu.counters.requests == 0  # control requests are not counted


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"finish_pending": 1.5}, "finish_pending"),
        ({"deprecate_share": 0.7, "ban_share": 0.7}, "at most 1"),
        ({"delete_packages": -1}, "delete_packages"),
        ({"hours": -2}, "hours"),
    ],
)
def test_churn_checks_its_fields(fields, message) -> None:
    with pytest.raises(UserError, match=message):
        Churn(**fields)
    with pytest.raises(UserError, match="takes a Churn"):
        Emulator(small_registry(1)).advance({"finish_pending": 1})  # type: ignore[arg-type]
