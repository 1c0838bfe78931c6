"""Files this project reads and writes: canonical JSON bytes, atomic writes, checked reads.

Every file this project writes goes through `dumps` (sorted keys, two-space indent, UTF-8) and
`write_atomic` (temp file + fsync + `os.replace`), so outputs are byte-reproducible and a
reader never sees a torn file. `check_output` and `check_input` refuse, before any work, the
paths that would end in a traceback or a clobbered file (docs/errors.md lists them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
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


STDIO = "-"  # where a command writes (or reads) one document, `-` is standard output (input)


def is_stdio(path: Path | str | None) -> bool:
    """Whether `path` is `-`: standard output for an output, standard input for an input."""
    return path is not None and str(path) == STDIO


def check_output(
    path: Path,
    what: str = "--output",
    *,
    inputs: Iterable[Path | None] = (),
    protected: Iterable[Path | None] = (),
    companions: Iterable[Path] = (),
    replaces: Iterable[Path | None] = (),
) -> None:
    """Fail early, before any work, if `path` cannot or must not be replaced.

    Refused: an existing path that is not a regular file (a directory, a device such as
    `/dev/null`, a pipe: `write_atomic` would replace it), a parent that is missing, not a
    directory or not writable, a name the file system cannot hold, the same file as one of
    `inputs`, a path inside one of the `protected` directories (a cassette set, the bundled
    notebooks), and `companions` (the output's journal, its index) that exist and are not
    regular files or that are one of `inputs` or `replaces`. `replaces` are inputs the output
    may be (an update in place: `--input` = `--output`), but its companions may not.
    """
    path = Path(path)
    check_name(path, what, _TEMP_EXTRA)
    for companion in companions:
        check_name(Path(companion), what, _TEMP_EXTRA)
    try:
        parent = path.absolute().parent
        if not parent.exists():
            raise UserError(f"{what} {path}: directory {parent} does not exist")
        if not parent.is_dir():
            raise UserError(f"{what} {path}: {parent} is not a directory")
        if not _writable(parent):
            raise UserError(f"{what} {path}: directory {parent} is not writable")
        _check_regular(path, what)
        inputs, replaces = list(inputs), list(replaces)
        for companion in map(Path, companions):
            _check_regular(companion, what, f" ({companion.name} beside it)")
            for source in (*inputs, *replaces):
                if source is not None and _same_file(companion, Path(source)):
                    raise UserError(
                        f"{what} {path}: its {companion.name} would replace the input "
                        f"{source}; choose another output"
                    )
        for source in inputs:
            if source is not None and _same_file(path, Path(source)):
                raise UserError(f"{what} {path}: is the input {source}; choose another output")
        for directory in protected:
            if directory is not None and _inside(path, Path(directory)):
                raise UserError(f"{what} {path}: is inside {directory}, which it would damage")
    except OSError as exc:  # a path the system refuses to look at (a loop, a permission)
        raise UserError(f"{what} {path}: {exc.strerror or exc}") from None


def make_directory(directory: Path, what: str = "--output-dir") -> Path:
    """Create `directory` and its missing parents for outputs, or a one-line UserError.

    Checked before anything is created: an existing path that is not a directory, an
    ancestor that is a file, a nearest existing ancestor that is not writable, a name too long.
    """
    directory = Path(directory)
    check_name(directory, what)
    existing = directory.absolute()
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == directory.absolute() else f" ({existing} is a file)"
        raise UserError(f"{what} {directory}: not a directory{where}")
    if existing != directory.absolute() and not _writable(existing):
        raise UserError(f"{what} {directory}: cannot create it, {existing} is not writable")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what} {directory}: cannot create it ({exc.strerror or exc})") from None
    return directory


def check_input(path: Path, what: str = "--input") -> Path:
    """`path` if it is a readable regular file; otherwise a one-line UserError. A device or
    pipe (`/dev/zero`) could be read until memory runs out, so it is refused."""
    path = Path(path)
    check_name(path, what)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{what} {path}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{what} {path}: not a regular file (a device, pipe or socket)")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path}: not readable")
    return path


def _writable(directory: Path) -> bool:
    """Whether files can be created in `directory` by the user that writes: the effective
    one, which differs from the real one in a process that dropped privileges."""
    mode = os.W_OK | os.X_OK
    dropped = hasattr(os, "geteuid") and (os.geteuid(), os.getegid()) != (os.getuid(), os.getgid())
    if dropped and os.access in os.supports_effective_ids:
        return os.access(directory, mode, effective_ids=True)
    return os.access(directory, mode)


# `write_atomic` writes `.<name>.<8 random characters>.tmp` beside the output first.
_TEMP_PREFIX, _TEMP_RANDOM, _TEMP_SUFFIX = ".", 8, ".tmp"
_TEMP_EXTRA = len(_TEMP_PREFIX) + 1 + _TEMP_RANDOM + len(_TEMP_SUFFIX)


def check_name(path: Path, what: str, extra: int = 0) -> None:
    """Every component must fit the file system's limit (ENAMETOOLONG otherwise); the last
    one with `extra` bytes more (`check_output` passes the temporary name's overhead of an
    atomic write)."""
    limit = _name_max(path)
    parts = path.parts
    for index, part in enumerate(parts):
        room = limit - (extra if index == len(parts) - 1 else 0)
        if len(os.fsencode(part)) > room:
            raise UserError(f"{what} {path}: file name too long (the limit is {room} bytes)")


def _name_max(path: Path) -> int:
    for candidate in (path.absolute().parent, *path.absolute().parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _check_regular(path: Path, what: str, note: str = "") -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{what} {path}{note}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(
            f"{what} {path}{note}: exists and is not a regular file (a device, pipe or "
            "socket); refusing to replace it"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, or pieces written in order, never joined in
    memory) in one step; an interrupted or failed write (a full disk) leaves the old file
    and no temporary file, and is reported as a one-line UserError."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX, dir=path.absolute().parent
        )
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that interrupted `write_atomic`s of `path` left beside it
    (a process killed mid-write cannot clean up); the paths removed."""
    path = Path(path)
    pattern = re.compile(
        re.escape(f"{_TEMP_PREFIX}{path.name}.")
        + rf"[a-z0-9_]{{{_TEMP_RANDOM}}}"
        + re.escape(_TEMP_SUFFIX)
    )
    removed = []
    try:
        candidates = list(path.absolute().parent.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        if pattern.fullmatch(candidate.name) and candidate.is_file():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def write_output(path: Path | str, data: bytes | Iterable[bytes]) -> None:
    """`write_atomic`, or standard output when `path` is `-`."""
    if not is_stdio(path):
        write_atomic(Path(path), data)
        return
    out = sys.stdout.buffer
    if isinstance(data, bytes | bytearray | memoryview):
        out.write(data)
    else:
        out.writelines(data)
    out.flush()


_POSIX = os.name == "posix"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def replace_directory(new: Path, old: Path) -> None:
    """Put directory `new` in the place of `old` and delete what `old` held.

    On Linux the two are exchanged in one step (`renameat2(RENAME_EXCHANGE)`), so a reader (or
    a crash) sees either the old directory or the new one, never neither; elsewhere `old` is
    moved aside first, a window of two renames. Both must be on one file system (make `new`
    beside `old`). A failure is a one-line UserError and leaves `old` in place.
    """
    new, old = Path(new), Path(old)
    try:
        if not os.path.lexists(old):
            os.rename(new, old)
            return
        if _exchange(new, old):
            shutil.rmtree(new)
            return
        aside = old.with_name(f".{old.name}.replaced")
        os.rename(old, aside)
        try:
            os.rename(new, old)
        except OSError:
            os.rename(aside, old)
            raise
        shutil.rmtree(aside)
    except OSError as exc:
        raise UserError(f"cannot replace {old}: {exc.strerror or exc}") from None


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two paths atomically; False where the system cannot (not Linux, old kernel,
    a file system without RENAME_EXCHANGE)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if _POSIX else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


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
        data = sys.stdin.buffer.read() if is_stdio(path) else check_input(path, what).read_bytes()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: not valid JSON ({exc})") from None
