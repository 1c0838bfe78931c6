"""Answers of the wrong shape are failures, never empty results (issue 10 items 2 and 9), and
server-announced page counts are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
from _fetch_fixtures import pinned_clock, synthetic  # noqa: F401 - a fixture

from registry_tools.fetch import cache_file
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache
from registry_tools.registry.emulator import running_emulator

pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture(scope="module")
def registry() -> dict:
    return synthetic(40, 12)


def run_against(registry: dict, tmp_path: Path, override, **options):
    """A run against the emulator whose answers of one kind `override(kind, answer)` rewrites
    (return the answer unchanged for the others); the summary and the emulator's counters."""
    with running_emulator(registry, missing_download_rate=0) as emu:
        real = emu.emulator.reads.answer

        def answer(kind, params, query, body):
            return override(kind, real(kind, params, query, body))

        emu.emulator.reads.answer = answer
        settings = {"output": tmp_path / "c.json", "base_url": emu.url, "progress": False}
        summary = run_cache(CacheOptions(**{**settings, "max_attempts": 2, **options}))
        return summary, dict(emu.counters.by_kind)


def _on(kind: str, replacement):
    return lambda k, answer: replacement(answer) if k == kind else answer


@pytest.mark.parametrize(
    ("replacement", "problem"),
    [
        (lambda a: {}, "no 'nodes' list"),
        (lambda a: [], "a JSON list, expected an object"),
        (lambda a: {"nodes": a["nodes"]}, "no integer 'total'"),
        (lambda a: {**a, "total": "40"}, "no integer 'total'"),
        (lambda a: {**a, "nodes": [{"name": "no id"}]}, "an item without an id"),
    ],
    ids=["empty-object", "list", "no-total", "string-total", "node-without-id"],
)
def test_a_listing_page_of_the_wrong_shape_is_a_failure_never_zero_nodes(
    registry, tmp_path, replacement, problem
):
    out = tmp_path / "c.json"
    summary, _ = run_against(registry, tmp_path, _on("nodes", replacement))
    assert not summary.ok and not summary.written and not out.exists()
    assert any(f"not a nodes page ({problem}" in f for f in summary.failures), summary.failures
    assert summary.listing["complete"] is False


def test_a_broken_listing_deletes_nothing_from_an_input_cache(registry, tmp_path):
    out = tmp_path / "c.json"
    summary, _ = run_against(registry, tmp_path, lambda k, a: a)
    assert summary.ok
    before = {n["id"] for n in cache_file.load_cache(out)["nodes"]}
    summary, _ = run_against(registry, tmp_path, _on("nodes", lambda a: {}), input=out)
    assert not summary.ok
    assert {n["id"] for n in cache_file.load_cache(out)["nodes"]} == before


def test_announced_page_counts_are_bounded_by_the_total(registry, tmp_path):
    summary, kinds = run_against(
        registry, tmp_path, _on("nodes", lambda a: {**a, "totalPages": 10**6}), nodes_per_page=20
    )
    assert summary.ok, summary.failures
    assert kinds["nodes"] <= 2 + 2  # 40 nodes / 20 a page, plus the margin


def test_an_absurd_total_is_capped(registry, tmp_path):
    summary, kinds = run_against(
        registry,
        tmp_path,
        _on("nodes", lambda a: {**a, "total": 10**9, "totalPages": 10**9}),
        nodes_per_page=10_000,
        max_attempts=1,
    )
    assert not summary.ok and summary.listing["complete"] is False
    assert kinds["nodes"] <= 5 * 22, "the hard cap on believed totals bounds every round"


@pytest.mark.parametrize(
    ("replacement", "problem"),
    [
        (lambda a: {}, "not a comfy-nodes page (keys [])"),
        (lambda a: {"message": "internal"}, "not a comfy-nodes page (message 'internal')"),
        (lambda a: {"comfy_nodes": 5}, "'comfy_nodes' is not a list of objects"),
        (lambda a: {"comfy_nodes": [1, 2]}, "'comfy_nodes' is not a list of objects"),
        (lambda a: [a], "not a comfy-nodes page (a JSON list)"),
    ],
    ids=["empty-object", "message", "number", "list-of-numbers", "list"],
)
def test_comfy_nodes_of_the_wrong_shape_are_failures_never_no_nodes(
    registry, tmp_path, replacement, problem
):
    summary, _ = run_against(registry, tmp_path, _on("comfy_nodes", replacement))
    assert not summary.ok and summary.written
    assert all(f.startswith("phase3-metadata: ") for f in summary.failures)
    assert problem in summary.failures[0]
    cache = cache_file.load_cache(tmp_path / "c.json")
    versions = [v for n in cache["nodes"] for v in n.get("versions_list", [])]
    assert not any(v.get("metadata_cached") for v in versions), "nothing recorded as empty"
    assert not any("comfy_nodes" in v for v in versions)


@pytest.mark.parametrize(
    ("kind", "replacement", "problem"),
    [
        ("bulk", lambda a: [a], "not a bulk versions answer (no 'node_versions' list)"),
        ("bulk", lambda a: {"node_versions": [5]}, "an entry without identifier"),
    ],
    ids=["bulk-list", "bulk-entry"],
)
def test_bulk_reads_of_the_wrong_shape_are_failures(registry, tmp_path, kind, replacement, problem):
    out = tmp_path / "c.json"
    summary, _ = run_against(registry, tmp_path, lambda k, a: a)
    assert summary.ok
    # a refresh: the known versions are re-read in bulk
    summary, _ = run_against(registry, tmp_path, _on(kind, replacement), input=out)
    assert not summary.ok
    assert any(problem in f for f in summary.failures), summary.failures


def test_a_node_listing_of_the_wrong_shape_is_a_failure(registry, tmp_path):
    # a few nodes (one page of 10) are listed one by one, no bulk scan
    summary, _ = run_against(
        registry, tmp_path, _on("versions", lambda a: {"versions": a}), nodes_per_page=10, pages=1
    )
    assert not summary.ok
    assert len(summary.failures) == 10
    assert all("not a list of versions" in f for f in summary.failures)
    cache = cache_file.load_cache(tmp_path / "c.json")
    assert not any(n["fully_cached"] or "versions_list" in n for n in cache["nodes"])


def test_a_version_answering_a_non_object_is_a_failure(registry, tmp_path):
    """Without the bulk endpoint, each version is read alone; a list there is a failure."""
    from registry_tools.registry.answers import Answer

    def no_bulk(kind, answer):
        if kind == "bulk":
            raise Answer(404, "no bulk endpoint here")
        return [answer] if kind == "version" else answer

    out = tmp_path / "c.json"
    assert run_against(registry, tmp_path, lambda k, a: a)[0].ok
    summary, kinds = run_against(registry, tmp_path, no_bulk, input=out)
    assert kinds.get("version", 0) > 0 and kinds.get("install", 0) == 0
    assert any("not a version (expected a JSON object)" in f for f in summary.failures)
