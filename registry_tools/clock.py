"""One clock for every timestamp written, pinnable for reproducible outputs.

`SOURCE_DATE_EPOCH` (seconds since the epoch) pins it, as in reproducible-builds.org;
`pin()` does the same from code (tests, `--timestamp`).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

_pinned: datetime | None = None

_FRACTION = re.compile(r"\.(\d+)")


def pin(when: datetime | str | int | None) -> None:
    """Pin the clock (None unpins); strings are ISO 8601, ints are epoch seconds."""
    global _pinned
    if when is None or isinstance(when, datetime):
        _pinned = when
    elif isinstance(when, int):
        _pinned = datetime.fromtimestamp(when, UTC)
    else:
        _pinned = parse_time(when)


def now() -> datetime:
    """The current time in UTC, or the pinned one."""
    if _pinned is not None:
        return _pinned
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.now(UTC)


def iso(when: datetime | None = None) -> str:
    """ISO 8601 in UTC with a `Z` suffix and whole seconds."""
    when = now() if when is None else when
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse a registry timestamp; Go servers emit 0-9 fractional digits, Python takes 6."""
    text = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time_or_none(text: object) -> datetime | None:
    """Like parse_time, but None for missing or malformed values instead of raising."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None
