"""Recorded registry traffic: vcrpy cassettes with indexed replay, the `record` command, and the
pytest plugin (`pytest11` entry point `registry_tools.replay.plugin`) with its network guard
and JSON snapshots.

Owns: `cassettes`, `recording`, `plugin`, `network`, `snapshots`.
May import: `fetch`, `registry` (the emulator and synthetic data it records from), the shared
top-level modules.
"""
