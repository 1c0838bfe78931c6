"""ComfyUI-Manager's packs in `node_mappings.json` (`--manager`): ids, merging with the registry,
ranking, patterns and preemptions, every source (directory, wheel, installed, live), bad input."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    IMAGE,
    MASK_SCALE,
    comfy,
    manager_pack,
    node,
    pinned_clock,  # noqa: F401  (autouse)
    sample_nodes,
    version,
    write_cache,
    write_manager,
)

from registry_tools.cli import main
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.mappings.manager_packs import manager_package_id
from registry_tools.replay.cassettes import use_cassette
from registry_tools.replay.network import blocked_network

OTHER = "https://github.com/Other-User/Cool-Nodes"
RAW = "https://raw.githubusercontent.com/Copy-Man/Single-File/main/nodes/single.py"
GIST = "https://gist.githubusercontent.com/someone/0a1b2c3d/raw/abc/gist_nodes.py"
GITEE = "https://gitee.com/Some-One/Gitee-Pack"
COMFYUI = "https://github.com/comfyanonymous/ComfyUI"
BANNED = "https://github.com/someone/banned-pack"


def manager_lists(directory: Path) -> Path:
    """Manager data for `registry_nodes()`: alpha-pack under another spelling of its URL,
    four Manager-only packs on four kinds of host, ComfyUI's own entry, a banned package."""
    packs = [
        manager_pack("https://github.com/Someone/Alpha-Pack", "Alpha (Manager's title)"),
        manager_pack(OTHER, "Cool Nodes", author="other", preemptions=["Claimed"]),
        manager_pack("https://github.com/Copy-Man/Single-File", files=[RAW], install_type="copy"),
        manager_pack("https://gist.github.com/someone/0a1b2c3d", files=[GIST], install_type="copy"),
        manager_pack(GITEE, "Gitee pack"),
        manager_pack("https://github.com/No/Node-Map", "Listed without a node map"),
        manager_pack(BANNED, "Banned"),
    ]
    node_map = {
        "https://github.com/Someone/Alpha-Pack": [["MaskScale", "AlphaExtra"], {"title_aux": "a"}],
        OTHER: [
            ["Cool", "MaskScale", "Claimed", "KSampler"],
            {"title_aux": "Cool Nodes", "nodename_pattern": r"\(Cool\)$"},
        ],
        RAW: [["Single"], {"title_aux": "single"}],
        GIST: [["GistNode"], {"title_aux": "gist"}],
        GITEE: [["GiteeNode", "Claimed"], {"title_aux": "gitee", "preemptions": ["GiteeNode"]}],
        COMFYUI: [["KSampler", "CheckpointLoaderSimple"], {"title_aux": "ComfyUI"}],
        BANNED: [["BannedNode"], {"title_aux": "banned"}],
        "https://github.com/bad/pattern": [["BadPattern"], {"nodename_pattern": "(unclosed"}],
    }
    stats = {
        OTHER: {"stars": 1_000_000, "last_update": "2026-11-01 10:00:00"},
        "https://github.com/Copy-Man/Single-File": {
            "stars": 3,
            "last_update": "2020-01-01 00:00:00",
        },
        "https://github.com/Someone/Alpha-Pack": {"stars": 99_999_999},
    }
    return write_manager(directory, packs, node_map, stats)


def registry_nodes() -> list[dict]:
    nodes = sample_nodes()
    nodes[1]["versions_list"][0]["comfy_nodes"].append(comfy("Thing (Cool)", IMAGE))  # beta
    nodes.append(
        node(
            "banned-pack",
            [version("1.0.0", nodes=[comfy("BannedNode")])],
            status="NodeStatusBanned",
            repository=BANNED,
        )
    )
    return nodes


def build(tmp_path: Path, nodes: list[dict] | None = None, **options) -> dict:
    cache = write_cache(tmp_path / "cache.json", nodes or registry_nodes())
    report = build_mappings(MappingsOptions(cache=cache, output=tmp_path / "m.json", **options))
    document = orjson.loads((tmp_path / "m.json").read_bytes())
    document["_report"] = report
    return document


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    return manager_lists(tmp_path / "manager")


@pytest.fixture
def merged(tmp_path: Path, lists: Path) -> dict:
    return build(tmp_path, manager=lists)


def ids(entries: list[dict]) -> list[str]:
    return [e["package_id"] for e in entries]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/Gourieff/comfyui-reactor", "manager_gourieff_comfyui_reactor"),
        ("https://github.com/Other-User/Cool-Nodes.git", "manager_other_user_cool_nodes"),
        ("https://github.com/o/r.git/", "manager_o_r.git"),  # ComfyDock strips .git before /
        ("https://github.com/a/b.c/tree/main", "manager_a_b.c"),
        (RAW, "manager_copy_man_single_file"),
        (GIST, "manager_gist_0a1b2c3d"),
        ("https://gist.github.com/someone/7361b8eb", "manager_gist_7361b8eb"),
        (GITEE, "manager_gitee_com_some_one_gitee_pack"),
        (
            "https://git.mmaker.moe/mmaker/sd-webui-color-enhance",
            "manager_git_mmaker_moe_mmaker_sd_webui_color_enhance",
        ),
        ("https://example.org", "manager_example_org"),
    ],
)
def test_manager_ids_are_comfydocks(url: str, expected: str) -> None:
    assert manager_package_id(url) == expected


def test_manager_only_packs_become_packages(merged: dict) -> None:
    packages = merged["packages"]
    cool = packages["manager_other_user_cool_nodes"]
    assert cool["source"] == "manager"
    assert cool["repository"] == OTHER  # case kept
    assert (cool["github_stars"], cool["downloads"], cool["versions"]) == (1_000_000, 0, {})
    assert (cool["display_name"], cool["author"]) == ("Cool Nodes", "other")
    assert cool["last_update"] == "2026-11-01 10:00:00"
    single = packages["manager_copy_man_single_file"]
    assert single["repository"] == "https://github.com/Copy-Man/Single-File"
    assert (single["install_type"], single["files"]) == ("copy", [RAW])
    assert (
        packages["manager_gist_0a1b2c3d"]["repository"]
        == "https://gist.github.com/someone/0a1b2c3d"
    )
    assert "manager_gitee_com_some_one_gitee_pack" in packages
    assert "manager_no_node_map" in packages  # a pack is a pack even without a node map
    for key, pack in (
        ("Cool::_", "manager_other_user_cool_nodes"),
        ("GistNode::_", "manager_gist_0a1b2c3d"),
    ):
        assert merged["mappings"][key] == [
            {"package_id": pack, "rank": 1, "source": "manager", "versions": []}
        ]


def test_a_registry_packages_repository_is_not_duplicated(merged: dict) -> None:
    assert not any(
        "alpha" in package_id
        for package_id in merged["packages"]
        if package_id.startswith("manager_")
    )
    alpha = merged["packages"]["alpha-pack"]
    assert alpha["source"] == "registry" and alpha["github_stars"] == 100  # the registry's
    # MaskScale: alpha provides it in the registry; the Manager adds nothing for it there
    assert [e for e in merged["mappings"]["MaskScale::_"] if e["package_id"] == "alpha-pack"] == [
        {"package_id": "alpha-pack", "rank": 1, "versions": ["1.10.0", "1.9.0"]}
    ]
    # AlphaExtra: only the Manager knows alpha provides it
    assert merged["mappings"]["AlphaExtra::_"] == [
        {"package_id": "alpha-pack", "rank": 1, "source": "manager", "versions": []}
    ]


def test_registry_packages_rank_before_manager_only_packs(merged: dict) -> None:
    entries = merged["mappings"]["MaskScale::_"]
    assert ids(entries) == ["alpha-pack", "beta-pack", "gamma-odd", "manager_other_user_cool_nodes"]
    assert [e["rank"] for e in entries] == [1, 2, 3, 4]  # a million stars do not change it


def test_preemptions_claim_a_name_within_their_tier(merged: dict) -> None:
    claimed = merged["mappings"]["Claimed::_"]
    assert ids(claimed) == [
        "manager_other_user_cool_nodes",
        "manager_gitee_com_some_one_gitee_pack",
    ]
    gitee = merged["mappings"]["GiteeNode::_"]
    assert ids(gitee) == ["manager_gitee_com_some_one_gitee_pack"]


def test_nodename_pattern_attributes_unlisted_names(merged: dict) -> None:
    entries = merged["mappings"]["Thing (Cool)::_"]
    assert ids(entries) == ["beta-pack", "manager_other_user_cool_nodes"]
    assert entries[1]["source"] == "manager"
    assert "BadPattern::_" in merged["mappings"]  # listed names still count
    assert merged["_report"].manager["bad_patterns"] == 1


def test_comfyuis_own_entry_is_no_pack(merged: dict) -> None:
    assert not any("comfyanonymous" in p for p in merged["packages"])
    assert "KSampler::_" not in merged["mappings"]  # a core node, whoever else lists it
    assert "CheckpointLoaderSimple::_" not in merged["mappings"]


def test_a_banned_registry_package_gets_nothing_from_the_manager(merged: dict) -> None:
    assert "BannedNode::_" not in merged["mappings"]
    assert not any("banned" in p for p in merged["packages"] if p.startswith("manager_"))


def test_a_manager_id_hint_names_the_registry_package(tmp_path: Path) -> None:
    packs = [manager_pack("https://github.com/moved/elsewhere", id="alpha-pack")]
    node_map = {"https://github.com/moved/elsewhere": [["Moved"], {}]}
    document = build(
        tmp_path, sample_nodes(), manager=write_manager(tmp_path / "mgr", packs, node_map)
    )
    assert document["mappings"]["Moved::_"][0]["package_id"] == "alpha-pack"
    assert not any(p.startswith("manager_") for p in document["packages"])


def test_stats_count_packages_and_keys_by_source(merged: dict) -> None:
    stats = merged["stats"]
    manager_packages = [p for p, r in merged["packages"].items() if r["source"] == "manager"]
    manager_keys = [k for k, es in merged["mappings"].items() if any(e.get("source") for e in es)]
    registry_keys = [
        k for k, es in merged["mappings"].items() if any(not e.get("source") for e in es)
    ]
    assert stats["by_source"] == {
        "manager": {"keys": len(manager_keys), "packages": len(manager_packages)},
        "registry": {"keys": len(registry_keys), "packages": 4},
    }
    assert stats["packages"] == 4 + len(manager_packages) == len(merged["packages"])
    assert stats["manager_packages"] == len(manager_packages) == 6
    assert stats["nodes_from_manager"] == sum(
        1 for es in merged["mappings"].values() for e in es if e.get("source")
    )
    report = merged["_report"]
    assert report.manager["registry_packages"] == 1
    assert "Manager (" in report.summary()


# ---- sources -------------------------------------------------------------------------------


def wheel_of(lists: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("comfyui_manager/__init__.py", "raise SystemExit('never imported')\n")
        for name in ("custom-node-list.json", "extension-node-map.json", "github-stats.json"):
            archive.write(lists / name, f"comfyui_manager/{name}")
        archive.writestr(
            "comfyui_manager-4.3.dist-info/METADATA", "Name: comfyui-manager\nVersion: 4.3\n"
        )
    return path


def test_a_wheel_an_installed_package_and_a_directory_give_the_same_file(
    tmp_path: Path, lists: Path, merged: dict, monkeypatch
) -> None:
    expected = (tmp_path / "m.json").read_bytes()
    wheel = wheel_of(lists, tmp_path / "comfyui_manager-4.3-py3-none-any.whl")
    build(tmp_path, manager=wheel)
    assert (tmp_path / "m.json").read_bytes() == expected
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    build(tmp_path, manager="installed")
    assert (tmp_path / "m.json").read_bytes() == expected
    assert "comfyui_manager" not in sys.modules  # read, never imported
    shutil.move(lists, site / "comfyui_manager" / "copy")  # a directory holding comfyui_manager/
    build(tmp_path, manager=site)
    assert (tmp_path / "m.json").read_bytes() == expected


class _Lists(http.server.SimpleHTTPRequestHandler):
    """Serves the Manager's files under /ltdrdata/ComfyUI-Manager/main/, like GitHub's raw host."""

    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/ltdrdata/ComfyUI-Manager/main"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def raw_host(lists: Path) -> Iterator[str]:
    handler = functools.partial(_Lists, directory=str(lists))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ltdrdata/ComfyUI-Manager/main"
    server.shutdown()
    server.server_close()


def test_live_lists_record_into_a_cassette_and_replay_offline(
    tmp_path: Path, merged: dict, raw_host: str
) -> None:
    expected = (tmp_path / "m.json").read_bytes()
    cassette = tmp_path / "manager.json"
    with use_cassette(cassette, "once"):
        build(tmp_path, manager="live", manager_url=raw_host)
    assert (tmp_path / "m.json").read_bytes() == expected
    recorded = json.loads(cassette.read_text())
    assert len(recorded["interactions"]) == 3
    (tmp_path / "m.json").unlink()
    with blocked_network(allow_loopback=False), use_cassette(cassette, "none"):
        build(tmp_path, manager="live")  # the default URL: GitHub's raw host, replayed
    assert (tmp_path / "m.json").read_bytes() == expected


def test_live_through_the_command_line(tmp_path: Path, lists: Path, raw_host: str, capsys) -> None:
    cache = write_cache(tmp_path / "cache.json", registry_nodes())
    out, cassette = tmp_path / "cli.json", tmp_path / "cli-cassette.json"
    args = ["mappings", "--cache", str(cache), "--output", str(out), "--manager", "live"]
    record = [
        *args,
        "--manager-url",
        raw_host,
        "--manager-cassette",
        str(cassette),
        "--record-mode",
        "once",
    ]
    assert main(record) == 0
    first = out.read_bytes()
    with blocked_network(allow_loopback=False):
        assert main([*args, "--manager-cassette", str(cassette)]) == 0
    assert out.read_bytes() == first
    assert "Manager (" in capsys.readouterr().err


def test_live_failures_are_one_line(tmp_path: Path, capsys) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    args = ["mappings", "--cache", str(cache), "--output", str(tmp_path / "m.json")]
    dead = "http://127.0.0.1:9/nothing"  # the discard port: connection refused
    assert main([*args, "--manager", "live", "--manager-url", dead]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not fetch the Manager's lists" in err
    assert not (tmp_path / "m.json").exists()


def _write(name: str, text: str):
    """A preparation that overwrites one of the lists with `text`."""

    def prepare(directory: Path) -> Path:
        (directory / name).write_text(text)
        return directory

    return prepare


def _without(name: str):
    def prepare(directory: Path) -> Path:
        (directory / name).unlink()
        return directory

    return prepare


def _not_a_zip(directory: Path) -> Path:
    (directory / "w.whl").write_text("not a zip")
    return directory / "w.whl"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: d / "missing", "no such file"),
        (lambda d: Path("not-a-distribution-name"), "not a directory, a file"),
        (_without("custom-node-list.json"), "no such file"),
        (_write("extension-node-map.json", "{oops"), "not valid JSON"),
        (_write("extension-node-map.json", "[]"), "not a JSON object"),
        (_write("custom-node-list.json", "{}"), "no 'custom_nodes' list"),
        (_not_a_zip, "not a readable wheel"),
        (lambda d: _empty_zip(d / "e.whl"), "the archive has no comfyui_manager/"),
        (lambda d: Path("/dev/zero"), "not a regular file"),
    ],
)
def test_bad_manager_sources_are_one_line(tmp_path: Path, capsys, prepare, message: str) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    source = prepare(manager_lists(tmp_path / "mgr"))
    out = tmp_path / "m.json"
    out.write_text("precious")
    assert (
        main(["mappings", "--cache", str(cache), "--output", str(out), "--manager", str(source)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert out.read_text() == "precious"


def _empty_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.txt", "")
    return path


def test_malformed_entries_are_dropped_and_counted(tmp_path: Path) -> None:
    packs = [manager_pack(OTHER), {"title": "no reference"}, "not an object"]
    node_map = {OTHER: [["Cool"], {}], "https://github.com/x/y": "not a list", "": [["E"], {}]}
    stats = {OTHER: {"stars": "many"}, "https://github.com/x/y": 7}
    document = build(
        tmp_path, sample_nodes(), manager=write_manager(tmp_path / "m", packs, node_map, stats)
    )
    assert document["packages"]["manager_other_user_cool_nodes"]["github_stars"] == 0
    assert document["_report"].manager["skipped"] == 5


# ---- the real thing --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_wheel(tmp_path_factory) -> Path:
    """ComfyUI-Manager's real wheel from PyPI, when pip can download it (CI can)."""
    where = tmp_path_factory.mktemp("comfyui-manager")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "comfyui-manager", "-d", str(where)]
        + ["--retries", "0", "--timeout", "15", "--quiet"],  # offline: give up fast
        capture_output=True,
        timeout=300,
    )
    wheels = sorted(where.glob("comfyui_manager-*.whl"))
    if done.returncode != 0 or not wheels:
        pytest.skip("pip download --no-deps comfyui-manager is not possible here")
    return wheels[-1]


def test_the_real_managers_wheel(tmp_path: Path, real_wheel: Path) -> None:
    """The real lists (about 3,500 packs and 27,000 node classes) merge with a registry whose
    one package is the Impact Pack, under its registry id."""
    impact = node(
        "comfyui-impact-pack",
        [version("8.0.0", nodes=[comfy("SAMLoader", MASK_SCALE)])],
        repository="https://github.com/ltdrdata/ComfyUI-Impact-Pack",
    )
    document = build(tmp_path, [impact], manager=real_wheel)
    stats = document["stats"]["by_source"]["manager"]
    assert stats["packages"] > 2000 and stats["keys"] > 15000
    packages = document["packages"]
    assert not any("impact_pack" in p for p in packages if p.startswith("manager_"))
    assert all(p.startswith("manager_") for p, r in packages.items() if r["source"] == "manager")
    sam = document["mappings"]["SAMLoader::_"]
    assert sam[0]["package_id"] == "comfyui-impact-pack"  # registry first, and it preempts
    assert document["_report"].manager["registry_packages"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r",
        "https://github.com/O-x/R-y",
        "https://github.com/o/r.git",
        "https://github.com/o/r.git.git",
        "https://github.com/o/.git",
        "https://github.com/../r",
        "HTTPS://GITHUB.COM/A/B",
        " https://github.com/o/r ",
        "https://github.com/o/r_1.2",
    ],
)
def test_manager_id_shortcut_agrees_with_the_general_path(url: str, monkeypatch) -> None:
    from registry_tools.mappings import manager_packs

    fast = manager_package_id(url)
    monkeypatch.setattr(manager_packs, "_PLAIN_GITHUB", re.compile(r"(?!)"))  # never matches
    assert fast == manager_package_id(url)


def test_patterns_with_back_references_and_flags_still_match(tmp_path: Path) -> None:
    nodes = [
        node(
            "p",
            [version("1.0.0", nodes=[comfy("ababNode"), comfy("FOOBAR"), comfy("Plain (x)")])],
        )
    ]
    node_map = {
        "https://github.com/a/backref": [["A"], {"nodename_pattern": r"^(ab)\1"}],
        "https://github.com/a/flag": [["B"], {"nodename_pattern": "(?i)^foo"}],
        "https://github.com/a/plain": [["C"], {"nodename_pattern": r"\(x\)$"}],
    }
    packs = [manager_pack(url) for url in node_map]
    document = build(tmp_path, nodes, manager=write_manager(tmp_path / "m", packs, node_map))
    mappings = document["mappings"]
    assert ids(mappings["ababNode::_"]) == ["p", "manager_a_backref"]
    assert ids(mappings["FOOBAR::_"]) == ["p", "manager_a_flag"]
    assert ids(mappings["Plain (x)::_"]) == ["p", "manager_a_plain"]


def test_patterns_that_could_run_for_ever_and_urls_without_a_host_are_skipped(
    tmp_path: Path,
) -> None:
    nodes = [node("p", [version("1.0.0", nodes=[comfy("a" * 40 + "!")])])]
    node_map = {
        "https://github.com/a/slow": [["A"], {"nodename_pattern": "^(a+)+$"}],
        "not a url": [["B"], {}],
        "ftp://example.org/x": [["C"], {}],
    }
    packs = [manager_pack("https://github.com/a/slow"), manager_pack("relative/path")]
    document = build(tmp_path, nodes, manager=write_manager(tmp_path / "m", packs, node_map))
    report = document["_report"]
    assert report.manager["bad_patterns"] == 1 and report.manager["skipped"] == 3
    assert ids(document["mappings"]["a" * 40 + "!::_"]) == ["p"]
    assert [p for p in document["packages"] if p.startswith("manager_")] == ["manager_a_slow"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--manager-url", "http://127.0.0.1:9/x"],
        ["--manager-cassette", "c.json"],
        ["--manager", "live", "--manager-cassette", "missing.json"],
        ["--manager", "live", "--manager-cassette", "c.json", "--record-mode", "sometimes"],
    ],
)
def test_live_flags_misused_are_one_line(tmp_path: Path, capsys, extra: list[str]) -> None:
    cache = write_cache(tmp_path / "cache.json", sample_nodes())
    (tmp_path / "c.json").write_text("{}")
    args = ["mappings", "--cache", str(cache), "--output", str(tmp_path / "m.json")]
    extra = [str(tmp_path / e) if e.endswith(".json") else e for e in extra]
    assert main([*args, *extra]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()
