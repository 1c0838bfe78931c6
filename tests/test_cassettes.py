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

from registry_tools import clock, files
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


def test_record_regenerates_a_set_that_replays_to_the_same_cache(tmp_path: Path) -> None:
    """Which requests meet the rate limit depends on timing, so a new recording's bytes differ;
    what it recorded does not: replaying it gives the bundled set's cache."""
    summary = record_dataset("sample", tmp_path / "sample")
    assert summary.ok and summary.retries > 0 and summary.rate_limited > 0
    fresh = orjson.loads((tmp_path / "sample" / cassettes.MANIFEST).read_bytes())
    assert fresh["dataset"] == cassettes.read_manifest(SAMPLE)["dataset"]
    bundled, _ = _replay_sample(SAMPLE, tmp_path / "bundled", 4)
    again, _ = _replay_sample(tmp_path / "sample", tmp_path / "again", 4)
    assert again.read_bytes() == bundled.read_bytes(), "run registry-tools record"


def test_bundled_sample_covers_every_phase_and_the_real_registrys_ways() -> None:
    statuses = Counter()
    requests = []
    bodies = []
    for phase in PHASES:
        for interaction in orjson.loads((SAMPLE / f"{phase}.json").read_bytes())["interactions"]:
            response = interaction["response"]
            statuses[response["status"]] += 1
            requests.append((interaction["request"]["method"], interaction["request"]["uri"]))
            bodies.append(response.get("json"))
            if "Retry-After" in response["headers"]:
                statuses["retry-after"] += 1
    assert {200, 403, 429, 500, "retry-after"} <= set(statuses)
    bare = statuses[429] - statuses["retry-after"]
    assert bare > 5, "the rate limit's bare 429s are recorded"
    uris = [uri for _method, uri in requests]
    assert not any("/install" in uri for uri in uris), "never /install"
    assert ("POST", "/bulk/nodes/versions") in requests
    assert any(uri.startswith("/versions?") for uri in uris)
    assert all("latest=true" in uri for uri in uris if uri.startswith("/nodes?"))
    assert any(isinstance(b, dict) and b.get("comfy_nodes", []) is None for b in bodies)
    assert any(
        isinstance(v, dict) and v.get("comfy_node_extract_status") == "pending"
        for b in bodies
        if isinstance(b, dict)
        for v in b.get("versions", [])
    )
    size = sum(path.stat().st_size for path in SAMPLE.iterdir())
    assert size < 4_000_000


def _replay_sample(cassettes_dir: Path, directory: Path, concurrency: int) -> tuple[Path, Path]:
    """A cassette set's cache and mappings, replayed with the clock pinned and no network."""
    directory.mkdir(exist_ok=True)
    clock.pin("2026-01-01T00:00:00Z")
    try:
        options = replay_options(
            cassettes_dir, directory / "cache.json", concurrency=concurrency, backoff=0.001
        )
        with blocked_network(allow_loopback=False):
            summary = run_cache(options, phase_context=phase_cassettes(cassettes_dir, "none"))
        assert summary.ok, summary.failures
        mappings = directory / "mappings.json"
        build_mappings(MappingsOptions(cache=options.output, output=mappings))
    finally:
        clock.pin(None)
    return options.output, mappings


def test_replayed_sample_is_byte_identical_at_any_concurrency(
    tmp_path: Path, registry_snapshot
) -> None:
    for concurrency in (1, 50, 1):
        cache, mappings = _replay_sample(SAMPLE, tmp_path / str(concurrency), concurrency)
        assert registry_snapshot("cache") == cache
        assert registry_snapshot("mappings") == mappings


# ---- request bodies, hand-edited files, and no journal after an exit-2 error -------------------


def _post_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    app = web.Application()
    app.router.add_post("/bulk", handle)
    return app


def test_post_bodies_are_part_of_the_match_key(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    bodies = [{"node_versions": [{"node_id": "a", "version": "1"}]}, {"node_versions": []}]

    async def post_all(base: str, order: list[dict]) -> list:
        async with aiohttp.ClientSession() as session:
            out = []
            for body in order:
                async with session.post(base + "/bulk", data=orjson.dumps(body)) as response:
                    out.append(await response.json())
            return out

    async def record_them() -> list:
        async with TestServer(_post_app()) as server:
            with use_cassette(path, "once"):
                return await post_all(str(server.make_url("")).rstrip("/"), bodies)

    async def replay_them() -> list:
        with blocked_network(allow_loopback=False), use_cassette(path, "none"):
            return await post_all(REPLAY_BASE, list(reversed(bodies)))

    recorded = asyncio.run(record_them())
    assert asyncio.run(replay_them()) == list(reversed(recorded))
    interaction = orjson.loads(path.read_bytes())["interactions"][0]
    assert interaction["request"]["body"] == {"json": {"node_versions": []}}  # readable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i["response"].update(status="200"), "response 'status' is '200'"),
        (lambda i: i["response"].update(reason=None), "response 'reason' is None"),
        (lambda i: i["request"].update(uri=5), "request 'uri' is 5"),
        (lambda i: i["response"].update(headers={"X": 1}), "'headers' must map names to strings"),
        (lambda i: i["response"].update(text="x"), "more than one body"),
    ],
)
def test_hand_edited_interactions_of_the_wrong_type_are_one_line_errors(
    tmp_path: Path, capsys, change, message
) -> None:
    kas = Path(shutil.copytree(SAMPLE, tmp_path / "kas"))
    document = orjson.loads((kas / "phase1-nodes.json").read_bytes())
    change(document["interactions"][0])
    (kas / "phase1-nodes.json").write_bytes(files.dumps(document))
    before = (kas / "phase1-nodes.json").read_bytes()
    out = tmp_path / "c.json"
    code = main(["cache", "--cassette-dir", str(kas), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "corrupt or truncated" in err, err
    assert message in err
    assert (kas / "phase1-nodes.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kas"], "no output, no journal"


@pytest.mark.parametrize(
    ("fetch", "message"),
    [
        ({"max_versions": "5", "nodes_per_page": 30}, "dataset.fetch.max_versions is '5'"),
        ({"nodes_per_page": 0}, "dataset.fetch.nodes_per_page is 0"),
        ({"pages": True}, "dataset.fetch.pages is True"),
        ({"speed": 3}, "dataset.fetch.speed: not a fetch option"),
        ([1], "dataset.fetch is not an object"),
    ],
)
def test_hand_edited_manifests_of_the_wrong_type_are_one_line_errors(
    tmp_path: Path, capsys, fetch, message
) -> None:
    kas = Path(shutil.copytree(SAMPLE, tmp_path / "kas"))
    manifest = orjson.loads((kas / "manifest.json").read_bytes())
    manifest["dataset"]["fetch"] = fetch
    (kas / "manifest.json").write_bytes(files.dumps(manifest))
    code = main(["cache", "--cassette-dir", str(kas), "--output", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kas"]


def test_a_cassette_that_cannot_answer_leaves_no_journal(tmp_path: Path, capsys) -> None:
    kas = Path(shutil.copytree(SAMPLE, tmp_path / "kas"))
    document = orjson.loads((kas / "phase3-metadata.json").read_bytes())
    document["interactions"] = document["interactions"][:-1]  # phase 3 misses one answer
    (kas / "phase3-metadata.json").write_bytes(files.dumps(document))
    out = tmp_path / "c.json"
    code = main(["cache", "--cassette-dir", str(kas), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot answer" in err, err
    assert not out.exists() and not Path(f"{out}.journal").exists()
