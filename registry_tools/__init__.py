"""registry-tools: mirror the ComfyUI custom-node registry and build node mappings offline.

The package is laid out by pipeline stage (docs/architecture.md draws it): `fetch`, `registry`,
`mappings`, `resolve`, `replay`, `notebooks`, and the front door `cli`. Shared small pieces sit
at the top (`errors`, `clock`, `semver`, `heap`, `progress`, `files`, `journal`) and import no
subpackage.
"""

__version__ = "0.1.0"
