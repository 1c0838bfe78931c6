"""The cache builder against the stand-in registry behaving like the real one (issue 10): a
rate limit with bare 429s or Retry-After, listing drift and page caches, pending extraction,
status changes without a release, packages deleted, and `/install` never called.

Small registries and a fast clock: the emulator's clock runs `SPEED` times faster than the
wall clock, so its 12 requests/s limit admits about 12 x SPEED real requests a second and a
test takes seconds, while the client sees the same sequence of answers as at the real rate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _fetch_fixtures import fast_clock, pinned_clock, synthetic  # noqa: F401 - a fixture

from registry_tools import files
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry.behaviour import Behaviour, Churn
from registry_tools.registry.emulator import running_emulator

SPEED = 8.0
REALISTIC = Behaviour.realistic(seed=1)


pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture(scope="module")
def registry() -> dict:
    return synthetic(60, 8)


@pytest.fixture(scope="module")
def larger() -> dict:
    """Enough requests (about 600) that finding the rate limit is a small part of the run."""
    return synthetic(150, 8)


def fetch(url: str, output: Path, **options):
    options.setdefault("progress", False)
    summary = run_cache(CacheOptions(output=output, base_url=url, **options))
    return summary


def versions(path: Path) -> dict[tuple[str, str], dict]:
    cache = cache_file.load_cache(path)
    return {(n["id"], v["version"]): v for n in cache["nodes"] for v in n.get("versions_list", [])}


# ---- pacing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [REALISTIC, Behaviour(rate_limit=12.0, rate_burst=3.0, rate_retry_after=0.1, seed=1)],
    ids=["bare-429s", "retry-after"],
)
def test_a_rate_limited_registry_is_mirrored_without_failures(larger, tmp_path, behaviour):
    with running_emulator(larger, behaviour=behaviour, clock=fast_clock(SPEED)) as emu:
        summary = fetch(emu.url, tmp_path / "c.json")
        stats = emu.counters.as_dict()
    assert summary.ok, summary.failures[:3]
    assert stats["rate_limited"] == summary.rate_limited > 0, "the limit was met"
    # finding the limit costs a few dozen 429s once; pacing keeps the rest rare (5-10 % of
    # this small run alone; a loaded machine's event-loop jitter adds a few; the old client
    # had about 75 %)
    assert summary.rate_limited <= 0.15 * summary.requests, summary.text()
    assert summary.requests == stats["requests"], "requests counted as the server saw them"
    assert stats["installs"] == 0


# ---- the listing -------------------------------------------------------------------------------


def test_drift_and_page_caches_still_give_a_complete_listing(registry, tmp_path):
    behaviour = Behaviour(drift_rows=3, page_cache_seconds=60, seed=4)
    with running_emulator(registry, behaviour=behaviour) as emu:
        summary = fetch(emu.url, tmp_path / "c.json", nodes_per_page=7)
    listed = {n["id"] for n in cache_file.load_cache(tmp_path / "c.json")["nodes"]}
    assert summary.ok, summary.failures
    assert summary.listing == {"complete": True, "listed": 60, "total": 60}
    assert listed == {n["id"] for n in registry["nodes"]}
    assert summary.phase_stats["phase1-nodes"]["rounds"] >= 2, "one pass was not enough"


def test_an_incomplete_listing_is_a_failure_and_deletes_nothing(registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry) as emu:
        assert fetch(emu.url, out).ok
    known = {n["id"] for n in cache_file.load_cache(out)["nodes"]}
    with running_emulator(registry) as emu:
        real = emu.emulator.reads.answer

        def lying(kind, params, query, body):  # counts nodes it never lists
            answer = real(kind, params, query, body)
            if kind == "nodes":
                answer = {**answer, "total": answer["total"] + 5}
                answer["nodes"] = [n for n in answer["nodes"] if n["id"] != sorted(known)[0]]
            return answer

        emu.emulator.reads.answer = lying
        summary = fetch(emu.url, out, input=out)
    assert not summary.ok
    assert any("listing incomplete: 59 of the 65 nodes" in f for f in summary.failures)
    assert summary.listing["complete"] is False
    assert {n["id"] for n in cache_file.load_cache(out)["nodes"]} == known, "nothing deleted"


# ---- pending extraction and changes without a release -----------------------------------------


def test_pending_extraction_is_recorded_then_fetched_once_it_finishes(registry, tmp_path):
    out = tmp_path / "c.json"
    behaviour = Behaviour(pending_share=0.2, failed_share=0.05, seed=3)
    with running_emulator(registry, behaviour=behaviour) as emu:
        first = fetch(emu.url, out)
        before = versions(out)
        pending = {k for k, v in before.items() if v.get("metadata_pending")}
        assert first.ok and first.pending == len(pending) > 5
        for key in pending:
            assert not before[key]["metadata_cached"] and "comfy_nodes" not in before[key]
        assert {before[k]["metadata_pending"] for k in pending} == {"pending", "failed"}
        assert f"{first.pending} versions pending extraction" in first.text()
        changes = emu.advance(Churn(finish_pending=1.0, seed=1))
        emu.reset_counters()
        second = fetch(emu.url, out, input=out)
        fetched = emu.counters.by_kind.get("comfy_nodes", 0)
    after = versions(out)
    finished = {tuple(pair) for pair in changes.finished} & pending
    assert finished and second.ok
    for key in finished:  # pending ones are all in the metadata window: now fetched
        assert after[key]["metadata_cached"] is True and "metadata_pending" not in after[key]
    assert fetched == len(finished), "exactly the finished ones were fetched again"
    assert {k for k, v in after.items() if v.get("metadata_pending")} == pending - finished


def test_status_changes_without_a_release_new_versions_and_deletions_are_seen(registry, tmp_path):
    out = tmp_path / "c.json"
    with running_emulator(registry, behaviour=Behaviour(enforce_statuses=True, seed=2)) as emu:
        assert fetch(emu.url, out).ok
        churn = Churn(deprecate_share=0.08, ban_share=0.04, new_version_share=0.03,
                      delete_packages=2, seed=5)  # fmt: skip
        changes = emu.advance(churn)
        emu.reset_counters()
        summary = fetch(emu.url, out, input=out)
        installs = emu.counters.installs
    assert summary.ok, summary.failures
    assert changes.deprecated and changes.banned and changes.published and changes.deleted
    after = versions(out)
    gone = set(changes.deleted)
    for key in (tuple(pair) for pair in changes.deprecated if pair[0] not in gone):
        assert after[key]["deprecated"] is True and not after[key]["metadata_cached"]
    for key in (tuple(pair) for pair in changes.banned if pair[0] not in gone):
        assert after[key]["status"] == "NodeVersionStatusBanned"
        assert not after[key]["metadata_cached"]
    for key in (tuple(pair) for pair in changes.published if pair[0] not in gone):
        assert after[key]["metadata_cached"] or after[key].get("metadata_pending")
    listed = {n["id"] for n in cache_file.load_cache(out)["nodes"]}
    assert not listed & set(changes.deleted)
    assert installs == 0


def test_a_refresh_equals_a_fresh_mirror_of_the_same_registry(registry, tmp_path):
    behaviour = Behaviour(pending_share=0.1, enforce_statuses=True, seed=6)
    with running_emulator(registry, behaviour=behaviour) as emu:
        assert fetch(emu.url, tmp_path / "old.json").ok
        emu.advance(Churn(finish_pending=0.5, deprecate_share=0.05, ban_share=0.02,
                          new_version_share=0.05, delete_packages=1, seed=9))  # fmt: skip
        refreshed = fetch(emu.url, tmp_path / "new.json", input=tmp_path / "old.json")
        fresh = fetch(emu.url, tmp_path / "fresh.json")
    assert refreshed.ok and fresh.ok
    # The one allowed difference: the refresh may still know the download URL of a version
    # that can no longer be installed (a fresh run never asks for one).
    assert _without_unusable_urls(tmp_path / "new.json") == _without_unusable_urls(
        tmp_path / "fresh.json"
    )


def _without_unusable_urls(path: Path) -> bytes:
    cache = cache_file.load_cache(path)
    for node in cache["nodes"]:
        for version in node.get("versions_list", []):
            if not cache_file.is_usable(version):
                version["download_url"] = None
    return files.dumps(cache)


# ---- determinism -------------------------------------------------------------------------------


def test_concurrency_1_and_50_are_byte_identical_against_the_realistic_registry(registry, tmp_path):
    outputs = []
    for concurrency in (1, 50):
        with running_emulator(registry, behaviour=REALISTIC, clock=fast_clock(SPEED)) as emu:
            summary = fetch(emu.url, tmp_path / f"{concurrency}.json", concurrency=concurrency)
        assert summary.ok, summary.failures[:3]
        outputs.append((tmp_path / f"{concurrency}.json").read_bytes())
    assert outputs[0] == outputs[1]
    assert b'"metadata_pending": "pending"' in outputs[0]
