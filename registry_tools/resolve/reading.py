"""Opening what a user calls a workflow: a JSON file (UI or API export, with or without a
UTF-8 BOM), an image, video or sound ComfyUI saved, or `-` for standard input."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.resolve.images import KEYS, embedded_texts, is_media
from registry_tools.resolve.workflow import Workflow, read_document

BOM = b"\xef\xbb\xbf"
_JSON_STARTS = {bytes([c]) for c in b'{["-0123456789tfn'} | {b""}


def load_workflow(path: Path | str, what: str = "workflow") -> Workflow:
    """The workflow in `path` (`-` = standard input); one-line UserError when there is none."""
    where = f"{what} {path}"
    if files.is_stdio(path):
        where = f"{what} (standard input)"
        try:
            return _read(io.BytesIO(sys.stdin.buffer.read()), where)
        except OSError as exc:
            raise UserError(f"{where}: cannot read ({exc.strerror or exc})") from None
    files.check_input(Path(path), what)
    try:
        with open(path, "rb") as handle:
            return _read(handle, where)
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror or exc})") from None


def _read(handle: BinaryIO, where: str) -> Workflow:
    head = handle.read(16)
    handle.seek(0)
    if is_media(head):
        return _embedded(handle, where)
    if head.removeprefix(BOM).lstrip()[:1] not in _JSON_STARTS:
        raise UserError(
            f"{where}: neither JSON nor an image, video or sound format ComfyUI saves "
            "workflows in (PNG, WebP, MP4/MOV, WebM/MKV, FLAC, Ogg, MP3)"
        )
    document = _json(handle.read().removeprefix(BOM), where)  # the bytes are freed here
    return read_document(document, where)


class _Node(msgspec.Struct):
    """The fields of a UI node the resolver reads; msgspec skips the others (position,
    size, widget values, outputs...) without building them. UNSET = absent from the file."""

    id: Any = msgspec.UNSET
    type: Any = msgspec.UNSET
    inputs: Any = msgspec.UNSET
    properties: Any = msgspec.UNSET


class _ApiNode(msgspec.Struct):
    class_type: Any = msgspec.UNSET


_GENERIC = msgspec.json.Decoder()
_NODE = msgspec.json.Decoder(_Node)
_API_NODE = msgspec.json.Decoder(_ApiNode)
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def _json(data: bytes, where: str) -> Any:
    """The document, with each node reduced to the fields the resolver reads.

    A 100,000-node UI export is ~50 MB of JSON whose full parse (orjson) peaks above 300 MB;
    decoding only id/type/inputs/properties per node (msgspec) peaks near half that and takes
    under half the time (bench/bench_resolve.py). Anything of an unexpected shape is decoded
    whole, so the checks in `workflow` see what the file holds.
    """
    try:
        top = _object(data)
        if top is None:  # not an object: a list, a string...
            return _GENERIC.decode(data)
        if "nodes" in top:
            return {k: _nodes(v) if k == "nodes" else _GENERIC.decode(v) for k, v in top.items()}
        return {k: _prompt(v) if k == "prompt" else _api_node(v) for k, v in top.items()}
    except msgspec.DecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{where}: not a workflow (JSON nested too deeply)") from None


def _object(raw: bytes | msgspec.Raw) -> dict[str, msgspec.Raw] | None:
    try:
        return _OBJECT.decode(raw)
    except msgspec.ValidationError:
        return None


def _nodes(raw: msgspec.Raw) -> Any:
    try:
        items = _ARRAY.decode(raw)
    except msgspec.ValidationError:
        return _GENERIC.decode(raw)
    return [_slim(item, _NODE) for item in items]


def _prompt(raw: msgspec.Raw) -> Any:
    """`{"prompt": {...}}`: an API export wrapped as ComfyUI's /prompt request body."""
    nodes = _object(raw)
    if nodes is None:
        return _GENERIC.decode(raw)
    return {k: _api_node(v) for k, v in nodes.items()}


def _api_node(raw: msgspec.Raw) -> Any:
    return _slim(raw, _API_NODE)


def _slim(raw: msgspec.Raw, decoder: msgspec.json.Decoder) -> Any:
    """An object as a dict of the decoder's fields it has; anything else decoded whole."""
    try:
        value = decoder.decode(raw)
    except msgspec.ValidationError:
        return _GENERIC.decode(raw)
    fields = ((f, getattr(value, f)) for f in value.__struct_fields__)
    return {f: v for f, v in fields if v is not msgspec.UNSET}


def _embedded(handle: BinaryIO, where: str) -> Workflow:
    """The embedded `workflow` (UI) if it reads as one, else the embedded `prompt` (API)."""
    texts = embedded_texts(handle)
    if not texts:
        raise UserError(
            f"{where}: an image, video or sound file without an embedded ComfyUI workflow "
            "(no 'workflow' or 'prompt' metadata)"
        )
    problem: UserError | None = None
    for key in (k for k in KEYS if k in texts):
        try:
            document = _json(texts[key].encode("utf-8", "surrogateescape"), where)
            return read_document(document, f"{where} ({key} metadata)", source=f"{key} metadata")
        except UserError as exc:
            problem = problem or exc
    assert problem is not None
    raise problem
