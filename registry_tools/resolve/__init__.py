"""Resolving a ComfyUI workflow's node types to the packages that provide them.

Owns: `workflow` (reading UI and API workflows), `builtins` (ComfyUI's own node types, with
`data/builtin_nodes.txt`), `resolver` (`resolve_workflow`, `resolve_files`, the text report).
May import: `mappings` (loading the mappings file, signatures, ranking), the shared top-level
modules.
"""
