"""The plugin's `registry_snapshot` fixture: canonical JSON files, diffs, values JSON cannot hold.

Which snapshots are unused, and updates of a selection, are tested on the user project in
`test_pytest_plugin.py`.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SNAPSHOT_TEST = """
def test_data(registry_snapshot):
    assert registry_snapshot == {"b": [1, 2], "a": VALUE}
    assert ["x"] == registry_snapshot("named")
"""


def test_create_compare_and_show_a_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "1"))
    missing = pytester.runpytest()
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*does not exist (create it with --registry-snapshot-update)*"])
    pytester.runpytest("--snapshot-update").stdout.fnmatch_lines(
        ["2 registry snapshot(s) written."]
    )
    stored = pytester.path / "__registry_snapshots__" / "test_snap" / "test_data.json"
    assert stored.read_text() == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert (stored.parent / "test_data.named.json").read_text() == '[\n  "x"\n]\n'
    pytester.runpytest().assert_outcomes(passed=1)

    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "2"))
    changed = pytester.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*value differs from snapshot*", '*-  "a": 1,', '*+  "a": 2,'])
    pytester.runpytest("--registry-snapshot-update").assert_outcomes(passed=1)
    assert '"a": 2' in stored.read_text()


def test_a_path_is_compared_as_the_json_it_holds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_path="""
        def test_file(tmp_path, registry_snapshot):
            path = tmp_path / "x.json"
            path.write_text('{"z": 1,   "a": [true]}')
            assert registry_snapshot == path
        """
    )
    pytester.runpytest("--registry-snapshot-update").assert_outcomes(passed=1)
    stored = pytester.path / "__registry_snapshots__" / "test_path" / "test_file.json"
    assert stored.read_text() == '{\n  "a": [\n    true\n  ],\n  "z": 1\n}\n'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("object()", "registry_snapshot: a object value cannot be stored as JSON"),
        ("{1: 'int key'}", "registry_snapshot: a dict value cannot be stored as JSON"),
        ("{'a': [1.0, float('nan')]}", "registry_snapshot: value['a'][1] is not JSON (NaN or"),
        ("float('inf')", "registry_snapshot: value is not JSON (NaN or infinity)"),
    ],
)
def test_values_json_cannot_hold_fail_with_one_line(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        def test_value(registry_snapshot):
            assert registry_snapshot == {value}
        """
    )
    result = pytester.runpytest("--registry-snapshot-update")
    result.assert_outcomes(failed=1)
    assert message in result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    assert not (pytester.path / "__registry_snapshots__").exists()


def test_a_snapshot_that_is_not_json_is_an_error_never_overwritten(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_snap=SNAPSHOT_TEST.replace("VALUE", "1"))
    stored = pytester.path / "__registry_snapshots__" / "test_snap" / "test_data.json"
    stored.parent.mkdir(parents=True)
    stored.write_text("not json")
    result = pytester.runpytest("--registry-snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_data.json: not valid JSON*fix or delete it*"])
    assert stored.read_text() == "not json"


def test_snapshot_names_are_file_safe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_names="""
        import pytest

        @pytest.mark.parametrize("url", ["http://x/y"])
        def test_param(url, registry_snapshot):
            assert registry_snapshot == url

        def test_escape(registry_snapshot):
            assert registry_snapshot("../out") == 1
        """
    )
    result = pytester.runpytest("--registry-snapshot-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*registry_snapshot name '../out': must be a plain file name*"])
    stored = pytester.path / "__registry_snapshots__" / "test_names"
    assert [p.name for p in stored.iterdir()] == ["test_param[http---x-y].json"]
