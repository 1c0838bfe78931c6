"""Loading and checking a `node_mappings.json` (for `resolve`, `--input` and the notebooks):
every entry needs a package id, a list of versions and a rank, as the consumers require
(comfydock-core and comfygit-core raise a KeyError on an entry without `rank`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry_tools import files
from registry_tools.errors import UserError


def load_mappings(path: Path, what: str = "--mappings") -> dict[str, Any]:
    """Read a node mappings file, rejecting anything of another shape with a UserError."""
    document = files.read_json(path, what)
    problem = mappings_problem(document)
    if problem:
        raise UserError(f"{what} {path}: not a node mappings file ({problem})")
    return document


def mappings_problem(document: Any) -> str | None:
    """Why `document` is not a node mappings file, or None when it is one."""
    if not isinstance(document, dict):
        return f"top level is a JSON {type(document).__name__}, expected an object"
    if not isinstance(document.get("mappings"), dict):
        return "missing the 'mappings' object"
    if not isinstance(document.get("packages"), dict):
        return "missing the 'packages' object"
    for key, entries in document["mappings"].items():
        if "::" not in key or not isinstance(entries, list):
            return f"mapping {key!r} is not '<type>::<hash>' -> list"
        for entry in entries:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("package_id"), str)
                and isinstance(entry.get("versions"), list)
                and all(isinstance(v, str) for v in entry["versions"])
            ):
                return f"mapping {key!r} has an entry without package_id/versions"
            rank = entry.get("rank")
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
                return f"mapping {key!r} has an entry without a rank (1 or more)"
    aliases = document.get("package_aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        return "'package_aliases' is not an object of id -> id"
    return None
