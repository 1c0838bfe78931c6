"""Resolving ComfyUI workflows to an installation plan (docs/resolve.md).

Owns: reading workflows (`workflow`, `images`, `reading`: JSON, images, videos, stdin),
ComfyUI's built-in node types (`builtins`, `data/builtin_nodes.tsv`) and packs' frontend-only
ones (`frontend`, `data/pack_frontend_nodes.tsv`), lookups over a mappings document
(`candidates`), the workflow-wide choice (`choose`), the live look-up (`online`), the plan
(`plan`) and the resolver itself (`resolver`).
May import: `mappings` (loading, signatures, ranking), `fetch` (the registry client, for the
live look-up), the shared top-level modules.
"""
