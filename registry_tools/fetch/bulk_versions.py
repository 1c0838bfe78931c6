"""Reading known versions in bulk: their current status, deprecation, extraction state and
download URL, with no side effect on the registry.

`POST /bulk/nodes/versions` answers up to `batch` (node id, version) pairs per request, in no
particular order and with no paging, so unlike the listings it cannot skip anything. It serves
two needs: the download URL of versions listed without one (`GET /nodes/{id}/install` would
answer too, but it counts a download and fires an analytics event on the real registry, so it
is never called), and a refresh's re-read of every version it already knows, which is how a
status change without a new release is seen.

Its batch limit is undocumented: batches start at `FIRST_BATCH`; one the server refuses as too
large (400, 413) is split in two and later batches stay at that size; pairs an answer leaves out
are asked again. A server without the endpoint (404, 405) gets one
`GET /nodes/{id}/versions/{version}` per version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS

FIRST_BATCH = 500
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
    rounds: list[int] = field(default_factory=list)


async def read_versions(client: RegistryClient, build: Build, pairs: list[Pair]) -> None:
    """Read `pairs` (sorted first, so the batches are the same at any concurrency); each
    answered batch is journaled as one `bulk` record (`known` reads them all back)."""
    done = set(known(build))
    todo = [pair for pair in sorted(set(pairs)) if pair not in done]
    state = _Batches()
    while todo:
        batches = [todo[i : i + state.size] for i in range(0, len(todo), state.size)]
        build.reporter.grow(PHASE_VERSIONS, len(batches))
        left: list[Pair] = []

        async def one(batch: list[Pair], left: list[Pair] = left) -> None:
            try:
                settled = await _read(client, batch, state)
            except FetchError as error:
                build.fail(f"{PHASE_VERSIONS}: versions {_names(batch)}", error)
            else:
                if settled:
                    record = {"k": "bulk", "versions": [[n, v, r] for (n, v), r in settled.items()]}
                    build.record(record)
                    build.replayed["bulk"].append(record)
                left.extend(pair for pair in batch if pair not in settled)
            finally:
                build.reporter.advance(PHASE_VERSIONS)
                build.status(PHASE_VERSIONS)
                build.unit_done()

        async with asyncio.TaskGroup() as group:
            for batch in batches:
                group.create_task(one(batch))
        if len(left) == len(todo):
            build.fail(f"{PHASE_VERSIONS}: versions {_names(left)}", "the registry did not answer")
            return
        todo = sorted(left)


def known(build: Build) -> dict[Pair, Settled]:
    """Everything read this run (journaled or replayed)."""
    return {(n, v): r for record in build.replayed["bulk"] for n, v, r in record["versions"]}


async def _read(client: RegistryClient, batch: list[Pair], state: _Batches) -> dict[Pair, Settled]:
    if not state.single:
        body = {"node_versions": [{"node_id": n, "version": v} for n, v in batch]}
        answer = await client.post(BULK_PATH, body, accept=(400, 404, 405, 413))
        if answer.status in (400, 413) and len(batch) > 1:
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
