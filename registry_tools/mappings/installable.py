"""Which cache versions a consumer may install, and why the others may not.

The consumers (comfydock-core, comfygit-core) install `max(packages[id].versions)` offline
without looking at `deprecated` or `status`, so only installable versions may be listed
there: the version's status is active (or absent, in an old cache), it is not deprecated,
it has a download URL, and its package is not banned or deleted. The others are kept under
`packages[id].unavailable_versions` with the reasons, so nothing the cache knows is lost.
"""

from __future__ import annotations

from typing import Any

ACTIVE = "NodeVersionStatusActive"

# Package statuses under which no version may be installed, and the reason each gives.
PACKAGE_REASONS = {"NodeStatusBanned": "package_banned", "NodeStatusDeleted": "package_deleted"}
# Version statuses other than active, and the reason each gives (unknown ones: `status`).
STATUS_REASONS = {
    "NodeVersionStatusBanned": "banned",
    "NodeVersionStatusDeleted": "deleted",
    "NodeVersionStatusPending": "pending",
    "NodeVersionStatusFlagged": "flagged",
}


def download_url(version: dict[str, Any]) -> str:
    """The version's download URL ('' when it has none). The cache stores the server's
    `downloadUrl` as `download_url`; a cache written by another tool may keep the server's
    name, so the first non-empty string of the two counts."""
    for key in ("download_url", "downloadUrl"):
        value = version.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def is_deprecated(version: dict[str, Any]) -> bool:
    """Anything but `false` (or absent/null) counts as deprecated: a version whose flag
    cannot be read is never offered for installation."""
    flag = version.get("deprecated")
    return flag is not None and flag is not False


def package_reason(node: dict[str, Any]) -> str | None:
    """Why none of a package's versions may be installed, or None."""
    return PACKAGE_REASONS.get(node.get("status"))


def version_reasons(version: dict[str, Any], package: str | None = None) -> list[str]:
    """Why a version may not be installed, in a fixed order ([] when it may be).
    `package` is `package_reason` of its node."""
    reasons = [package] if package else []
    status = version.get("status")
    if status is not None and status != ACTIVE:
        reasons.append(STATUS_REASONS.get(status, "status"))
    if is_deprecated(version):
        reasons.append("deprecated")
    if not download_url(version):
        reasons.append("no_download_url")
    return reasons


def installable(version: dict[str, Any], package: str | None = None) -> bool:
    """Whether a consumer may install this version (see `version_reasons`)."""
    return not version_reasons(version, package)


def metadata_gap(version: dict[str, Any]) -> str | None:
    """Why an installable version has no comfy-node metadata to feed (`pending`, `failed`,
    `not_fetched`), or None when its metadata is cached."""
    if version.get("metadata_cached") is True:
        return None
    pending = version.get("metadata_pending")
    if pending in ("pending", "failed"):
        return pending
    extract = version.get("comfy_node_extract_status")
    if extract in ("pending", "failed"):
        return extract
    return "not_fetched"
