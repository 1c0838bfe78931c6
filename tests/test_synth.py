"""The synthetic registry: deterministic, valid, and as awkward as the real one."""

from __future__ import annotations

import os
import re
import stat
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from registry_tools import clock, files
from registry_tools.cli import main
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry import synth
from registry_tools.semver import version_key

PINNED = "2026-01-02T03:04:05Z"


@pytest.fixture(autouse=True)
def pinned_clock() -> Iterator[None]:
    clock.pin(PINNED)
    yield
    clock.pin(None)


def _generate(**options: Any) -> dict[str, Any]:
    clock.pin(PINNED)
    try:
        return synth.generate(300, 1, **options)
    finally:
        clock.pin(None)


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    return _generate()


@pytest.fixture(scope="module")
def ideal() -> dict[str, Any]:
    """The same registry with every extraction finished and all metadata kept."""
    return _generate(ideal=True)


def _versions(cache: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for node in cache["nodes"] for v in node["versions_list"]]


def _comfy_nodes(cache: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for v in _versions(cache) for c in v.get("comfy_nodes", [])]


def _is_semver(version: str) -> bool:
    return version_key(version)[0] == 1


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = files.dumps(synth.generate(40, 3))
    assert files.dumps(synth.generate(40, 3)) == first
    assert files.dumps(synth.generate(40, 4)) != first


@pytest.mark.parametrize(
    ("nodes", "seed", "message"),
    [
        (0, 1, "nodes must be from 1 to 10,000, got 0"),
        (50_000_000, 1, "got 50,000,000"),
        ("3", 1, "nodes must be an integer"),
        (3.0, 1, "nodes must be an integer"),
        (True, 1, "nodes must be an integer"),
        (3, None, "seed must be an integer"),
    ],
)
def test_generate_checks_its_arguments_first(nodes, seed, message) -> None:
    with pytest.raises(UserError, match=message):
        synth.generate(nodes, seed)


def test_is_a_valid_cache_in_canonical_order(cache: dict[str, Any]) -> None:
    assert cache_file.cache_problem(cache) is None
    ids = [node["id"] for node in cache["nodes"]]
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert all(re.fullmatch(r"[a-z0-9_-]+", node_id) for node_id in ids)
    assert cache["cached_at"] == PINNED
    assert cache["versions_processed"] == len(_versions(cache))
    assert cache["metadata_entries"] == len(_comfy_nodes(cache))
    for node in cache["nodes"]:
        names = [v["version"] for v in node["versions_list"]]
        assert names == sorted(names, key=version_key, reverse=True)
        assert len(set(names)) == len(names)


def test_node_fields_and_local_keys(cache: dict[str, Any]) -> None:
    for node in cache["nodes"]:
        assert node["fully_cached"] is True
        assert node["versions_cached_at"] == PINNED
        assert node["publisher"]["name"] == node["author"]
        assert node["repository"].startswith(("https://github.com/", "http://github.com/"))
        latest = node.get("latest_version")
        assert node["versions_cached_for"] == (latest["version"] if latest else "")
        if node.get("versions_unavailable"):
            continue
        if not node["versions_list"]:
            assert latest is None
            continue
        uploaded = max(node["versions_list"], key=lambda v: clock.parse_time(v["createdAt"]))
        assert latest["version"] == uploaded["version"]  # the last upload, of any status
        assert latest["downloadUrl"] == ""  # as the server sends it
        assert not {"comfy_nodes", "download_url", "metadata_cached", "metadata_pending"} & set(
            latest
        )
        assert node["supported_os"] == latest["supported_os"]
    repositories = [node["repository"] for node in cache["nodes"]]
    assert any(r.endswith(".git") for r in repositories)
    assert any(r.endswith("/") for r in repositories)
    assert any(r.startswith("http://") for r in repositories)
    assert any(node["github_stars"] == 0 for node in cache["nodes"])
    downloads = sorted(node["downloads"] for node in cache["nodes"])
    assert downloads[-1] > 20 * downloads[len(downloads) // 2]  # heavy tail


def test_banned_and_deleted_nodes(cache: dict[str, Any]) -> None:
    unavailable = [node for node in cache["nodes"] if node.get("versions_unavailable")]
    banned = [node for node in unavailable if node["versions_unavailable"] == "banned"]
    deleted = [node for node in unavailable if node["versions_unavailable"] == "not_found"]
    assert len(banned) == 1 and len(deleted) == 3 and len(unavailable) == 4
    assert {node["status"] for node in banned} == {"NodeStatusBanned"}
    assert {node["status"] for node in deleted} == {"NodeStatusDeleted"}
    assert all(node["versions_list"] == [] for node in unavailable)
    statuses = {node["id"]: node["status"] for node in cache["nodes"]}
    assert sum(status == "NodeStatusActive" for status in statuses.values()) == 296


def test_version_counts_are_heavy_tailed(cache: dict[str, Any]) -> None:
    counts = [len(node["versions_list"]) for node in cache["nodes"]]
    assert 4.0 <= sum(counts) / len(counts) <= 6.5
    assert counts.count(0) >= 3
    assert max(counts) >= 40
    assert sum(1 <= c <= 6 for c in counts) > 0.7 * len(counts)


def test_tricky_version_strings(cache: dict[str, Any]) -> None:
    versions = _versions(cache)
    names = [v["version"] for v in versions]
    assert any(re.fullmatch(r"\d+\.\d+\.\d+-(rc|beta|alpha|dev)[.\d]*", n) for n in names)
    assert any(not _is_semver(n) for n in names)
    releases = [
        [v["version"] for v in node["versions_list"] if re.fullmatch(r"[\d.]+", v["version"])]
        for node in cache["nodes"]
    ]
    # Some node has 1.10.x next to 1.9.x: plain string order is wrong there.
    assert any(sorted(r) != sorted(r, key=version_key) for r in releases)


def test_backport_published_after_a_newer_major(cache: dict[str, Any]) -> None:
    def backports(node: dict[str, Any]) -> Iterator[str]:
        semver = [v for v in node["versions_list"] if _is_semver(v["version"])]
        for newer in semver:
            for older in semver:
                newer_major = version_key(newer["version"])[1][0]
                if version_key(older["version"])[1][0] < newer_major and clock.parse_time(
                    older["createdAt"]
                ) > clock.parse_time(newer["createdAt"]):
                    yield older["version"]

    assert any(next(backports(node), None) for node in cache["nodes"])


def test_go_timestamps_and_version_fields(cache: dict[str, Any]) -> None:
    versions = _versions(cache)
    fractions = [re.search(r"\.(\d+)Z$", v["createdAt"]) for v in versions]
    digits = {len(m.group(1)) if m else 0 for m in fractions}
    assert {0, 1, 5, 6} <= digits
    assert all(clock.parse_time(v["createdAt"]) for v in versions)
    statuses = Counter(v["status"] for v in versions)
    assert set(statuses) == {
        "NodeVersionStatusActive",
        "NodeVersionStatusBanned",
        "NodeVersionStatusDeleted",
        "NodeVersionStatusFlagged",
        "NodeVersionStatusPending",
    }
    assert statuses["NodeVersionStatusActive"] > 0.95 * len(versions)
    assert 0 < sum(v["deprecated"] for v in versions) < 0.2 * len(versions)
    urls = [v["download_url"] for v in versions]
    assert all(u.startswith("https://") for u in urls if u is not None)
    assert any(len(v["dependencies"]) >= 3 for v in versions)
    for v in versions:
        assert v["download_url"] is None or v["node_id"] in v["download_url"]
        assert v["status_reason"] == "" or v["status"] != "NodeVersionStatusActive"


def test_non_strict_versions_often_have_no_download_url(cache: dict[str, Any]) -> None:
    strict, loose = [], []
    for v in _versions(cache):
        (strict if re.fullmatch(r"\d+\.\d+\.\d+", v["version"]) else loose).append(v)
    missing = [
        sum(v["download_url"] is None for v in group) / len(group) for group in (strict, loose)
    ]
    assert 0 < missing[0] < 0.03  # about 1 % of x.y.z releases
    assert 0.15 < missing[1] < 0.5  # about 30 % of pre-releases and odd strings


def test_extraction_statuses_and_what_the_cache_keeps(cache: dict[str, Any]) -> None:
    """As a fetch leaves them: metadata only for active, not deprecated versions; pending or
    failed ones marked, without comfy nodes (docs/cache-format.md)."""
    versions = _versions(cache)
    states = Counter(v["comfy_node_extract_status"] for v in versions)
    assert set(states) == {"success", "pending", "failed"}
    assert 0.01 < states["pending"] / len(versions) < 0.06
    assert 0.003 < states["failed"] / len(versions) < 0.03
    for v in versions:
        fetched = v["status"] == "NodeVersionStatusActive" and not v["deprecated"]
        state = v["comfy_node_extract_status"]
        if fetched and state == "success":
            assert v["metadata_cached"] is True and isinstance(v["comfy_nodes"], list)
            assert "metadata_pending" not in v
        else:
            assert v["metadata_cached"] is False and "comfy_nodes" not in v
            assert v.get("metadata_pending") == (state if fetched else None)
    newest = Counter(
        n["versions_list"][0]["comfy_node_extract_status"]
        for n in cache["nodes"]
        if n["versions_list"]
    )
    assert newest["pending"] / sum(newest.values()) > states["pending"] / len(versions)


def test_ideal_is_the_same_registry_with_every_extraction_finished(
    cache: dict[str, Any], ideal: dict[str, Any]
) -> None:
    def shape(version: dict[str, Any]) -> dict[str, Any]:
        local = ("comfy_nodes", "metadata_cached", "metadata_pending", "comfy_node_extract_status")
        return {k: v for k, v in version.items() if k not in local}

    assert [n["id"] for n in cache["nodes"]] == [n["id"] for n in ideal["nodes"]]

    def node_shape(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k not in ("versions_list", "latest_version")}
        return {**out, "latest": shape(node.get("latest_version") or {})}

    for node, settled in zip(cache["nodes"], ideal["nodes"], strict=True):
        assert node_shape(node) == node_shape(settled)
        for version, full in zip(node["versions_list"], settled["versions_list"], strict=True):
            assert shape(version) == shape(full)
            assert (
                full["metadata_cached"] is True and full["comfy_node_extract_status"] == "success"
            )
            if "comfy_nodes" in version:
                assert version["comfy_nodes"] == full["comfy_nodes"]
    assert ideal["metadata_entries"] > cache["metadata_entries"]


def test_preemptions_rankings_and_policies(ideal: dict[str, Any]) -> None:
    claims: dict[str, list[str]] = defaultdict(list)
    for node in ideal["nodes"]:
        provided = {c["comfy_node_name"] for v in node["versions_list"] for c in v["comfy_nodes"]}
        for name in node["preempted_comfy_node_names"]:
            claims[name].append(node["id"])
            assert name in provided or not node["versions_list"]
    assert claims and all(len(ids) == 1 for ids in claims.values())
    assert set(claims) <= set(synth.SHARED_NAMES)
    by_downloads = sorted(ideal["nodes"], key=lambda n: n["downloads"])
    rankings = [n["search_ranking"] for n in by_downloads]
    assert rankings == sorted(rankings) and rankings[0] >= 1 and rankings[-1] <= 10
    assert len(set(rankings)) >= 4
    policies = Counter(c["policy"] for c in _comfy_nodes(ideal))
    assert set(policies) == {
        "ComfyNodePolicyActive",
        "ComfyNodePolicyLocalOnly",
        "ComfyNodePolicyBanned",
    }
    assert policies["ComfyNodePolicyActive"] > 0.9 * sum(policies.values())


def test_metadata_pages_and_missing_metadata(ideal: dict[str, Any]) -> None:
    cache = ideal
    versions = _versions(cache)
    empty = sum(not v["comfy_nodes"] for v in versions)
    assert 0.05 < empty / len(versions) < 0.15
    assert sum(len(v["comfy_nodes"]) > 100 for v in versions) >= 3
    newest = sum(
        len(v["comfy_nodes"])
        for node in cache["nodes"]
        for v in node["versions_list"][: synth.NEWEST_WITH_METADATA]
    )
    assert 8 < newest / len(versions) < 16


def test_comfy_node_names_collide_across_packages(ideal: dict[str, Any]) -> None:
    cache = ideal
    providers: dict[str, set[str]] = defaultdict(set)
    for node in cache["nodes"]:
        for version in node["versions_list"]:
            for comfy in version["comfy_nodes"]:
                providers[comfy["comfy_node_name"]].add(node["id"])
    assert 2 <= len(providers["ImageResize+"]) <= 5
    assert 2 <= len(providers["LoadImageBatch"]) <= 5
    assert any(not name.isascii() for name in providers)


def test_input_types_are_json_strings_of_every_shape(ideal: dict[str, Any]) -> None:
    cache = ideal
    parsed, broken, not_objects, empty = [], 0, 0, 0
    for comfy in _comfy_nodes(cache):
        assert isinstance(comfy["input_types"], str)
        assert isinstance(orjson.loads(comfy["return_types"]), list)
        assert len(comfy["output_is_list"]) == len(orjson.loads(comfy["return_types"]))
        try:
            value = orjson.loads(comfy["input_types"])
        except orjson.JSONDecodeError:
            broken += 1
            continue
        if not isinstance(value, dict):
            not_objects += 1
        elif not value:
            empty += 1
        else:
            parsed.append(value)
    assert broken and not_objects and empty
    inputs = [spec for value in parsed for spec in value["required"].values()]
    assert any(spec == ["IMAGE"] or spec == ["MASK"] for spec in inputs)
    assert any(isinstance(spec, str) for spec in inputs)  # bare "INT"
    assert any(isinstance(spec, list) and isinstance(spec[0], list) for spec in inputs)  # COMBO
    assert any(spec[0] == "FLOAT" and "default" in spec[1] for spec in inputs if len(spec) == 2)
    assert any("optional" in value for value in parsed)
    assert any("hidden" in value for value in parsed)


def test_consecutive_versions_share_names_and_sometimes_change_inputs(
    ideal: dict[str, Any],
) -> None:
    cache = ideal
    shared = changed = pairs = 0
    for node in cache["nodes"]:
        with_metadata = [v for v in node["versions_list"] if v["comfy_nodes"]]
        for newer, older in zip(with_metadata, with_metadata[1:], strict=False):
            new = {c["comfy_node_name"]: c["input_types"] for c in newer["comfy_nodes"]}
            old = {c["comfy_node_name"]: c["input_types"] for c in older["comfy_nodes"]}
            pairs += 1
            shared += set(old) <= set(new)
            changed += any(new[name] != inputs for name, inputs in old.items() if name in new)
    assert shared > 0.9 * pairs
    assert 0 < changed < 0.8 * pairs


def test_unicode_in_names_and_descriptions(cache: dict[str, Any]) -> None:
    assert any(not node["name"].isascii() for node in cache["nodes"])
    assert any(not node["description"].isascii() for node in cache["nodes"])
    assert files.dumps(cache).decode("utf-8")  # raw UTF-8, round-trips


def test_full_scale_is_close_to_the_real_registry() -> None:
    cache = synth.generate(2913, 1, ideal=True)
    data = files.dumps(cache)
    assert 13_500 <= cache["versions_processed"] <= 17_000
    newest = sum(
        len(v["comfy_nodes"])
        for node in cache["nodes"]
        for v in node["versions_list"][: synth.NEWEST_WITH_METADATA]
    )
    assert 120_000 <= newest <= 180_000
    unavailable = [n.get("versions_unavailable") for n in cache["nodes"]]
    assert 5 <= unavailable.count("banned") <= 15
    assert 20 <= unavailable.count("not_found") <= 40
    assert len(data) > 10_000_000


def test_cli_writes_the_same_cache(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767323045")
    clock.pin(None)
    output = tmp_path / "cache.json"
    assert main(["synth", "--nodes", "30", "--seed", "9", "--output", str(output)]) == 0
    assert output.read_bytes() == files.dumps(synth.generate(30, 9))
    assert cache_file.load_cache(output)["node_count"] == 30
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"wrote {output}: 30 nodes, ") and "\n" not in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "0", "--output", "x.json"], "--nodes: must be at least 1"),
        (["--nodes", "3", "--output", "/nonexistent/dir/x.json"], "does not exist"),
        (["--nodes", "50000000", "--output", "x.json"], "--nodes: must be at most 10,000"),
    ],
)
def test_cli_bad_input_is_one_line(argv: list[str], message: str, capsys) -> None:
    try:
        code = main(["synth", *argv])
    except SystemExit as exc:  # argparse rejects flags by exiting
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not Path("x.json").exists()


def test_cli_refuses_an_output_that_is_not_a_regular_file(tmp_path, capsys) -> None:
    """`synth --output /dev/null` run as root used to replace the device with a file; a
    named pipe stands in for the device here, so that running this test against old code
    damages nothing outside its temporary directory."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert main(["synth", "--nodes", "3", "--output", str(pipe)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a regular file" in err and err.count("\n") == 1
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_cli_writes_to_standard_output(capsysbinary, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767323045")
    clock.pin(None)
    assert main(["synth", "--nodes", "4", "--seed", "2", "--output", "-"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == files.dumps(synth.generate(4, 2))
    assert captured.err.startswith(b"wrote -: 4 nodes")
