"""What ComfyUI-Manager's lists add to `node_mappings.json`: the packs the registry does not
know, and the node classes the Manager attributes to packs the registry's metadata lacks.

- A Manager pack whose repository is a registry package's (URLs normalised, compared without
  case or scheme; or the pack's `id` in `custom-node-list.json` naming a registry package) is
  that package: no second package. Node classes the Manager lists for it that its feeding
  versions do not provide get a `<class>::_` entry for it with `versions: []` and
  `source: "manager"` (the real ComfyDock pipelines do the same).
- Any other pack becomes a package `manager_<user>_<repo>` (`manager_package_id`: exactly the
  ids the ComfyDock pipelines give, which consumers' saved projects store) with
  `source: "manager"`, its repository (case kept), stars and last update from
  `github-stats.json`, `versions: {}`, and a `<class>::_` entry per node class.
- `preemptions` claim node classes (rank 1 among their tier); `nodename_pattern` attributes the
  node classes known to the file (registry metadata, every pack's list) that no pack lists and
  whose name matches it (`re.search`, first pattern in file order wins, as the Manager's own
  `get_used_extensions` does). ComfyUI's own entry (`comfyanonymous/ComfyUI`) lists built-in
  node classes: it is no pack, and the Manager attributes those names to nobody else.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse, urlunparse

from registry_tools import clock
from registry_tools.mappings.document import count, normalize_repository
from registry_tools.mappings.manager import ManagerData
from registry_tools.mappings.ranking import MANAGER

log = logging.getLogger(__package__)

COMFYUI = "github.com/comfyanonymous/comfyui"  # `repository_key` of ComfyUI itself


@dataclass(frozen=True)
class RegistryPackage:
    """What the Manager merge needs to know of one registry package."""

    repository: str  # normalised (`normalize_repository`)
    excluded: bool  # banned or deleted: the Manager's entries for it are dropped
    names: frozenset[str]  # node types its feeding versions provide


@dataclass
class Contribution:
    """The Manager's part of a mappings file. The Manager-only packages' records are built
    when asked (`records`): an incremental run that can copy them from its input does not."""

    stars: dict[str, int] = field(default_factory=dict)  # Manager-only packs: their stars
    newest: dict[str, datetime | None] = field(default_factory=dict)  # ...their last update
    sources: dict[str, tuple[str, dict, dict]] = field(default_factory=dict)  # URL, pack, stats
    fingerprint: str = ""  # what those records depend on (the lists, the registry's repos)
    entries: dict[str, set[str]] = field(default_factory=dict)  # `<class>::_` -> package ids
    claims: dict[str, set[str]] = field(default_factory=dict)  # node class -> package ids
    matched: set[str] = field(default_factory=set)  # registry packages the Manager lists
    dropped: set[str] = field(default_factory=set)  # ...that are banned or deleted
    bad_patterns: int = 0  # `nodename_pattern`s that are not regular expressions
    data: ManagerData | None = None
    _records: dict[str, dict[str, Any]] | None = None

    def records(self) -> dict[str, dict[str, Any]]:
        """`packages[id]` of every pack known only to the Manager."""
        if self._records is None:
            meta = self.data.node_map if self.data is not None else {}
            self._records = {
                package_id: manager_record(meta.get(url, ([], {}))[1], url, pack, stats)
                for package_id, (url, pack, stats) in self.sources.items()
            }
        return self._records


def repository_key(url: Any) -> str:
    """A repository URL as compared between the registry and the Manager: normalised, without
    scheme or case (GitHub's owners and names are case-insensitive)."""
    normalised = normalize_repository(url)
    return normalised.split("://", 1)[-1].casefold()


def comfydock_url(url: str) -> str:
    """The ComfyDock pipelines' `normalize_repository_url` (lower case, `.git` and a trailing
    `/` dropped, raw files to their repository): what their Manager package ids come from."""
    url = url.strip().lower()
    url = url.removesuffix(".git").rstrip("/")
    parsed = urlparse(url)
    parts = parsed.path.strip("/").split("/")
    if parsed.netloc == "raw.githubusercontent.com" and len(parts) >= 2:
        return f"https://github.com/{parts[0]}/{parts[1]}"
    if parsed.netloc == "gist.githubusercontent.com" and len(parts) >= 2:
        return f"https://gist.github.com/{parts[0]}/{parts[1]}"
    return urlunparse((parsed.scheme, parsed.netloc, parsed.path, "", "", ""))


# `https://github.com/owner/repo` and nothing else: ComfyDock's id without `urlparse` (the
# same result, tested against the general path; 3x faster on the Manager's 7,000 URLs).
_PLAIN_GITHUB = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+)", re.ASCII)


def manager_package_id(url: str) -> str:
    """The ComfyDock pipelines' `generate_manager_package_id(normalize_repository_url(url))`:
    `manager_<user>_<repo>` for GitHub, `manager_gist_<hash>`, `manager_<domain>_<user>_<repo>`
    elsewhere (`-` and, in domains, `.` become `_`)."""
    plain = _PLAIN_GITHUB.fullmatch(url.strip())
    if plain:
        user, repo = plain.group(1).lower(), plain.group(2).lower().removesuffix(".git")
        if repo:
            return f"manager_{user.replace('-', '_')}_{repo.replace('-', '_')}"
    parsed = urlparse(comfydock_url(url))
    parts = parsed.path.strip("/").split("/")
    if "gist.github.com" in parsed.netloc and len(parts) >= 2:
        return f"manager_gist_{parts[1]}"
    if len(parts) >= 2:
        user, repo = (part.lower().replace("-", "_") for part in parts[:2])
        if "github.com" in parsed.netloc:
            return f"manager_{user}_{repo}"
        domain = parsed.netloc.replace(".", "_").replace("-", "_")
        return f"manager_{domain}_{user}_{repo}"
    return "manager_" + parsed.netloc.replace(".", "_").replace("-", "_")


def contribute(data: ManagerData, registry: dict[str, RegistryPackage]) -> Contribution:
    """The Manager's packages, entries and claims, given the registry's packages."""
    merge = _Merge(data, registry)
    merge.run()
    return merge.result


class _Merge:
    def __init__(self, data: ManagerData, registry: dict[str, RegistryPackage]) -> None:
        self.data = data
        self.registry = registry
        self.result = Contribution()
        self.by_repository: dict[str, list[str]] = {}
        crc = zlib.crc32(data.digest.encode())
        for package_id in sorted(registry):
            key = repository_key(registry[package_id].repository)
            if key:
                self.by_repository.setdefault(key, []).append(package_id)
            line = f"{package_id}\t{key}\t{registry[package_id].excluded}\n"
            crc = zlib.crc32(line.encode(), crc)
        # What the Manager-only packs and their records depend on ('' for lists of unknown
        # origin, whose records are then always built afresh).
        self.result.fingerprint = f"{crc:08x}" if data.digest else ""
        self.result.data = data
        self._keys: dict[str, str] = {}
        self.packs: dict[str, dict[str, Any]] = {}  # repository key -> custom-node-list entry
        for entry in data.custom_nodes:
            for url in (entry["reference"], *_strings(entry.get("files"))):
                self.packs.setdefault(self.key(url), entry)
        self.stats = {self.key(url): value for url, value in data.stats.items()}
        self.names: dict[str, set[str]] = {}  # target package -> node classes the Manager lists
        self.targets: dict[str, str | None] = {}  # URL -> `target` (each URL is seen twice)

    def run(self) -> None:
        core: set[str] = set()
        listed: set[str] = set()
        patterns: list[tuple[re.Pattern[str], str]] = []
        for url, (names, meta) in self.data.node_map.items():
            if self.key(url) == COMFYUI:
                core.update(names)
                continue
            target = self.target(url)
            listed.update(names)
            if target is None:
                continue
            self.names.setdefault(target, set()).update(names)
            self.claim(target, meta.get("preemptions"))
            pattern = meta.get("nodename_pattern")
            if isinstance(pattern, str) and pattern:
                compiled = _pattern(pattern)
                if compiled is None:
                    self.result.bad_patterns += 1
                    log.warning("Manager pack %s: unusable nodename_pattern %r", url, pattern)
                else:
                    patterns.append((compiled, target))
        for entry in self.data.custom_nodes:  # packs without a node map are packs all the same
            target = self.target(entry["reference"])
            if target is not None:
                self.claim(target, entry.get("preemptions"))
        known = set().union(listed, *(p.names for p in self.registry.values()))
        may_match = _screen([pattern for pattern, _ in patterns])
        for name in known - listed - core:  # each name on its own: no order needed
            if not may_match(name):
                continue  # most names match no pattern: one search instead of one per pattern
            for pattern, target in patterns:
                if pattern.search(name):
                    self.names.setdefault(target, set()).add(name)
                    break
        entries = self.result.entries
        for target, names in self.names.items():
            provided = self.registry[target].names if target in self.registry else frozenset()
            for name in names - core - provided:
                key = name + "::_"
                if key in entries:
                    entries[key].add(target)
                else:
                    entries[key] = {target}

    def key(self, url: str) -> str:
        """`repository_key`, memoised: most URLs appear in two or three of the lists."""
        found = self._keys.get(url)
        if found is None:
            found = self._keys[url] = repository_key(url)
        return found

    def target(self, url: str) -> str | None:
        """The package a Manager repository URL stands for (a registry package or a new
        Manager-only one), or None when it is a banned or deleted registry package's."""
        if url not in self.targets:
            self.targets[url] = self._target(url)
        return self.targets[url]

    def _target(self, url: str) -> str | None:
        key = self.key(url)
        pack = self.packs.get(key, {})
        candidates = self.by_repository.get(key, [])
        hinted = pack.get("id")
        found = None
        if candidates:
            found = hinted if hinted in candidates else candidates[0]
        elif isinstance(hinted, str) and hinted in self.registry:
            found = hinted
        manager_id = manager_package_id(url)
        if found is None and manager_id in self.registry:
            found = manager_id  # as ComfyDock does: an id already taken is that package
        if found is not None:
            if self.registry[found].excluded:
                self.result.dropped.add(found)
                return None
            self.result.matched.add(found)
            return found
        if manager_id not in self.result.sources:
            stats = self.stats.get(key, {})
            self.result.sources[manager_id] = (url, pack, stats)
            self.result.stars[manager_id] = count(stats.get("stars"))
            self.result.newest[manager_id] = _last_update(stats.get("last_update"))
        return manager_id

    def claim(self, target: str, names: Any) -> None:
        for name in _strings(names):
            self.result.claims.setdefault(name, set()).add(target)


def manager_record(
    meta: dict[str, Any], url: str, pack: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """`packages[id]` of a pack known only to the Manager, from its `custom-node-list.json`
    entry, its node map metadata and its `github-stats.json` entry."""
    repository = normalize_repository(pack.get("reference") or url)
    last_update = stats.get("last_update")
    return {
        "author": _text(pack.get("author")) or _text(meta.get("author")),
        "category": None,
        "created_at": None,
        "description": _text(pack.get("description")) or _text(meta.get("description")),
        "display_name": _text(pack.get("title"))
        or _text(meta.get("title_aux"))
        or repository.rstrip("/").rsplit("/", 1)[-1],
        "downloads": 0,
        "files": _strings(pack.get("files")),
        "github_stars": count(stats.get("stars")),
        "icon": None,
        "install_type": _text(pack.get("install_type")) or None,
        "last_update": last_update if isinstance(last_update, str) else None,
        "license": None,
        "rating": None,
        "repository": repository,
        "source": MANAGER,
        "status": None,
        "tags": _strings(pack.get("tags")),
        "unavailable_versions": {},
        "versions": {},
    }


# A quantified group holding a quantifier (`(a+)+`, `(.*x)*`): Python's `re` has no time
# limit, and such a pattern can take exponential time on a 30-character name.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+}][^()]*\)[*+{]")


def _pattern(text: str) -> re.Pattern[str] | None:
    """A `nodename_pattern` compiled, or None when it is not a regular expression or could
    run for ever (nested quantifiers)."""
    if len(text) > 1000 or _NESTED_QUANTIFIER.search(text):
        return None
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError):
        return None


_BACK_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")  # \1, (?P=name), (?(1)...)


def _screen(patterns: list[re.Pattern[str]]) -> Callable[[str], bool]:
    """Whether any of `patterns` matches a name, with one search for all the patterns that
    combine safely (no back-reference: its group number would change once combined); the
    others, and all of them when they cannot be combined, are searched one by one."""
    plain = [p for p in patterns if not _BACK_REFERENCE.search(p.pattern)]
    others = [p for p in patterns if _BACK_REFERENCE.search(p.pattern)]
    try:
        combined = re.compile("|".join(f"(?:{p.pattern})" for p in plain)) if plain else None
    except (re.error, RecursionError, OverflowError):  # e.g. a flag in the middle
        combined, others = None, patterns
    if combined is not None and not others:
        return lambda name: combined.search(name) is not None
    return lambda name: (
        bool(combined and combined.search(name)) or any(p.search(name) for p in others)
    )


def _last_update(value: Any) -> datetime | None:
    """github-stats' `last_update` (`2025-11-17 17:49:31`, UTC) as a datetime."""
    if not isinstance(value, str):
        return None
    try:  # the usual form, in C; anything else through the clock's lenient parser
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return clock.parse_time_or_none(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
