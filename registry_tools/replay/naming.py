"""File names for a test's cassettes and snapshots: qualified by class, safe on every system.

`TestA::test_get` and `TestB::test_get` must not share a file, and a parametrize id such as
`a/b` or `http://x` must not become nested folders (or an invalid Windows name). As in
pytest-recording, the test's class path joins its name with dots and the characters that are
unsafe in a file name become `-`; on top, control characters are replaced too, and a name too
long for a file system keeps a readable head and a hash of the whole.
"""

from __future__ import annotations

import re

import pytest

# pytest-recording's list (`<>?%*:|"'/\`), plus control characters.
_UNSAFE = re.compile(r"[<>?%*:|\"'/\\\x00-\x1f\x7f]")
# Room for `.<name>.json` suffixes within the usual 255-byte limit of a file name.
_MAX_BYTES = 160
_HEAD = 100


def safe_file_name(name: str) -> str:
    """`name` with unsafe characters replaced; long names shortened, kept unique by a hash."""
    safe = _UNSAFE.sub("-", name)
    if safe in {"", ".", ".."}:
        safe = safe.replace(".", "-") or "-"
    if len(safe.encode()) <= _MAX_BYTES:
        return safe
    import hashlib  # rarely needed: kept out of every pytest start

    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    head = safe.encode()[:_HEAD].decode(errors="ignore")
    return f"{head}~{digest}"


def qualified_test_name(item: pytest.Item) -> str:
    """`TestA.TestInner.test_get[id]` for `test_x.py::TestA::TestInner::test_get[id]`."""
    chain = item.listchain()
    module = next(
        (i for i, node in enumerate(chain) if isinstance(node, pytest.Module)), len(chain) - 2
    )
    return ".".join(node.name for node in chain[module + 1 :])


def file_base(item: pytest.Item) -> str:
    """The base of a test's cassette and snapshot file names."""
    return safe_file_name(qualified_test_name(item))


def checked_name(name: object, what: str) -> str:
    """A name given in a marker or call: a plain file name, refused if it would escape."""
    if not isinstance(name, str) or not name or name != safe_file_name(name):
        raise ValueError(
            f"{what} {name!r}: must be a plain file name (no /, \\, :, quotes or control "
            f"characters, not . or ..)"
        )
    return name
