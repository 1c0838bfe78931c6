"""Files this project reads and writes: canonical JSON bytes, atomic writes, checked reads.

Every file this project writes goes through `dumps` (sorted keys, two-space indent, UTF-8) and
`write_atomic` (temp file + fsync + `os.replace`), so outputs are byte-reproducible and a
reader never sees a torn file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from registry_tools.errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, indented, UTF-8, trailing newline."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def check_writable(path: Path, what: str = "--output") -> None:
    """Fail early, before any work, if `path` cannot be written."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: directory {parent} is not writable")
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory")


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, or pieces written in order, never joined in
    memory) in one step; an interrupted write leaves the old file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 less the umask
    (mkstemp's private 0600 would surprise whoever reads the output next)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def read_json(path: Path, what: str) -> Any:
    """Load a JSON file, turning every way it can be unusable into a one-line UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path}: is a directory") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: not valid JSON ({exc})") from None
