"""`resolve --online`: unknown types looked up through `/comfy-nodes/{name}/node` and
`/nodes/search?comfy_node_search=`, marked in the plan, recordable as a cassette."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _mapping_fixtures import comfy, node, version
from _resolve_fixtures import new_mappings, ui_node, ui_workflow

from registry_tools import files
from registry_tools.cli import main
from registry_tools.fetch import cache_file
from registry_tools.fetch.client import RetryPolicy
from registry_tools.registry.emulator import running_emulator
from registry_tools.registry.faults import Faults
from registry_tools.resolve.online import OnlineLookup
from registry_tools.resolve.resolver import resolve_workflow


def registry_cache() -> dict:
    """The stand-in registry's data: two packs providing FreshNode (the more downloaded one
    is the registry's preferred provider; its newest version is deprecated), and one the
    mappings already hold."""
    nodes = [
        node(
            "fresh-pack",
            [
                version("0.3.0", "2026-11-20T00:00:00Z", [comfy("FreshNode")], deprecated=True),
                version("0.2.0", "2026-11-01T00:00:00Z", [comfy("FreshNode")]),
            ],
            downloads=5000,
            repository="https://github.com/fresh/fresh-pack",
        ),
        node(
            "other-fresh",
            [version("1.0.0", "2026-10-01T00:00:00Z", [comfy("FreshNode")])],
            downloads=10,
        ),
        node("hakuimg", [version("1.2.0", "2026-10-01T00:00:00Z", [comfy("Blur")])]),
    ]
    return cache_file.build_cache(json.loads(json.dumps(nodes)))


def registry(faults: Faults | None = None):
    return running_emulator(registry_cache(), faults)


def test_unknown_types_are_looked_up_and_marked() -> None:
    workflow = ui_workflow(ui_node(1, "FreshNode"), ui_node(2, "Blur"), ui_node(3, "Nowhere"))
    with registry() as served:
        lookup = OnlineLookup(served.url)
        result = resolve_workflow(workflow, new_mappings(), lookup=lookup)
        requests = served.counters.requests
    fresh = next(p for p in result.packages if p.package_id == "fresh-pack")
    assert (fresh.source, fresh.version) == ("online", "0.2.0")
    assert fresh.download_url == "https://cdn.example/0.2.0.zip"
    assert fresh.repository == "https://github.com/fresh/fresh-pack"
    freshtype = next(t for t in result.types if t.node_type == "FreshNode")
    assert freshtype.match == "online"
    assert [c.package_id for c in freshtype.candidates] == ["fresh-pack", "other-fresh"]
    assert result.unresolved == ("Nowhere",) and result.online
    # Blur is in the mappings: only FreshNode and Nowhere were asked (2 reads each), plus the
    # version read of each package found
    assert requests == lookup.requests == 6


def test_a_failed_look_up_is_not_reported_as_nothing_found() -> None:
    workflow = ui_workflow(ui_node(1, "FreshNode"))
    faults = Faults(rate_500=1.0, max_consecutive_faults=100)
    policy = RetryPolicy(max_attempts=2, backoff=0.001)
    with registry(faults) as served:
        result = resolve_workflow(
            workflow, new_mappings(), lookup=OnlineLookup(served.url, policy=policy)
        )
    (item,) = result.unresolved_types
    assert "online look-up failed (HTTP 500 (after 2 attempts))" in item.detail


def test_cli_records_and_replays_the_look_up(tmp_path: Path, capsys) -> None:
    mappings = tmp_path / "m.json"
    files.write_atomic(mappings, files.dumps(new_mappings()))
    workflow = tmp_path / "w.json"
    workflow.write_text(json.dumps(ui_workflow(ui_node(1, "FreshNode"))))
    cassette = tmp_path / "online.json"
    base = ["resolve", str(workflow), "--mappings", str(mappings), "--online", "--json"]
    with registry() as served:
        recorded = [*base, "--base-url", served.url, "--cassette", str(cassette)]
        recorded += ["--record-mode", "once"]
        assert main(recorded) == 0
    first = json.loads(capsys.readouterr().out)
    assert cassette.is_file() and "comfy_node_search" in cassette.read_text()
    # the registry is gone: the cassette answers, for any base URL
    replay = [*base, "--base-url", "http://registry.invalid", "--cassette", str(cassette)]
    assert main(replay) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert first["packages"][0]["source"] == "online"


@pytest.mark.parametrize("bad", [{"base_url": ""}, {"base_url": "x", "concurrency": "4"}])
def test_lookup_checks_its_arguments(bad) -> None:
    from registry_tools.errors import UserError

    with pytest.raises(UserError):
        OnlineLookup(**bad)
