"""Rebuild `registry_tools/resolve/data/builtin_nodes.tsv`, ComfyUI's built-in node types.

    python scripts/refresh_builtins.py                      # newest releases, via pip download
    python scripts/refresh_builtins.py --docs 0.5.15 --templates 0.1.123
    python scripts/refresh_builtins.py --docs path/to.whl --templates path/to/dir --check

Sources, all PyPI packages (fetched with `pip download --no-deps`, or given as a wheel or an
unpacked folder):
- `comfyui-embedded-docs` documents every core node: one folder per node type under `docs/`;
- `comfyui-workflow-templates-json`, the official templates: nodes marked `cnr_id: comfy-core`
  are core, their `ver` is a ComfyUI version that has them, and `templates/index.json` gives
  each template's `minComfyUIVersion`, another version that has every node of the template;
- `comfygit-core` (optional, `--comfygit`): its built-in list names older core types the docs
  no longer carry.
Each row says which of these named it. `introduced` is the earliest ComfyUI version the
evidence shows the type in (the lowest `ver` or `minComfyUIVersion` of a template using it):
the type may be older, never newer. `removed` is set when a type the previous file had leaves
the docs (which document every core node): the newest ComfyUI version of the sources then.
Frontend-only core types (`FRONTEND` below) and a few core types seen in the templates before
the docs document them (`CURATED`) are listed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from registry_tools import files
from registry_tools.resolve.builtins import DATA_FILE, parse_table
from registry_tools.semver import version_key

DOCS = "comfyui-embedded-docs"
TEMPLATES = "comfyui-workflow-templates-json"
COMFYGIT = "comfygit-core"

# Types the ComfyUI frontend defines itself: no backend, no package.
FRONTEND = ("MarkdownNote", "Note", "PrimitiveNode", "Reroute")
# Core types the sources miss, each with why it is core.
CURATED = {
    "SaveImageWebsocket": "ships with ComfyUI (custom_nodes/websocket_image_save.py)",
    "Kling4EditVideoNode": "official Kling 4.0 API templates (by ComfyUI), not yet documented",
    "Kling4ImageToVideoNode": "official Kling 4.0 API templates, not yet documented",
    "Kling4ReferenceToVideoNode": "official Kling 4.0 API templates, not yet documented",
    "Kling4TextToVideoNode": "official Kling 4.0 API templates, not yet documented",
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


@dataclass
class Row:
    """One built-in type as the sources show it."""

    kind: str = "core"
    introduced: str | None = None
    removed: str | None = None
    sources: set[str] = field(default_factory=set)

    def seen_in(self, version: str | None) -> None:
        """Lower `introduced` to a ComfyUI version that is known to have the type."""
        if version and _VERSION.match(version):
            version = version.lstrip("v")
            if self.introduced is None or version_key(version) < version_key(self.introduced):
                self.introduced = version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=DOCS, help="wheel, folder, or version of " + DOCS)
    parser.add_argument(
        "--templates",
        action="append",
        help="wheel, folder or version of " + TEMPLATES + " (default: the newest); repeat it "
        "with older releases to date types earlier (the first one given is the current set)",
    )
    parser.add_argument("--comfygit", default=None, help="wheel, folder or version of comfygit")
    parser.add_argument("--previous", type=Path, default=DATA_FILE, help="file to carry over")
    parser.add_argument("--output", type=Path, default=DATA_FILE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output would change")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        docs = _unpacked(args.docs, DOCS, Path(scratch))
        templates = [
            _unpacked(spec, TEMPLATES, Path(scratch) / str(i))
            for i, spec in enumerate(args.templates or [TEMPLATES])
        ]
        comfygit = _unpacked(args.comfygit, COMFYGIT, Path(scratch)) if args.comfygit else None
        rows, header = build(docs, templates, comfygit, args.previous)
    text = render(rows, header)
    old = args.output.read_text("utf-8") if args.output.is_file() else ""
    counts = {kind: sum(r.kind == kind for r in rows.values()) for kind in ("core", "frontend")}
    print(
        f"{len(rows)} types ({counts}); covers ComfyUI {header['comfyui_version']}", file=sys.stderr
    )
    if args.check:
        return 0 if old == text else 1
    files.write_atomic(args.output, text.encode("utf-8"))
    return 0


def build(
    docs: tuple[Path, str],
    templates: tuple[Path, str],
    comfygit: tuple[Path, str] | None,
    previous: Path,
) -> tuple[dict[str, Row], dict[str, str]]:
    """Every built-in type with its kind, versions and sources; and the file's header."""
    rows: dict[str, Row] = {}
    docs_root, docs_version = docs
    documented = {p.name for p in _find(docs_root, "docs").iterdir() if p.is_dir()}
    for name in documented:
        rows.setdefault(name, Row()).sources.add("docs")
    newest = "0.0.0"
    evidence = (pair for root, _ in templates for pair in _template_evidence(root))
    for name, version in evidence:
        rows.setdefault(name, Row()).sources.add("templates")
        rows[name].seen_in(version)
        if version and _VERSION.match(version) and version_key(version) > version_key(newest):
            newest = version.lstrip("v")
    if comfygit:
        for name in _comfygit_names(comfygit[0]):
            if name not in FRONTEND:
                rows.setdefault(name, Row()).sources.add("comfygit")
    for name in FRONTEND:
        rows.setdefault(name, Row()).sources.add("curated")
        rows[name].kind = "frontend"
    for name in CURATED:
        rows.setdefault(name, Row()).sources.add("curated")
    for name, old in _previous(previous).items():
        row = rows.get(name)
        if row is None:  # gone from every source: kept, and marked removed if the docs had it
            row = rows[name] = Row(old.kind, old.introduced, old.removed, {"previous"})
            if "docs" in old.sources and not old.removed:
                row.removed = newest
        else:
            row.seen_in(old.introduced)
    header = {
        "comfyui_version": newest,
        DOCS: docs_version,
        TEMPLATES: ", ".join(version for _, version in templates),
    }
    if comfygit:
        header[COMFYGIT] = comfygit[1]
    return rows, header


def render(rows: dict[str, Row], header: dict[str, str]) -> str:
    lines = [
        "# ComfyUI's built-in node types. Rebuilt by scripts/refresh_builtins.py (see its",
        "# docstring for what each column means); hand edits belong in its CURATED table.",
        *(f"# {key}\t{value}" for key, value in header.items()),
        "name\tkind\tintroduced\tremoved\tsources",
    ]
    for name in sorted(rows):
        row = rows[name]
        sources = ",".join(sorted(row.sources))
        lines.append(f"{name}\t{row.kind}\t{row.introduced or ''}\t{row.removed or ''}\t{sources}")
    return "\n".join(lines) + "\n"


def _template_evidence(root: Path) -> Iterator[tuple[str, str | None]]:
    """(core type, a ComfyUI version that has it) for each comfy-core node of each template."""
    folder = _find(root, "templates")
    minimum = _minimum_versions(folder / "index.json")
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
            continue
        template_min = minimum.get(path.stem)
        for node in _all_nodes(document):
            kind, props = node.get("type"), node.get("properties") or {}
            if not isinstance(kind, str) or _UUID.match(kind) or not isinstance(props, dict):
                continue
            if props.get("cnr_id") == "comfy-core":
                yield kind, props.get("ver") if isinstance(props.get("ver"), str) else None
                yield kind, template_min


def _all_nodes(document: dict) -> Iterator[dict]:
    yield from (n for n in document["nodes"] if isinstance(n, dict))
    for subgraph in (document.get("definitions") or {}).get("subgraphs") or []:
        yield from (n for n in subgraph.get("nodes") or [] if isinstance(n, dict))


def _minimum_versions(index: Path) -> dict[str, str]:
    if not index.is_file():
        return {}
    found = {}
    for category in json.loads(index.read_text("utf-8")):
        for template in category.get("templates", []):
            if isinstance(template.get("minComfyUIVersion"), str):
                found[template["name"]] = template["minComfyUIVersion"]
    return found


def _comfygit_names(root: Path) -> list[str]:
    source = next(root.rglob("comfyui_builtin_nodes.py")).read_text("utf-8")
    start = source.index('"all_builtin_nodes"')
    block = source[source.index("[", start) : source.index("]", start) + 1]
    return json.loads(block)


def _previous(path: Path) -> dict[str, Row]:
    if not path.is_file():
        return {}
    table = parse_table(path.read_text("utf-8"))
    return {
        name: Row(t.kind, t.introduced, t.removed, set(t.sources))
        for name, t in table.nodes.items()
    }


def _unpacked(spec: str, package: str, scratch: Path) -> tuple[Path, str]:
    """(folder, version) of `spec`: an unpacked folder, a wheel, or a version to download."""
    path = Path(spec)
    if path.is_dir():
        return path, _dist_version(path, package)
    if not path.is_file():
        requirement = package if spec == package else f"{package}=={spec}"
        target = scratch / package
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(target),
                requirement,
            ],
            check=True,
        )
        path = next(target.glob("*.whl"))
    folder = scratch / f"{package}-unpacked"
    with zipfile.ZipFile(path) as wheel:
        wheel.extractall(folder)
    return folder, _dist_version(folder, package)


def _dist_version(folder: Path, package: str) -> str:
    stem = package.replace("-", "_")
    for info in folder.glob(f"{stem}-*.dist-info"):
        return info.name[len(stem) + 1 : -len(".dist-info")]
    return "unknown"


def _find(root: Path, name: str) -> Path:
    """The first folder called `name` under `root` (wheels nest it in their package)."""
    for candidate in (root / name, *root.glob(f"*/{name}")):
        if candidate.is_dir():
            return candidate
    raise SystemExit(f"refresh_builtins: no {name}/ folder under {root}")


if __name__ == "__main__":
    sys.exit(main())
