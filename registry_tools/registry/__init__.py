"""The stand-in registry: a synthetic registry's data (`synth`) and an aiohttp.web server that
serves any cache file as the registry API (`emulator`), ideal by default or with the real
service's behaviours (`behaviour`), for tests, recordings, demos and offline mirrors.

Owns: `emulator` (dispatch, running it), `reads` (the read endpoints), `state` (the packages
as the server holds them), `listing` (drift, page cache, tie order), `churn` (the clock),
`behaviour` (Behaviour, Churn, Changes), `ratelimit`, `faults` (faults, counters, seeded
draws), `answers` (error bodies, query parameters), `synth`, `synth_states`, `synth_tables`,
`synth_comfy`.
May import: `fetch` (the cache file's shape), the shared top-level modules.
"""
