"""The pytest11 plugin, exercised the way a user project sees it, through `pytester`.

`tests/plugin_project/` is such a project (a client of the registry with cassette-backed and
snapshot tests, and tests under the network guard); these tests copy it into a temporary
directory and run pytest on it: record, replay, update snapshots of a selection, find unused
ones, block the network. Snapshot details are in `test_plugin_snapshots.py`, living beside
pytest-recording and syrupy in `test_plugin_coexistence.py`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Imported here, once: pytester's in-process runs drop the modules each run imports, and
# vcrpy, aiohttp and the emulator would otherwise be imported again by every run.
import registry_tools.fetch.run
import registry_tools.registry.emulator
import registry_tools.replay.cassettes  # noqa: F401

pytest_plugins = ["pytester"]

PROJECT = Path(__file__).parent / "plugin_project"
README = Path(__file__).parent.parent / "README.md"
CASSETTES = Path("cassettes") / "test_registry_client"
SNAPSHOTS = Path("__registry_snapshots__") / "test_registry_client"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for source in PROJECT.glob("*.py"):
        (pytester.path / source.name).write_text(source.read_text())
    return pytester


def _recorded(project: pytest.Pytester) -> pytest.RunResult:
    result = project.runpytest(
        "test_registry_client.py", "--registry-record-mode", "once", "--registry-snapshot-update"
    )
    result.assert_outcomes(passed=7)
    return result


def test_options_and_markers_are_registered(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest("--help").stdout.str()
    for option in (
        "--registry-record-mode",
        "--registry-block-network",
        "--registry-allowed-hosts",
        "--registry-allow-loopback",
        "--registry-snapshot-update",
        "--registry-snapshot-warn-unused",
    ):
        assert option in help_text
    markers = pytester.runpytest("--markers").stdout.str()
    for marker in ("registry_cassette(", "registry_block_network(", "registry_emulator("):
        assert marker in markers


def test_record_then_replay_offline_with_qualified_safe_names(project: pytest.Pytester) -> None:
    _recorded(project)
    cassettes = sorted(p.name for p in (project.path / CASSETTES).iterdir())
    assert cassettes == [
        "TestNodes.test_first_page.json",
        "TestNodes.test_second_page.json",
        "TestPages.test_first_page.json",  # same test name, another class: another cassette
        "small-registry",
        "test_no_request.json",  # no request made: an empty cassette, so the replay passes
        "test_page_ids[p-1].json",  # ids `p/1` and `p:2` are no folders
        "test_page_ids[p-2].json",
    ]
    assert json.loads((project.path / CASSETTES / "test_no_request.json").read_text()) == {
        "header": {"format": "registry-tools-cassette/1", "metadata": {}},
        "interactions": [],
    }
    replayed = project.runpytest("test_registry_client.py")  # default mode none: replay only
    replayed.assert_outcomes(passed=7)
    assert "written" not in replayed.stdout.str()  # the snapshots matched


def test_updating_a_selection_keeps_every_other_snapshot(project: pytest.Pytester) -> None:
    _recorded(project)
    before = {p.name: p.read_bytes() for p in (project.path / SNAPSHOTS).iterdir()}
    (project.path / SNAPSHOTS / "TestNodes.test_first_page.json").write_text('["changed"]\n')
    selected = project.runpytest(
        "test_registry_client.py::TestNodes::test_first_page", "--registry-snapshot-update"
    )
    selected.assert_outcomes(passed=1)
    selected.stdout.fnmatch_lines(["1 registry snapshot(s) written."])
    after = {p.name: p.read_bytes() for p in (project.path / SNAPSHOTS).iterdir()}
    assert after == before  # the changed one rewritten, none of the others touched
    project.runpytest("test_registry_client.py", "-k", "TestPages", "--registry-snapshot-update")
    assert {p.name for p in (project.path / SNAPSHOTS).iterdir()} == set(before)


def test_unused_snapshots_fail_the_run_unless_warned_and_update_deletes_them(
    project: pytest.Pytester,
) -> None:
    _recorded(project)
    gone = project.path / SNAPSHOTS / "TestNodes.test_gone.json"  # its test no longer exists
    stale = project.path / SNAPSHOTS / "TestNodes.test_first_page.extra.json"  # never read
    for path in (gone, stale):
        path.write_text("[]\n")
    failing = project.runpytest("test_registry_client.py")
    assert failing.ret == 1
    failing.assert_outcomes(passed=7)
    failing.stdout.fnmatch_lines(
        ["2 registry snapshot(s) unused, which fails the run*", f"*{stale}", f"*{gone}"]
    )
    assert project.runpytest("test_registry_client.py", "--registry-snapshot-warn-unused").ret == 0

    # A selection that leaves TestNodes out knows nothing about its tests: both are kept.
    kept = project.runpytest("test_registry_client.py::TestPages", "--registry-snapshot-update")
    assert kept.ret == 0 and gone.exists() and stale.exists()
    # -k deselects after collection: the owner of `stale` did not run, `gone` has no owner.
    partly = project.runpytest("test_registry_client.py", "-k", "TestPages")
    partly.stdout.fnmatch_lines(["1 registry snapshot(s) unused*", f"*{gone}"])

    deleted = project.runpytest("test_registry_client.py", "--registry-snapshot-update")
    deleted.stdout.fnmatch_lines(["2 registry snapshot(s) deleted:"])
    assert not gone.exists() and not stale.exists()
    assert project.runpytest("test_registry_client.py").ret == 0


def test_a_deleted_test_module_leaves_unused_snapshots(project: pytest.Pytester) -> None:
    _recorded(project)
    orphan = project.path / "__registry_snapshots__" / "test_removed" / "test_x.json"
    orphan.parent.mkdir()
    orphan.write_text("{}\n")
    result = project.runpytest("test_registry_client.py")
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"*{orphan}"])


def test_a_collection_error_keeps_the_snapshots_of_its_module(project: pytest.Pytester) -> None:
    _recorded(project)
    source = project.path / "test_registry_client.py"
    source.write_text(source.read_text() + "\nimport not_a_module_anywhere\n")
    result = project.runpytest("test_registry_client.py", "--registry-snapshot-update")
    result.assert_outcomes(errors=1)
    assert len(list((project.path / SNAPSHOTS).iterdir())) == 4


def test_the_command_line_beats_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mode="""
        import pytest

        @pytest.mark.registry_cassette(record_mode="once")
        def test_mode(registry_record_mode):
            print("MODE", registry_record_mode)
        """
    )
    pytester.runpytest("-s").stdout.fnmatch_lines(["*MODE once"])  # the marker, no option
    assert (pytester.path / "cassettes" / "test_mode" / "test_mode.json").is_file()
    (pytester.path / "cassettes" / "test_mode" / "test_mode.json").unlink()
    for option in ("--registry-record-mode", "--record-mode"):
        result = pytester.runpytest(option, "none")  # a CI run must replay, not record
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*test_mode.json: no such file*"])
    pytester.runpytest("-s", "--registry-record-mode", "rewrite").stdout.fnmatch_lines(
        ["*MODE all"]
    )


def test_rewrite_records_from_scratch(project: pytest.Pytester) -> None:
    _recorded(project)
    cassette = project.path / CASSETTES / "TestNodes.test_first_page.json"
    document = json.loads(cassette.read_text())
    stale = {"request": {"method": "GET", "uri": "/stale"}, "response": {}}
    document["interactions"].append(stale)
    cassette.write_text(json.dumps(document))
    project.runpytest(
        "test_registry_client.py::TestNodes::test_first_page", "--registry-record-mode", "rewrite"
    ).assert_outcomes(passed=1)
    assert "/stale" not in cassette.read_text()


def test_a_bad_marker_fails_its_test_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.registry_cassette("../escape")
        def test_name():
            pass

        @pytest.mark.registry_cassette(record_mode="sometimes")
        def test_mode():
            pass

        @pytest.mark.registry_block_network(hosts=["x"])
        def test_guard():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*'../escape': must be a plain file name*",
            "*record_mode='sometimes'*expected one of none, once, new_episodes, all, rewrite*",
            "*takes only allowed_hosts= and allow_loopback=, got hosts*",
        ]
    )


def test_block_network_with_allowed_hosts_and_the_marker(project: pytest.Pytester) -> None:
    unrecorded = ("-k", "not recording")
    guarded = project.runpytest("test_guard.py", "--registry-block-network", *unrecorded)
    guarded.assert_outcomes(passed=5)
    # the guard is off by default: a marker switches it on for one test
    plain = project.runpytest("test_guard.py", *unrecorded)
    plain.assert_outcomes(passed=3, failed=2)
    plain.stdout.fnmatch_lines(["*test_internet_is_blocked*", "*test_loopback_is_blocked*"])
    # the option's allowed hosts (regular expressions) and loopback on request
    allowed = project.runpytest(
        "test_guard.py", "--block-network", "--allowed-hosts", r"127\.0\.0\.1", *unrecorded
    )
    allowed.stdout.fnmatch_lines(["*test_loopback_is_blocked*DID NOT RAISE*"])


def test_recording_lifts_the_guard_and_replay_blocks_even_loopback(
    project: pytest.Pytester,
) -> None:
    selection = "test_guard.py::test_recording_lifts_the_guard"
    project.runpytest(
        selection, "--registry-block-network", "--registry-record-mode", "once"
    ).assert_outcomes(passed=1)
    project.runpytest(selection, "--registry-block-network").assert_outcomes(passed=1)


def test_replay_never_reaches_the_emulator_and_missing_cassettes_fail(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_net="""
        import socket
        import pytest

        @pytest.mark.registry_cassette("absent")
        def test_missing():
            pass

        def test_loopback(registry_phase_cassettes, registry_emulator):
            host, port = registry_emulator.url.rsplit("/", 1)[1].split(":")
            socket.create_connection((host, int(port)))
        """
    )
    directory = pytester.path / "cassettes" / "test_net" / "test_loopback"
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(
        '{"format": "registry-tools-cassettes/1", "dataset": {"name": "x"}}'
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*absent.json: no such file*", "*NetworkBlocked: a registry cassette replaying*127.0.0.1*"]
    )


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


def _readme_example() -> str:
    section = README.read_text().split("## Cassettes and the pytest plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_records_once_and_passes_every_run_after(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_readme=_readme_example())
    first = pytester.runpytest("--registry-record-mode", "once", "--registry-snapshot-update")
    first.assert_outcomes(passed=1)
    for _ in range(2):  # replayed, with cached_at pinned: the same bytes every time
        again = pytester.runpytest()
        again.assert_outcomes(passed=1)
        assert again.ret == 0


def test_importing_the_plugin_imports_no_network_or_yaml_library() -> None:
    """Every pytest start in the environment imports the plugin (bench/ measures its cost)."""
    code = (
        "import sys, pytest, registry_tools.replay.plugin\n"
        "heavy = {'vcr', 'aiohttp', 'yaml', 'multidict', 'registry_tools.replay.cassettes'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "[]", output.stderr
