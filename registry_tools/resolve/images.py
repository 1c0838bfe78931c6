"""The workflow ComfyUI embeds in the images, videos and sounds it saves.

- PNG: text chunks `workflow` (UI JSON) and `prompt` (API JSON), as `tEXt`, `zTXt` or `iTXt`
  (compressed or not). Only the chunk headers are read; pixel data is skipped with `seek`.
- WebP: the `EXIF` chunk, whose IFD0 text tags ComfyUI fills with `workflow:{...}` and
  `prompt:{...}` (Make, Model, ImageDescription...), and the `XMP ` chunk (an element or
  attribute named `workflow`/`prompt` holding the JSON).
- Anything else (MP4/MOV, WebM/MKV, FLAC, Ogg, MP3...): the containers store metadata values
  as plain UTF-8, so the first and last `SCAN_WINDOW` bytes are searched for JSON objects
  that are workflows. Cheap and format-agnostic; a value split across Ogg pages is missed.

Hand-written rather than Pillow: reading metadata needs a few dozen lines of stdlib code,
skips the pixel data, and keeps Pillow out of the core install.
"""

from __future__ import annotations

import html
import json
import re
import struct
import zlib
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYS = ("workflow", "prompt")  # preferred first: the UI export records packs and versions
SCAN_WINDOW = 16 * 1024 * 1024
MAX_TEXT = 256 * 1024 * 1024  # no metadata chunk is larger; a bigger length is a broken file
_EXIF_TEXT_TYPES = {2, 7}  # ASCII, UNDEFINED
_MAGIC = (PNG_SIGNATURE, b"\x1a\x45\xdf\xa3", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3")


def is_media(head: bytes) -> bool:
    """Whether a file's first 16 bytes are those of a format ComfyUI saves workflows in."""
    return (
        head.startswith(_MAGIC)
        or head[4:8] == b"ftyp"  # MP4, MOV, M4A
        or (head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE", b"AVI "))
    )


def embedded_texts(handle: BinaryIO) -> dict[str, str]:
    """{`workflow`/`prompt`: JSON text} found in a media file (empty when there is none)."""
    head = handle.read(16)
    handle.seek(0)
    if head.startswith(PNG_SIGNATURE):
        return _png_texts(handle)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_texts(handle)
    return _scanned_texts(handle)


def _png_texts(handle: BinaryIO) -> dict[str, str]:
    handle.seek(len(PNG_SIGNATURE))
    found: dict[str, str] = {}
    while header := handle.read(8):
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= MAX_TEXT:
            key, text = _png_text(kind, handle.read(length))
            if key in KEYS and text is not None:
                found.setdefault(key, text)
            handle.seek(4, 1)  # CRC
        elif kind == b"IEND":
            break
        else:
            handle.seek(length + 4, 1)
    return found


def _png_text(kind: bytes, data: bytes) -> tuple[str, str | None]:
    """(keyword, text) of one PNG text chunk; text None when it cannot be decoded."""
    keyword, _, rest = data.partition(b"\0")
    key = keyword.decode("latin-1")
    try:
        if kind == b"tEXt":
            return key, rest.decode("latin-1")
        if kind == b"zTXt":  # compression method byte, then zlib data
            return key, zlib.decompress(rest[1:]).decode("latin-1")
        compressed, rest = rest[0], rest[2:]  # iTXt: flag, method, language\0, translated\0
        _language, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return key, (zlib.decompress(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError):
        return key, None


def _webp_texts(handle: BinaryIO) -> dict[str, str]:
    handle.seek(12)
    found: dict[str, str] = {}
    while header := handle.read(8):
        if len(header) < 8:
            break
        kind, length = struct.unpack("<4sI", header)
        if kind in (b"EXIF", b"XMP ") and length <= MAX_TEXT:
            data = handle.read(length)
            texts = _exif_texts(data) if kind == b"EXIF" else _xmp_texts(data)
            for key, text in texts.items():
                found.setdefault(key, text)
            handle.seek(length & 1, 1)
        else:
            handle.seek(length + (length & 1), 1)
    return found


def _exif_texts(data: bytes) -> dict[str, str]:
    """`key:value` strings in the text tags of the EXIF block's first IFD."""
    if data.startswith(b"Exif\0\0"):
        data = data[6:]
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    found: dict[str, str] = {}
    if order is None or len(data) < 8:
        return found
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        for i in range(count):
            entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
            _tag, kind, size, value = struct.unpack(order + "HHI4s", entry)
            if kind not in _EXIF_TEXT_TYPES:
                continue
            if size > 4:
                (start,) = struct.unpack(order + "I", value)
                value = data[start : start + size]
            key, sep, text = value.rstrip(b"\0").decode("utf-8", "replace").partition(":")
            if sep and key in KEYS:
                found.setdefault(key, text)
    except struct.error:  # a truncated block: keep what was read
        pass
    return found


_XMP_VALUE = re.compile(
    r"""[:<\s](workflow|prompt)(?:\s*=\s*"([^"]*)"|[^>]*>([^<]*)<)""", re.IGNORECASE
)


def _xmp_texts(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _XMP_VALUE.finditer(data.decode("utf-8", "replace")):
        text = html.unescape(match.group(2) or match.group(3) or "").strip()
        if text.startswith("{"):
            found.setdefault(match.group(1).lower(), text)
    return found


def _scanned_texts(handle: BinaryIO) -> dict[str, str]:
    """Workflow-shaped JSON objects stored as plain text near either end of the file."""
    head = handle.read(SCAN_WINDOW)
    handle.seek(0, 2)
    size = handle.tell()
    tail = b""
    if size > SCAN_WINDOW:
        handle.seek(max(SCAN_WINDOW, size - SCAN_WINDOW))
        tail = handle.read()
    found: dict[str, str] = {}
    decoder = json.JSONDecoder()
    for block in (head, tail):
        text = block.decode("utf-8", "surrogateescape")
        start = text.find('{"')
        while start != -1 and len(found) < len(KEYS):
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                start = text.find('{"', start + 2)
                continue
            key = _shape(value)
            if key:
                found.setdefault(key, text[start:end])
            start = text.find('{"', end)
    return found


def _shape(value: object) -> str | None:
    """`workflow` for a UI export, `prompt` for an API one, None for any other JSON."""
    if not isinstance(value, dict) or not value:
        return None
    if isinstance(value.get("nodes"), list) and any(
        isinstance(n, dict) and "type" in n for n in value["nodes"]
    ):
        return "workflow"
    nodes = list(value.values())
    if all(isinstance(n, dict) and isinstance(n.get("class_type"), str) for n in nodes):
        return "prompt"
    return None
