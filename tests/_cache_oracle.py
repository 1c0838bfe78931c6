"""What a complete cache build must write for a registry the emulator serves, computed from
the registry's own cache by the rules of docs/cache-format.md (not by the fetcher's code)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from registry_tools import files
from registry_tools.fetch import cache_file
from registry_tools.fetch.options import DEFAULT_MAX_VERSIONS

ACTIVE = "NodeVersionStatusActive"


def expected(
    registry: dict,
    max_versions: int = DEFAULT_MAX_VERSIONS,
    omitted: Callable[[str, str], bool] | None = None,
) -> bytes:
    """The registry's cache with comfy-nodes metadata for each node's newest `max_versions`
    installable versions only (active, not deprecated, with a download URL), and download
    URLs as the API serves them: a string ('' for none), or null for a version that cannot
    be used and whose listing left the URL out (`omitted`, the emulator's choice)."""
    nodes = copy.deepcopy(registry["nodes"])
    for node in nodes:
        versions = cache_file.sort_versions(node.get("versions_list", []))
        for version in versions:
            version["download_url"] = version.get("download_url") or ""
        usable = [
            v
            for v in versions
            if v.get("status", ACTIVE) == ACTIVE and not v.get("deprecated") and v["download_url"]
        ]
        chosen = {v["version"] for v in (usable if max_versions < 0 else usable[:max_versions])}
        for version in versions:
            unusable = version.get("status", ACTIVE) != ACTIVE or version.get("deprecated")
            if unusable and omitted is not None and omitted(node["id"], version["version"]):
                version["download_url"] = None
            if version["version"] not in chosen:
                version["metadata_cached"] = False
                version.pop("comfy_nodes", None)
    cache = cache_file.build_cache(nodes)
    cache["cached_at"] = registry["cached_at"]  # tests pin the run's clock to the registry's
    return files.dumps(cache)
