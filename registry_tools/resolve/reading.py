"""Opening what a user calls a workflow: a JSON file (UI or API export, with or without a
UTF-8 BOM), an image, video or sound ComfyUI saved, or `-` for standard input."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import BinaryIO

import orjson

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.resolve.images import KEYS, embedded_texts, is_media
from registry_tools.resolve.workflow import Workflow, read_document

BOM = b"\xef\xbb\xbf"


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
    data = handle.read()
    return read_document(_json(data.removeprefix(BOM), where), where)


def _json(data: bytes, where: str) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None


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
