"""Building `node_mappings.json` offline from a cache, fully or incrementally, optionally with
ComfyUI-Manager's packs beside the registry's.

Owns: `signatures` (input-signature keys), `cache_stream` (reading a cache node by node),
`installable` (which versions a consumer may install), `feeding` (which versions feed),
`ranking`, `document` (the file's records), `job` (options and report), `aliases`, `manager`
(reading the Manager's lists), `manager_packs` (what they add) and `manager_update` (that,
brought up to date), `plan` (what both paths decide alike), `index` and `incremental` (the
byte-copying incremental path), `build` (`build_mappings`), `load` (`load_mappings`).
May import: `fetch` (the cache file's shape; the client only for `--manager live`), the shared
top-level modules.
"""
