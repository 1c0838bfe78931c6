"""The cache builder against the in-process emulator (ideal behaviours): round trips, faults,
incremental refresh, progressive enhancement, determinism across concurrency, and failures.
The realistic behaviours (rate limit, drift, pending, churn) are in test_realistic.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from _cache_oracle import expected
from _fetch_fixtures import pinned_clock, synthetic  # noqa: F401 - a fixture

from registry_tools.fetch import cache_file
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry.emulator import Faults, running_emulator

FAULTY = Faults(
    rate_429=0.05,
    rate_429_bare=0.04,
    rate_500=0.05,
    rate_drop=0.03,
    rate_truncate=0.03,
    retry_after=0,
    seed=11,
)
EXACT = {"missing_download_rate": 0}  # every listing carries its download URLs


pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture(scope="module")
def registry() -> dict:
    return synthetic(150, 3)


def fetch(url: str, output: Path, **options) -> tuple[bytes, object]:
    options.setdefault("backoff", 0.001)
    options.setdefault("progress", False)
    summary = run_cache(CacheOptions(output=output, base_url=url, **options))
    return output.read_bytes(), summary


def test_fetching_from_an_emulator_gives_its_cache_with_usable_metadata(registry, tmp_path):
    with running_emulator(registry, **EXACT) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json", nodes_per_page=40)
        kinds = dict(emu.counters.by_kind)
    assert summary.ok and summary.written
    assert data == expected(registry)
    assert summary.phase_stats["phase1-nodes"]["pages"] == {1: 40, 2: 40, 3: 40, 4: 30}
    assert summary.listing == {"complete": True, "listed": 150, "total": 150}
    assert not list(tmp_path.glob("*.journal")), "journal removed after a clean run"
    assert "install" not in kinds


def test_faults_give_the_same_cache_as_a_clean_run(registry, tmp_path):
    with running_emulator(registry, FAULTY, **EXACT) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json", nodes_per_page=25, concurrency=16)
        faults = sum(emu.counters.faults.values())
    assert summary.ok, summary.failures
    assert faults > 0.15 * summary.requests
    assert summary.retries >= faults * 0.8  # drops can be retried inside aiohttp itself
    assert data == expected(registry)


def test_versions_listed_without_a_url_get_it_from_the_bulk_read_never_from_install(
    registry, tmp_path
):
    with running_emulator(registry, missing_download_rate=0.3) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json")
        kinds = dict(emu.counters.by_kind)
        omitted = emu.emulator.omits_download
    assert summary.ok
    assert kinds.get("install", 0) == 0 and kinds.get("bulk", 0) >= 1
    served = {
        n["id"]: {v["version"]: v for v in n.get("versions_list", [])} for n in registry["nodes"]
    }
    cache = cache_file.load_cache(tmp_path / "c.json")
    checked = 0
    for node in cache["nodes"]:
        for version in node.get("versions_list", []):
            truth = served[node["id"]][version["version"]].get("download_url") or ""
            if cache_file.is_usable(version):
                assert version["download_url"] == truth
                checked += omitted(node["id"], version["version"])
            elif omitted(node["id"], version["version"]):
                assert version["download_url"] is None, "nothing fetched that cannot be used"
    assert checked > 20


def test_concurrency_1_and_50_are_byte_identical(registry, tmp_path):
    with running_emulator(registry, FAULTY) as emu:
        one, _ = fetch(emu.url, tmp_path / "1.json", concurrency=1, max_versions=3)
        fifty, _ = fetch(emu.url, tmp_path / "50.json", concurrency=50, max_versions=3)
    assert one == fifty


def test_progressive_enhancement_equals_one_full_run(registry, tmp_path):
    out = tmp_path / "cache.json"
    with running_emulator(registry) as emu:
        full, _ = fetch(emu.url, tmp_path / "full.json", max_versions=10)
        fetch(emu.url, out, versions=False, metadata=False)
        staged = cache_file.load_cache(out)
        assert all(not n["fully_cached"] and "versions_list" not in n for n in staged["nodes"])
        fetch(emu.url, out, input=out, nodes=False, metadata=False)
        staged = cache_file.load_cache(out)
        assert all(n["fully_cached"] for n in staged["nodes"])
        assert not any(v["metadata_cached"] for n in staged["nodes"] for v in n["versions_list"])
        data, _ = fetch(emu.url, out, input=out, nodes=False, versions=False, max_versions=10)
    assert data == full


def test_max_versions_counts_installable_versions_only(registry, tmp_path):
    with running_emulator(registry, **EXACT) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json", max_versions=2)
    assert data == expected(registry, 2)
    skipped = 0
    for node in cache_file.load_cache(tmp_path / "c.json")["nodes"]:
        versions = node.get("versions_list", [])
        usable = [v for v in versions if cache_file.is_installable(v)]
        assert [v["metadata_cached"] for v in usable] == [True] * min(2, len(usable)) + [
            False
        ] * max(0, len(usable) - 2)
        newest_two = {v["version"] for v in versions[:2]}
        skipped += any(not cache_file.is_installable(v) for v in versions[:2]) and len(usable) >= 2
        assert not any(v["metadata_cached"] for v in versions if not cache_file.is_installable(v))
        del newest_two
    assert skipped > 0, "some node has a deprecated or banned version among its newest two"


def test_rerun_on_unchanged_registry_is_a_handful_of_requests(registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry, **EXACT) as emu:
        first, _ = fetch(emu.url, out)
        emu.reset_counters()
        again, summary = fetch(emu.url, out, input=out)
        kinds = dict(emu.counters.by_kind)
    assert again == first
    # the listing (one page of 500); the bulk re-read of the 888 known versions (500 in the
    # first request, the rest in the second); banned nodes' own listings; no metadata
    assert kinds.get("nodes") == 1 and kinds.get("bulk") == 2
    assert set(kinds) <= {"nodes", "bulk", "versions"} and kinds.get("versions", 0) <= 3
    assert summary.requests == sum(kinds.values())


def _live_node(changed: dict, but: str = "") -> dict:
    """A listed, active node with at least two versions (other than `but`)."""
    return next(
        n
        for n in changed["nodes"]
        if n["id"] != but
        and len(n.get("versions_list", [])) >= 2
        and n.get("status") == "NodeStatusActive"
    )


def _new_release(changed: dict) -> tuple[str, dict]:
    node = _live_node(changed)
    new = copy.deepcopy(node["versions_list"][0])
    new.update(
        version="99.0.0", deprecated=False, id="new-release-id", createdAt="2030-01-01T00:00:00Z"
    )
    node["versions_list"].insert(0, new)
    node["latest_version"] = {
        k: v for k, v in new.items() if k not in cache_file.VERSION_LOCAL_KEYS
    }
    node["versions_cached_for"] = "99.0.0"
    return node["id"], node


def test_incremental_refresh_sees_new_releases_and_status_changes(registry, tmp_path):
    out = tmp_path / "c.json"
    changed = copy.deepcopy(registry)
    released, node = _new_release(changed)
    node["versions_list"][1]["deprecated"] = True  # deprecated, no release needed to see it
    other = _live_node(changed, but=released)
    other["versions_list"][-1]["status"] = "NodeVersionStatusBanned"  # without a release
    with running_emulator(registry, **EXACT) as emu:
        fetch(emu.url, out)
    with running_emulator(changed, **EXACT) as emu:
        data, _ = fetch(emu.url, out, input=out)
        kinds = dict(emu.counters.by_kind)
    assert kinds.get("install", 0) == 0
    assert kinds.get("comfy_nodes", 0) == 1, "only the new release's metadata"
    assert data == expected(changed)


def test_permanent_failures_are_reported_and_never_cached(registry, tmp_path):
    out = tmp_path / "c.json"
    broken = Faults(rate_500=1.0, max_consecutive_faults=1000, seed=1)
    with running_emulator(registry) as emu:
        fetch(emu.url, out, versions=False, metadata=False)
    listing = out.read_bytes()
    with running_emulator(registry, broken) as emu:
        _, summary = fetch(emu.url, out, input=out, nodes=False, max_attempts=2)
    assert not summary.ok and not summary.written
    assert len(summary.failures) == 150
    assert summary.failures[0].startswith("phase2-versions: ")
    assert "HTTP 500 (after 2 attempts)" in summary.failures[0]
    assert out.read_bytes() == listing, "a run that learned nothing leaves the output alone"
    with running_emulator(registry, **EXACT) as emu:
        data, summary = fetch(emu.url, out, input=out, nodes=False)
    assert summary.ok and data == expected(registry)


def test_partial_failure_keeps_what_succeeded_and_marks_the_rest(registry, tmp_path):
    out = tmp_path / "c.json"
    flaky = Faults(rate_500=0.5, max_consecutive_faults=1000, seed=5)
    with running_emulator(registry, flaky, **EXACT) as emu:
        _, summary = fetch(emu.url, out, max_attempts=1, nodes_per_page=150)
    assert not summary.ok and summary.written
    cache = cache_file.load_cache(out)
    failed_nodes = {f.split(": ")[1] for f in summary.failures if f.startswith("phase2")}
    for node in cache["nodes"]:
        if node["id"] in failed_nodes:
            assert not node["fully_cached"] and "versions_list" not in node
    with running_emulator(registry, **EXACT) as emu:
        data, summary = fetch(emu.url, out, input=out)
    assert summary.ok, summary.failures
    assert data == expected(registry)


ODD_IDS = ["a/b", "..", "nœud-ü", "with space", "%2F"]


def test_odd_node_ids_are_url_quoted(tmp_path):
    cache = synthetic(len(ODD_IDS), 9)
    for node, odd in zip(cache["nodes"], ODD_IDS, strict=True):
        node["id"] = odd
        node["status"] = "NodeStatusActive"
        node.pop("versions_unavailable", None)
        for version in node.get("versions_list", []):
            version["node_id"] = odd
    cache = cache_file.build_cache(cache["nodes"])
    with running_emulator(cache, **EXACT) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json")
    assert summary.ok and data == expected(cache)
