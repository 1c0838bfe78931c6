"""Node types that packs define only in their frontend code (KJNodes' `SetNode`/`GetNode`,
rgthree's virtual nodes): no registry metadata can list them, so a small curated table,
`data/pack_frontend_nodes.tsv`, maps each to its pack's registry id and repository."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class FrontendPack:
    """The pack a frontend-only node type belongs to."""

    package_id: str
    repository: str


@functools.cache
def pack_frontend_nodes() -> dict[str, FrontendPack]:
    """{node type: its pack}, from the shipped table."""
    text = resources.files(__package__).joinpath("data/pack_frontend_nodes.tsv").read_text("utf-8")
    table = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if line.startswith("#") or len(cells) != 3 or cells[0] == "type":
            continue
        table[cells[0]] = FrontendPack(cells[1], cells[2])
    return table
