"""The append-only checkpoint journal that makes the cache and mappings builds resumable."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson


class Journal:
    """Append-only JSON-lines log of finished work, replayed after a crash.

    A checkpoint hands what was appended since the last one to a writer thread that writes
    and fsyncs it, so its cost is proportional to the work done since then (not to the size
    of the cache) and the disk wait overlaps the network wait. The first line is a header; a
    journal whose header differs (other command, other input) is discarded. A torn last line
    (the process died mid-write) is ignored on replay: that work is simply done again.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self._handle: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self.error: OSError | None = None

    def replay(self) -> Iterator[dict[str, Any]]:
        """Records of a previous interrupted run of the same job (none if there was none)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = raw.split(b"\n")
        try:
            if orjson.loads(lines[0]) != self.header:
                return
        except orjson.JSONDecodeError:
            return
        for line in lines[1:]:
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                return  # torn tail: everything after it was never checkpointed

    def open(self, records: list[dict[str, Any]]) -> None:
        """Start a fresh journal holding `records` (the replayed ones), then append."""
        self._handle = open(self.path, "wb")  # noqa: SIM115 - held for the run
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._pending.append(orjson.dumps(self.header) + b"\n")
        for record in records:
            self.append(record)
        self.checkpoint()

    def append(self, record: dict[str, Any]) -> None:
        self._pending.append(orjson.dumps(record) + b"\n")

    def checkpoint(self) -> None:
        """Queue everything appended so far to be written and made durable, in order."""
        if self._writer is not None and self._pending:
            blob, self._pending = b"".join(self._pending), []
            self._writer.submit(self._write, blob)

    def _write(self, blob: bytes) -> None:
        """Runs on the writer thread. After a failed write (disk full) stop writing: a gap
        would make replay skip records; the journal is then only as good as its prefix."""
        if self.error is not None or self._handle is None:
            return
        try:
            self._handle.write(blob)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self.error = exc

    def close(self, remove: bool) -> None:
        """Finish queued checkpoints and close; remove once the final output is written."""
        if not remove:
            self.checkpoint()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
