"""ComfyUI's built-in node types: a workflow node of one of these types needs no package."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def builtin_nodes() -> frozenset[str]:
    """ComfyUI's own node types (and frontend-only ones), from `data/builtin_nodes.txt`."""
    text = resources.files(__package__).joinpath("data/builtin_nodes.txt").read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))
