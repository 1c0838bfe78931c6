"""The records of a `node_mappings.json` document: its header, `packages[id]` built from a
cache node, per-version metadata, and canonical repository URLs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from registry_tools import clock

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


def header() -> dict[str, str]:
    """`version` and `generated_at`, from the project clock (pinned: reproducible output)."""
    now = clock.now()
    return {"version": now.strftime("%Y.%m.%d"), "generated_at": clock.iso(now)}


def package_record(node: dict[str, Any]) -> dict[str, Any]:
    """`packages[id]`: display metadata plus every version (deprecated ones included)."""
    record = {field_name: node.get(field_name) for field_name in PACKAGE_FIELDS}
    record.update(
        display_name=node.get("name") or node["id"],
        repository=normalize_repository(node.get("repository")),
        downloads=count(node.get("downloads")),
        github_stars=count(node.get("github_stars")),
        versions={v["version"]: version_record(v) for v in node.get("versions_list") or []},
    )
    return record


def version_record(version: dict[str, Any]) -> dict[str, Any]:
    """Per-version metadata under the keys comfydock-core reads."""
    record = {out: version.get(key) for key, out in VERSION_FIELDS}
    record["version"] = version["version"]
    record["deprecated"] = bool(record["deprecated"])
    record["dependencies"] = record["dependencies"] or []
    record["release_date"] = record["release_date"] or ""
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
    """Canonical repository URL: `https://github.com/owner/repo` for GitHub; otherwise the
    URL with a lower-case host and no trailing `/` or `.git`; '' when there is none."""
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
    if host == "github.com":
        segments = [s for s in path.split("/") if s][:2]
        return "https://github.com/" + "/".join(segments)
    return f"{parts.scheme.lower() or 'https'}://{host}{path}"
