"""The records of a `node_mappings.json` document: its header, `packages[id]` built from a
cache node (installable versions apart from the others), per-version metadata, and canonical
repository URLs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from registry_tools import clock
from registry_tools.mappings.installable import download_url, package_reason, version_reasons

# Per-version metadata copied into `packages[id]["versions"][v]` (cache key -> output key).
VERSION_FIELDS = (
    ("changelog", "changelog"),
    ("createdAt", "release_date"),
    ("dependencies", "dependencies"),
    ("deprecated", "deprecated"),
    ("download_url", "download_url"),
    ("status", "status"),
    ("supported_accelerators", "supported_accelerators"),
    ("supported_comfyui_version", "supported_comfyui_version"),
    ("supported_os", "supported_os"),
)
PACKAGE_FIELDS = ("author", "description", "rating", "license", "category", "icon", "tags")
PACKAGE_FIELDS += ("status", "created_at")
REGISTRY = "registry"  # `source` of a package from the registry cache


def header() -> dict[str, str]:
    """`version` and `generated_at`, from the project clock (pinned: reproducible output)."""
    now = clock.now()
    return {"version": now.strftime("%Y.%m.%d"), "generated_at": clock.iso(now)}


def package_record(node: dict[str, Any]) -> dict[str, Any]:
    """`packages[id]`: display metadata, the installable versions under `versions` (the
    consumers install any of them) and every other version under `unavailable_versions`,
    with the reasons it may not be installed."""
    record = {field_name: node.get(field_name) for field_name in PACKAGE_FIELDS}
    installable: dict[str, Any] = {}
    unavailable: dict[str, Any] = {}
    package = package_reason(node)
    for version in node.get("versions_list") or []:
        reasons = version_reasons(version, package)
        if reasons:
            unavailable[version["version"]] = unavailable_record(version, reasons)
        else:
            installable[version["version"]] = version_record(version)
    record.update(
        display_name=node.get("name") or node["id"],
        repository=normalize_repository(node.get("repository")),
        downloads=count(node.get("downloads")),
        github_stars=count(node.get("github_stars")),
        source=REGISTRY,
        unavailable_versions=unavailable,
        versions=installable,
    )
    return record


def version_record(version: dict[str, Any]) -> dict[str, Any]:
    """Per-version metadata under the keys comfydock-core reads."""
    record = {out: version.get(key) for key, out in VERSION_FIELDS}
    record["version"] = version["version"]
    record["deprecated"] = record["deprecated"] is True
    record["dependencies"] = record["dependencies"] or []
    record["release_date"] = record["release_date"] or ""
    record["download_url"] = download_url(version) or None
    return record


def unavailable_record(version: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """A version no consumer may install: its metadata, the server's `status_reason` and ours."""
    record = version_record(version)
    record["deprecated"] = version.get("deprecated")  # as the cache has it, even if odd
    record.update(reasons=reasons, status_reason=version.get("status_reason"))
    return record


def count(value: Any) -> int:
    """A count field (`downloads`, `github_stars`) as a non-negative int: 0 when absent or odd."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_GITHUB_SSH = re.compile(r"^(?:ssh://)?git@github\.com[:/](.+)$", re.IGNORECASE)
# `https://github.com/owner/repo`, optionally with `.git` and/or one trailing `/`: the usual
# form, normalised without `urlsplit` (same result; tested against the general path).
_GITHUB_PLAIN = re.compile(
    r"https://github\.com/([^/?#\s\\@:;]+/[^/?#\s\\@:;.][^/?#\s\\@:;]*?)(?:\.git)?/?"
)


def normalize_repository(url: Any) -> str:
    """Canonical repository URL, case kept: `https://github.com/owner/repo` for GitHub (a
    raw file's URL gives its repository's, a raw gist's its gist page); otherwise the URL
    with a lower-case host and no trailing `/` or `.git`; '' when there is none."""
    if not isinstance(url, str) or not url.strip():
        return ""
    text = url.strip()
    plain = _GITHUB_PLAIN.fullmatch(text)
    if plain:
        return "https://github.com/" + plain.group(1)
    ssh = _GITHUB_SSH.match(text)
    if ssh:
        text = "https://github.com/" + ssh.group(1)
    parts = urlsplit(text if "://" in text else "https://" + text)
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/")
    segments = [s for s in path.split("/") if s]
    if host in ("github.com", "raw.githubusercontent.com"):  # a raw file: its repository
        return "https://github.com/" + "/".join(segments[:2])
    if host == "gist.githubusercontent.com" and len(segments) >= 2:
        return "https://gist.github.com/" + "/".join(segments[:2])
    return f"{parts.scheme.lower() or 'https'}://{host}{path}"
