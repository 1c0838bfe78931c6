"""Semver-aware ordering that never raises: `1.10.0` > `1.9.0`, `1.0.0-rc.1` < `1.0.0`.

Strings that are not versions at all sort below every real version, by text, so ordering
is total and deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SEMVER = re.compile(
    r"^\s*[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?"
    r"(?:-([0-9A-Za-z.-]+)|([A-Za-z][0-9A-Za-z.-]*))?(?:\+[0-9A-Za-z.-]+)?\s*$"
)

VersionKey = tuple


def version_key(text: str) -> VersionKey:
    """Sort key; larger means newer. Ties between equal versions break on the raw text."""
    match = _SEMVER.match(text or "")
    if not match:
        return (0, (), 0, (), text or "")
    numbers = tuple(int(part or 0) for part in match.group(1, 2, 3, 4))
    pre = match.group(5) or match.group(6)
    if pre is None:
        return (1, numbers, 1, (), text)
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"[.-]", pre)
        if part
    )
    return (1, numbers, 0, identifiers, text)


def newest_first(versions: Iterable[str]) -> list[str]:
    """Versions sorted newest first."""
    return sorted(versions, key=version_key, reverse=True)
