"""Cassettes: indexed order-independent replay, hygiene, reproducible files, bad input,
and the bundled sample replayed through the phases and the mappings."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
import vcr.cassette
from aiohttp import web
from aiohttp.test_utils import TestServer

from registry_tools import clock
from registry_tools.cli import main
from registry_tools.errors import UserError
from registry_tools.fetch.options import PHASES
from registry_tools.fetch.run import run_cache
from registry_tools.mappings.build import MappingsOptions, build_mappings
from registry_tools.replay import cassettes
from registry_tools.replay.cassettes import (
    MissingInteraction,
    bundled_cassettes,
    phase_cassettes,
    use_cassette,
)
from registry_tools.replay.network import blocked_network
from registry_tools.replay.recording import record_dataset, replay_options

SAMPLE = bundled_cassettes("sample")
TOKEN = "tok-" + "s3cr3t" * 4
REPLAY_BASE = "http://replay.invalid:9"


# ---- a tiny registry-like server ------------------------------------------------------------


def _app() -> web.Application:
    """Answers `{"path", "n"}` (n = how often that URL was asked), 429 first for /flaky,
    with the volatile and secret headers a real server sends."""
    seen: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        seen[request.path_qs] += 1
        headers = {"X-Trace-Id": uuid.uuid4().hex, "Set-Cookie": f"session={TOKEN}"}
        if request.path == "/flaky" and seen[request.path_qs] == 1:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={**headers, "Retry-After": "0"}
            )
        body = {"path": request.path, "n": seen[request.path_qs]}
        return web.json_response(body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def _get_all(base: str, urls: list[str], token: str | None = None) -> list[tuple]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with aiohttp.ClientSession(headers=headers, cookies={"sid": token or "x"}) as session:
        answers = []
        for url in urls:
            async with session.get(base + url) as response:
                answers.append((response.status, await response.json()))
        return answers


def record(path: Path, urls: list[str], mode: str = "once", token: str | None = None) -> list:
    async def run() -> list:
        async with TestServer(_app()) as server:
            with use_cassette(path, mode):
                return await _get_all(str(server.make_url("")).rstrip("/"), urls, token)

    return asyncio.run(run())


def replay(path: Path, urls: list[str]) -> list:
    async def run() -> list:
        with blocked_network(allow_loopback=False), use_cassette(path, "none"):
            return await _get_all(REPLAY_BASE, urls)

    return asyncio.run(run())


# ---- replay ---------------------------------------------------------------------------------


def test_replay_is_per_key_in_order_whatever_the_request_order(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    recorded = record(path, ["/a", "/flaky", "/flaky", "/b?x=1&y=2", "/a"])
    assert recorded[1][0] == 429 and recorded[2] == (200, {"path": "/flaky", "n": 2})
    replayed = replay(path, ["/b?y=2&x=1", "/a", "/flaky", "/a", "/flaky"])
    assert replayed == [recorded[3], recorded[0], recorded[1], recorded[4], recorded[2]]


def test_replay_uses_the_index_not_vcrpys_scan(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.json"
    record(path, ["/a", "/b"])

    def scan(*_args: object) -> bool:
        raise AssertionError("linear scan used")

    monkeypatch.setattr(vcr.cassette, "requests_match", scan)
    assert [answer[1]["path"] for answer in replay(path, ["/b", "/a"])] == ["/b", "/a"]


def test_missing_request_is_a_clear_error_and_never_a_network_call(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    record(path, ["/a"])
    with pytest.raises(
        MissingInteraction, match=r"GET http://replay\.invalid:9/c\?k=1: no recorded answer"
    ):
        replay(path, ["/c?k=1"])
    with pytest.raises(MissingInteraction, match=r"GET .*/a: 1 recorded answer\(s\), all played"):
        replay(path, ["/a", "/a"])


def test_a_swallowed_miss_is_raised_when_the_cassette_closes(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    record(path, ["/a"])

    async def swallow() -> None:
        with contextlib.suppress(MissingInteraction):
            await _get_all(REPLAY_BASE, ["/b"])

    with pytest.raises(MissingInteraction, match="/b"), use_cassette(path, "none"):
        asyncio.run(swallow())


def test_replay_is_refused_when_the_cassette_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        replay(tmp_path / "absent.json", ["/a"])


# ---- hygiene and reproducibility ------------------------------------------------------------


def test_secrets_and_volatile_headers_never_reach_a_file(tmp_path: Path) -> None:
    record(tmp_path / "c.json", [f"/a?api_key={TOKEN}&page=1"], token=TOKEN)
    text = (tmp_path / "c.json").read_text()
    assert TOKEN not in text
    for header in ("Date", "X-Trace-Id", "Set-Cookie", "Server", "Authorization", "Cookie"):
        assert f'"{header}"' not in text
    interaction = orjson.loads(text)["interactions"][0]
    assert interaction["request"] == {"method": "GET", "uri": "/a?api_key=REDACTED&page=1"}
    assert interaction["response"]["json"] == {"path": "/a", "n": 1}  # readable, not a string


def test_rerecording_an_unchanged_server_is_byte_identical(tmp_path: Path) -> None:
    urls = ["/a", "/flaky", "/flaky", "/b?x=1"]
    record(tmp_path / "first.json", urls, mode="all")
    record(tmp_path / "second.json", list(reversed(urls[2:])) + urls[:2], mode="all")
    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "second.json").read_bytes()


def test_new_episodes_keeps_old_answers_and_adds_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    record(path, ["/a"])
    record(path, ["/a", "/b"], mode="new_episodes")
    assert replay(path, ["/b", "/a"]) == [
        (200, {"path": "/b", "n": 1}),
        (200, {"path": "/a", "n": 1}),
    ]


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"header": {"format": "registry-tools-cassette/1"}, "inter',
        "",
        "interactions: []\n",
        '{"header": {}}',
    ],
)
@pytest.mark.parametrize("mode", ["none", "once", "new_episodes"])
def test_corrupt_cassette_is_an_error_and_stays_untouched(
    tmp_path: Path, content: str, mode: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(UserError, match="corrupt or truncated"):
        record(path, ["/a"], mode=mode)
    assert path.read_text() == content


def test_unknown_record_mode(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--record-mode 'sometimes': expected one of none"):
        phase_cassettes(tmp_path, "sometimes")


def test_cassette_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="--cassette-dir"):
        phase_cassettes(blocker / "sub", "once")
    with pytest.raises(UserError, match="no such directory"):
        phase_cassettes(tmp_path / "absent", "none")


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "sample"))


def test_cassette_from_another_data_set_is_refused(sample_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with phase_cassettes(other, "once", {"name": "other"})("phase1-nodes"):
        pass  # a valid (empty) cassette of another data set
    shutil.copy(other / "phase1-nodes.json", sample_copy / "phase1-nodes.json")
    before = (sample_copy / "phase1-nodes.json").read_bytes()
    for mode in ("none", "new_episodes"):
        with (
            pytest.raises(UserError, match="recorded with data set 'other'"),
            phase_cassettes(sample_copy, mode)("phase1-nodes"),
        ):
            pass
    assert (sample_copy / "phase1-nodes.json").read_bytes() == before
    with pytest.raises(UserError, match="holds data set 'sample'"):
        phase_cassettes(sample_copy, "once", {"name": "other"})


def test_record_cli_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["record", "--dataset", "nope", "--cassette-dir", str(tmp_path)]) == 2
    assert "no synthetic data set" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main(["record", "--dataset", "sample", "--cassette-dir", str(tmp_path / "f")]) == 2
    assert "--cassette-dir" in capsys.readouterr().err
    assert main(["record", "--dataset", "x", "--base-url", "ftp://x"]) == 2
    assert main(["record", "--dataset", "sample", "--base-url", "https://api.comfy.org"]) == 2
    assert "is the synthetic data set" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text("{truncated")
    assert main(["record", "--dataset", "sample", "--cassette-dir", str(tmp_path / "d")]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["manifest.json"]
    assert (tmp_path / "d" / "manifest.json").read_text() == "{truncated"


# ---- the bundled sample ---------------------------------------------------------------------


def test_record_regenerates_the_bundled_cassettes_byte_for_byte(tmp_path: Path) -> None:
    summary = record_dataset("sample", tmp_path / "sample")
    assert summary.ok and summary.retries > 0
    for name in [*(f"{phase}.json" for phase in PHASES), cassettes.MANIFEST]:
        fresh = (tmp_path / "sample" / name).read_bytes()
        assert fresh == (SAMPLE / name).read_bytes(), f"{name}: run registry-tools record"


def test_bundled_sample_covers_every_phase_and_fault() -> None:
    statuses = Counter()
    uris = []
    for phase in PHASES:
        for interaction in orjson.loads((SAMPLE / f"{phase}.json").read_bytes())["interactions"]:
            statuses[interaction["response"]["status"]] += 1
            uris.append(interaction["request"]["uri"])
            if "Retry-After" in interaction["response"]["headers"]:
                statuses["retry-after"] += 1
    assert {200, 403, 404, 429, 500, "retry-after"} <= set(statuses)
    assert any("/install?" in uri for uri in uris)
    assert any("comfy-nodes" in uri and "page=2" in uri for uri in uris)
    size = sum(path.stat().st_size for path in SAMPLE.iterdir())
    assert size < 4_000_000


def _replay_sample(directory: Path, concurrency: int) -> tuple[Path, Path]:
    """The sample's cache and mappings, replayed with the clock pinned and no network."""
    clock.pin("2026-01-01T00:00:00Z")
    try:
        options = replay_options(
            SAMPLE, directory / "cache.json", concurrency=concurrency, backoff=0.001
        )
        with blocked_network(allow_loopback=False):
            summary = run_cache(options, phase_context=phase_cassettes(SAMPLE, "none"))
        assert summary.ok, summary.failures
        mappings = directory / "mappings.json"
        build_mappings(MappingsOptions(cache=options.output, output=mappings))
    finally:
        clock.pin(None)
    return options.output, mappings


def test_replayed_sample_is_byte_identical_at_any_concurrency(
    tmp_path: Path, registry_snapshot
) -> None:
    for concurrency in (1, 16, 1):
        run = tmp_path / str(concurrency)
        run.mkdir(exist_ok=True)
        cache, mappings = _replay_sample(run, concurrency)
        assert registry_snapshot("cache") == cache
        assert registry_snapshot("mappings") == mappings
