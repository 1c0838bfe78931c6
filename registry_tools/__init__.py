"""registry-tools: mirror the ComfyUI custom-node registry and build node mappings offline."""

__version__ = "0.1.0"
