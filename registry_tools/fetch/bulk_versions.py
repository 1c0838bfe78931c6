"""Reading known versions in bulk: their current status, deprecation, extraction state and
download URL, with no side effect on the registry.

`POST /bulk/nodes/versions` answers many (node id, version) pairs per request, in no
particular order and with no paging, so unlike the listings it cannot skip anything. It serves
two needs: the download URL of versions listed without one (`GET /nodes/{id}/install` would
answer too, but it counts a download and fires an analytics event on the real registry, so it
is never called), and a refresh's re-read of every version it already knows, which is how a
status change without a new release is seen.

Its batch limit is undocumented: the first batch has `FIRST_BATCH` pairs and, answered whole,
the others up to `MAX_BATCH`; a batch the server refuses as too large (400, 413) is split in
two and later batches stay at that size; pairs an answer leaves out are asked again, once. A
server without the endpoint (404, 405) gets one `GET /nodes/{id}/versions/{version}` per
version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS

FIRST_BATCH = 500
MAX_BATCH = 4000
BULK_PATH = "/bulk/nodes/versions"
Pair = tuple[str, str]  # (node id, version)
# What a read settled for a pair: the NodeVersion, None when the registry has no such
# version, or "error" when it could not say (a banned package: its own listing tells).
Settled = dict[str, Any] | None | str


@dataclass
class _Batches:
    """The batch size the server accepts, learnt as it goes; whether it has the endpoint."""

    size: int = FIRST_BATCH
    single: bool = False
    refused: bool = False  # a batch was too large: never grow again


async def read_versions(client: RegistryClient, build: Build, pairs: list[Pair]) -> None:
    """Read `pairs` (sorted first, so the batches are the same at any concurrency); each
    answered batch is journaled as one `bulk` record (`known` reads them all back). The
    first batch alone tries the server: once it is answered whole, batches grow to
    `MAX_BATCH`. Pairs an answer leaves out are asked once more, then failed."""
    state = _Batches()
    already = set(known(build))
    todo = [pair for pair in sorted(set(pairs)) if pair not in already]
    probing, again = True, False
    while todo:
        now = todo[: state.size] if probing else todo
        settled, failed = await _batches(client, build, now, state)
        if probing and not state.refused and len(settled) == len(now):
            state.size = MAX_BATCH
        left = [pair for pair in now if pair not in settled and pair not in failed]
        if left and again:
            build.fail(f"{PHASE_VERSIONS}: versions {_names(left)}", "left out of every answer")
            left = []
        again = again or (bool(left) and not probing)
        todo = todo[len(now) :] + left
        probing = False


async def _batches(
    client: RegistryClient, build: Build, pairs: list[Pair], state: _Batches
) -> tuple[set[Pair], set[Pair]]:
    """Read `pairs` in concurrent batches of `state.size`: the pairs settled, and the pairs
    of batches that failed (recorded as failures)."""
    batches = [pairs[i : i + state.size] for i in range(0, len(pairs), state.size)]
    build.reporter.grow(PHASE_VERSIONS, len(batches))
    settled_pairs: set[Pair] = set()
    failed_pairs: set[Pair] = set()

    async def one(batch: list[Pair]) -> None:
        try:
            settled = await _read(client, batch, state)
        except FetchError as error:
            build.fail(f"{PHASE_VERSIONS}: versions {_names(batch)}", error)
            failed_pairs.update(batch)
        else:
            if settled:
                record = {"k": "bulk", "versions": [[n, v, r] for (n, v), r in settled.items()]}
                build.record(record)
                build.replayed["bulk"].append(record)
            settled_pairs.update(settled)
        finally:
            build.reporter.advance(PHASE_VERSIONS)
            build.status(PHASE_VERSIONS)
            build.unit_done()

    async with asyncio.TaskGroup() as group:
        for batch in batches:
            group.create_task(one(batch))
    return settled_pairs, failed_pairs


def known(build: Build) -> dict[Pair, Settled]:
    """Everything read this run (journaled or replayed)."""
    return {(n, v): r for record in build.replayed["bulk"] for n, v, r in record["versions"]}


async def _read(client: RegistryClient, batch: list[Pair], state: _Batches) -> dict[Pair, Settled]:
    if not state.single:
        body = {"node_versions": [{"node_id": n, "version": v} for n, v in batch]}
        answer = await client.post(BULK_PATH, body, accept=(400, 404, 405, 413))
        if answer.status in (400, 413) and len(batch) > 1:
            state.refused = True
            state.size = min(state.size, max(1, len(batch) // 2))
            half = len(batch) // 2
            first, second = await asyncio.gather(
                _read(client, batch[:half], state), _read(client, batch[half:], state)
            )
            return {**first, **second}
        if answer.status in (400, 413):
            raise FetchError(client.url(BULK_PATH), f"HTTP {answer.status}", "POST")
        if answer.status == 200:
            return _settled(client, answer.data)
        state.single = True  # 404/405: no bulk endpoint on this server
    results = await asyncio.gather(*(_read_one(client, n, v) for n, v in batch))
    return dict(zip(batch, results, strict=True))


def _settled(client: RegistryClient, data: Any) -> dict[Pair, Settled]:
    """What a bulk answer settles; FetchError if it is not a bulk answer."""

    def wrong(why: str) -> FetchError:
        return FetchError(client.url(BULK_PATH), f"not a bulk versions answer ({why})", "POST")

    results = data.get("node_versions") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise wrong("no 'node_versions' list")
    settled: dict[Pair, Settled] = {}
    for result in results:
        ident = result.get("identifier") if isinstance(result, dict) else None
        if not isinstance(ident, dict):
            raise wrong("an entry without identifier")
        pair = (ident.get("node_id"), ident.get("version"))
        status = result.get("status")
        if status == "success" and isinstance(result.get("node_version"), dict):
            settled[pair] = result["node_version"]
        elif status == "not_found":
            settled[pair] = None
        elif status == "error":
            settled[pair] = "error"
        elif status == "success":
            raise wrong("a 'node_version' that is not an object")
    return settled


async def _read_one(client: RegistryClient, node_id: str, version: str) -> Settled:
    path = api_path("nodes", node_id, "versions", version)
    answer = await client.get(path, accept=(403, 404))
    if answer.status == 403:
        return "error"
    if answer.status == 404:
        return None
    if not isinstance(answer.data, dict):
        raise FetchError(client.url(path), "not a version (expected a JSON object)")
    return answer.data


def _names(batch: list[Pair]) -> str:
    shown = ", ".join(f"{n} {v}" for n, v in batch[:3])
    return shown + (f" and {len(batch) - 3} more" if len(batch) > 3 else "")
