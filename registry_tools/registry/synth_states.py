"""The states of a synthetic registry: each version's extraction status and what a fetch
keeps of its metadata, the names packages preempt, search rankings.

By default a synthetic cache is what a fetch that follows docs/cache-format.md leaves: only
active, not deprecated versions get metadata; of those, a version whose extraction is pending
or failed has `metadata_pending` and no `comfy_nodes`. `ideal=True` gives the same registry
with every extraction finished and every version's metadata kept (what today's tests of the
ideal emulator round-trip). Both draw the same random numbers, so they differ in nothing else.
"""

from __future__ import annotations

import math
import random
from typing import Any

from registry_tools.registry.synth_tables import (
    EXTRACTION_FAILED,
    EXTRACTION_PENDING_NEWEST,
    EXTRACTION_PENDING_OLDER,
    PREEMPT_SHARE,
    Package,
)

ACTIVE = "NodeVersionStatusActive"


def settle_extraction(rng: random.Random, versions: list[dict[str, Any]], ideal: bool) -> None:
    """Give each version (newest first, comfy nodes attached) its `comfy_node_extract_status`
    and keep of its metadata what a fetch keeps; a newest release is more often pending."""
    for age, version in enumerate(versions):
        pending = EXTRACTION_PENDING_NEWEST if age == 0 else EXTRACTION_PENDING_OLDER
        draw = rng.random()  # drawn in ideal mode too, so both modes share every other draw
        state = "success"
        if not ideal and draw < pending + EXTRACTION_FAILED:
            state = "pending" if draw < pending else "failed"
        version["comfy_node_extract_status"] = state
        fetched = version["status"] == ACTIVE and not version["deprecated"]
        if ideal or (fetched and state == "success"):
            version["metadata_cached"] = True
            continue
        version["metadata_cached"] = False
        del version["comfy_nodes"]
        if fetched:
            version["metadata_pending"] = state


def choose_preemptions(rng: random.Random, packages: list[Package]) -> None:
    """For most shared comfy-node names, one of the packages providing it claims it."""
    providers: dict[str, list[Package]] = {}
    for package in packages:
        for name in package.shared_names:
            providers.setdefault(name, []).append(package)
    for name, offering in providers.items():
        if rng.random() < PREEMPT_SHARE:
            rng.choice(offering).preempted.append(name)


def search_ranking(downloads: int) -> int:
    """1 to 10, rising with the logarithm of the downloads (the server's scale is not
    documented; this keeps the popular packages on top)."""
    return max(1, min(10, 1 + int(1.5 * math.log10(1 + max(0, downloads)))))
