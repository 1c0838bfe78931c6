"""The live look-up (`resolve --online`): ask the registry about node types the mappings lack.

Per unknown type, two reads: `GET /comfy-nodes/{name}/node` (the package the registry prefers
for that class; 404 = none) and `GET /nodes/search?comfy_node_search={name}` (every package
that provides it). The preferred package ranks first, the others follow in the search's order.
For a package the mappings do not hold, `GET /nodes/{id}/versions` gives its newest
installable version (and `GET /nodes/{id}/versions/{v}` its download URL when the listing
omits it; never `/install`, which has side effects). Those
packages join the view with `source: "online"`, so the plan marks them. A type whose reads
failed is reported as such, never as "nothing found". Recording and replay go through
cassettes at the front door (`registry_tools.replay.cassettes.use_cassette`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from registry_tools.errors import UserError
from registry_tools.fetch.client import FetchError, RegistryClient, RetryPolicy
from registry_tools.resolve.candidates import Candidate, MappingsView
from registry_tools.semver import newest_first

SEARCH_LIMIT = 20


@dataclass
class OnlineLookup:
    """A `Lookup` for the resolver; `failures` names the types whose reads failed."""

    base_url: str
    concurrency: int = 4
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=4))
    token: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url:
            raise UserError("online look-up: base_url must be a non-empty string")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise UserError("online look-up: concurrency must be an integer")
        if self.concurrency < 1:
            raise UserError(
                f"online look-up: concurrency must be at least 1, got {self.concurrency}"
            )

    def __call__(self, names: list[str], view: MappingsView) -> dict[str, tuple[Candidate, ...]]:
        job = self._lookup(names, view)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(job)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # inside a notebook's loop
            return pool.submit(asyncio.run, job).result()

    async def _lookup(
        self, names: list[str], view: MappingsView
    ) -> dict[str, tuple[Candidate, ...]]:
        async with RegistryClient(
            self.base_url, self.concurrency, self.policy, self.token
        ) as client:
            answers = await asyncio.gather(*(self._one(client, name) for name in names))
            found: dict[str, tuple[Candidate, ...]] = {}
            for name, nodes in zip(names, answers, strict=True):
                if nodes is None:
                    continue
                candidates = []
                for rank, node in enumerate(nodes, 1):
                    version = await self._add(client, node, view)
                    if node["id"] in self.failures:
                        self.failures.setdefault(name, self.failures[node["id"]])
                    candidates.append(
                        Candidate(node["id"], rank, version, (version,) if version else ())
                    )
                found[name] = tuple(candidates)
            self.requests += client.stats.requests
        return found

    async def _one(self, client: RegistryClient, name: str) -> list[dict[str, Any]] | None:
        """The packages providing `name`, preferred first; None when the reads failed."""
        try:
            preferred = await client.get(f"/comfy-nodes/{quote(name, safe='')}/node", accept=(404,))
            search = await client.get(
                "/nodes/search", {"comfy_node_search": name, "limit": SEARCH_LIMIT}, accept=(404,)
            )
        except FetchError as exc:
            self.failures[name] = exc.reason
            return None
        nodes = [preferred.data] if _is_node(preferred.data) else []
        listed = search.data.get("nodes") if isinstance(search.data, dict) else None
        seen = {n["id"] for n in nodes}
        for node in listed if isinstance(listed, list) else []:
            if _is_node(node) and node["id"] not in seen:
                seen.add(node["id"])
                nodes.append(node)
        return nodes

    async def _add(
        self, client: RegistryClient, node: dict[str, Any], view: MappingsView
    ) -> str | None:
        """Put a registry Node into the view (unless the mappings hold it); its version."""
        package_id = node["id"]
        if package_id in view.packages:
            installable = view.installable(package_id)
            return installable[0] if installable else None
        version, meta = await self._newest_installable(client, package_id)
        view.packages[package_id] = {
            "display_name": node.get("name"),
            "repository": node.get("repository"),
            "source": "online",
            "versions": {version: _version_record(meta)} if version else {},
        }
        return version

    async def _newest_installable(
        self, client: RegistryClient, package_id: str
    ) -> tuple[str | None, dict[str, Any]]:
        """The newest active, non-deprecated version and its record (with download URL).

        Not the Node's `latest_version`: that is the latest upload of any status, perhaps
        deprecated or banned, and is listed without a download URL."""
        path = f"/nodes/{quote(package_id, safe='')}/versions"
        try:
            listed = await client.get(path, accept=(403, 404))
            versions = (
                [v for v in listed.data or [] if _usable(v)]
                if isinstance(listed.data, list)
                else []
            )
            if not versions:
                return None, {}
            newest = newest_first([v["version"] for v in versions])[0]
            meta = next(v for v in versions if v["version"] == newest)
            if not meta.get("downloadUrl") and not meta.get("download_url"):
                answer = await client.get(f"{path}/{quote(newest, safe='')}", accept=(403, 404))
                meta = answer.data if isinstance(answer.data, dict) else meta
            return newest, meta
        except FetchError as exc:
            self.failures.setdefault(package_id, f"{package_id}: {exc.reason}")
            return None, {}


def _usable(version: Any) -> bool:
    """A listed version that may be installed: active (or no status), not deprecated."""
    return (
        isinstance(version, dict)
        and isinstance(version.get("version"), str)
        and version.get("deprecated") is not True
        and version.get("status") in (None, "NodeVersionStatusActive")
    )


def _version_record(meta: dict[str, Any]) -> dict[str, Any]:
    url = meta.get("downloadUrl", meta.get("download_url"))
    return {
        "download_url": url if isinstance(url, str) else "",
        "deprecated": meta.get("deprecated") is True,
        "status": meta.get("status") if isinstance(meta.get("status"), str) else None,
    }


def _is_node(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str) and bool(value["id"])
