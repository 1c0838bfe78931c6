"""Cassettes on vcrpy: one per phase, indexed replay, scrubbed and reproducible files.

vcrpy stays the engine: its patching of aiohttp intercepts every request, its record modes
decide what is recorded. Three things are ours:

- `IndexedCassette` finds a recorded answer through a dict keyed on (method, path, normalised
  query) instead of vcrpy's scan of every interaction, so replaying N interactions is O(N),
  not O(N^2). Duplicates of one key (a 429 then a 200) are served in recorded order, whatever
  order different keys are asked for in. A request with no recorded answer in a read-only
  mode is a `MissingInteraction` naming the request; it never reaches the network.
- The serializer writes a JSON document (registered with vcrpy as `registry-json`): response
  bodies are JSON values, not escaped strings, interactions are sorted by request, so files
  are readable, diff well and are byte-identical when an unchanged registry is re-recorded.
- Hygiene before anything is written: the request keeps only its method, path and query
  (token-like query values redacted, no headers, so no `Authorization` or cookies), and the
  response keeps only the headers a client acts on (no `Date`, `Set-Cookie`, trace ids).

A cassette directory holds `phase1-nodes.json`, `phase2-versions.json`,
`phase3-metadata.json` and a `manifest.json` naming the data set they were recorded from;
every cassette carries the same data-set header, so a cassette from another data set is
refused instead of silently replaying the wrong registry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import vcr
import vcr.serialize
from vcr.cassette import Cassette
from vcr.errors import MissingMetadataError
from vcr.filters import decode_response
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.record_mode import RecordMode
from vcr.request import Request

from registry_tools import files, heap
from registry_tools.errors import UserError
from registry_tools.replay.cassette_format import JsonSerializer, canonical_body

RECORD_MODES = ("none", "once", "new_episodes", "all")
MANIFEST = "manifest.json"
BUNDLED = Path(__file__).resolve().parent / "bundled"
MANIFEST_FORMAT = "registry-tools-cassettes/1"
SERIALIZER = "registry-json"

# Query parameters whose values are secrets; matched anywhere in the (lower-cased) name.
SECRET_QUERY = re.compile(r"token|key|secret|passw|auth|sig|session|credential", re.IGNORECASE)
REDACTED = "REDACTED"
# Response headers a client acts on. Everything else is either volatile (Date, Server, trace
# ids: re-recording would differ) or sensitive (Set-Cookie), so it is never written.
KEPT_RESPONSE_HEADERS = frozenset({"content-type", "retry-after", "location"})

Key = tuple[str, str, bytes | None]


class MissingInteraction(UserError):
    """A request a read-only cassette has no (more) recorded answers for."""


# ---- hygiene ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)  # each replayed request needs it several times
def scrub_url(url: str, keep_origin: bool = False) -> str:
    """The URL with its query sorted and secret values redacted; path only unless asked.

    Blank values are dropped, as vcrpy's `query` matcher ignores them.
    """
    parts = urlsplit(url)
    query = sorted(
        (name, REDACTED if SECRET_QUERY.search(name) else value)
        for name, value in parse_qsl(parts.query)
    )
    origin = (parts.scheme, parts.netloc) if keep_origin else ("", "")
    return urlunsplit((*origin, parts.path or "/", urlencode(query), ""))


def scrub_request(request: Request) -> Request:
    """vcrpy `before_record_request`: a new request keeping only method, path and query.

    Matching ignores host and port, so dropping them makes cassettes portable between the
    emulator and the real registry; headers are not matched, and they are where
    `Authorization` and cookies live. Building a new request (instead of vcrpy's deep copy
    of the old one) matters: this runs several times per replayed request.
    """
    return Request(request.method, scrub_url(request.uri), request.body, {})


def clean_response(response: dict[str, Any]) -> dict[str, Any]:
    """vcrpy `before_record_response` (on vcrpy's copy): bodies decompressed so they stay
    readable, and only `KEPT_RESPONSE_HEADERS` kept."""
    if any(name.lower() == "content-encoding" for name in response["headers"]):
        response = decode_response(response)
    response["headers"] = {
        name: values
        for name, values in response["headers"].items()
        if name.lower() in KEPT_RESPONSE_HEADERS
    }
    return response


def match_key(request: Request) -> Key:
    """The index key: method, scrubbed URL and canonical body (`POST /bulk/nodes/versions`
    asks different things of one URL), which are equal exactly when vcrpy's `method`,
    `path`, `query` and `body` matchers (configured below) say two scrubbed requests match."""
    return (request.method.upper(), scrub_url(request.uri), canonical_body(request.body))


# ---- the cassette ----------------------------------------------------------------------------


class IndexedCassette(Cassette):
    """vcrpy's Cassette with a hash index over the loaded interactions.

    Only the loaded interactions are indexed: an answer recorded in this session has already
    been "played" by the live server, so a retried request is sent again and its second
    answer recorded too, instead of vcrpy replaying the first one (the 429) back.
    In `all` mode nothing is loaded: the cassette is re-recorded from scratch and holds
    exactly this run's interactions (a corrupt old file is simply replaced).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index: dict[Key, list[int]] = {}
        self.misses: list[str] = []

    def _load(self) -> None:
        if self.record_mode == RecordMode.ALL:
            return
        with heap.collector_paused():
            super()._load()
            for position, (request, _response) in enumerate(self.data):
                self._index.setdefault(match_key(request), []).append(position)

    def _responses(self, request: Request) -> Iterator[tuple[int, dict[str, Any]]]:
        """Recorded answers for `request`, in recorded order; vcrpy's play logic picks one."""
        for position in self._index.get(match_key(request), ()):
            yield position, self.data[position][1]

    def can_play_response_for(self, request: Request) -> bool:
        """vcrpy's test (minus its per-request filtering copy, which the key does not need),
        and a `MissingInteraction` instead of a live request when recording is not allowed."""
        if self.record_mode != RecordMode.ALL and request in self:
            return True
        if self.write_protected:
            self.misses.append(self._miss(request))
            raise MissingInteraction(self.misses[-1])
        return False

    def _miss(self, request: Request) -> str:
        recorded = len(self._index.get(match_key(request), ()))
        why = f"{recorded} recorded answer(s), all played" if recorded else "no recorded answer"
        mode = RecordMode(self.record_mode).value
        return (
            f"cassette {self._path} (record mode {mode!r}) cannot answer "
            f"{request.method} {scrub_url(request.uri, keep_origin=True)}: {why}"
        )


# ---- files (the format itself is `cassette_format`) ----------------------------------------


class AtomicPersister:
    """vcrpy persister: atomic writes, and an unreadable cassette is an error, not "empty".

    vcrpy's own persister treats a corrupt file as a missing cassette and records over it;
    here it stops the run with a one-line `UserError` and the file is left as it is.
    """

    @staticmethod
    def load_cassette(cassette_path: str | Path, serializer: Any) -> tuple:
        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        try:
            # bytes straight to orjson: decoding a large cassette to one str first costs more
            # than parsing it (4 bytes a character once a single emoji is in it)
            return vcr.serialize.deserialize(path.read_bytes(), serializer)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"cassette {path}: corrupt or truncated ({exc})") from None

    @staticmethod
    def save_cassette(cassette_path: str | Path, cassette_dict: dict, serializer: Any) -> None:
        data = vcr.serialize.serialize(cassette_dict, serializer)
        path = Path(cassette_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data.encode())


def _configured_vcr() -> vcr.VCR:
    config = vcr.VCR(
        serializer=SERIALIZER,
        match_on=("method", "path", "query", "body"),
        record_on_exception=False,
    )
    config.register_serializer(SERIALIZER, JsonSerializer)
    config.register_persister(AtomicPersister)
    return config


_VCR = _configured_vcr()


# ---- using cassettes -------------------------------------------------------------------------


def check_record_mode(record_mode: str) -> RecordMode:
    """The vcrpy record mode for one of `RECORD_MODES`, or a UserError."""
    if record_mode not in RECORD_MODES:
        raise UserError(f"--record-mode {record_mode!r}: expected one of {', '.join(RECORD_MODES)}")
    return RecordMode(record_mode)


@contextmanager
def use_cassette(
    path: Path,
    record_mode: str = "none",
    dataset: Mapping[str, Any] | None = None,
    cassette_class: type[Cassette] = IndexedCassette,
) -> Iterator[Cassette]:
    """Record or replay aiohttp traffic to/from one cassette file while the block runs.

    `dataset`, when given, must match the cassette's data-set header (it is written into
    new recordings). Requests a read-only cassette cannot answer raise `MissingInteraction`;
    if the caller swallowed them, leaving the block raises it. A block that raises saves
    nothing. `cassette_class` exists so the benchmark can run vcrpy's stock class.
    """
    mode = check_record_mode(record_mode)
    path = Path(path)
    if mode == RecordMode.NONE and not path.is_file():
        raise UserError(f"cassette {path}: no such file (record it first, see docs/cassettes.md)")
    config = {
        **_VCR.get_merged_config(path=str(path), record_mode=mode),
        # Ours, not wrapped by vcrpy's deep-copying hook chain.
        "before_record_request": scrub_request,
        "before_record_response": clean_response,
    }
    with cassette_class.use(**config) as cassette, heap.frozen():
        if dataset is not None:
            _check_dataset(cassette, dataset)
        try:
            yield cassette
        except UserError:
            raise
        except BaseException as exc:
            _raise_misses(cassette, exc)
            raise
        _raise_misses(cassette)


def _raise_misses(cassette: Cassette, cause: BaseException | None = None) -> None:
    """Surface misses a caller caught (e.g. inside a task group) as one clear UserError."""
    misses = getattr(cassette, "misses", ())
    if misses:
        more = f" (and {len(misses) - 1} more)" if len(misses) > 1 else ""
        raise MissingInteraction(misses[0] + more) from cause


def _check_dataset(cassette: Cassette, dataset: Mapping[str, Any]) -> None:
    try:
        recorded = cassette.get_metadata("dataset", dict(dataset))
    except MissingMetadataError:
        raise UserError(
            f"cassette {cassette.path}: no data-set header (not recorded by registry-tools?)"
        ) from None
    if recorded != dict(dataset):
        raise UserError(
            f"cassette {cassette.path} was recorded with data set {_describe(recorded)}, "
            f"but its directory's {MANIFEST} is for {_describe(dataset)}"
        )


def _describe(dataset: Mapping[str, Any]) -> str:
    fingerprint = dataset.get("fingerprint")
    return repr(dataset.get("name")) + (f" ({fingerprint})" if fingerprint else "")


def bundled_cassettes(name: str) -> Path:
    """A cassette set shipped inside the package (`cassettes/<name>` of a checkout links
    there)."""
    return BUNDLED / name


def read_manifest(directory: Path) -> dict[str, Any]:
    """A cassette directory's manifest (UserError if missing or not one)."""
    manifest = files.read_json(Path(directory) / MANIFEST, "cassette manifest")
    where = f"cassette manifest {Path(directory) / MANIFEST}"
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or not isinstance(manifest.get("dataset"), dict)
    ):
        raise UserError(f"{where}: not a {MANIFEST_FORMAT}")
    phases = manifest.get("phases", {})
    if not isinstance(phases, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in phases.values()
    ):
        raise UserError(f"{where}: 'phases' must map phase names to interaction counts")
    return manifest


def phase_cassettes(
    directory: Path,
    record_mode: str,
    dataset: Mapping[str, Any] | None = None,
    cassette_class: type[Cassette] = IndexedCassette,
) -> Callable[[str], AbstractContextManager[Cassette]]:
    """`run_cache`'s `phase_context`: each phase records/replays `<directory>/<phase>.json`.

    Checks up front (before any request) that the mode is known and the directory usable:
    readable with a manifest for replay, writable for recording. `dataset` identifies what
    is recorded (default: the manifest's, else the directory name); replaying or extending
    cassettes of another data set is refused, `all` re-records them. Recording keeps
    `manifest.json` up to date after each phase.
    """
    mode = check_record_mode(record_mode)
    directory = Path(directory)
    manifest = _prepare_directory(directory, mode)
    identity = _identity(directory, mode, manifest, dataset)

    @contextmanager
    def phase(name: str) -> Iterator[Cassette]:
        with use_cassette(directory / f"{name}.json", mode.value, identity, cassette_class) as c:
            yield c
        if mode != RecordMode.NONE:
            manifest["phases"] = {**manifest.get("phases", {}), name: len(c)}
            files.write_atomic(directory / MANIFEST, files.dumps(manifest))

    return phase


def _prepare_directory(directory: Path, mode: RecordMode) -> dict[str, Any]:
    """The existing manifest (or a fresh one when recording); UserError if unusable."""
    if mode == RecordMode.NONE:
        if not directory.is_dir():
            raise UserError(f"--cassette-dir {directory}: no such directory")
        return read_manifest(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--cassette-dir {directory}: cannot create ({exc.strerror})") from None
    files.check_output(directory / MANIFEST, "--cassette-dir")
    if (directory / MANIFEST).exists():
        return read_manifest(directory)
    return {"format": MANIFEST_FORMAT}


def _identity(
    directory: Path,
    mode: RecordMode,
    manifest: dict[str, Any],
    dataset: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The data set the cassettes belong to; stored in the manifest being kept up to date."""
    known = manifest.get("dataset")
    wanted = dict(dataset) if dataset is not None else known or {"name": directory.name}
    if known is not None and known != wanted and mode != RecordMode.ALL:
        raise UserError(
            f"--cassette-dir {directory} holds data set {_describe(known)}, "
            f"not {_describe(wanted)} (re-record it with --record-mode all)"
        )
    if known != wanted:
        manifest["dataset"] = wanted
        manifest["phases"] = {}
    return wanted
