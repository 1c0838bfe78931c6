"""Building `node_mappings.json` offline from a cache, fully or incrementally.

Owns: `signatures` (input-signature keys), `cache_stream` (reading a cache node by node),
`feeding` (which versions feed), `ranking`, `document` (the file's records), `job` (options and
report), `index` and `incremental` (the byte-copying incremental path), `build`
(`build_mappings`), `load` (`load_mappings`).
May import: `fetch` (the cache file's shape), the shared top-level modules.
"""
