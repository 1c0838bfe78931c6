"""`registry-tools mappings`: format, ranking, exclusions, incremental runs, crashes, bad input."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    IMAGE,
    PINNED,
    comfy,
    node,
    pinned_clock,  # noqa: F401  (autouse)
    sample_nodes,
    version,
    write_cache,
)

from registry_tools import clock, files
from registry_tools.cli import main
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.mappings import document
from registry_tools.mappings.build import (
    MappingsOptions,
    MappingsReport,
    build_mappings,
    index_path,
    journal_path,
)
from registry_tools.mappings.cache_stream import LazyJSON, checksum, comfy_nodes, iter_nodes, scan
from registry_tools.mappings.document import normalize_repository
from registry_tools.mappings.ranking import package_score
from registry_tools.registry import synth


def build(cache: Path, output: Path, **options) -> dict:
    build_mappings(MappingsOptions(cache=cache, output=output, **options))
    return orjson.loads(output.read_bytes())


@pytest.fixture
def sample(tmp_path: Path) -> dict:
    return build(write_cache(tmp_path / "cache.json", sample_nodes()), tmp_path / "m.json")


def test_document_shape_and_vectors(sample: dict) -> None:
    assert sample["version"] == "2026.11.24"
    assert sample["generated_at"] == PINNED
    assert sample["mappings"]["MaskScale::1f54e5ac"] == [
        {"package_id": "alpha-pack", "rank": 1, "versions": ["1.10.0", "1.9.0"]},
        {"package_id": "gamma-odd", "rank": 2, "versions": ["0.0.1"]},
    ]
    assert sample["mappings"]["MaskScale::499010cc"][0]["package_id"] == "beta-pack"
    assert sample["mappings"]["Loader::3772f7f7"][0]["versions"] == ["1.10.0"]
    assert sample["mappings"]["Beta::499010cc"][0]["versions"] == ["2.0.0-rc.1"]
    stats = sample["stats"]
    assert (stats["packages"], stats["signatures"], stats["total_nodes"]) == (3, 11, 16)
    assert stats["by_source"] == {
        "manager": {"keys": 0, "packages": 0},
        "registry": {"keys": 11, "packages": 3},
    }
    assert (stats["manager_packages"], stats["nodes_from_manager"]) == (0, 0)
    assert stats["reference_date"] == PINNED  # the cache's cached_at
    assert sample["package_aliases"] == {}
    assert sample["packages"]["alpha-pack"]["source"] == "registry"
    alpha = sample["packages"]["alpha-pack"]
    assert alpha["display_name"] == "Alpha Pack"
    assert alpha["repository"] == "https://github.com/someone/alpha-pack"
    assert (alpha["downloads"], alpha["github_stars"]) == (5000, 100)
    assert alpha["versions"]["1.9.0"] == {
        "version": "1.9.0",
        "changelog": "",
        "release_date": "2026-03-01T00:00:00Z",
        "dependencies": ["numpy"],
        "deprecated": False,
        "download_url": "https://cdn.example/1.9.0.zip",
        "status": "NodeVersionStatusActive",
        "supported_accelerators": None,
        "supported_comfyui_version": None,
        "supported_os": None,
    }


def test_deprecated_versions_are_unavailable_and_feed_nothing(sample: dict) -> None:
    alpha = sample["packages"]["alpha-pack"]
    assert "0.1.0" not in alpha["versions"]  # a consumer installs any version listed there
    old = alpha["unavailable_versions"]["0.1.0"]
    assert (old["deprecated"], old["reasons"], old["status"]) == (
        True,
        ["deprecated"],
        "NodeVersionStatusActive",
    )
    assert old["download_url"] == "https://cdn.example/0.1.0.zip"
    assert "Old::499010cc" not in sample["mappings"]
    assert "Old::_" not in sample["mappings"]


def test_versions_without_metadata_are_listed_but_feed_nothing(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    report = build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json"))
    sample = orjson.loads((tmp_path / "m.json").read_bytes())
    assert "1.1.0" in sample["packages"]["beta-pack"]["versions"]
    assert all("1.1.0" not in e["versions"] for e in sample["mappings"]["MaskScale::499010cc"])
    assert dict(report.unfed) == {"not_fetched": 1}
    assert "1 installable versions feed nothing for lack of metadata" in report.summary()


def test_malformed_input_types_are_counted_and_mapped_to_name_only(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    report = build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json"))
    assert dict(report.problems) == {"not_json": 1, "bad_shape": 1, "not_object": 1}
    mappings = orjson.loads((tmp_path / "m.json").read_bytes())["mappings"]
    for name in ("BadJson", "BadShape", "NotObject", "NoInputs"):
        assert mappings[f"{name}::_"][0]["package_id"] == "gamma-odd"
    assert "3 malformed comfy nodes" in report.summary()
    assert report.problem_examples[0] == "gamma-odd@0.0.1 BadJson: not_json"


def test_banned_and_deleted_feed_nothing(tmp_path: Path) -> None:
    nodes = [
        node("banned-pack", [version("1.0.0", nodes=[comfy("A")])], status="NodeStatusBanned"),
        node(
            "ok-pack",
            [
                version("1.0.0", nodes=[comfy("B")], status="NodeVersionStatusDeleted"),
                version("0.9.0", nodes=[comfy("C")], status="NodeVersionStatusBanned"),
                version("0.8.0", nodes=[comfy("D")], status="NodeVersionStatusFlagged"),
            ],
        ),
    ]
    document = build(write_cache(tmp_path / "c.json", nodes), tmp_path / "m.json")
    assert document["mappings"] == {}  # flagged versions are not installable either
    assert set(document["packages"]) == {"banned-pack", "ok-pack"}
    ok = document["packages"]["ok-pack"]
    assert ok["versions"] == {}
    assert {v: r["reasons"] for v, r in ok["unavailable_versions"].items()} == {
        "1.0.0": ["deleted"],
        "0.9.0": ["banned"],
        "0.8.0": ["flagged"],
    }
    banned = document["packages"]["banned-pack"]["unavailable_versions"]
    assert banned["1.0.0"]["reasons"] == ["package_banned"]


def test_max_versions_keeps_the_newest_by_semver(tmp_path: Path) -> None:
    versions = [version(v, nodes=[comfy(f"N{v}")]) for v in ("1.9.0", "1.10.0", "1.2.0")]
    cache = write_cache(tmp_path / "c.json", [node("p", versions)])
    document = build(cache, tmp_path / "m.json", max_versions=2)
    assert set(document["mappings"]) == {"N1.10.0::_", "N1.9.0::_"}
    assert set(document["packages"]["p"]["versions"]) == {"1.9.0", "1.10.0", "1.2.0"}


# ---- ranking -------------------------------------------------------------------------------


def test_score_formula() -> None:
    package = {
        "downloads": 1000,
        "github_stars": 10,
        "versions": {"1": {"release_date": "2025-01-01T00:00:00Z"}},
    }
    reference = clock.parse_time("2026-01-01T00:00:00Z")
    assert package_score(package, reference) == pytest.approx(1200 / 2)
    assert package_score(package, None) == pytest.approx(1200 / 2)  # unknown age: one year
    assert package_score({**package, "downloads": -5, "github_stars": None}, reference) == 0


def ranking_nodes(a: dict, b: dict) -> list[dict]:
    return [
        node(pid, [version("1.0.0", created, [comfy("Shared", {"x": ["INT"]})])], **fields)
        for pid, (created, fields) in {"a-pack": a, "b-pack": b}.items()
    ]


def ranks(tmp_path: Path, nodes: list[dict]) -> list[str]:
    document = build(write_cache(tmp_path / "c.json", nodes), tmp_path / "m.json")
    return [e["package_id"] for e in next(iter(document["mappings"].values()))]


def test_popularity_ranks_first(tmp_path: Path) -> None:
    when = "2026-01-01T00:00:00Z"
    nodes = ranking_nodes(
        (when, {"downloads": 100, "github_stars": 0}), (when, {"downloads": 0, "github_stars": 6})
    )
    assert ranks(tmp_path, nodes) == ["b-pack", "a-pack"]  # 6 stars = 120 downloads


def test_old_packages_are_discounted(tmp_path: Path) -> None:
    nodes = ranking_nodes(  # ages from the cache's cached_at, 2026-11-24
        ("2024-11-24T00:00:00Z", {"downloads": 1000, "github_stars": 0}),  # 1000 / 3
        ("2026-11-24T00:00:00.1234567Z", {"downloads": 400, "github_stars": 0}),  # 400 / 1
    )
    assert ranks(tmp_path, nodes) == ["b-pack", "a-pack"]


def test_ties_break_on_package_id(tmp_path: Path) -> None:
    same = ("2026-01-01T00:00:00Z", {"downloads": 7, "github_stars": 1})
    assert ranks(tmp_path, ranking_nodes(same, same)) == ["a-pack", "b-pack"]
    nodes = [
        {**n, "id": {"a-pack": "z-pack", "b-pack": "m-pack"}[n["id"]]}
        for n in ranking_nodes(same, same)
    ]
    assert ranks(tmp_path, nodes) == ["m-pack", "z-pack"]


def test_ranking_does_not_depend_on_the_wall_clock(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    first = build(cache, tmp_path / "a.json")
    clock.pin("2031-06-01T00:00:00Z")
    later = build(cache, tmp_path / "b.json")
    assert first["mappings"] == later["mappings"]
    assert first["version"] != later["version"]


def test_repository_urls_are_normalised() -> None:
    assert normalize_repository("git@github.com:O/R.git") == "https://github.com/O/R"
    assert normalize_repository("http://www.GitHub.com/o/r/tree/main/") == "https://github.com/o/r"
    assert normalize_repository("https://GitLab.com/o/r.git/") == "https://gitlab.com/o/r"
    assert normalize_repository(None) == normalize_repository("  ") == ""


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r",
        "https://github.com/o/r/",
        "https://github.com/o/r.git",
        "https://github.com/o/r.git/",
        "https://github.com/o/r.git.git",
        "https://github.com/o/r//",
        "https://github.com/o/r/tree/main",
        "https://github.com/o//r",
        "https://github.com/o/r?tab=readme",
        "https://github.com/o/r#top",
        "https://github.com/o/r.gitx",
        "https://github.com/o/.git",
        "https://github.com/O/Ré",
        "https://github.com/o/r%20x",
        "https://github.com:443/o/r",
        "https://user@github.com/o/r",
        "https://github.com/o/r\\x",
        "https://github.com/o/r;p",
        "https://github.com/o/r\tx",
        "https://github.com/o",
        "https://github.com.evil/o/r",
    ],
)
def test_repository_shortcut_agrees_with_the_general_path(url: str, monkeypatch) -> None:
    fast = normalize_repository(url)
    monkeypatch.setattr(document, "_GITHUB_PLAIN", re.compile(r"(?!)"))  # never matches
    assert fast == normalize_repository(url)


# ---- incremental ---------------------------------------------------------------------------


def grown_nodes() -> list[dict]:
    """sample_nodes after a registry update: new versions, a new package, new counts, a
    version deprecated, metadata arriving for a version that had none."""
    nodes = sample_nodes()
    alpha, beta, gamma = nodes
    alpha["versions_list"].append(
        version("2.0.0", "2026-06-01T00:00:00Z", [comfy("MaskScale", {"mask": ["MASK"]})])
    )
    alpha["versions_list"][0]["deprecated"] = True  # 1.9.0
    alpha["downloads"] = 1
    beta["versions_list"][1] = version("1.1.0", "2026-02-02T00:00:00Z", [comfy("Late", {})])
    gamma["github_stars"] = 10_000
    nodes.append(
        node("delta-new", [version("0.1.0", nodes=[comfy("MaskScale", {"mask": "MASK"})])])
    )
    return nodes


def test_incremental_equals_full_rebuild(tmp_path: Path) -> None:
    old = build(write_cache(tmp_path / "old.json", sample_nodes()), tmp_path / "old-m.json")
    cache = write_cache(tmp_path / "new.json", grown_nodes())
    full = tmp_path / "full.json"
    build(cache, full)
    report = build_mappings(
        MappingsOptions(cache=cache, output=tmp_path / "inc.json", input=tmp_path / "old-m.json")
    )
    assert (tmp_path / "inc.json").read_bytes() == full.read_bytes()
    assert report.versions_reused == 4  # 1.10.0, 2.0.0-rc.1, beta 1.0.0, gamma 0.0.1
    assert report.versions_parsed == 3  # alpha 2.0.0, beta 1.1.0, delta 0.1.0
    assert old != orjson.loads(full.read_bytes())


def test_incremental_with_max_versions_drops_pushed_out_versions(tmp_path: Path) -> None:
    old_cache = write_cache(tmp_path / "old.json", sample_nodes())
    build(old_cache, tmp_path / "old-m.json", max_versions=1)
    cache = write_cache(tmp_path / "new.json", grown_nodes())
    full = tmp_path / "full.json"
    build(cache, full, max_versions=1)
    build(cache, tmp_path / "inc.json", max_versions=1, input=tmp_path / "old-m.json")
    assert (tmp_path / "inc.json").read_bytes() == full.read_bytes()


def test_second_run_on_the_same_cache_changes_nothing(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    out = tmp_path / "m.json"
    build(cache, out)
    first = out.read_bytes()
    report = build_mappings(MappingsOptions(cache=cache, output=out, input=out))
    assert out.read_bytes() == first
    assert report.versions_parsed == 0
    assert not journal_path(out).exists()
    assert report.packages_unchanged == 3  # nothing parsed at all: copied from the input


# Incremental runs with the index: every kind of cache change, compared with a full rebuild.


def incremental_vs_full(
    tmp_path: Path, old_nodes: list[dict], new_nodes: list[dict], **options
) -> MappingsReport:
    """Build the old cache's mappings, then the new cache's both ways; the outputs, and the
    indexes written next to them, must be the same. Returns the incremental run's report."""
    old_out = tmp_path / "old-m.json"
    build(write_cache(tmp_path / "old.json", old_nodes), old_out, **options)
    cache = write_cache(tmp_path / "new.json", new_nodes)
    full = tmp_path / "full.json"
    build(cache, full, **options)
    report = build_mappings(
        MappingsOptions(cache=cache, output=tmp_path / "inc.json", input=old_out, **options)
    )
    assert (tmp_path / "inc.json").read_bytes() == full.read_bytes()
    inc_index = orjson.loads(index_path(tmp_path / "inc.json").read_bytes())
    assert inc_index == orjson.loads(index_path(full).read_bytes())
    return report


def _add_version(nodes: list[dict]) -> None:
    nodes[0]["versions_list"].append(
        version("3.0.0", "2026-07-01T00:00:00Z", [comfy("MaskScale", {"mask": ["MASK"]})])
    )


def _deprecate(nodes: list[dict]) -> None:
    nodes[0]["versions_list"][1]["deprecated"] = True  # alpha 1.10.0


def _downloads(nodes: list[dict]) -> None:
    nodes[2]["downloads"] = 1_000_000  # gamma now outranks alpha on MaskScale::1f54e5ac


def _remove(nodes: list[dict]) -> None:
    del nodes[0]  # alpha: its keys lose a provider or vanish


def _add_package(nodes: list[dict]) -> None:
    nodes.append(node("omega", [version("1.0.0", "2027-01-01T00:00:00Z", [comfy("Beta", IMAGE)])]))


def _ban(nodes: list[dict]) -> None:
    nodes[0]["status"] = "NodeStatusBanned"  # same versions, none feeds any more


def _unban(nodes: list[dict]) -> None:
    nodes[0]["status"] = "NodeStatusActive"


def _metadata_arrives(nodes: list[dict]) -> None:
    nodes[1]["versions_list"][1] = version("1.1.0", "2026-02-02T00:00:00Z", [comfy("Late", {})])


def _version_status(nodes: list[dict]) -> None:
    nodes[0]["versions_list"][0]["status"] = "NodeVersionStatusDeleted"  # alpha 1.9.0


def _version_banned(nodes: list[dict]) -> None:
    nodes[0]["versions_list"][1]["status"] = "NodeVersionStatusBanned"  # same length as Active


def _duplicate(nodes: list[dict]) -> None:
    nodes.append({**nodes[1], "downloads": 999_999})  # a second beta-pack: the first one wins


def _rename(nodes: list[dict]) -> None:
    nodes[1]["name"] = "Beta, renamed"
    nodes[1]["repository"] = "https://gitlab.com/x/beta"


CHANGES = [
    _add_version,
    _deprecate,
    _downloads,
    _remove,
    _add_package,
    _ban,
    _metadata_arrives,
    _version_status,
    _version_banned,
    _duplicate,
    _rename,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_incremental_with_index_equals_full_rebuild(tmp_path: Path, change) -> None:
    new = sample_nodes()
    change(new)
    report = incremental_vs_full(tmp_path, sample_nodes(), new)
    assert report.packages_unchanged >= 1  # the untouched packages were not parsed


def test_incremental_with_index_handles_a_package_unbanned(tmp_path: Path) -> None:
    old = sample_nodes()
    _ban(old)
    report = incremental_vs_full(tmp_path, old, sample_nodes())
    assert report.versions_parsed == 3  # alpha's feeding versions, which the input lacks


def test_incremental_with_index_and_every_change_at_once(tmp_path: Path) -> None:
    new = sample_nodes()
    for change in (_add_version, _deprecate, _downloads, _add_package, _metadata_arrives):
        change(new)
    incremental_vs_full(tmp_path, sample_nodes(), new)
    incremental_vs_full(tmp_path, sample_nodes(), new, max_versions=1)


def test_incremental_reranks_untouched_packages_when_the_reference_moves(tmp_path: Path) -> None:
    """a-pack and b-pack do not change, but the next cache is taken ten years later: a-pack's
    age discount shrinks relative to b-pack's and it overtakes it."""
    nodes = ranking_nodes(
        ("2024-01-01T00:00:00Z", {"downloads": 1000, "github_stars": 0}),
        ("2026-01-01T00:00:00Z", {"downloads": 400, "github_stars": 0}),
    )
    clock.pin("2026-01-01T00:00:00Z")  # cached_at: 1000 / 3 < 400 / 1
    old_out = tmp_path / "old-m.json"
    build(write_cache(tmp_path / "old.json", nodes), old_out)
    clock.pin("2036-01-01T00:00:00Z")  # cached_at: 1000 / 13 > 400 / 11
    cache = write_cache(tmp_path / "new.json", nodes)
    build(cache, tmp_path / "full.json")
    report = build_mappings(
        MappingsOptions(cache=cache, output=tmp_path / "inc.json", input=old_out)
    )
    assert report.packages_unchanged == 2
    assert (tmp_path / "inc.json").read_bytes() == (tmp_path / "full.json").read_bytes()
    shared = orjson.loads((tmp_path / "inc.json").read_bytes())["mappings"]["Shared::9c595aa8"]
    assert [e["package_id"] for e in shared] == ["a-pack", "b-pack"]
    old_shared = orjson.loads(old_out.read_bytes())["mappings"]
    assert [e["package_id"] for e in old_shared["Shared::9c595aa8"]] == ["b-pack", "a-pack"]


def test_incremental_runs_chain(tmp_path: Path) -> None:
    """Each incremental output, with the index it writes, feeds the next run."""
    steps = [sample_nodes()]
    for change in (_add_version, _downloads, _remove, _add_package):
        steps.append(json.loads(json.dumps(steps[-1])))
        change(steps[-1])
    previous = tmp_path / "m0.json"
    build(write_cache(tmp_path / "c0.json", steps[0]), previous)
    for n, nodes in enumerate(steps[1:], 1):
        cache = write_cache(tmp_path / f"c{n}.json", nodes)
        out = tmp_path / f"m{n}.json"
        report = build_mappings(MappingsOptions(cache=cache, output=out, input=previous))
        assert report.packages_unchanged >= 1
        build(cache, tmp_path / "full.json")
        assert out.read_bytes() == (tmp_path / "full.json").read_bytes()
        previous = out


def test_an_index_that_does_not_match_its_input_is_ignored(tmp_path: Path) -> None:
    old = tmp_path / "old-m.json"
    build(write_cache(tmp_path / "old.json", sample_nodes()), old)
    cache = write_cache(tmp_path / "new.json", grown_nodes())
    build(cache, tmp_path / "full.json")
    old.write_bytes(old.read_bytes().replace(b'"downloads": 5000', b'"downloads": 5001'))
    inc = tmp_path / "inc.json"
    report = build_mappings(MappingsOptions(cache=cache, output=inc, input=old))
    assert report.packages_unchanged == 0  # the general path
    assert inc.read_bytes() == (tmp_path / "full.json").read_bytes()
    index_path(old).write_text("{not json")
    report = build_mappings(MappingsOptions(cache=cache, output=inc, input=old))
    assert report.packages_unchanged == 0
    assert inc.read_bytes() == (tmp_path / "full.json").read_bytes()


def test_an_index_of_other_options_is_ignored(tmp_path: Path) -> None:
    old = tmp_path / "old-m.json"
    build(write_cache(tmp_path / "old.json", sample_nodes()), old)
    cache = write_cache(tmp_path / "new.json", grown_nodes())
    build(cache, tmp_path / "full.json", max_versions=1)
    inc = tmp_path / "inc.json"
    report = build_mappings(MappingsOptions(cache=cache, output=inc, input=old, max_versions=1))
    assert report.packages_unchanged == 0
    assert inc.read_bytes() == (tmp_path / "full.json").read_bytes()


def test_a_cache_of_another_layout_takes_the_general_path(tmp_path: Path) -> None:
    old = tmp_path / "old-m.json"
    build(write_cache(tmp_path / "old.json", sample_nodes()), old)
    cache = write_cache(tmp_path / "new.json", grown_nodes())
    build(cache, tmp_path / "full.json")
    compact = tmp_path / "compact.json"
    compact.write_bytes(orjson.dumps(orjson.loads(cache.read_bytes())))
    inc = tmp_path / "inc.json"
    index_path(inc).write_text("stale")
    report = build_mappings(MappingsOptions(cache=compact, output=inc, input=old))
    assert report.packages_unchanged == 0
    assert inc.read_bytes() == (tmp_path / "full.json").read_bytes()
    assert not index_path(inc).exists()  # no fingerprints: no index, and not a stale one


def test_scan_recognises_unchanged_versions_by_their_digest(tmp_path: Path) -> None:
    path = tmp_path / "synth.json"
    files.write_atomic(path, files.dumps(synth.generate(40, 3)))
    data = path.read_bytes()
    walked = list(scan(data))
    previous = {t.id: (t.hi - t.lo, t.versions) for t in walked}
    previous[walked[5].id] = (previous[walked[5].id][0], "0" * 40)  # as if it had changed
    guessed = list(scan(data, previous.get))
    assert [(t.id, t.start, t.end, t.lo, t.hi, t.head, t.versions) for t in guessed] == [
        (t.id, t.start, t.end, t.lo, t.hi, t.head, t.versions) for t in walked
    ]
    searched = [t.id for t in guessed if t.comfy is not None]
    assert walked[5].id in searched
    assert len(searched) < len(walked) // 2  # the others were hashed, not searched


STATUSES = [
    *(f"NodeVersionStatus{s}" for s in ("Active", "Deleted", "Banned", "Pending", "Flagged")),
    *(f"NodeStatus{s}" for s in ("Active", "Deleted", "Banned")),
]


def test_checksum_catches_every_status_swap_and_short_change(tmp_path: Path) -> None:
    """Unchanged packages are recognised by length and CRC-32. CRC is linear: a same-length
    change goes unnoticed only when the CRC of the difference is zero, wherever it lies, so
    checking each status swap once (against zeros) covers it at every position."""
    for a in STATUSES:
        for b in STATUSES:
            if a != b and len(a) == len(b):
                zeros = bytes(len(a))
                assert zlib.crc32(a.encode()) ^ zlib.crc32(b.encode()) != zlib.crc32(zeros)
    path = tmp_path / "synth.json"
    files.write_atomic(path, files.dumps(synth.generate(5, 2)))
    data = bytearray(path.read_bytes())
    text = next(t for t in scan(bytes(data)) if t.hi - t.lo > 1000)
    rng = random.Random(5)
    for _ in range(300):  # any change within 4 consecutive bytes is caught
        at = rng.randrange(text.lo + 1, text.hi - 12)
        changed = bytearray(data[text.lo : text.hi])
        for i in range(at - text.lo, at - text.lo + 4):
            changed[i] = rng.randrange(256)
        if changed != data[text.lo : text.hi]:
            assert checksum(bytes(changed)) != text.versions


def test_non_canonical_cache_layout_gives_the_same_output(tmp_path: Path) -> None:
    canonical = write_cache(tmp_path / "c.json", sample_nodes())
    compact = tmp_path / "compact.json"
    compact.write_bytes(orjson.dumps(orjson.loads(canonical.read_bytes())))
    indented = tmp_path / "python.json"
    indented.write_text(json.dumps(orjson.loads(canonical.read_bytes()), indent=2))
    build(canonical, tmp_path / "a.json")
    build(compact, tmp_path / "b.json")
    build(indented, tmp_path / "c-out.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "c-out.json").read_bytes()


def test_streamed_nodes_equal_the_whole_document(tmp_path: Path) -> None:
    path = tmp_path / "synth.json"
    files.write_atomic(path, files.dumps(synth.generate(80, 7)))
    streamed = list(iter_nodes(path))
    versions = [v for n in streamed for v in n.get("versions_list") or []]
    assert any(isinstance(v.get("comfy_nodes"), LazyJSON) for v in versions)  # the fast path
    for v in versions:
        if "comfy_nodes" in v:
            v["comfy_nodes"] = comfy_nodes(v)
    assert streamed == cache_file.load_cache(path)["nodes"]


# ---- bad input -----------------------------------------------------------------------------


def bad_cli(tmp_path: Path, capsys, *args: str) -> str:
    out = tmp_path / "out.json"
    out.write_text("precious")
    assert main(["mappings", "--output", str(out), *args]) == 2
    assert out.read_text() == "precious"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_missing_cache(tmp_path: Path, capsys) -> None:
    assert "no such file" in bad_cli(tmp_path, capsys, "--cache", str(tmp_path / "nope.json"))


def test_cache_not_json(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.json").write_text('{\n  "nodes": [\n    {\n      "id": "x"\n    },\n    {')
    assert "not valid JSON" in bad_cli(tmp_path, capsys, "--cache", str(tmp_path / "c.json"))
    assert not journal_path(tmp_path / "out.json").exists()


def test_cache_not_a_cache(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.json").write_text('{"mappings": {}}')
    assert "not a registry cache" in bad_cli(tmp_path, capsys, "--cache", str(tmp_path / "c.json"))


def test_cache_node_without_id(tmp_path: Path, capsys) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    cache.write_bytes(cache.read_bytes().replace(b'"id": "beta-pack"', b'"id": 7'))
    assert "has no string 'id'" in bad_cli(tmp_path, capsys, "--cache", str(cache))


@pytest.mark.parametrize(
    "content",
    ["[]", '{"mappings": [], "packages": {}}', '{"mappings": {"K::_": [{}]}, "packages": {}}'],
)
def test_input_of_another_shape(tmp_path: Path, capsys, content: str) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    (tmp_path / "in.json").write_text(content)
    err = bad_cli(tmp_path, capsys, "--cache", str(cache), "--input", str(tmp_path / "in.json"))
    assert "not a node mappings file" in err


def test_a_cache_given_as_input_is_rejected(tmp_path: Path, capsys) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    err = bad_cli(tmp_path, capsys, "--cache", str(cache), "--input", str(cache))
    assert "not a node mappings file" in err


def test_output_never_replaces_the_cache(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    before = cache.read_bytes()
    with pytest.raises(UserError, match="is the input"):
        build_mappings(MappingsOptions(cache=cache, output=tmp_path / "." / "c.json"))
    assert cache.read_bytes() == before


def test_unwritable_output_fails_before_work(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    with pytest.raises(UserError, match="does not exist"):
        build_mappings(MappingsOptions(cache=cache, output=tmp_path / "no" / "m.json"))


# ---- offline and crash-safe ----------------------------------------------------------------

OFFLINE = """
import sys
def guard(event, args):
    if event.startswith("socket.") and event != "socket.gethostname":
        raise RuntimeError("network access: " + event)
sys.addaudithook(guard)
from pathlib import Path
from registry_tools.mappings.build import MappingsOptions, build_mappings
build_mappings(MappingsOptions(cache=Path(sys.argv[1]), output=Path(sys.argv[2])))
banned = [m for m in ("aiohttp", "socket", "ssl", "http.client", "registry_tools.fetch.client")
          if m in sys.modules]
assert not banned, banned
from registry_tools.cli import main  # the CLI may import more, but must open no socket
assert main(["mappings", "--cache", sys.argv[1], "--output", sys.argv[2]]) == 0
"""


def test_builder_is_offline(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    subprocess.run(
        [sys.executable, "-c", OFFLINE, str(cache), str(tmp_path / "m.json")], check=True
    )


# Run the CLI with each package's parse slowed down (monkeypatched in the child only, no hook
# in the product), so the parent can SIGKILL it once the journal holds enough packages.
SLOW = """
import sys, time
from registry_tools.mappings import feeding
original = feeding.Hasher.version_keys
def slow(self, *args):
    time.sleep(0.002)
    return original(self, *args)
feeding.Hasher.version_keys = slow
from registry_tools.cli import main
sys.exit(main(sys.argv[1:]))
"""

# The same job through the library (skips the CLI's ~1 s of imports for the other commands).
FAST = """
import sys
from pathlib import Path
from registry_tools.mappings.build import MappingsOptions, build_mappings
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
options = MappingsOptions(
    cache=Path(args["--cache"]), output=Path(args["--output"]), checkpoint_interval=3
)
print(build_mappings(options).summary(), file=sys.stderr)
"""

DIE_BEFORE_JOURNAL_REMOVAL = """
import os, signal, sys
from registry_tools.journal import Journal
Journal.close = lambda self, remove: os.kill(os.getpid(), signal.SIGKILL)
from registry_tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def crash_cache(tmp_path_factory) -> Path:
    nodes = [
        node(
            f"pkg-{i:03d}",
            [
                version(f"1.{j}.0", nodes=[comfy(f"N{i}", {"x": ["INT"]}), comfy("S")])
                for j in range(4)
            ],
            downloads=i,
        )
        for i in range(150)
    ]
    return write_cache(tmp_path_factory.mktemp("crash") / "cache.json", nodes)


@pytest.fixture(scope="module")
def crash_reference(crash_cache: Path) -> bytes:
    """The output of an uninterrupted run."""
    out = crash_cache.with_name("reference.json")
    assert run_cli(FAST, crash_cache, out).wait() == 0
    return out.read_bytes()


def run_cli(script: str, cache: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1795478400"}
    args = ["mappings", "--cache", str(cache), "--output", str(out), "--checkpoint-interval", "3"]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env, stderr=subprocess.PIPE
    )


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("after", [1, 40, 120])
def test_sigkill_then_rerun_gives_the_same_output(
    tmp_path: Path, crash_cache: Path, crash_reference: bytes, after: int
) -> None:
    out = tmp_path / "m.json"
    child = run_cli(SLOW, crash_cache, out)
    deadline = time.monotonic() + 30
    while journal_lines(journal_path(out)) < after + 1 and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not out.exists()  # never a torn output
    assert journal_lines(journal_path(out)) >= after
    rerun = run_cli(FAST, crash_cache, out)
    _, err = rerun.communicate()
    assert rerun.returncode == 0
    assert b"resumed" in err
    assert out.read_bytes() == crash_reference
    assert not journal_path(out).exists()


def test_killed_after_writing_then_rerun(
    tmp_path: Path, crash_cache: Path, crash_reference: bytes
) -> None:
    out = tmp_path / "m.json"
    assert run_cli(DIE_BEFORE_JOURNAL_REMOVAL, crash_cache, out).wait() == -signal.SIGKILL
    assert out.read_bytes() == crash_reference
    assert journal_path(out).exists()
    assert run_cli(FAST, crash_cache, out).wait() == 0
    assert out.read_bytes() == crash_reference
    assert not journal_path(out).exists()
