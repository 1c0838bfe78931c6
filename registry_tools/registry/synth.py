"""A realistic synthetic registry cache, for tests, benchmarks and the offline demo.

`generate(nodes, seed)` gives the same bytes for the same arguments (one `random.Random(seed)`,
no global state), and reproduces the awkward parts of the real registry that broke the
reference scripts: heavy-tailed version counts, `1.10.0` next to `1.9.0`, pre-releases,
non-semver strings, backports published after a newer major, Go timestamps with a varying
number of fractional digits, banned and deleted packages, every version status, pending and
failed extractions, missing download URLs (often on pre-releases), comfy-node names provided
by several packages and claimed by one, policies, metadata spanning several pages and
malformed `input_types`. `synth_states` says what of the metadata the cache keeps.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from registry_tools import clock
from registry_tools.errors import UserError
from registry_tools.fetch import cache_file
from registry_tools.registry.synth_comfy import attach_comfy_nodes, random_input_types
from registry_tools.registry.synth_states import (
    choose_preemptions,
    search_ranking,
    settle_extraction,
)
from registry_tools.registry.synth_tables import (
    ACCELERATORS,
    AUTHORS,
    CATEGORIES,
    DEPENDENCIES,
    EPOCH,
    FIRST_RELEASES,
    LICENSES,
    MAX_NODES,
    NON_SEMVER,
    NON_STRICT_WITHOUT_URL,
    OS,
    PRE_RELEASES,
    RARE_STATUSES,
    SHARED_NAMES,
    SPAN_DAYS,
    TAGS,
    UNICODE_WORDS,
    VERSION_COUNTS,
    WORDS,
    Package,
    draw,
    unique,
)

# Versions whose comfy nodes count towards the registry's "~150,000 metadata entries".
NEWEST_WITH_METADATA = 10
STRICT_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")


def generate(nodes: int, seed: int, *, ideal: bool = False) -> dict[str, Any]:
    """A complete cache document with `nodes` packages; identical for identical arguments.

    `ideal=True`: the same registry with every extraction finished and every version's
    metadata kept (see `synth_states`)."""
    for name, value in (("nodes", nodes), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"synth: {name} must be an integer, got {value!r}")
    if not 1 <= nodes <= MAX_NODES:
        raise UserError(f"synth: nodes must be from 1 to {MAX_NODES:,}, got {nodes:,}")
    if not isinstance(ideal, bool):
        raise UserError(f"synth: ideal must be true or false, got {ideal!r}")
    rng = random.Random(seed)
    packages = _packages(rng, nodes)
    shared_specs = {name: random_input_types(rng) for name in SHARED_NAMES}
    fetched_at = clock.iso()  # one "fetch" time for every node, even if the clock ticks
    built = [_node(rng, package, shared_specs, fetched_at, ideal) for package in packages]
    return cache_file.build_cache(built)


def summary(cache: dict[str, Any]) -> str:
    """One line: what a cache holds (for the CLI and notebooks)."""
    newest = sum(
        len(version.get("comfy_nodes") or [])
        for node in cache["nodes"]
        for version in node.get("versions_list", [])[:NEWEST_WITH_METADATA]
    )
    waiting = Counter(
        version.get("metadata_pending")
        for node in cache["nodes"]
        for version in node.get("versions_list", [])
    )
    return (
        f"{cache['node_count']} nodes, {cache['versions_processed']} versions "
        f"({waiting['pending']} with extraction pending, {waiting['failed']} failed), "
        f"{cache['metadata_entries']} comfy nodes ({newest} in the newest "
        f"{NEWEST_WITH_METADATA} versions of each node)"
    )


# ---- packages ---------------------------------------------------------------------------------


def _packages(rng: random.Random, count: int) -> list[Package]:
    """Unique ids, version counts, the banned few and who shares which comfy-node names."""
    seen: set[str] = set()
    used_words: set[tuple[str, ...]] = set()
    packages = []
    for _ in range(count):
        words = _fresh_words(rng, used_words)
        node_id = unique(_slug(rng, words), seen)
        packages.append(Package(node_id, words, rng.choice(AUTHORS), draw(rng, VERSION_COUNTS)))
    banned = max(1 if count >= 50 else 0, round(count * 0.003))
    for package in rng.sample(packages, banned):
        package.banned = True
    # Deleted packages are still in an older listing, but their versions answer 404.
    deleted = max(1 if count >= 50 else 0, round(count * 0.01))
    for package in rng.sample([p for p in packages if not p.banned], deleted):
        package.deleted = True
    for name in SHARED_NAMES[: max(1, count // 30)]:
        for package in rng.sample(packages, min(count, rng.randint(2, 5))):
            package.shared_names.append(name)
    choose_preemptions(rng, packages)
    return packages


def _fresh_words(rng: random.Random, used: set[tuple[str, ...]]) -> list[str]:
    """Words no other package uses, so comfy-node names only collide where intended."""
    while True:
        words = rng.sample(WORDS, rng.choice((1, 2, 2, 2, 3)))
        if tuple(words) not in used:
            used.add(tuple(words))
            return words


def _slug(rng: random.Random, words: list[str]) -> str:
    joined = "-".join(words)
    style = rng.random()
    if style < 0.45:
        return f"comfyui-{joined}"
    if style < 0.65:
        return f"{joined}-comfy"
    if style < 0.8:
        return "comfyui_" + "_".join(words)
    return joined


def _heavy_int(rng: random.Random, scale: float, alpha: float, cap: int) -> int:
    return min(cap, int(scale * (rng.paretovariate(alpha) - 1)))


def _node(
    rng: random.Random,
    package: Package,
    shared_specs: dict[str, str],
    fetched_at: str,
    ideal: bool,
) -> dict[str, Any]:
    """One cache node: the server's Node fields plus this project's local keys."""
    created = EPOCH + timedelta(days=rng.uniform(0, SPAN_DAYS * 0.6))
    uploaded = _versions(rng, package, created)
    versions = cache_file.sort_versions(uploaded)
    attach_comfy_nodes(rng, package, versions, shared_specs)
    settle_extraction(rng, versions, ideal)
    latest = _latest(uploaded[-1]) if uploaded else None
    downloads = _heavy_int(rng, 40, 0.9, 5_000_000)
    node: dict[str, Any] = {
        "id": package.node_id,
        "name": _display_name(rng, package.words),
        "description": _description(rng, package.words),
        "author": package.author,
        "license": rng.choice(LICENSES),
        "icon": _icon(rng, package),
        "repository": _repository(rng, package),
        "tags": sorted(rng.sample(TAGS, rng.choice((0, 0, 1, 2, 3)))),
        "rating": round(rng.uniform(3, 5), 1) if rng.random() < 0.2 else 0,
        "downloads": downloads,
        "github_stars": 0 if rng.random() < 0.15 else _heavy_int(rng, 8, 0.8, 90_000),
        "publisher": {"id": package.author.lower(), "name": package.author},
        "status": _node_status(package),
        "preempted_comfy_node_names": sorted(package.preempted),
        "search_ranking": search_ranking(downloads),
        "category": rng.choice(CATEGORIES),
        "created_at": _go_time(rng, created),
        "fully_cached": True,
        "versions_cached_at": fetched_at,
        "versions_cached_for": latest["version"] if latest else "",
        "versions_list": [] if package.banned or package.deleted else versions,
    }
    if latest:
        node["latest_version"] = latest
        for key in ("supported_os", "supported_accelerators", "supported_comfyui_version"):
            node[key] = latest[key]
    if package.banned:
        node["versions_unavailable"] = "banned"
    elif package.deleted:
        node["versions_unavailable"] = "not_found"
    return node


def _node_status(package: Package) -> str:
    if package.banned:
        return "NodeStatusBanned"
    return "NodeStatusDeleted" if package.deleted else "NodeStatusActive"


def _display_name(rng: random.Random, words: list[str]) -> str:
    name = " ".join(word.capitalize() for word in words)
    if rng.random() < 0.05:
        return f"{rng.choice(UNICODE_WORDS)} {name}"
    return f"ComfyUI {name}" if rng.random() < 0.4 else name


def _description(rng: random.Random, words: list[str]) -> str:
    text = f"Custom nodes for {' '.join(words)} workflows in ComfyUI."
    if rng.random() < 0.06:
        text += f" {rng.choice(UNICODE_WORDS)} — prend en charge « {rng.choice(UNICODE_WORDS)} »."
    return "" if rng.random() < 0.05 else text


def _icon(rng: random.Random, package: Package) -> str:
    if rng.random() < 0.7:
        return ""
    return f"https://raw.githubusercontent.com/{package.author}/{package.node_id}/main/icon.png"


def _repository(rng: random.Random, package: Package) -> str:
    """GitHub URLs as publishers really type them: some `.git`, trailing `/` or plain http."""
    url = f"https://github.com/{package.author}/{package.node_id}"
    quirk = rng.random()
    if quirk < 0.08:
        return url + ".git"
    if quirk < 0.14:
        return url + "/"
    if quirk < 0.17:
        return "http" + url[5:]
    return url


def _latest(uploaded_last: dict[str, Any]) -> dict[str, Any]:
    """The server's latest_version: the most recently uploaded version of any status (a
    backport or a pre-release as often as not), as the listing sends it."""
    local = (*cache_file.VERSION_LOCAL_KEYS, "metadata_pending", "download_url")
    server = {k: v for k, v in uploaded_last.items() if k not in local}
    server["downloadUrl"] = ""  # the listing's latest_version never carries the URL
    return server


# ---- versions ---------------------------------------------------------------------------------


def _version_strings(rng: random.Random, count: int) -> list[str]:
    """Release order (oldest first): semver bumps, pre-releases, backports, odd strings.

    A backport (a patch to the line before the current major) only comes once the new
    major's first release is out, so it is published after it.
    """
    if count == 0:
        return []
    major, minor, patch = rng.choice(FIRST_RELEASES)
    out = [f"{major}.{minor}.{patch}"]
    previous_line: tuple[int, int, int] | None = None
    while len(out) < count:
        bump = rng.random()
        if bump < 0.06:
            previous_line = (major, minor, patch)
            major, minor, patch = major + 1, 0, 0
        elif bump < 0.32:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        release = f"{major}.{minor}.{patch}"
        if patch == 0 and rng.random() < 0.25:
            out.append(f"{release}-{rng.choice(PRE_RELEASES)}")
        elif previous_line and (minor, patch) != (0, 0) and rng.random() < 0.15:
            old_major, old_minor, old_patch = previous_line
            previous_line = (old_major, old_minor, old_patch + 1)
            out.append(f"{old_major}.{old_minor}.{old_patch + 1}")
            continue
        if len(out) < count:
            out.append(release)
    if count >= 3 and rng.random() < 0.03:
        out[rng.randrange(1, count)] = rng.choice(NON_SEMVER)
    return out


def _versions(rng: random.Random, package: Package, created: datetime) -> list[dict[str, Any]]:
    when = created
    versions = []
    for version in _version_strings(rng, package.version_count):
        when += timedelta(hours=rng.expovariate(1 / 200))
        versions.append(_version(rng, package, version, when))
    return versions


def _version(rng: random.Random, package: Package, version: str, when: datetime) -> dict[str, Any]:
    status, reason = "NodeVersionStatusActive", ""
    if rng.random() < 0.02:
        status, reason = rng.choice(RARE_STATUSES)
    url = f"https://cdn.comfy.org/{package.author.lower()}/{package.node_id}/{version}/node.zip"
    missing = rng.random() < 0.01
    if rng.random() < NON_STRICT_WITHOUT_URL and not STRICT_RELEASE.match(version):
        missing = True
    return {
        "version": version,
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "createdAt": _go_time(rng, when),
        "changelog": rng.choice(("", "Bug fixes.", "New nodes.", "修复错误 🐛", "Perf ⚡")),
        "dependencies": rng.sample(DEPENDENCIES, rng.choice((0, 0, 1, 2, 3, 5))),
        "download_url": None if missing else url,
        "deprecated": rng.random() < 0.07,
        "status": status,
        "status_reason": reason,
        "node_id": package.node_id,
        "supported_os": sorted(rng.sample(OS, rng.choice((0, 0, 0, 1, 3)))),
        "supported_accelerators": sorted(rng.sample(ACCELERATORS, rng.choice((0, 0, 1, 2)))),
        "supported_comfyui_version": rng.choice(("", "", ">=0.3.0", ">=0.2.0,<1.0")),
    }


def _go_time(rng: random.Random, when: datetime) -> str:
    """RFC 3339 as a Go server writes it: 0-6 fractional digits, trailing zeros dropped."""
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    shape = rng.random()
    micros = (
        0 if shape < 0.15 else rng.randrange(10) * 100_000 if shape < 0.25 else when.microsecond
    )
    fraction = f"{micros:06d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"
