"""The rules of `node_mappings.json` the consumers depend on: `Type::_` for every node type,
only installable versions where consumers install from, a ranking one odd package cannot move,
package aliases, and input that never stops the build (lone surrogates, `downloadUrl`)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    CKPT,
    IMAGE,
    MASK_SCALE,
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
from registry_tools.mappings.build import MappingsOptions, build_mappings


def build(tmp_path: Path, nodes: list[dict], **options) -> dict:
    cache = write_cache(tmp_path / "cache.json", nodes)
    build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json", **options))
    return orjson.loads((tmp_path / "m.json").read_bytes())


def ids(entries: list[dict]) -> list[str]:
    return [e["package_id"] for e in entries]


# ---- Type::_ -------------------------------------------------------------------------------


def test_every_node_type_has_a_name_only_key_with_every_provider(tmp_path: Path) -> None:
    document = build(tmp_path, sample_nodes())
    mappings = document["mappings"]
    types = {key.rpartition("::")[0] for key in mappings}
    assert all(f"{t}::_" in mappings for t in types)
    # MaskScale: alpha (two versions, one signature), beta (another), gamma (a third version)
    entries = mappings["MaskScale::_"]
    assert ids(entries) == ["alpha-pack", "beta-pack", "gamma-odd"]
    assert [e["rank"] for e in entries] == [1, 2, 3]
    assert entries[0]["versions"] == ["1.10.0", "1.9.0"]
    assert entries[1]["versions"] == ["1.0.0"]
    assert mappings["Loader::_"] == [
        {"package_id": "alpha-pack", "rank": 1, "versions": ["1.10.0"]}
    ]


def test_name_only_key_unions_versions_of_every_signature(tmp_path: Path) -> None:
    versions = [
        version("1.0.0", nodes=[comfy("Node", IMAGE)]),
        version("2.0.0", nodes=[comfy("Node", CKPT)]),
        version("1.5.0", nodes=[comfy("Node", MASK_SCALE)]),
    ]
    document = build(tmp_path, [node("p", versions)])
    assert document["mappings"]["Node::_"][0]["versions"] == ["2.0.0", "1.5.0", "1.0.0"]
    assert len(document["mappings"]) == 4


# ---- installable versions ------------------------------------------------------------------


def test_only_installable_versions_are_listed_where_consumers_install(tmp_path: Path) -> None:
    versions = [
        version("3.0.0", nodes=[comfy("A")], status="NodeVersionStatusPending"),
        version("2.9.0", nodes=[comfy("A")], url=None),
        version("2.8.0", nodes=[comfy("A")], url=""),
        version("2.7.0", nodes=[comfy("A")], deprecated=True),
        version("2.6.0", nodes=[comfy("A")], status="NodeVersionStatusDeleted"),
        version("2.5.0", nodes=[comfy("A")], status="NodeVersionStatusBanned"),
        version("2.4.0", nodes=[comfy("A")], status="NodeVersionStatusFlagged"),
        version("1.0.0", nodes=[comfy("A")]),
        version("0.9.0", nodes=[comfy("A")]),
    ]
    versions[2]["download_url"] = ""  # the server's answer when it has no file
    versions[3]["status_reason"] = "superseded"
    document = build(tmp_path, [node("p", versions)])
    package = document["packages"]["p"]
    assert sorted(package["versions"]) == ["0.9.0", "1.0.0"]
    reasons = {v: r["reasons"] for v, r in package["unavailable_versions"].items()}
    assert reasons == {
        "3.0.0": ["pending"],
        "2.9.0": ["no_download_url"],
        "2.8.0": ["no_download_url"],
        "2.7.0": ["deprecated"],
        "2.6.0": ["deleted"],
        "2.5.0": ["banned"],
        "2.4.0": ["flagged"],
    }
    assert package["unavailable_versions"]["2.7.0"]["status_reason"] == "superseded"
    assert package["unavailable_versions"]["2.5.0"]["status"] == "NodeVersionStatusBanned"
    assert document["mappings"]["A::_"] == [
        {"package_id": "p", "rank": 1, "versions": ["1.0.0", "0.9.0"]}
    ]


def test_a_key_whose_versions_are_all_unusable_has_no_entry(tmp_path: Path) -> None:
    versions = [
        version("2.0.0", nodes=[comfy("Gone", IMAGE)], deprecated=True),
        version("1.0.0", nodes=[comfy("Kept", IMAGE)]),
    ]
    nodes = [node("p", versions), node("q", [version("1.0.0", nodes=[comfy("Q")])])]
    nodes[1]["status"] = "NodeStatusDeleted"
    document = build(tmp_path, nodes)
    assert set(document["mappings"]) == {"Kept::499010cc", "Kept::_"}
    assert document["packages"]["q"]["versions"] == {}
    assert document["packages"]["q"]["unavailable_versions"]["1.0.0"]["reasons"] == [
        "package_deleted"
    ]


def test_a_deprecated_flag_that_is_not_false_is_not_installable(tmp_path: Path) -> None:
    versions = [version("1.0.0", nodes=[comfy("A")]), version("2.0.0", nodes=[comfy("A")])]
    versions[1]["deprecated"] = "false"  # hand-edited: not the JSON boolean false
    document = build(tmp_path, [node("p", versions)])
    assert list(document["packages"]["p"]["versions"]) == ["1.0.0"]
    assert document["packages"]["p"]["unavailable_versions"]["2.0.0"]["deprecated"] == "false"


def test_download_url_under_the_servers_name_is_kept(tmp_path: Path) -> None:
    entry = version("1.0.0", nodes=[comfy("A")])
    entry["downloadUrl"] = entry.pop("download_url")
    document = build(tmp_path, [node("p", [entry])])
    record = document["packages"]["p"]["versions"]["1.0.0"]
    assert record["download_url"] == "https://cdn.example/1.0.0.zip"
    assert document["mappings"]["A::_"][0]["versions"] == ["1.0.0"]


def test_versions_that_feed_nothing_for_lack_of_metadata_are_counted(tmp_path: Path) -> None:
    versions = [
        version("4.0.0", metadata=False, pending="pending"),
        version("3.0.0", metadata=False, pending="failed"),
        version("2.0.0", metadata=False),
        version("1.5.0", metadata=False, deprecated=True),  # not installable: not counted
        version("1.0.0", nodes=[comfy("A")]),
    ]
    cache = write_cache(tmp_path / "cache.json", [node("p", versions)])
    report = build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json"))
    assert dict(report.unfed) == {"pending": 1, "failed": 1, "not_fetched": 1}
    assert "3 installable versions feed nothing for lack of metadata" in report.summary()
    assert "(failed 1, not_fetched 1, pending 1)" in report.summary()


# ---- ranking -------------------------------------------------------------------------------


def shared(package_id: str, created: str, downloads: int, **fields) -> dict:
    return node(
        package_id,
        [version("1.0.0", created, [comfy("Shared", IMAGE)])],
        downloads=downloads,
        github_stars=0,
        **fields,
    )


def test_a_bogus_future_release_moves_nobody_else(tmp_path: Path) -> None:
    """Ages are measured from the cache's cached_at (2026-11-24): a is 1000 / 3, b 400 / 1.
    Measured from the newest release in the file (the old rule), c's release in 2099 would
    have made them 1000 / 76 and 400 / 74, putting a first."""
    nodes = [
        shared("a-pack", "2024-11-24T00:00:00Z", 1000),
        shared("b-pack", "2026-11-24T00:00:00Z", 400),
    ]
    before = build(tmp_path, nodes)["mappings"]["Shared::499010cc"]
    bogus = node("c-pack", [version("1.0.0", "2099-01-01T00:00:00Z", [comfy("Other")])])
    after = build(tmp_path, [*nodes, bogus])["mappings"]["Shared::499010cc"]
    assert ids(before) == ids(after) == ["b-pack", "a-pack"]


def test_cached_at_is_the_reference_date(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01: 1000 / 1.9 > 400 / 1
    clock.pin(None)
    nodes = [
        shared("a-pack", "2025-01-01T00:00:00Z", 1000),
        shared("b-pack", "2026-01-01T00:00:00Z", 400),
    ]
    document = build(tmp_path, nodes)
    assert document["stats"]["reference_date"] == "2026-01-01T00:00:00Z"
    assert ids(document["mappings"]["Shared::_"]) == ["a-pack", "b-pack"]


def test_a_package_claiming_a_node_name_ranks_first_for_it(tmp_path: Path) -> None:
    nodes = [
        shared("a-pack", "2026-11-24T00:00:00Z", 1_000_000),
        shared("b-pack", "2026-11-24T00:00:00Z", 1, preempted_comfy_node_names=["Shared"]),
    ]
    nodes[0]["versions_list"][0]["comfy_nodes"].append(comfy("Other"))
    nodes[1]["versions_list"][0]["comfy_nodes"].append(comfy("Other"))
    mappings = build(tmp_path, nodes)["mappings"]
    assert ids(mappings["Shared::499010cc"]) == ["b-pack", "a-pack"]
    assert ids(mappings["Shared::_"]) == ["b-pack", "a-pack"]
    assert ids(mappings["Other::_"]) == ["a-pack", "b-pack"]  # the claim is for one name


def test_a_cache_without_cached_at_ranks_from_its_newest_release(tmp_path: Path) -> None:
    nodes = [
        shared("a-pack", "2024-11-24T00:00:00Z", 1000),
        shared("b-pack", "2026-11-24T00:00:00Z", 400),
    ]
    cache = cache_file.build_cache(json.loads(json.dumps(nodes)))
    del cache["cached_at"]
    (tmp_path / "c.json").write_bytes(files.dumps(cache))
    build_mappings(MappingsOptions(cache=tmp_path / "c.json", output=tmp_path / "m.json"))
    document = orjson.loads((tmp_path / "m.json").read_bytes())
    assert document["stats"]["reference_date"] == "2026-11-24T00:00:00Z"
    assert ids(document["mappings"]["Shared::_"]) == ["b-pack", "a-pack"]


# ---- lone surrogates -----------------------------------------------------------------------


def surrogate_cache(tmp_path: Path, layout: str) -> Path:
    """A cache written by Python's json (which escapes lone surrogates), two-space or compact:
    a lone surrogate escaped inside `input_types`, one in a node name, one in a description."""
    nodes = [
        node(
            "p",
            [
                version(
                    "1.0.0",
                    nodes=[
                        comfy("Escaped", raw='{"required": {"a\\ud800": ["INT"]}}'),
                        comfy("Lone", raw='{"required": {"a\ud800": ["INT"]}}'),
                        comfy("Na\udc00me", {"x": ["INT"]}),
                        comfy("Fine", IMAGE),
                    ],
                )
            ],
            description="broken \ud83d text",
        )
    ]
    cache = cache_file.build_cache(nodes)
    path = tmp_path / f"{layout}.json"
    text = json.dumps(cache, indent=2 if layout == "indented" else None, sort_keys=True)
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize("layout", ["indented", "compact"])
def test_lone_surrogates_never_stop_the_build(tmp_path: Path, layout: str) -> None:
    cache = surrogate_cache(tmp_path, layout)
    report = build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json"))
    document = orjson.loads((tmp_path / "m.json").read_bytes())
    assert report.problems["surrogate"] == 3
    assert {"Escaped::_", "Lone::_", "Na\ufffdme::_", "Fine::499010cc"} <= set(document["mappings"])
    assert document["packages"]["p"]["description"] == "broken \ufffd text"


def test_lone_surrogates_give_the_same_output_in_any_layout(tmp_path: Path) -> None:
    for layout in ("indented", "compact"):
        cache = surrogate_cache(tmp_path, layout)
        build_mappings(MappingsOptions(cache=cache, output=tmp_path / f"{layout}-m.json"))
    assert (tmp_path / "indented-m.json").read_bytes() == (tmp_path / "compact-m.json").read_bytes()


def test_a_torn_comfy_array_is_reported_where_it_is(tmp_path: Path, capsys) -> None:
    cache = write_cache(tmp_path / "c.json", sample_nodes())
    data = cache.read_bytes()
    at = data.index(b'"input_types": "{\\"required\\": {}}"')  # gamma's NoInputs
    broken = (
        data[:at] + b'"input_types": {' + data[at + len(b'"input_types": "{\\"required\\": {}}"') :]
    )
    cache.write_bytes(broken)
    line = broken[:at].count(b"\n") + 1
    assert main(["mappings", "--cache", str(cache), "--output", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid JSON" in err
    assert f"line {line} column" in err


# ---- package aliases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"old-alpha": "alpha-pack", "older-alpha": "old-alpha"},
        {"schema_version": 1, "aliases": {"old-alpha": "alpha-pack", "older-alpha": "old-alpha"}},
    ],
)
def test_package_aliases_come_from_the_aliases_file(tmp_path: Path, content: dict) -> None:
    (tmp_path / "aliases.json").write_text(json.dumps(content))
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    options = MappingsOptions(
        cache=cache, output=tmp_path / "m.json", aliases=tmp_path / "aliases.json"
    )
    report = build_mappings(options)
    document = orjson.loads((tmp_path / "m.json").read_bytes())
    assert document["package_aliases"] == {"old-alpha": "alpha-pack", "older-alpha": "old-alpha"}
    assert report.aliases == 2 and report.aliases_unknown == 0


def test_aliases_to_unknown_packages_are_kept_and_counted(tmp_path: Path) -> None:
    (tmp_path / "aliases.json").write_text('{"gone": "renamed-later"}')
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    options = MappingsOptions(
        cache=cache, output=tmp_path / "m.json", aliases=tmp_path / "aliases.json"
    )
    report = build_mappings(options)
    assert orjson.loads((tmp_path / "m.json").read_bytes())["package_aliases"] == {
        "gone": "renamed-later"
    }
    assert "1 package aliases (1 to unknown packages)" in report.summary()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "expected a JSON object"),
        ('{"a": 3}', "is not id -> id"),
        ('{"a": ""}', "is not id -> id"),
        ('{"a": "a"}', "alias of itself"),
        ('{"a": "b", "b": "a"}', "loop"),
        ('{"schema_version": 2, "aliases": {}}', "schema_version"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_aliases_files_are_one_line(tmp_path: Path, capsys, content: str, message: str) -> None:
    (tmp_path / "aliases.json").write_text(content)
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    out = tmp_path / "m.json"
    args = ["mappings", "--cache", str(cache), "--output", str(out)]
    assert main([*args, "--aliases", str(tmp_path / "aliases.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


# ---- the loader ----------------------------------------------------------------------------


def test_the_loader_requires_a_rank_on_every_entry(tmp_path: Path, capsys) -> None:
    document = build(tmp_path, sample_nodes())
    del document["mappings"]["Loader::_"][0]["rank"]
    (tmp_path / "old.json").write_bytes(files.dumps(document))
    cache = tmp_path / "cache.json"
    args = ["mappings", "--cache", str(cache), "--output", str(tmp_path / "n.json")]
    assert main([*args, "--input", str(tmp_path / "old.json")]) == 2
    err = capsys.readouterr().err
    assert "without a rank" in err


def test_options_are_checked_before_any_work(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    out = tmp_path / "m.json"
    for bad in (
        {"max_versions": 2.5},
        {"max_versions": 0},
        {"max_versions": True},
        {"checkpoint_interval": "10"},
        {"checkpoint_interval": 0},
        {"input": 7},
        {"manager": 3},
        {"manager_url": 5},
        {"aliases": ""},
    ):
        with pytest.raises(UserError):
            MappingsOptions(cache=cache, output=out, **bad)
    with pytest.raises(UserError):
        MappingsOptions(cache=None, output=out)
    with pytest.raises(UserError):
        build_mappings({"cache": cache, "output": out})
    assert MappingsOptions(cache=str(cache), output=str(out)).cache == cache
    assert not out.exists()
