"""Which cache versions feed `mappings`, and the node keys each one provides.

A feeding version's keys are parsed from its `comfy_nodes`, hashed per `signatures`;
malformed comfy nodes are counted in the report, never fatal.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from registry_tools.mappings.cache_stream import comfy_nodes, replace_surrogates
from registry_tools.mappings.installable import installable, metadata_gap, package_reason
from registry_tools.mappings.job import MappingsReport
from registry_tools.mappings.signatures import NO_SIGNATURE, SURROGATE, registry_hash
from registry_tools.semver import version_key

# The builder's modules log under one name, the one `--log-level INFO` output has always shown.
log = logging.getLogger(__package__)


def feeding_versions(node: dict[str, Any], max_versions: int = -1) -> list[dict[str, Any]]:
    """Versions whose comfy nodes feed `mappings`, newest first: the installable ones
    (`installable`) whose metadata is cached; `max_versions` then keeps the newest N."""
    package = package_reason(node)
    eligible = [
        v
        for v in node.get("versions_list") or []
        if v.get("metadata_cached") is True and installable(v, package)
    ]
    eligible.sort(key=lambda v: version_key(v["version"]), reverse=True)
    return eligible if max_versions < 0 else eligible[:max_versions]


def metadata_gaps(node: dict[str, Any]) -> Counter:
    """Installable versions that feed nothing because their metadata is not cached, by
    `installable.metadata_gap` (pending, failed, not_fetched): counted in the summary."""
    package = package_reason(node)
    gaps: Counter = Counter()
    for version in node.get("versions_list") or []:
        gap = metadata_gap(version)
        if gap is not None and installable(version, package):
            gaps[gap] += 1
    return gaps


class Hasher:
    """Signature hashes memoised on the `input_types` text: successive versions of a package
    mostly repeat their nodes verbatim, so most parses are skipped."""

    def __init__(self, report: MappingsReport) -> None:
        self.report = report
        self._memo: dict[str, tuple[str, str | None]] = {}

    def version_keys(self, package_id: str, version: dict[str, Any]) -> list[str]:
        """Sorted distinct node keys of one version, each node type's `::_` key included;
        malformed entries are counted, not fatal."""
        keys = set()
        names = set()
        for comfy_node in comfy_nodes(version):
            name = comfy_node.get("comfy_node_name") if isinstance(comfy_node, dict) else None
            where = f"{package_id}@{version['version']}"
            if not isinstance(name, str) or not name:
                _problem(self.report, "no_name", f"{where}: {comfy_node!r:.60}")
                continue
            if not _encodable(name):  # a lone surrogate: no UTF-8 file can hold it
                _problem(self.report, SURROGATE, f"{where} {ascii(name)}")
                name = replace_surrogates(name)
            digest, problem = self._hash(comfy_node.get("input_types"))
            if problem:
                _problem(self.report, problem, f"{where} {name}")
            keys.add(f"{name}::{digest}")
            names.add(name)
        keys.update(f"{name}::{NO_SIGNATURE}" for name in names)
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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
