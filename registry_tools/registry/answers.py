"""What the stand-in registry's endpoints share: error answers shaped like the server's
(`{"error", "message"}`), and the query parameters read the server's way (page 0 is page 1,
booleans as `true`/`false`, repeatable filters)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from registry_tools import clock

# The reason phrases the real server puts in `error` next to a readable `message`.
REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
VERSION_STATUSES = (
    "NodeVersionStatusActive",
    "NodeVersionStatusDeleted",
    "NodeVersionStatusBanned",
    "NodeVersionStatusPending",
    "NodeVersionStatusFlagged",
)
STRICT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class Answer(Exception):
    """Raised by an endpoint to answer with an error status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> dict[str, str]:
        return error_body(self.status, str(self))


def error_body(status: int, message: str) -> dict[str, str]:
    return {"error": REASONS.get(status, "Error"), "message": message}


Query = Mapping[str, str]


def json_body(body: bytes) -> Any:
    """A request body as JSON, else a 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Answer(400, "the body is not valid JSON") from None


def int_param(query: Query, name: str, default: int, low: int = 1) -> int:
    """An integer parameter at least `low`, else a 400."""
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Answer(400, f"{name} must be an integer, got {text!r}") from None
    if value < low:
        raise Answer(400, f"{name} must be at least {low}, got {value}")
    return value


def page_param(query: Query) -> int:
    """The 1-based page; the server takes page 0 as page 1."""
    return max(1, int_param(query, "page", 1, low=0))


def bool_param(query: Query, name: str) -> bool:
    text = query.get(name)
    if text is None:
        return False
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0", ""):
        return False
    raise Answer(400, f"{name} must be true or false, got {text!r}")


def time_param(query: Query, name: str) -> datetime | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    parsed = clock.parse_time_or_none(text)
    if parsed is None:
        raise Answer(400, f"{name} must be an ISO 8601 time, got {text!r}")
    return parsed


def statuses_param(values: list[str]) -> set[str] | None:
    """The `statuses` filter (repeatable, or comma-separated); None when absent."""
    wanted = {part for value in values for part in value.split(",") if part}
    if not wanted:
        return None
    unknown = sorted(wanted - set(VERSION_STATUSES))
    if unknown:
        raise Answer(400, f"unknown version status(es): {', '.join(unknown)}")
    return wanted


def paged(items: list[Any], page: int, size: int) -> tuple[list[Any], int]:
    """The items of a 1-based page of `size`, and the page count."""
    start = (page - 1) * size
    return items[start : start + size], math.ceil(len(items) / size)
