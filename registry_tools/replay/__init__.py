"""Recorded registry traffic: vcrpy cassettes with indexed replay, the `record` command, and the
pytest plugin (`pytest11` entry point `registry_tools.replay.plugin`) with its options, network
guard and JSON snapshots.

Owns: `cassettes`, `recording`, `plugin`, `plugin_options`, `naming`, `network`, `snapshots`,
`snapshot_session`.
May import: `fetch`, `registry` (the emulator and synthetic data it records from), the shared
top-level modules.
"""
