"""The index-based incremental build stays byte-identical to a full build with the new parts of
the format: `Type::_` keys, `unavailable_versions`, claims, `package_aliases` and `--manager`
(its lists changing between runs, switched on and off)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from _mapping_fixtures import (
    IMAGE,
    comfy,
    manager_pack,
    node,
    pinned_clock,  # noqa: F401  (autouse)
    sample_nodes,
    version,
    write_cache,
    write_manager,
)
from test_manager import OTHER, manager_lists, registry_nodes

from registry_tools.mappings.build import MappingsOptions, build_mappings, index_path


def both_ways(
    tmp_path: Path, old_nodes: list[dict], new_nodes: list[dict], old: dict, new: dict
) -> object:
    """Build the old cache with options `old`, then the new cache with options `new` both in
    full and incrementally from the old output; outputs and indexes must be identical."""
    old_out = tmp_path / "old-m.json"
    old_cache = write_cache(tmp_path / "old.json", old_nodes)
    build_mappings(MappingsOptions(cache=old_cache, output=old_out, **old))
    cache = write_cache(tmp_path / "new.json", new_nodes)
    full = tmp_path / "full.json"
    build_mappings(MappingsOptions(cache=cache, output=full, **new))
    inc = tmp_path / "inc.json"
    report = build_mappings(MappingsOptions(cache=cache, output=inc, input=old_out, **new))
    assert inc.read_bytes() == full.read_bytes()
    assert orjson.loads(index_path(inc).read_bytes()) == orjson.loads(index_path(full).read_bytes())
    return report


def _lose_url(nodes: list[dict]) -> None:
    nodes[0]["versions_list"][1]["download_url"] = None  # alpha 1.10.0: no longer installable


def _gain_url_under_the_servers_name(nodes: list[dict]) -> None:
    entry = nodes[0]["versions_list"][1]
    entry["downloadUrl"] = entry.pop("download_url")


def _flag(nodes: list[dict]) -> None:
    nodes[2]["versions_list"][0]["status"] = "NodeVersionStatusFlagged"  # gamma's only version


def _claim(nodes: list[dict]) -> None:
    nodes[2]["preempted_comfy_node_names"] = ["MaskScale"]  # gamma: head only, rank 1 now


def _move_repository(nodes: list[dict]) -> None:
    nodes[1]["repository"] = OTHER  # beta is now the Manager's Cool Nodes


def _name_only_type(nodes: list[dict]) -> None:
    """A new beta release provides MaskScale under a third signature: `MaskScale::_` gains a
    version (published versions never change their nodes: the builders rely on it)."""
    nodes[1]["versions_list"].append(
        version("1.2.0", "2026-03-03T00:00:00Z", [comfy("MaskScale", {"x": ["INT"]})])
    )


def _pending_metadata(nodes: list[dict]) -> None:
    nodes[1]["versions_list"][0] = version("1.0.0", metadata=False, pending="pending")


def _provide_what_the_manager_listed(nodes: list[dict]) -> None:
    """alpha now provides AlphaExtra, which only the Manager knew it for: no Manager entry."""
    nodes[0]["versions_list"].append(
        version("2.5.0", "2026-08-01T00:00:00Z", [comfy("AlphaExtra", IMAGE)])
    )


def _stop_providing_what_the_manager_lists(nodes: list[dict]) -> None:
    """alpha no longer provides MaskScale in any installable version: the Manager's entry
    for it (alpha, versions []) comes back."""
    for entry in nodes[0]["versions_list"]:
        if any(c["comfy_node_name"] == "MaskScale" for c in entry.get("comfy_nodes", [])):
            entry["deprecated"] = True


def _gain_a_patterned_name(nodes: list[dict]) -> None:
    """gamma provides a node the Cool Nodes pattern claims (and beta's stays claimed)."""
    nodes[2]["versions_list"].append(
        version("0.1.0", "2026-09-01T00:00:00Z", [comfy("Gadget (Cool)"), comfy("Thing (Cool)")])
    )


REGISTRY_CHANGES = [
    _gain_a_patterned_name,
    _provide_what_the_manager_listed,
    _stop_providing_what_the_manager_lists,
    _lose_url,
    _gain_url_under_the_servers_name,
    _flag,
    _claim,
    _move_repository,
    _name_only_type,
    _pending_metadata,
]


@pytest.mark.parametrize("manager", [False, True], ids=["registry", "with-manager"])
@pytest.mark.parametrize("change", REGISTRY_CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_registry_changes(tmp_path: Path, change, manager: bool) -> None:
    options = {"manager": manager_lists(tmp_path / "mgr")} if manager else {}
    new = registry_nodes()
    change(new)
    report = both_ways(tmp_path, registry_nodes(), new, options, options)
    assert report.packages_unchanged >= 1


def changed_lists(directory: Path, change: str) -> Path:
    manager_lists(directory)
    node_map = json.loads((directory / "extension-node-map.json").read_text())
    packs = json.loads((directory / "custom-node-list.json").read_text())["custom_nodes"]
    stats = json.loads((directory / "github-stats.json").read_text())
    if change == "pack_added":
        packs.append(manager_pack("https://github.com/new/pack"))
        node_map["https://github.com/new/pack"] = [["MaskScale", "Fresh"], {}]
    elif change == "pack_removed":
        del node_map[OTHER]
    elif change == "names_changed":
        node_map[OTHER][0] = ["Cool", "Beta", "Loader"]
    elif change == "stars_changed":
        stats["https://github.com/Copy-Man/Single-File"]["stars"] = 10**9
        node_map["https://raw.githubusercontent.com/Copy-Man/Single-File/main/nodes/single.py"][
            0
        ].append("Cool")
    elif change == "pattern_added":
        node_map["https://gitee.com/Some-One/Gitee-Pack"][1]["nodename_pattern"] = "^Mask"
    elif change == "preemption_added":
        node_map["https://github.com/Someone/Alpha-Pack"][1]["preemptions"] = ["Cool"]
        node_map["https://github.com/Someone/Alpha-Pack"][0].append("Cool")
    return write_manager(directory, packs, node_map, stats)


@pytest.mark.parametrize(
    "change",
    [
        "pack_added",
        "pack_removed",
        "names_changed",
        "stars_changed",
        "pattern_added",
        "preemption_added",
    ],
)
def test_manager_list_changes(tmp_path: Path, change: str) -> None:
    old = {"manager": manager_lists(tmp_path / "old-mgr")}
    new = {"manager": changed_lists(tmp_path / "new-mgr", change)}
    report = both_ways(tmp_path, registry_nodes(), registry_nodes(), old, new)
    assert report.packages_unchanged == len(registry_nodes())  # no registry package parsed


@pytest.mark.parametrize("switch", ["on", "off"])
def test_manager_switched_on_or_off(tmp_path: Path, switch: str) -> None:
    lists = {"manager": manager_lists(tmp_path / "mgr")}
    old, new = ({}, lists) if switch == "on" else (lists, {})
    both_ways(tmp_path, registry_nodes(), registry_nodes(), old, new)


def test_aliases_change_between_runs(tmp_path: Path) -> None:
    (tmp_path / "a1.json").write_text('{"old": "alpha-pack"}')
    (tmp_path / "a2.json").write_text('{"older": "beta-pack", "old": "gamma-odd"}')
    both_ways(
        tmp_path,
        sample_nodes(),
        sample_nodes(),
        {"aliases": tmp_path / "a1.json"},
        {"aliases": tmp_path / "a2.json"},
    )


def test_every_change_at_once_with_the_manager_and_a_chain(tmp_path: Path) -> None:
    steps = [registry_nodes()]
    for change in REGISTRY_CHANGES:
        steps.append(json.loads(json.dumps(steps[-1])))
        change(steps[-1])
    steps[-1].append(node("omega", [version("1.0.0", nodes=[comfy("Cool", IMAGE)])]))
    previous = None
    for n, nodes in enumerate(steps):
        lists = changed_lists(tmp_path / f"mgr{n}", ["pack_added", "names_changed"][n % 2])
        cache = write_cache(tmp_path / f"c{n}.json", nodes)
        out = tmp_path / f"m{n}.json"
        build_mappings(MappingsOptions(cache=cache, output=out, input=previous, manager=lists))
        build_mappings(MappingsOptions(cache=cache, output=tmp_path / "full.json", manager=lists))
        assert out.read_bytes() == (tmp_path / "full.json").read_bytes()
        previous = out


@pytest.mark.parametrize(
    "damage",
    [
        lambda index: index["packages"]["alpha-pack"].pop("names"),
        lambda index: index["packages"]["beta-pack"].update(newest="yesterday"),
        lambda index: index["packages"]["beta-pack"].update(fed="3"),
        lambda index: index.pop("manager"),
        lambda index: index["starts"].pop(),
    ],
)
def test_an_index_of_the_wrong_shape_is_ignored(tmp_path: Path, damage) -> None:
    """An index that matches its output (size, CRC-32) but not the shape the builder writes
    (edited by hand, or by a bug) is ignored: the general path runs, with the same output."""
    old_out = tmp_path / "old-m.json"
    build_mappings(
        MappingsOptions(cache=write_cache(tmp_path / "old.json", sample_nodes()), output=old_out)
    )
    index = orjson.loads(index_path(old_out).read_bytes())
    damage(index)
    index_path(old_out).write_bytes(orjson.dumps(index))
    new = sample_nodes()
    new.append(node("omega", [version("1.0.0", nodes=[comfy("Beta", IMAGE)])]))
    cache = write_cache(tmp_path / "new.json", new)
    build_mappings(MappingsOptions(cache=cache, output=tmp_path / "full.json"))
    report = build_mappings(
        MappingsOptions(cache=cache, output=tmp_path / "inc.json", input=old_out)
    )
    assert report.packages_unchanged == 0  # the general path
    assert (tmp_path / "inc.json").read_bytes() == (tmp_path / "full.json").read_bytes()


def test_a_registry_id_among_the_manager_ids(tmp_path: Path) -> None:
    """Manager-only packs are serialised as one block unless a registry id sorts among
    theirs; then they go one by one, with the same bytes."""
    nodes = registry_nodes()
    nodes.append(node("manager_middle", [version("1.0.0", nodes=[comfy("Middle", IMAGE)])]))
    options = {"manager": manager_lists(tmp_path / "mgr")}
    changed = json.loads(json.dumps(nodes))
    _lose_url(changed)
    both_ways(tmp_path, nodes, changed, options, options)
    ids = list(orjson.loads((tmp_path / "inc.json").read_bytes())["packages"])
    assert ids.index("manager_gist_0a1b2c3d") < ids.index("manager_middle")
    assert ids.index("manager_middle") < ids.index("manager_other_user_cool_nodes")


def test_reused_manager_state_ranks_like_a_full_build(tmp_path: Path) -> None:
    """Two Manager-only packs whose order depends on both their stars and their last update
    (3 stars two years ago: 20; 1 star last week: 19.8): an incremental run that takes them
    from the input's index ranks them as a full build does."""
    old_pack, new_pack = "https://github.com/old/pack", "https://github.com/new/pack"
    packs = [manager_pack(old_pack), manager_pack(new_pack)]
    node_map = {old_pack: [["Tie"], {}], new_pack: [["Tie"], {}]}
    stats = {
        old_pack: {"stars": 3, "last_update": "2024-11-24 00:00:00"},
        new_pack: {"stars": 1, "last_update": "2026-11-20 00:00:00"},
    }
    options = {"manager": write_manager(tmp_path / "mgr", packs, node_map, stats)}
    new = sample_nodes()
    _lose_url(new)  # a registry change that leaves the Manager's inputs as they were
    both_ways(tmp_path, sample_nodes(), new, options, options)
    tie = orjson.loads((tmp_path / "inc.json").read_bytes())["mappings"]["Tie::_"]
    assert [e["package_id"] for e in tie] == ["manager_old_pack", "manager_new_pack"]


def test_a_pattern_hit_stays_while_another_package_provides_the_name(tmp_path: Path) -> None:
    """beta and gamma both provide `Thing (Cool)`, which the Cool Nodes pattern claims; beta
    drops it (its metadata pending again): gamma still provides it, so the hit stays."""
    old = registry_nodes()
    old[2]["versions_list"].append(
        version("0.1.0", "2026-09-01T00:00:00Z", [comfy("Thing (Cool)", IMAGE)])
    )
    new = json.loads(json.dumps(old))
    _pending_metadata(new)
    options = {"manager": manager_lists(tmp_path / "mgr")}
    both_ways(tmp_path, old, new, options, options)
    thing = orjson.loads((tmp_path / "inc.json").read_bytes())["mappings"]["Thing (Cool)::_"]
    assert [e["package_id"] for e in thing] == ["gamma-odd", "manager_other_user_cool_nodes"]
