"""`registry-tools serve` in a separate process, for the benchmarks that time a client against
it (so the server's CPU is not the client's)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def served(cache: Path, *flags: str, quiet: bool = False) -> Iterator[str]:
    """Serve `cache` with `flags` from this checkout (its stats on stderr unless `quiet`);
    the base URL while the block runs."""
    command = [sys.executable, "-m", "registry_tools", "serve", "--cache", str(cache), *flags]
    stderr = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("serving "):
            raise SystemExit(f"emulator did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait()
