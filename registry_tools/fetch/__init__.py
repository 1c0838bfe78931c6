"""Fetching the registry into a cache file: the HTTP client, the three phases, the cache file's
shape and assembly.

Owns: `client` (one aiohttp session, bounded concurrency, one retry policy), `options`
(`CacheOptions`, `RunSummary`, phase names), `build` (one run's state, journal, fan-out),
`phase_nodes`, `phase_versions`, `phase_metadata`, `run` (`run_cache`), `cache_file`.
May import: the shared top-level modules only.
"""
