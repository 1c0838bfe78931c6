"""Download URLs of versions listed without one, with no side effect on the registry.

`GET /nodes/{id}/install` would answer too, but it counts a download and fires an analytics
event on the real registry (and refuses versions that are not strict semver), so it is never
called. Instead `POST /bulk/nodes/versions` reads `BATCH` versions per request; a batch the
server refuses as too large (400, 413) is split in two; a server without the bulk endpoint
(404, 405) gets one `GET /nodes/{id}/versions/{version}` per version. Only usable versions
(active, not deprecated) are asked about: nothing else can be installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry_tools.fetch.build import Build
from registry_tools.fetch.client import FetchError, RegistryClient, api_path
from registry_tools.fetch.options import PHASE_VERSIONS

BATCH = 50
BULK_PATH = "/bulk/nodes/versions"
Wanted = tuple[str, str]  # (node id, version)


async def fetch_urls(client: RegistryClient, build: Build, wanted: list[Wanted]) -> None:
    """Learn the URLs of `wanted` (sorted, so batches are the same at any concurrency);
    each answered batch is journaled as one `urls` record."""
    done = {(n, v) for record in build.replayed["urls"] for n, v, _url in record["urls"]}
    todo = [item for item in sorted(set(wanted)) if item not in done]
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    build.reporter.grow(PHASE_VERSIONS, len(batches))
    single = asyncio.Event()  # set once the server turns out to lack the bulk endpoint

    async def one(batch: list[Wanted]) -> None:
        try:
            if not single.is_set():
                urls = await _bulk(client, build, batch, single)
            if single.is_set():
                urls = await _one_by_one(client, build, batch)
        except FetchError as error:
            build.fail(f"{PHASE_VERSIONS}: download URLs of {_names(batch)}", error)
        else:
            record = {"k": "urls", "urls": urls}
            build.record(record)
            build.replayed["urls"].append(record)
        finally:
            build.reporter.advance(PHASE_VERSIONS)
            build.status(PHASE_VERSIONS)
            build.unit_done()

    async with asyncio.TaskGroup() as group:
        for batch in batches:
            group.create_task(one(batch))


def known_urls(build: Build) -> dict[Wanted, str]:
    """Every URL learnt this run (journaled or replayed): '' for a version without one."""
    return {(n, v): url for record in build.replayed["urls"] for n, v, url in record["urls"]}


async def _bulk(
    client: RegistryClient, build: Build, batch: list[Wanted], single: asyncio.Event
) -> list[list[str]]:
    body = {"node_versions": [{"node_id": n, "version": v} for n, v in batch]}
    answer = await client.post(BULK_PATH, body, accept=(400, 404, 405, 413))
    if answer.status in (404, 405):
        single.set()
        return []
    if answer.status in (400, 413):
        if len(batch) == 1:
            raise FetchError(client.url(BULK_PATH), f"HTTP {answer.status}", "POST")
        half = len(batch) // 2
        first, second = await asyncio.gather(
            _bulk(client, build, batch[:half], single), _bulk(client, build, batch[half:], single)
        )
        return first + second
    return _bulk_urls(client, batch, answer.data)


def _bulk_urls(client: RegistryClient, batch: list[Wanted], data: Any) -> list[list[str]]:
    """(node id, version, URL) for each asked version the answer settles; FetchError if the
    answer is not a bulk answer, or leaves one of them unsettled (`error` or absent)."""
    url = client.url(BULK_PATH)
    results = data.get("node_versions") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise FetchError(url, "not a bulk versions answer (no 'node_versions' list)", "POST")
    settled: dict[Wanted, str] = {}
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("identifier"), dict):
            raise FetchError(
                url, "not a bulk versions answer (an entry without identifier)", "POST"
            )
        key = (result["identifier"].get("node_id"), result["identifier"].get("version"))
        if result.get("status") == "success" and isinstance(result.get("node_version"), dict):
            settled[key] = _url_of(result["node_version"])
        elif result.get("status") == "not_found":
            settled[key] = ""
    unsettled = [item for item in batch if item not in settled]
    if unsettled:
        raise FetchError(url, f"no answer for {_names(unsettled)}", "POST")
    return [[n, v, settled[(n, v)]] for n, v in batch]


async def _one_by_one(client: RegistryClient, build: Build, batch: list[Wanted]) -> list:
    async def one(node_id: str, version: str) -> list[str]:
        path = api_path("nodes", node_id, "versions", version)
        answer = await client.get(path, accept=(403, 404))
        if answer.status != 200:
            return [node_id, version, ""]
        if not isinstance(answer.data, dict):
            raise FetchError(client.url(path), "not a version (expected a JSON object)")
        return [node_id, version, _url_of(answer.data)]

    return list(await asyncio.gather(*(one(n, v) for n, v in batch)))


def _url_of(version: dict[str, Any]) -> str:
    url = version.get("downloadUrl", version.get("download_url"))
    return url if isinstance(url, str) else ""


def _names(batch: list[Wanted]) -> str:
    shown = ", ".join(f"{n} {v}" for n, v in batch[:3])
    return shown + (f" and {len(batch) - 3} more" if len(batch) > 3 else "")
