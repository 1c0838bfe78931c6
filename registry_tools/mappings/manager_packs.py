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
from collections.abc import Callable, Collection
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
CORE = ""  # `_Merge.target` of ComfyUI's own entry: its names are built-in node types


@dataclass(frozen=True)
class RegistryPackage:
    """What the Manager merge needs to know of one registry package."""

    repository: str  # normalised (`normalize_repository`)
    excluded: bool  # banned or deleted: the Manager's entries for it are dropped
    names: Collection[str]  # node types its feeding versions provide


@dataclass
class Contribution:
    """The Manager's part of a mappings file. The Manager-only packages' records are built
    when asked (`records`): an incremental run that can copy them from its input does not."""

    stars: dict[str, int] = field(default_factory=dict)  # Manager-only packs: their stars
    newest: dict[str, datetime | None] = field(default_factory=dict)  # ...their last update
    sources: dict[str, tuple[str, dict, dict]] = field(default_factory=dict)  # URL, pack, stats
    # (built when asked: a run reusing an earlier one's state does not need them)
    fingerprint: str = ""  # what those records depend on (the lists, the registry's repos)
    entries: dict[str, set[str]] = field(default_factory=dict)  # `<class>::_` -> package ids
    claims: dict[str, set[str]] = field(default_factory=dict)  # node class -> package ids
    matched: set[str] = field(default_factory=set)  # registry packages the Manager lists
    bad_patterns: int = 0  # `nodename_pattern`s that are not regular expressions
    targets: dict[str, str | None] = field(default_factory=dict)  # URL -> package (or None)
    hits: dict[str, str] = field(default_factory=dict)  # unlisted name -> pattern's package
    registry_types: set[str] | None = None  # every node type registry metadata provides
    touched: set[str] | None = None  # keys an update changed (None: worked out in full)
    merge: _Merge | None = None
    _records: dict[str, dict[str, Any]] | None = None

    def records(self) -> dict[str, dict[str, Any]]:
        """`packages[id]` of every pack known only to the Manager."""
        if self._records is None:
            self._records = self.merge.records() if self.merge is not None else {}
        return self._records

    def state(self) -> dict[str, Any] | None:
        """What the next run may reuse when its fingerprint is this one (`contribute`,
        `manager_update`): which package each URL stands for, each Manager-only pack's URL,
        stars and last update, and the pattern hits."""
        if not self.fingerprint or self.merge is None:
            return None
        known = self.merge.known
        if known is not None:  # the same lists and registry ids: the same packs
            targets, packs = known["targets"], known["packs"]
        else:
            targets, packs = self.targets, {}
            for package_id, (url, _, stats) in self.sources.items():
                packs[package_id] = [url, self.stars[package_id], stats.get("last_update")]
        return {
            "fingerprint": self.fingerprint,
            "targets": targets,
            "packs": packs,
            "hits": dict(sorted(self.hits.items())),
        }


@dataclass
class _Scan:
    """What one pass over the node map finds (`_Merge.scan`)."""

    core: set[str] = field(default_factory=set)  # ComfyUI's own node types
    listed: set[str] = field(default_factory=set)  # every name some pack lists
    by_target: dict[str, list[list[str]]] = field(default_factory=dict)  # package -> lists
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    may_match: Callable[[str], bool] = lambda name: False

    def hit(self, name: str) -> str | None:
        """The package whose `nodename_pattern` claims an unlisted name first, or None."""
        if not self.may_match(name):
            return None  # most names match no pattern: one search instead of one per pattern
        for pattern, target in self.patterns:
            if pattern.search(name):
                return target
        return None


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


def contribute(
    data: ManagerData, registry: dict[str, RegistryPackage], known: Any = None
) -> Contribution:
    """The Manager's packages, entries and claims, given the registry's packages. `known` is
    an earlier run's `Contribution.state()`: when its fingerprint is this run's, which package
    each URL stands for is taken from it instead of being worked out again."""
    merge = _Merge(data, registry, known)
    merge.run()
    return merge.result


class _Merge:
    def __init__(
        self, data: ManagerData, registry: dict[str, RegistryPackage], known: Any = None
    ) -> None:
        self.data = data
        self.registry = registry
        self.result = Contribution()
        self.by_repository: dict[str, list[str]] = {}
        crc = zlib.crc32(data.digest.encode())
        for package_id in sorted(registry):
            # already normalised (`package_record`): only the scheme and the case to drop
            key = registry[package_id].repository.split("://", 1)[-1].casefold()
            if key:
                self.by_repository.setdefault(key, []).append(package_id)
            line = f"{package_id}\t{key}\t{registry[package_id].excluded}\n"
            crc = zlib.crc32(line.encode(), crc)
        # What the Manager-only packs and their records depend on ('' for lists of unknown
        # origin, whose records are then always built afresh).
        self.result.fingerprint = fingerprint = f"{crc:08x}" if data.digest else ""
        self.result.merge = self
        self.known: dict[str, Any] | None = None
        if fingerprint and isinstance(known, dict) and known.get("fingerprint") == fingerprint:
            self.known = known  # the same packs as then: their stars, dates, registry matches
            for package_id, (_, stars, last_update) in known["packs"].items():
                self.result.stars[package_id] = stars
                self.result.newest[package_id] = _last_update(last_update)
            self.result.matched = {t for t in known["targets"].values() if t in registry}
        self._keys: dict[str, str] = {}
        self._packs: dict[str, dict[str, Any]] | None = None
        self._stats: dict[str, dict[str, Any]] | None = None
        self.names: dict[str, set[str]] = {}  # target package -> node classes the Manager lists
        self.targets = self.result.targets  # URL -> `target` (each URL is seen twice)

    @property
    def packs(self) -> dict[str, dict[str, Any]]:
        """repository key -> its `custom-node-list.json` entry."""
        if self._packs is None:
            self._packs = {}
            for entry in self.data.custom_nodes:
                for url in (entry["reference"], *_strings(entry.get("files"))):
                    self._packs.setdefault(self.key(url), entry)
        return self._packs

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """repository key -> its `github-stats.json` entry."""
        if self._stats is None:
            self._stats = {self.key(url): value for url, value in self.data.stats.items()}
        return self._stats

    def run(self) -> None:
        """Every Manager entry worked out from the lists and the registry's node types."""
        scan = self.scan()
        names = {target: set().union(*lists) for target, lists in scan.by_target.items()}
        provided = self.result.registry_types = set().union(
            *(p.names for p in self.registry.values())
        )
        for name in provided - scan.listed - scan.core:  # each on its own: no order needed
            target = scan.hit(name)
            if target is not None:
                self.result.hits[name] = target
                names.setdefault(target, set()).add(name)
        entries = self.result.entries
        for target, provides in names.items():
            for name in provides.difference(scan.core, self.provided(target)):
                key = name + "::_"
                if key in entries:
                    entries[key].add(target)
                else:
                    entries[key] = {target}

    def scan(self) -> _Scan:
        """One pass over the node map: which package each entry stands for, the names each
        lists, ComfyUI's own names, claims and patterns."""
        scan = _Scan()
        for url, (names, meta) in self.data.node_map.items():
            target = self.target(url)
            if target == CORE:
                scan.core.update(names)
                continue
            scan.listed.update(names)
            if target is None:
                continue
            scan.by_target.setdefault(target, []).append(names)
            self.claim(target, meta.get("preemptions"))
            pattern = meta.get("nodename_pattern")
            if isinstance(pattern, str) and pattern:
                compiled = _pattern(pattern)
                if compiled is None:
                    self.result.bad_patterns += 1
                    log.warning("Manager pack %s: unusable nodename_pattern %r", url, pattern)
                else:
                    scan.patterns.append((compiled, target))
        for entry in self.data.custom_nodes:  # packs without a node map are packs all the same
            if self.known is None or entry.get("preemptions"):  # (known: all already seen)
                target = self.target(entry["reference"])
                if target:  # not a banned package's, not ComfyUI's
                    self.claim(target, entry.get("preemptions"))
        scan.may_match = _screen([pattern for pattern, _ in scan.patterns])
        return scan

    def provided(self, target: str) -> Collection[str]:
        """The node types a target's registry metadata provides (none for a Manager pack)."""
        return self.registry[target].names if target in self.registry else ()

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
            self.targets[url] = self._known(url) if self.known else self._target(url)
        return self.targets[url]

    def _known(self, url: str) -> str | None:
        """`_target` as the earlier run with the same fingerprint found it."""
        targets = self.known["targets"]
        if url not in targets:
            return self._target(url)
        return targets[url]  # its stars, date or match were taken in with the rest

    def source(self, package_id: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(URL, custom-node-list entry, github-stats entry) of a Manager-only pack."""
        if package_id not in self.result.sources:
            url = self.known["packs"][package_id][0]
            key = self.key(url)
            found = (url, self.packs.get(key, {}), self.stats.get(key, {}))
            self.result.sources[package_id] = found
        return self.result.sources[package_id]

    def records(self) -> dict[str, dict[str, Any]]:
        """`packages[id]` of every pack known only to the Manager."""
        meta = self.data.node_map
        made = {}
        for package_id in self.result.stars:
            url, pack, stats = self.source(package_id)
            made[package_id] = manager_record(meta.get(url, ([], {}))[1], url, pack, stats)
        return made

    def _target(self, url: str) -> str | None:
        key = self.key(url)
        if key == COMFYUI:
            return CORE
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
                return None
            self.result.matched.add(found)
            return found
        if manager_id not in self.result.stars:
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
