"""Semver ordering, the clock, and the store's guarantees."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from registry_tools import clock, files
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.journal import Journal
from registry_tools.semver import newest_first, version_key


def test_semver_orders_numerically_and_prereleases_below_release():
    versions = ["1.9.0", "1.10.0", "1.0.0", "1.0.0-rc.1", "1.0.0-rc.10", "1.0.0-rc.2", "2.0.0-beta"]
    assert newest_first(versions) == [
        "2.0.0-beta",
        "1.10.0",
        "1.9.0",
        "1.0.0",
        "1.0.0-rc.10",
        "1.0.0-rc.2",
        "1.0.0-rc.1",
    ]


def test_semver_never_raises_and_puts_odd_strings_last():
    odd = ["nightly", "", "latest-💥", "1..2", "v2"]
    ordered = newest_first(["0.0.1", *odd])
    assert ordered[:2] == ["v2", "0.0.1"]
    assert set(ordered[2:]) == {"nightly", "", "latest-💥", "1..2"}
    assert version_key("1.0") < version_key("1.0.1")


def test_parse_time_accepts_go_fractions():
    assert clock.parse_time("2024-05-01T10:00:05.32703Z") == datetime(
        2024, 5, 1, 10, 0, 5, 327030, tzinfo=UTC
    )
    assert clock.parse_time("2024-05-01T10:00:05.123456789Z").microsecond == 123456
    assert clock.parse_time("2024-05-01T10:00:05Z").second == 5
    assert clock.parse_time_or_none("yesterday") is None


def test_clock_pins_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert clock.iso() == "2023-11-14T22:13:20Z"
    clock.pin("2020-01-02T03:04:05Z")
    try:
        assert clock.iso() == "2020-01-02T03:04:05Z"
    finally:
        clock.pin(None)


def test_dumps_is_canonical():
    assert files.dumps({"b": 1, "a": "é"}) == '{\n  "a": "é",\n  "b": 1\n}\n'.encode()


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    files.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.json"]
    fresh = tmp_path / "fresh.json"
    files.write_atomic(fresh, b"{}")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~files._UMASK
    target.chmod(0o640)
    files.write_atomic(target, b"again")
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a registry cache (top level is a JSON list"),
        ('{"nodes": 3}', "missing the 'nodes' list"),
        ('{"nodes": [{"name": "x"}]}', "nodes[0] has no string 'id'"),
        ('{"nodes": [{"id": "x", "versions_list": [1]}]}', "malformed 'versions_list'"),
    ],
)
def test_load_cache_rejects_bad_files(tmp_path, content, problem):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace("[", r"\[")):
        cache_file.load_cache(path)


def test_load_cache_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        cache_file.load_cache(tmp_path / "absent.json")


def test_journal_replays_only_matching_header_and_ignores_torn_tail(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path, {"job": 1})
    journal.open([])
    journal.append({"n": 1})
    journal.append({"n": 2})
    journal.close(remove=False)
    with open(path, "ab") as handle:
        handle.write(b'{"n": 3')  # torn by a crash
    assert list(Journal(path, {"job": 1}).replay()) == [{"n": 1}, {"n": 2}]
    assert list(Journal(path, {"job": 2}).replay()) == []
