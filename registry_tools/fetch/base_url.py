"""The registry's base URL: where it comes from, what is refused, the default request rate.

A base URL is checked before any work: it must parse, be http(s) with a host, carry no query
or fragment, and carry no credentials (`https://user:secret@host`): a password there would end
up in logs, journals and error messages, so it is refused without ever being echoed.
"""

from __future__ import annotations

import math
import os
import re
from urllib.parse import urlsplit

from registry_tools.errors import UserError

DEFAULT_BASE_URL = "https://api.comfy.org"
BASE_URL_ENV = "REGISTRY_TOOLS_BASE_URL"

# The public registry answers 429 above roughly 10-15 requests/s (registry-api.md); start at
# the top of that range and let the adaptive rate find the real limit below it.
PUBLIC_MAX_RATE = 15.0
PUBLIC_HOST = re.compile(r"(^|\.)comfy\.org$", re.IGNORECASE)

_USERINFO = re.compile(r"(//)[^/?#]*@")


def default_base_url() -> str:
    """The base URL from the environment, else the public registry."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def redacted(url: str) -> str:
    """`url` with any user name and password replaced by `***`, safe to print."""
    return _USERINFO.sub(r"\1***@", url)


def check_base_url(base_url: str) -> str:
    """Normalise a base URL (no trailing slash) or raise a one-line UserError."""
    if not isinstance(base_url, str):
        raise UserError(f"--base-url: expected a URL string, got {type(base_url).__name__}")
    shown = redacted(base_url)
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise UserError(f"--base-url {shown!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--base-url {shown!r}: expected an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UserError(
            f"--base-url {shown!r}: credentials in the URL are not supported "
            "(pass a token with --token or $REGISTRY_TOOLS_TOKEN)"
        )
    if parts.query or parts.fragment or base_url.endswith(("?", "#")):
        raise UserError(f"--base-url {shown!r}: a base URL has no query or fragment")
    if any(ch.isspace() for ch in base_url):
        raise UserError(f"--base-url {shown!r}: contains white space")
    return base_url.rstrip("/")


def default_max_rate(base_url: str) -> float:
    """The request-rate ceiling when none is given: `PUBLIC_MAX_RATE` for the public registry
    (and other comfy.org hosts), none for anything else (a mirror or the stand-in registry is
    not slowed down; the adaptive rate still backs off if it answers 429)."""
    host = urlsplit(base_url).hostname or ""
    return PUBLIC_MAX_RATE if PUBLIC_HOST.search(host) else math.inf
