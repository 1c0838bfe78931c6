"""The pytest11 plugin, exercised the way a user project sees it, through `pytester`."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CASSETTE_TEST = """
import asyncio
import aiohttp
import pytest

async def get(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, await response.json()

@pytest.mark.registry_cassette("nodes")
def test_nodes(request, registry_cassette):
    replaying = request.config.getoption("--record-mode") == "none"
    emulator = None if replaying else request.getfixturevalue("registry_emulator")
    base = emulator.url if emulator else "http://registry.invalid"
    status, body = asyncio.run(get(base + "/nodes?limit=2&page=PAGE"))
    assert status == 200 and len(body["nodes"]) == 2
"""

PHASES_TEST = """
import hashlib
from registry_tools.fetch.options import CacheOptions
from registry_tools.fetch.run import run_cache

def test_phases(request, tmp_path, monkeypatch, registry_phase_cassettes):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # timestamps in the cache
    replaying = request.config.getoption("--record-mode") == "none"
    emulator = None if replaying else request.getfixturevalue("registry_emulator")
    base = emulator.url if emulator else "http://registry.invalid"
    options = CacheOptions(output=tmp_path / "cache.json", base_url=base, progress=False)
    assert run_cache(options, phase_context=registry_phase_cassettes).ok
    print("DIGEST", hashlib.sha256(options.output.read_bytes()).hexdigest())
"""

SNAPSHOT_TEST = """
def test_data(snapshot):
    assert snapshot == {"b": [1, 2], "a": VALUE}
    assert snapshot("named") == ["x"]
"""


def test_options_and_markers_are_registered(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest("--help").stdout.str()
    for option in ("--record-mode", "--block-network", "--snapshot-update"):
        assert option in help_text
    markers = pytester.runpytest("--markers").stdout.str()
    assert "registry_cassette(" in markers and "registry_emulator(" in markers


def test_cassette_records_once_then_replays_without_network(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_api=CASSETTE_TEST.replace("PAGE", "1"))
    pytester.runpytest("--record-mode", "once").assert_outcomes(passed=1)
    assert (pytester.path / "cassettes" / "test_api" / "nodes.json").is_file()
    pytester.runpytest().assert_outcomes(passed=1)  # default mode none: replay
    pytester.makepyfile(test_api=CASSETTE_TEST.replace("PAGE", "2"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*cannot answer GET http://registry.invalid/nodes?limit=2&page=2*"]
    )


def test_phase_cassettes_record_and_replay_run_cache(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_run=PHASES_TEST)
    recorded = pytester.runpytest("--record-mode", "all", "-s")
    recorded.assert_outcomes(passed=1)
    directory = pytester.path / "cassettes" / "test_run" / "test_phases"
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json",
        "phase1-nodes.json",
        "phase2-versions.json",
        "phase3-metadata.json",
    ]
    replayed = pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    digest = [line for line in recorded.outlines if "DIGEST" in line]
    assert digest and digest == [line for line in replayed.outlines if "DIGEST" in line]


def test_replay_blocks_even_loopback_and_missing_cassettes_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_net="""
        import socket
        import pytest

        @pytest.mark.registry_cassette("absent")
        def test_missing(registry_cassette):
            pass

        def test_loopback(registry_phase_cassettes, registry_emulator):
            host, port = registry_emulator.url.rsplit("/", 1)[1].split(":")
            socket.create_connection((host, int(port)))
        """
    )
    (pytester.path / "cassettes" / "test_net" / "test_loopback").mkdir(parents=True)
    (pytester.path / "cassettes" / "test_net" / "test_loopback" / "manifest.json").write_text(
        '{"format": "registry-tools-cassettes/1", "dataset": {"name": "x"}}'
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(["*absent.json: no such file*", "*NetworkBlocked*127.0.0.1*"])


def test_block_network_allows_only_loopback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_block="""
        import socket
        import pytest
        from registry_tools.replay.network import NetworkBlocked

        def test_internet_is_blocked():
            with pytest.raises(NetworkBlocked):
                socket.create_connection(("192.0.2.1", 80), timeout=1)

        def test_emulator_still_answers(registry_emulator):
            host, port = registry_emulator.url.rsplit("/", 1)[1].split(":")
            socket.create_connection((host, int(port))).close()
        """
    )
    pytester.runpytest("--block-network").assert_outcomes(passed=2)


def test_emulator_knobs_from_marker_and_indirect_param(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_emu="""
        import urllib.request, urllib.error, json
        import pytest

        def get(url):
            try:
                with urllib.request.urlopen(url) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as error:
                return error.code, None

        @pytest.mark.registry_emulator(nodes=3, rate_500=1.0, max_consecutive_faults=1)
        def test_marker(registry_emulator):
            assert get(registry_emulator.url + "/nodes")[0] == 500
            status, body = get(registry_emulator.url + "/nodes")
            assert status == 200 and body["total"] == 3
            assert registry_emulator.counters.faults["500"] == 1

        @pytest.mark.parametrize("registry_emulator", [{"nodes": 2}], indirect=True)
        def test_param(registry_emulator):
            assert get(registry_emulator.url + "/nodes")[1]["total"] == 2
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_snapshot_create_compare_update_and_report_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "1"))
    missing = pytester.runpytest()
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*does not exist (create it with --snapshot-update)*"])
    pytester.runpytest("--snapshot-update").stdout.fnmatch_lines(["2 snapshot(s) written."])
    stored = pytester.path / "__snapshots__" / "test_snap" / "test_data.json"
    assert stored.read_text() == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n'
    pytester.runpytest().assert_outcomes(passed=1)

    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "2"))
    changed = pytester.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*value differs from snapshot*", '*-  "a": 1,', '*+  "a": 2,'])

    stale = stored.with_name("test_gone.json")
    stale.write_text("{}\n")
    report = pytester.runpytest("-k", "nothing_matches")
    report.stdout.fnmatch_lines(["1 snapshot(s) unused*", "*test_gone.json"])
    pytester.runpytest("--snapshot-update").stdout.fnmatch_lines(["1 snapshot(s) deleted:"])
    assert not stale.exists() and '"a": 2' in stored.read_text()


def test_snapshot_that_is_not_json_is_an_error_never_overwritten(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "1"))
    stored = pytester.path / "__snapshots__" / "test_snap" / "test_data.json"
    stored.parent.mkdir(parents=True)
    stored.write_text("not json")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_data.json: not valid JSON*fix or delete it*"])
    assert stored.read_text() == "not json"
