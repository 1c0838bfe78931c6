"""The stand-in registry's real-service behaviours: the rate limit, listing drift and the page
cache, pending extraction, `/install` side effects and status rules; each off by default,
each deterministic (a function of the seed and each URL's request sequence, or of arrival
times for the rate limit), never of concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest
from _registry_http import FakeClock, fetch, get, node_entry, small_registry, url, version_entry

from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry.behaviour import Behaviour
from registry_tools.registry.emulator import Faults, running_emulator
from registry_tools.registry.listing import Drift
from registry_tools.registry.ratelimit import TokenBucket


@pytest.fixture(scope="module")
def registry() -> dict[str, Any]:
    return small_registry(50)


async def _gather(base: str, targets: list[tuple[tuple[str, ...], dict[str, Any]]]) -> list[Any]:
    """Send every request at once (no pacing): (status, headers, body) each, in order."""
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(
            *(fetch(session, url(base, *segments, **query)) for segments, query in targets)
        )


def _ids(body: dict[str, Any]) -> list[str]:
    return [node["id"] for node in body["nodes"]]


# ---- defaults and the preset -----------------------------------------------------------------


def test_everything_is_off_by_default_and_the_preset_has_the_documented_magnitudes() -> None:
    assert Behaviour().ideal and Behaviour(seed=7).ideal
    real = Behaviour.realistic(seed=3)
    assert not real.ideal and real.seed == 3
    assert (real.rate_limit, real.rate_burst, real.rate_retry_after) == (12.0, 3.0, None)
    assert (real.drift_rows, real.page_cache_seconds) == (2, 60.0)
    assert (real.pending_share, real.failed_share) == (0.10, 0.01)
    assert real.install_effects and real.enforce_statuses


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate_limit": -1}, "rate_limit must be at least 0"),
        ({"rate_limit": float("inf")}, "finite"),
        ({"rate_burst": 0.5}, "rate_burst must be at least 1"),
        ({"rate_retry_after": float("nan")}, "rate_retry_after must be between"),
        ({"drift_rows": 1.5}, "drift_rows must be an integer"),
        ({"pending_share": 0.8, "failed_share": 0.3}, "at most 1"),
        ({"pending_share": "0.1"}, "pending_share must be a number"),
        ({"install_effects": 1}, "install_effects must be true or false"),
        ({"seed": "1"}, "seed must be an integer"),
    ],
)
def test_behaviour_checks_its_fields(fields, message) -> None:
    with pytest.raises(UserError, match=message):
        Behaviour(**fields)


# ---- rate limit ------------------------------------------------------------------------------


def test_token_bucket_is_a_function_of_arrival_times() -> None:
    times = [0.0, 0.0, 0.0, 0.0, 0.05, 1 / 12, 0.2, 0.2, 0.2, 10.0, 10.0, 10.0, 10.0, 9.0]
    bucket = TokenBucket(12, 3)
    decisions = [bucket.admit(t) for t in times]
    again = TokenBucket(12, 3)
    assert [again.admit(t) for t in times] == decisions
    # burst of 3, then one token every 1/12 s, full again (3) after a pause; 9.0 counts as 10.0
    assert decisions == [True] * 3 + [False, False, True, True, False, False] + [True] * 3 + [
        False,
        False,
    ]


def test_a_client_paced_exactly_at_the_rate_is_never_refused() -> None:
    bucket = TokenBucket(12, 1)
    assert all(bucket.admit(i / 12) for i in range(600))


def test_excess_requests_get_instant_bare_429s_counted_apart_from_faults(registry) -> None:
    clock = FakeClock()
    behaviour = Behaviour(rate_limit=12, rate_burst=3)
    with running_emulator(registry, behaviour=behaviour, clock=clock) as emu:
        answers = asyncio.run(_gather(emu.url, [(("nodes",), {})] * 5))
        clock.tick(0.25)  # three tokens back
        later = asyncio.run(_gather(emu.url, [(("nodes", "p001"), {})] * 4))
        stats = get(emu.url, "_emulator", "stats")[2]
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 200, 200, 429, 429]
    for status, headers, body in answers:
        if status == 429:
            assert "Retry-After" not in headers
            assert body == {"error": "Too Many Requests", "message": "rate limit exceeded"}
    assert sorted(status for status, _, _ in later) == [200, 200, 200, 429]
    assert stats["rate_limited"] == 3 and stats["faults"] == {}
    assert stats["by_status"] == {"200": 6, "429": 3} and stats["requests"] == 9


def test_the_realistic_preset_refuses_five_unpaced_parallel_requests(registry) -> None:
    with running_emulator(registry, behaviour=Behaviour.realistic(), clock=lambda: 5.0) as emu:
        answers = asyncio.run(_gather(emu.url, [(("nodes", f"p00{i}"), {}) for i in range(5)]))
    assert sorted(status for status, _, _ in answers) == [200, 200, 200, 429, 429]


def test_rate_limit_with_retry_after(registry) -> None:
    behaviour = Behaviour(rate_limit=1, rate_burst=1, rate_retry_after=2.5)
    with running_emulator(registry, behaviour=behaviour, clock=lambda: 0.0) as emu:
        assert get(emu.url, "nodes")[0] == 200
        status, headers, _ = get(emu.url, "nodes")
    assert status == 429 and headers["Retry-After"] == "2.5"


def test_refused_requests_do_not_use_up_the_fault_sequence(registry) -> None:
    """The k-th admitted request of a key gets the fault the k-th request gets unlimited."""
    faults = Faults(rate_500=0.5, seed=4)

    def admitted_statuses(behaviour: Behaviour) -> tuple[list[int], int]:
        clock, seen = FakeClock(), []
        with running_emulator(registry, faults, behaviour=behaviour, clock=clock) as emu:
            while len(seen) < 12:
                status = get(emu.url, "nodes", "p002")[0]
                clock.tick(0.3)
                if status != 429:  # only the limiter answers 429 here
                    seen.append(status)
            return seen, emu.counters.rate_limited

    free, none_limited = admitted_statuses(Behaviour())
    limited, refused = admitted_statuses(Behaviour(rate_limit=2, rate_burst=1))
    assert 500 in free and 200 in free and none_limited == 0
    assert refused > 0 and limited == free


# ---- listing drift and the page cache --------------------------------------------------------


def test_drift_moves_rows_to_the_end_by_seed() -> None:
    ids = [f"n{i}" for i in range(20)]
    drift = Drift(seed=1, rows=2)
    assert drift.order(ids, 0) == ids and Drift(1, 0).order(ids, 5) == ids
    after = drift.order(ids, 3)
    assert sorted(after) == sorted(ids) and after != ids
    moved = [row for row in after if ids.index(row) != after.index(row)]
    assert moved and after[-1] in moved
    assert drift.order(ids, 3) == after
    assert Drift(seed=2, rows=2).order(ids, 3) != after


def _sweep(base: str, pages: int, limit: int = 10, **query: Any) -> list[list[str]]:
    return [_ids(get(base, "nodes", page=p, limit=limit, **query)[2]) for p in range(1, pages + 1)]


def test_offset_pages_skip_and_repeat_rows_under_drift(registry) -> None:
    with running_emulator(registry, behaviour=Behaviour(drift_rows=3, seed=2)) as emu:
        first = [i for page in _sweep(emu.url, 5) for i in page]
        rounds = [first] + [[i for page in _sweep(emu.url, 5) for i in page] for _ in range(5)]
    everything = {node["id"] for node in registry["nodes"]}
    assert len(first) == 50
    assert len(set(first)) < 50  # repeats, so some rows were skipped
    assert {i for round_ in rounds for i in round_} == everything  # more rounds find them all
    with running_emulator(registry) as emu:  # no drift: one sweep has everything once
        ideal = [i for page in _sweep(emu.url, 5) for i in page]
    assert ideal == sorted(everything)


def test_drift_depends_on_each_urls_own_sequence_not_on_concurrency(registry) -> None:
    behaviour = Behaviour(drift_rows=2, seed=9)
    pages, rounds = range(1, 6), 3

    async def concurrent(base: str) -> dict[int, list[list[str]]]:
        seen: dict[int, list[list[str]]] = {page: [] for page in pages}
        async with aiohttp.ClientSession() as session:

            async def chain(page: int) -> None:
                for _ in range(rounds):
                    body = (await fetch(session, url(base, "nodes", page=page, limit=10)))[2]
                    seen[page].append(_ids(body))

            await asyncio.gather(*(chain(page) for page in reversed(pages)))
        return seen

    with running_emulator(registry, behaviour=behaviour) as emu:
        in_order: dict[int, list[list[str]]] = {page: [] for page in pages}
        for _ in range(rounds):
            for page in pages:
                in_order[page].append(_ids(get(emu.url, "nodes", page=page, limit=10)[2]))
    with running_emulator(registry, behaviour=behaviour) as emu:
        at_once = asyncio.run(concurrent(emu.url))
    assert at_once == in_order
    assert in_order[2][0] != in_order[2][1]  # a page changes from one round to the next


def test_page_cache_serves_the_same_page_until_it_expires_and_latest_bypasses_it(
    registry,
) -> None:
    clock = FakeClock()
    behaviour = Behaviour(drift_rows=4, page_cache_seconds=60, seed=3)
    with running_emulator(registry, behaviour=behaviour, clock=clock) as emu:
        first = get(emu.url, "nodes", page=2, limit=10)[2]
        clock.tick(59)
        assert get(emu.url, "nodes", page=2, limit=10)[2] == first  # cached
        fresh = get(emu.url, "nodes", page=2, limit=10, latest="true")[2]
        assert _ids(fresh) != _ids(first)  # computed again, after more drift
        assert get(emu.url, "nodes", page=2, limit=10)[2] == first  # latest did not refill it
        clock.tick(1)
        expired = get(emu.url, "nodes", page=2, limit=10)[2]
        assert _ids(expired) != _ids(first)
        clock.tick(30)
        assert get(emu.url, "nodes", page=2, limit=10)[2] == expired


def test_versions_ties_are_unstable_across_pages_only_when_listings_drift() -> None:
    # 30 packages that all have 1.0.0 (a tie of 30 rows), and each a 2.0.0.
    cache = small_registry(30, versions=1)
    for node in cache["nodes"]:
        node["versions_list"].append(version_entry("2.0.0", node_id=node["id"]))

    def pages(behaviour: Behaviour) -> list[list[str]]:
        with running_emulator(cache, behaviour=behaviour) as emu:
            answers = [get(emu.url, "versions", page=p, pageSize=7)[2] for p in range(1, 6)]
        return [[f"{v['node_id']} {v['version']}" for v in a["versions"]] for a in answers]

    stable = [row for page in pages(Behaviour(seed=1)) for row in page]
    assert len(stable) == 35 and len(set(stable)) == 35  # no row skipped or repeated
    assert [row.split()[1] for row in stable] == ["1.0.0"] * 30 + ["2.0.0"] * 5
    assert stable != sorted(stable)  # ties in a seeded, not an alphabetical, order
    unstable = [row for page in pages(Behaviour(drift_rows=1, seed=1)) for row in page]
    assert len(set(unstable)) < 35  # pages over the tie repeat and skip rows


# ---- pending extraction ----------------------------------------------------------------------


def test_pending_and_failed_shares_by_seed_and_version(registry) -> None:
    behaviour = Behaviour(pending_share=0.3, failed_share=0.1, seed=5)

    def states(cache: dict[str, Any]) -> dict[tuple[str, str], str]:
        with running_emulator(cache, behaviour=behaviour) as emu:
            return {
                (node["id"], v["version"]): v["comfy_node_extract_status"]
                for node in cache["nodes"]
                for v in get(emu.url, "nodes", node["id"], "versions")[2]
            }

    seen = states(registry)
    counts = {state: list(seen.values()).count(state) for state in set(seen.values())}
    assert set(counts) == {"pending", "failed", "success"}
    assert 30 <= counts["pending"] <= 60 and 5 <= counts["failed"] <= 25
    smaller = cache_file.build_cache(registry["nodes"][:20])
    assert states(smaller) == {k: v for k, v in seen.items() if k[0] < "p020"}
    with running_emulator(registry, behaviour=behaviour) as emu:
        for (node_id, version), state in list(seen.items())[:30]:
            path = ("nodes", node_id, "versions", version, "comfy-nodes")
            status, _, body = get(emu.url, *path)
            assert status == 200
            if state == "success":
                assert len(body["comfy_nodes"]) == 2 and body["totalNumberOfPages"] == 1
            else:
                assert body == {"comfy_nodes": None, "totalNumberOfPages": 0}
            single = get(emu.url, "nodes", node_id, "versions", version)[2]
            assert single["comfy_node_extract_status"] == state


def test_a_caches_own_pending_versions_stay_pending_without_behaviours() -> None:
    pending = version_entry("1.1.0", metadata_cached=False, metadata_pending="pending")
    del pending["comfy_nodes"]
    failed = version_entry("1.0.0", comfy_node_extract_status="failed")
    cache = cache_file.build_cache([node_entry("pack", [pending, failed])])
    with running_emulator(cache) as emu:
        for version in ("1.1.0", "1.0.0"):
            body = get(emu.url, "nodes", "pack", "versions", version, "comfy-nodes")[2]
            assert body == {"comfy_nodes": None, "totalNumberOfPages": 0}
        listed = get(emu.url, "nodes", "pack", "versions")[2]
    assert "metadata_pending" not in listed[0] and "comfy_node_extract_status" not in listed[0]
    assert listed[1]["comfy_node_extract_status"] == "failed"


# ---- /install and statuses -------------------------------------------------------------------


def test_install_side_effects(registry) -> None:
    with running_emulator(registry, behaviour=Behaviour(install_effects=True)) as emu:
        before = get(emu.url, "nodes", "p003")[2]["downloads"]
        assert get(emu.url, "nodes", "p003", "install", version="1.1.0")[0] == 200
        assert get(emu.url, "nodes", "p003", "install")[2]["version"] == "1.2.0"
        for odd in ("1.0", "v1.0.0", "1.0.0-rc.1", ""):
            status, _, body = get(emu.url, "nodes", "p003", "install", version=odd)
            assert status == 400 and body["error"] == "Bad Request"
        assert get(emu.url, "nodes", "p003")[2]["downloads"] == before + 2
        listed = get(emu.url, "nodes", limit=100)[2]["nodes"]
        assert next(n for n in listed if n["id"] == "p003")["downloads"] == before + 2
        assert emu.counters.installs == 6 and emu.counters.by_kind["install"] == 6
    with running_emulator(registry) as emu:  # off: counted, but nothing changes
        assert get(emu.url, "nodes", "p003", "install", version="1.1.0")[0] == 200
        assert get(emu.url, "nodes", "p003")[2]["downloads"] == before
        assert emu.counters.installs == 1


def test_status_rules(registry) -> None:
    cache = cache_file.build_cache(
        [
            *registry["nodes"][:3],
            node_entry("banned", [version_entry("1.0.0")], status="NodeStatusBanned"),
            node_entry("deleted", [version_entry("1.0.0")], status="NodeStatusDeleted"),
        ]
    )
    with running_emulator(cache) as emu:  # off: statuses are only data
        assert get(emu.url, "nodes")[2]["total"] == 5
        assert get(emu.url, "nodes", "banned")[0] == 200
    with running_emulator(cache, behaviour=Behaviour(enforce_statuses=True)) as emu:
        assert _ids(get(emu.url, "nodes")[2]) == ["p000", "p001", "p002"]
        assert "banned" in _ids(get(emu.url, "nodes", include_banned="true")[2])
        assert "deleted" not in _ids(get(emu.url, "nodes", include_banned="true")[2])
        assert get(emu.url, "nodes", "banned")[0] == 403
        assert get(emu.url, "nodes", "banned", "versions")[0] == 403
        assert get(emu.url, "nodes", "deleted")[0] == 404
        assert get(emu.url, "nodes", "search", search="banned")[2]["total"] == 0
        found = get(emu.url, "nodes", "search", search="banned", include_banned="true")[2]
        assert _ids(found) == ["banned"]
        assert get(emu.url, "versions", pageSize=100)[2]["total"] == 9


def test_realistic_answers_per_url_do_not_depend_on_concurrency(registry) -> None:
    """Drift, tie order, pending choices and faults: each URL's sequence of answers is the
    same whether the URLs are asked one after the other or all at once."""
    behaviour = dataclasses.replace(Behaviour.realistic(seed=4), rate_limit=0.0)
    faults = Faults(rate_500=0.2, seed=8)
    targets = [(("nodes",), {"page": p, "limit": 10, "latest": "true"}) for p in range(1, 6)]
    targets += [(("versions",), {"page": p, "pageSize": 20}) for p in range(1, 9)]
    targets += [
        (("nodes", f"p{i:03d}", "versions", "1.1.0", "comfy-nodes"), {}) for i in range(0, 40, 4)
    ]
    rounds = 3

    async def concurrent(base: str) -> list[list[Any]]:
        seen: list[list[Any]] = [[] for _ in targets]
        async with aiohttp.ClientSession() as session:

            async def chain(index: int) -> None:
                segments, query = targets[index]
                for _ in range(rounds):
                    status, _, body = await fetch(session, url(base, *segments, **query))
                    seen[index].append((status, body))

            await asyncio.gather(*(chain(i) for i in reversed(range(len(targets)))))
        return seen

    with running_emulator(registry, faults, behaviour=behaviour) as emu:
        in_order: list[list[Any]] = [[] for _ in targets]
        for _ in range(rounds):
            for index, (segments, query) in enumerate(targets):
                status, _, body = get(emu.url, *segments, **query)
                in_order[index].append((status, body))
    with running_emulator(registry, faults, behaviour=behaviour) as emu:
        at_once = asyncio.run(concurrent(emu.url))
    assert at_once == in_order
    statuses = {status for answers in in_order for status, _ in answers}
    assert statuses == {200, 500}
    nulls = [body for answers in in_order[13:] for status, body in answers if status == 200]
    assert any(body["comfy_nodes"] is None for body in nulls)
