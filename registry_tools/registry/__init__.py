"""The stand-in registry: a synthetic registry's data (`synth`) and an aiohttp.web server that
serves any cache file as the registry API (`emulator`), for tests, recordings, demos and offline
mirrors.

Owns: `emulator`, `synth`, `synth_tables`, `synth_comfy`.
May import: `fetch` (the cache file's shape), the shared top-level modules.
"""
