"""`package_aliases`: legacy package ids and the canonical ids they now stand for.

A package renamed on the registry keeps appearing under its old id in workflows
(`properties.cnr_id`) and in consumers' saved projects; comfygit-core follows
`package_aliases` (chains included) before looking a package up. The file given with
`--aliases` is JSON, either the object itself or comfygit's config layout:

    {"old-id": "new-id", ...}
    {"schema_version": 1, "aliases": {"old-id": "new-id", ...}}

Both ids are non-empty strings, no id is its own alias and no chain loops back (comfygit-core
would warn and stop there); anything else is refused with one line. An alias whose canonical
id is not a package of the file is kept (the file may be older than the cache) and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.errors import UserError

SCHEMA_VERSION = 1


def load_aliases(path: Path | None) -> dict[str, str]:
    """The aliases of `path`, sorted by legacy id ({} without a file)."""
    if path is None:
        return {}
    document = files.read_json(path, "--aliases")
    if isinstance(document, dict) and "aliases" in document:
        version = document.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise UserError(f"--aliases {path}: schema_version {version!r}, expected 1")
        document = document["aliases"]
    if not isinstance(document, dict):
        raise UserError(f"--aliases {path}: expected a JSON object of legacy id -> canonical id")
    for legacy, canonical in document.items():
        if not legacy.strip() or not isinstance(canonical, str) or not canonical.strip():
            raise UserError(f"--aliases {path}: {legacy!r} -> {canonical!r} is not id -> id")
        if legacy == canonical:
            raise UserError(f"--aliases {path}: {legacy!r} is an alias of itself")
    for start in document:
        seen = {start}
        current = document[start]
        while current in document:
            if current in seen:
                raise UserError(f"--aliases {path}: the aliases of {start!r} loop ({current!r})")
            seen.add(current)
            current = document[current]
    return dict(sorted(document.items()))


def unknown_targets(aliases: dict[str, str], packages: Any) -> int:
    """How many aliases end (after following chains) at an id that is not a package."""
    missing = 0
    for current in aliases.values():
        while current in aliases:
            current = aliases[current]
        missing += current not in packages
    return missing
