"""Which cache versions feed `mappings`, and the node keys each one provides.

A feeding version's keys are parsed from its `comfy_nodes`, hashed per `signatures`;
malformed comfy nodes are counted in the report, never fatal.
"""

from __future__ import annotations

import logging
from typing import Any

from registry_tools.mappings.cache_stream import comfy_nodes
from registry_tools.mappings.job import MappingsReport
from registry_tools.mappings.signatures import registry_hash
from registry_tools.semver import version_key

# The builder's modules log under one name, the one `--log-level INFO` output has always shown.
log = logging.getLogger(__package__)

# Statuses that can no longer be installed: kept in `packages`, never fed into `mappings`.
EXCLUDED_NODE_STATUSES = frozenset({"NodeStatusBanned", "NodeStatusDeleted"})
EXCLUDED_VERSION_STATUSES = frozenset({"NodeVersionStatusBanned", "NodeVersionStatusDeleted"})


def feeding_versions(node: dict[str, Any], max_versions: int = -1) -> list[dict[str, Any]]:
    """Versions whose comfy nodes feed `mappings`, newest first.

    A version feeds when its metadata is cached, it is not deprecated and not banned/deleted,
    and its package is not banned/deleted; `max_versions` then keeps the newest N of those.
    """
    if node.get("status") in EXCLUDED_NODE_STATUSES:
        return []
    eligible = [
        v
        for v in node.get("versions_list") or []
        if v.get("metadata_cached") is True
        and not v.get("deprecated")
        and v.get("status") not in EXCLUDED_VERSION_STATUSES
    ]
    eligible.sort(key=lambda v: version_key(v["version"]), reverse=True)
    return eligible if max_versions < 0 else eligible[:max_versions]


class Hasher:
    """Signature hashes memoised on the `input_types` text: successive versions of a package
    mostly repeat their nodes verbatim, so most parses are skipped."""

    def __init__(self, report: MappingsReport) -> None:
        self.report = report
        self._memo: dict[str, tuple[str, str | None]] = {}

    def version_keys(self, package_id: str, version: dict[str, Any]) -> list[str]:
        """Sorted distinct node keys of one version; malformed entries are counted, not fatal."""
        keys = set()
        for comfy_node in comfy_nodes(version):
            name = comfy_node.get("comfy_node_name") if isinstance(comfy_node, dict) else None
            where = f"{package_id}@{version['version']}"
            if not isinstance(name, str) or not name:
                _problem(self.report, "no_name", f"{where}: {comfy_node!r:.60}")
                continue
            digest, problem = self._hash(comfy_node.get("input_types"))
            if problem:
                _problem(self.report, problem, f"{where} {name}")
            keys.add(f"{name}::{digest}")
        return sorted(keys)

    def _hash(self, input_types: Any) -> tuple[str, str | None]:
        if not isinstance(input_types, str):
            return registry_hash(input_types)
        found = self._memo.get(input_types)
        if found is None:
            found = self._memo[input_types] = registry_hash(input_types)
        return found


def _problem(report: MappingsReport, kind: str, where: str) -> None:
    report.problems[kind] += 1
    if len(report.problem_examples) < 20:
        report.problem_examples.append(f"{where}: {kind}")
    log.info("malformed comfy node %s: %s", where, kind)
