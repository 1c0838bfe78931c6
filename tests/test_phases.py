"""The cache builder against the in-process emulator: round trips, faults, incremental
refresh, progressive enhancement, determinism across concurrency, and failures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from registry_tools import clock, files
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry import synth
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


@pytest.fixture(autouse=True)
def pinned_clock():
    clock.pin("2026-01-02T03:04:05Z")
    yield
    clock.pin(None)


@pytest.fixture(scope="module")
def registry() -> dict:
    clock.pin("2026-01-02T03:04:05Z")
    try:
        return synth.generate(150, 3, ideal=True)
    finally:
        clock.pin(None)


def fetch(url: str, output: Path, **options) -> tuple[bytes, object]:
    options.setdefault("backoff", 0.001)
    summary = run_cache(CacheOptions(output=output, base_url=url, **options))
    return output.read_bytes(), summary


def test_fetching_from_an_emulator_reproduces_its_cache(registry, tmp_path):
    with running_emulator(registry) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json", nodes_per_page=40)
    assert summary.ok and summary.written
    assert data == files.dumps(registry)
    assert summary.phase_stats["phase1-nodes"]["pages"] == {1: 40, 2: 40, 3: 40, 4: 30}
    assert not list(tmp_path.glob("*.journal")), "journal removed after a clean run"


def test_faults_give_the_same_cache_as_a_clean_run(registry, tmp_path):
    with running_emulator(registry, FAULTY, missing_download_rate=0.3) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json", nodes_per_page=25, concurrency=16)
        faults = sum(emu.counters.faults.values())
    assert summary.ok, summary.failures
    assert faults > 0.15 * summary.requests
    assert summary.retries >= faults * 0.8  # drops can be retried inside aiohttp itself
    assert data == files.dumps(registry)


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


def test_max_versions_fetches_metadata_for_the_semver_newest_only(registry, tmp_path):
    with running_emulator(registry) as emu:
        fetch(emu.url, tmp_path / "c.json", max_versions=2)
    for node in cache_file.load_cache(tmp_path / "c.json")["nodes"]:
        flags = [v["metadata_cached"] for v in node.get("versions_list", [])]
        assert flags == [True] * min(2, len(flags)) + [False] * max(0, len(flags) - 2)


def test_rerun_on_unchanged_registry_makes_no_per_node_requests(registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry) as emu:
        first, _ = fetch(emu.url, out)
        emu.reset_counters()
        again, summary = fetch(emu.url, out, input=out)
        kinds = dict(emu.counters.by_kind)
    assert again == first
    assert kinds == {"nodes": 2}  # only the two listing pages (100 per page)
    assert summary.requests == 2


def test_incremental_refresh_revisits_only_changed_nodes(registry, tmp_path):
    out = tmp_path / "c.json"
    changed = copy.deepcopy(registry)
    node = next(n for n in changed["nodes"] if len(n.get("versions_list", [])) >= 2)
    new = copy.deepcopy(node["versions_list"][0])
    new["version"] = "99.0.0"
    new["deprecated"] = False
    node["versions_list"].insert(0, new)
    node["latest_version"] = {
        k: v for k, v in new.items() if k not in cache_file.VERSION_LOCAL_KEYS
    }
    node["versions_list"][1]["deprecated"] = True  # deprecation flags refresh on revisit
    node["versions_cached_for"] = "99.0.0"
    with running_emulator(registry) as emu:
        fetch(emu.url, out)
    with running_emulator(changed, missing_download_rate=0) as emu:
        data, _ = fetch(emu.url, out, input=out)
        kinds = dict(emu.counters.by_kind)
    assert kinds.get("versions") == 1
    assert kinds.get("comfy_nodes", 0) >= 1 and kinds.get("install", 0) == 0
    assert data == files.dumps(cache_file.build_cache(changed["nodes"]))


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
    with running_emulator(registry) as emu:
        data, summary = fetch(emu.url, out, input=out, nodes=False)
    assert summary.ok and data == files.dumps(registry)


def test_partial_failure_keeps_what_succeeded_and_marks_the_rest(registry, tmp_path):
    out = tmp_path / "c.json"
    flaky = Faults(rate_500=0.5, max_consecutive_faults=1000, seed=5)
    with running_emulator(registry, flaky) as emu:
        _, summary = fetch(emu.url, out, max_attempts=1, nodes_per_page=150)
    assert not summary.ok and summary.written
    cache = cache_file.load_cache(out)
    failed_nodes = {f.split(": ")[1] for f in summary.failures if f.startswith("phase2")}
    for node in cache["nodes"]:
        assert node["fully_cached"] is (node["id"] not in failed_nodes)
        if node["id"] in failed_nodes:
            assert "versions_list" not in node
    with running_emulator(registry) as emu:
        data, summary = fetch(emu.url, out, input=out)
    assert summary.ok and data == files.dumps(registry)


ODD_IDS = ["a/b", "..", "nœud-ü", "with space", "%2F"]


def test_odd_node_ids_are_url_quoted(tmp_path):
    clock.pin("2026-01-02T03:04:05Z")
    cache = synth.generate(len(ODD_IDS), 9, ideal=True)
    for node, odd in zip(cache["nodes"], ODD_IDS, strict=True):
        node["id"] = odd
        for version in node.get("versions_list", []):
            version["node_id"] = odd
    cache = cache_file.build_cache(cache["nodes"])
    with running_emulator(cache) as emu:
        data, summary = fetch(emu.url, tmp_path / "c.json")
    assert summary.ok and data == files.dumps(cache)
