"""A realistic synthetic registry cache, for tests, benchmarks and the offline demo.

`generate(nodes, seed)` gives the same bytes for the same arguments (one `random.Random(seed)`,
no global state), and reproduces the awkward parts of the real registry that broke the
reference scripts: heavy-tailed version counts, `1.10.0` next to `1.9.0`, pre-releases,
non-semver strings, backports published after a newer major, Go timestamps with a varying
number of fractional digits, banned nodes, missing download URLs, comfy-node names provided by
several packages, metadata spanning several pages and malformed `input_types`.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from . import clock, store

# Versions whose comfy nodes count towards the registry's "~150,000 metadata entries".
NEWEST_WITH_METADATA = 10


def _words(text: str) -> tuple[str, ...]:
    """A table of words written as one string (easier to read and extend than a literal)."""
    return tuple(text.split())


_EPOCH = datetime(2023, 6, 1, tzinfo=UTC)
_SPAN_DAYS = 820

_WORDS = _words(
    "impact pack manager controlnet aux video helper suite essentials custom scripts ipadapter "
    "plus was node suite efficiency nodes rgthree comfy layer style inspire kjnodes animatediff "
    "evolved frame interpolation reactor face swap segment anything florence tiled diffusion "
    "ultimate upscale image saver mask tools latent noise prompt styler dynamic prompts wildcards "
    "depth flux lora loader gguf tensorrt audio whisper text utils math logic switch batch "
    "crystools easy use portrait master inpaint crop stitch sam detailer sdxl turbo cascade "
    "hunyuan ltx wan mochi tooling advanced samplers sigma scheduler color palette film grain "
    "sharpen blur pixel art vectorscope llm ollama gemini caption tagger wd14 clip vision "
    "background remover rembg birefnet matting outpaint zoom motion brush pose openpose "
    "densepose normal map marigold lighting relight ic light photomaker instantid pulid"
)
_UNICODE_WORDS = (
    "Nœud",
    "Über",
    "Café",
    "Ñandú",
    "Señal",
    "图像",
    "节点",
    "ノード",
    "🎨",
    "✨",
    "🔥",
)
_AUTHORS = _words(
    "ltdrdata kijai cubiq rgthree pythongosssss jags111 WASasquatch yolain Fannovel16 chflame163 "
    "Kosinkadink ssitu city96 lquesada shiimizu BadCafeCode Acly lldacing AIGODLIKE MrForExample "
    "Gourieff huchenlei Suzie1 kaibioinfo storyicon Jonseed cdb-boop 1038lab spacepxl Łukasz "
    "Ferrán 山田太郎 李明 ZHO-ZHO-ZHO"
)
_LICENSES = (
    "MIT",
    "MIT",
    "MIT",
    "GPL-3.0",
    "Apache-2.0",
    "AGPL-3.0",
    "",
    "LICENSE",
    "BSD-3-Clause",
)
_TAGS = _words(
    "image video audio upscale controlnet lora 3d animation mask segmentation face text utils "
    "sampler latent workflow api llm"
)
_CATEGORIES = ("", "image", "video", "audio", "3d", "utility", "model", "conditioning", "llm")
_DEPENDENCIES = (
    "torch",
    "torchvision",
    "numpy>=1.24",
    "opencv-python",
    "opencv-python-headless>=4.7",
    "transformers==4.38.2",
    "diffusers>=0.25.0",
    "accelerate",
    "safetensors",
    "einops",
    "segment-anything",
    "ultralytics>=8.0.0",
    "onnxruntime-gpu; platform_system != 'Darwin'",
    "scikit-image",
    "Pillow>=9.5",
    "timm==0.9.16",
    "git+https://github.com/facebookresearch/sam2.git",
    "insightface @ https://example.invalid/insightface-0.7.3-cp311-linux_x86_64.whl",
    "rembg[gpu]",
    "piexif",
)
# Versions per node: a few with none, most 1-6, about 1 % with 40+ (mean about 5.2).
_VERSION_COUNTS = ((0.04, 0, 0), (0.84, 1, 6), (0.975, 7, 16), (0.992, 17, 39), (1.0, 40, 75))
# Comfy nodes per package; the last range spans several pages of 50.
_CATALOGUE_SIZES = ((0.55, 1, 8), (0.85, 9, 20), (0.98, 21, 60), (1.0, 61, 170))
# Where version histories start; the last two soon cross 1.9 -> 1.10 and 0.0.9 -> 0.0.10.
_FIRST_RELEASES = ((0, 1, 0), (1, 0, 0), (1, 0, 0), (1, 8, 0), (0, 0, 8))
_PRE_RELEASES = ("rc.1", "rc.2", "beta", "beta.1", "alpha", "alpha.2", "dev")
_NON_SEMVER = ("nightly-2024", "latest", "main", "dev-build", "2024-nightly", "unstable")
_RARE_STATUSES = (
    ("NodeVersionStatusBanned", "malicious code detected"),
    ("NodeVersionStatusDeleted", "removed by the publisher"),
    ("NodeVersionStatusFlagged", "suspicious pip dependency"),
)
_OS = ("linux", "windows", "macos")
_ACCELERATORS = ("cuda", "rocm", "mps", "cpu", "xpu")

# Comfy-node class names several packages provide (real registries have such collisions).
_SHARED_NAMES = _words(
    "ImageResize+ LoadImageBatch ImageBlend MaskToImage ImageToMask SaveImageExtended "
    "CLIPTextEncodeAdvanced ImageCrop+ ImageScaleBy ColorMatch GetImageSize+ SimpleMath+ "
    "StringConcatenate PreviewAny BatchCount+ ImageBatchMulti FloatConstant IntConstant "
    "RemoveBackground UpscaleModelLoader+ LatentUpscaleBy+ CheckpointLoaderSimpleWithName "
    "ImageListToBatch ImageBatchToList ShowText PromptSchedule GrowMaskWithBlur ImageComposite+ "
    "ConditioningCombineMultiple SwitchAny"
)
_UNICODE_NAMES = ("🔥 Fast Sampler", "Nœud Flou", "图像缩放", "Überblend ✨", "マスク合成")
_VERBS = _words("Load Save Apply Encode Decode Resize Crop Blend Merge Split Detect Upscale Sample")
_NOUNS = _words("Image Mask Latent Model Prompt Lora Face Batch Text Frame Depth Pose Noise Tile")
_TENSOR_TYPES = ("IMAGE", "MASK", "LATENT", "MODEL", "CLIP", "VAE", "CONDITIONING", "CONTROL_NET")
_COMBOS = (
    ["a.safetensors", "b.safetensors"],
    ["nearest", "bilinear", "bicubic", "lanczos"],
    ["enable", "disable"],
    ["sd15", "sdxl", "flux", "sd3"],
)
_HIDDEN = {"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_BROKEN_INPUTS = ('{"required": {"image": ["IMAGE"]', "{'required': {}}", "[]", "null", "")


@dataclass
class _Package:
    """What one registry node (package) is built from before it becomes cache JSON."""

    node_id: str
    words: list[str]
    author: str
    version_count: int
    banned: bool = False
    shared_names: list[str] = field(default_factory=list)


def generate(nodes: int, seed: int) -> dict[str, Any]:
    """A complete cache document with `nodes` packages; identical for identical arguments."""
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    rng = random.Random(seed)
    packages = _packages(rng, nodes)
    shared_specs = {name: _input_types(rng) for name in _SHARED_NAMES}
    fetched_at = clock.iso()  # one "fetch" time for every node, even if the clock ticks
    built = [_node(rng, package, shared_specs, fetched_at) for package in packages]
    return store.build_cache(built)


def summary(cache: dict[str, Any]) -> str:
    """One line: what a cache holds (for the CLI and notebooks)."""
    newest = sum(
        len(version.get("comfy_nodes") or [])
        for node in cache["nodes"]
        for version in node.get("versions_list", [])[:NEWEST_WITH_METADATA]
    )
    return (
        f"{cache['node_count']} nodes, {cache['versions_processed']} versions, "
        f"{cache['metadata_entries']} comfy nodes ({newest} in the newest "
        f"{NEWEST_WITH_METADATA} versions of each node)"
    )


# ---- packages ---------------------------------------------------------------------------------


def _packages(rng: random.Random, count: int) -> list[_Package]:
    """Unique ids, version counts, the banned few and who shares which comfy-node names."""
    seen: set[str] = set()
    used_words: set[tuple[str, ...]] = set()
    packages = []
    for _ in range(count):
        words = _fresh_words(rng, used_words)
        node_id = _unique(_slug(rng, words), seen)
        packages.append(_Package(node_id, words, rng.choice(_AUTHORS), _draw(rng, _VERSION_COUNTS)))
    banned = max(1 if count >= 50 else 0, round(count * 0.003))
    for package in rng.sample(packages, banned):
        package.banned = True
    for name in _SHARED_NAMES[: max(1, count // 30)]:
        for package in rng.sample(packages, min(count, rng.randint(2, 5))):
            package.shared_names.append(name)
    return packages


def _fresh_words(rng: random.Random, used: set[tuple[str, ...]]) -> list[str]:
    """Words no other package uses, so comfy-node names only collide where intended."""
    while True:
        words = rng.sample(_WORDS, rng.choice((1, 2, 2, 2, 3)))
        if tuple(words) not in used:
            used.add(tuple(words))
            return words


def _slug(rng: random.Random, words: list[str]) -> str:
    joined = "-".join(words)
    style = rng.random()
    if style < 0.45:
        return f"comfyui-{joined}"
    if style < 0.65:
        return f"{joined}-comfy"
    if style < 0.8:
        return "comfyui_" + "_".join(words)
    return joined


def _unique(candidate: str, seen: set[str]) -> str:
    name, n = candidate, 1
    while name in seen:
        n += 1
        name = f"{candidate}-{n}"
    seen.add(name)
    return name


def _draw(rng: random.Random, table: tuple[tuple[float, int, int], ...]) -> int:
    """A count from a heavy-tailed table of (cumulative share, low, high) ranges."""
    u = rng.random()
    for bound, low, high in table:
        if u < bound:
            return low if low == high else rng.randint(low, high)
    raise AssertionError("the last bound of a table is 1.0")


def _heavy_int(rng: random.Random, scale: float, alpha: float, cap: int) -> int:
    return min(cap, int(scale * (rng.paretovariate(alpha) - 1)))


def _node(
    rng: random.Random, package: _Package, shared_specs: dict[str, str], fetched_at: str
) -> dict[str, Any]:
    """One cache node: the server's Node fields plus this project's local keys."""
    created = _EPOCH + timedelta(days=rng.uniform(0, _SPAN_DAYS * 0.6))
    versions = store.sort_versions(_versions(rng, package, created))
    _attach_comfy_nodes(rng, package, versions, shared_specs)
    latest = _latest(versions)
    node: dict[str, Any] = {
        "id": package.node_id,
        "name": _display_name(rng, package.words),
        "description": _description(rng, package.words),
        "author": package.author,
        "license": rng.choice(_LICENSES),
        "icon": _icon(rng, package),
        "repository": _repository(rng, package),
        "tags": sorted(rng.sample(_TAGS, rng.choice((0, 0, 1, 2, 3)))),
        "rating": round(rng.uniform(3, 5), 1) if rng.random() < 0.2 else 0,
        "downloads": _heavy_int(rng, 40, 0.9, 5_000_000),
        "github_stars": 0 if rng.random() < 0.15 else _heavy_int(rng, 8, 0.8, 90_000),
        "publisher": {"id": package.author.lower(), "name": package.author},
        "status": _node_status(rng, package),
        "category": rng.choice(_CATEGORIES),
        "created_at": _go_time(rng, created),
        "fully_cached": True,
        "versions_cached_at": fetched_at,
        "versions_cached_for": latest["version"] if latest else "",
        "versions_list": [] if package.banned else versions,
    }
    if latest:
        node["latest_version"] = latest
    if package.banned:
        node["versions_unavailable"] = "banned"
    return node


def _node_status(rng: random.Random, package: _Package) -> str:
    if package.banned:
        return "NodeStatusBanned"
    return "NodeStatusDeleted" if rng.random() < 0.01 else "NodeStatusActive"


def _display_name(rng: random.Random, words: list[str]) -> str:
    name = " ".join(word.capitalize() for word in words)
    if rng.random() < 0.05:
        return f"{rng.choice(_UNICODE_WORDS)} {name}"
    return f"ComfyUI {name}" if rng.random() < 0.4 else name


def _description(rng: random.Random, words: list[str]) -> str:
    text = f"Custom nodes for {' '.join(words)} workflows in ComfyUI."
    if rng.random() < 0.06:
        text += f" {rng.choice(_UNICODE_WORDS)} — prend en charge « {rng.choice(_UNICODE_WORDS)} »."
    return "" if rng.random() < 0.05 else text


def _icon(rng: random.Random, package: _Package) -> str:
    if rng.random() < 0.7:
        return ""
    return f"https://raw.githubusercontent.com/{package.author}/{package.node_id}/main/icon.png"


def _repository(rng: random.Random, package: _Package) -> str:
    """GitHub URLs as publishers really type them: some `.git`, trailing `/` or plain http."""
    url = f"https://github.com/{package.author}/{package.node_id}"
    quirk = rng.random()
    if quirk < 0.08:
        return url + ".git"
    if quirk < 0.14:
        return url + "/"
    if quirk < 0.17:
        return "http" + url[5:]
    return url


def _latest(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The server's latest_version: the newest non-deprecated version, as the API sends it."""
    if not versions:
        return None
    newest = next((v for v in versions if not v["deprecated"]), versions[0])
    server = {k: v for k, v in newest.items() if k not in store.VERSION_LOCAL_KEYS}
    server["downloadUrl"] = server.pop("download_url")
    return server


# ---- versions ---------------------------------------------------------------------------------


def _version_strings(rng: random.Random, count: int) -> list[str]:
    """Release order (oldest first): semver bumps, pre-releases, backports, odd strings.

    A backport (a patch to the line before the current major) only comes once the new
    major's first release is out, so it is published after it.
    """
    if count == 0:
        return []
    major, minor, patch = rng.choice(_FIRST_RELEASES)
    out = [f"{major}.{minor}.{patch}"]
    previous_line: tuple[int, int, int] | None = None
    while len(out) < count:
        bump = rng.random()
        if bump < 0.06:
            previous_line = (major, minor, patch)
            major, minor, patch = major + 1, 0, 0
        elif bump < 0.32:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        release = f"{major}.{minor}.{patch}"
        if patch == 0 and rng.random() < 0.25:
            out.append(f"{release}-{rng.choice(_PRE_RELEASES)}")
        elif previous_line and (minor, patch) != (0, 0) and rng.random() < 0.15:
            old_major, old_minor, old_patch = previous_line
            previous_line = (old_major, old_minor, old_patch + 1)
            out.append(f"{old_major}.{old_minor}.{old_patch + 1}")
            continue
        if len(out) < count:
            out.append(release)
    if count >= 3 and rng.random() < 0.03:
        out[rng.randrange(1, count)] = rng.choice(_NON_SEMVER)
    return out


def _versions(rng: random.Random, package: _Package, created: datetime) -> list[dict[str, Any]]:
    when = created
    versions = []
    for version in _version_strings(rng, package.version_count):
        when += timedelta(hours=rng.expovariate(1 / 200))
        versions.append(_version(rng, package, version, when))
    return versions


def _version(rng: random.Random, package: _Package, version: str, when: datetime) -> dict[str, Any]:
    status, reason = "NodeVersionStatusActive", ""
    if rng.random() < 0.015:
        status, reason = rng.choice(_RARE_STATUSES)
    return {
        "version": version,
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "createdAt": _go_time(rng, when),
        "changelog": rng.choice(("", "Bug fixes.", "New nodes.", "修复错误 🐛", "Perf ⚡")),
        "dependencies": rng.sample(_DEPENDENCIES, rng.choice((0, 0, 1, 2, 3, 5))),
        "download_url": None
        if rng.random() < 0.01
        else f"https://cdn.comfy.org/{package.author.lower()}/{package.node_id}/{version}/node.zip",
        "deprecated": rng.random() < 0.07,
        "status": status,
        "status_reason": reason,
        "node_id": package.node_id,
        "supported_os": sorted(rng.sample(_OS, rng.choice((0, 0, 0, 1, 3)))),
        "supported_accelerators": sorted(rng.sample(_ACCELERATORS, rng.choice((0, 0, 1, 2)))),
        "supported_comfyui_version": rng.choice(("", "", ">=0.3.0", ">=0.2.0,<1.0")),
        "metadata_cached": True,
    }


def _go_time(rng: random.Random, when: datetime) -> str:
    """RFC 3339 as a Go server writes it: 0-6 fractional digits, trailing zeros dropped."""
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    shape = rng.random()
    micros = (
        0 if shape < 0.15 else rng.randrange(10) * 100_000 if shape < 0.25 else when.microsecond
    )
    fraction = f"{micros:06d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


# ---- comfy nodes ------------------------------------------------------------------------------


def _attach_comfy_nodes(
    rng: random.Random,
    package: _Package,
    versions: list[dict[str, Any]],
    shared_specs: dict[str, str],
) -> None:
    """Give every version (newest first) its comfy nodes; ~10% have none (a 404 upstream).

    Older versions offer a prefix of the newest catalogue, and some nodes changed their
    inputs at some version, so consecutive versions mostly share names.
    """
    catalogue = _catalogue(rng, package, shared_specs, len(versions))
    shrink = rng.choice((0, 0, 0, 1, 2))
    for age, version in enumerate(versions):
        if rng.random() < 0.1:
            version["comfy_nodes"] = []
            continue
        size = max(1, len(catalogue) - shrink * age)
        version["comfy_nodes"] = [entry.at(age) for entry in catalogue[:size]]


@dataclass
class _Entry:
    """A comfy node over a package's history: `old_inputs` apply from `changed_at` on back."""

    node: dict[str, Any]
    old_inputs: str | None = None
    changed_at: int = 0

    def at(self, age: int) -> dict[str, Any]:
        copy = dict(self.node, output_is_list=list(self.node["output_is_list"]))
        if self.old_inputs is not None and age > self.changed_at:
            copy["input_types"] = self.old_inputs
        return copy


def _catalogue(
    rng: random.Random, package: _Package, shared_specs: dict[str, str], versions: int
) -> list[_Entry]:
    prefix = "".join(word.capitalize() for word in package.words)
    seen = set(package.shared_names)
    names = [
        _unique(f"{prefix}{rng.choice(_VERBS)}{rng.choice(_NOUNS)}", seen)
        for _ in range(_draw(rng, _CATALOGUE_SIZES))
    ]
    if rng.random() < 0.02:
        names.append(_unique(rng.choice(_UNICODE_NAMES), seen))
    # A shared name is sometimes the same class copied around (same inputs), sometimes not.
    entries = [
        _Entry(_comfy_node(rng, name, prefix, shared_specs[name] if rng.random() < 0.5 else None))
        for name in package.shared_names
    ]
    entries += [_Entry(_comfy_node(rng, name, prefix, None)) for name in names]
    for entry in entries:
        if versions > 1 and rng.random() < 0.15:
            entry.old_inputs = _input_types(rng)
            entry.changed_at = rng.randrange(versions - 1)
    return entries


def _comfy_node(
    rng: random.Random, name: str, prefix: str, input_types: str | None
) -> dict[str, Any]:
    outputs = rng.sample(_TENSOR_TYPES, rng.choice((0, 1, 1, 1, 2, 3)))
    return {
        "comfy_node_name": name,
        "category": f"{prefix}/{rng.choice(_NOUNS).lower()}",
        "description": "" if rng.random() < 0.85 else f"{name}: does what it says.",
        "input_types": input_types if input_types is not None else _input_types(rng),
        "return_types": _json_list(outputs),
        "return_names": _json_list([o.lower() for o in outputs]),
        "output_is_list": [rng.random() < 0.05 for _ in outputs],
        "function": rng.choice(("execute", "run", "process", "apply", "doit", "main")),
        "deprecated": rng.random() < 0.02,
        "experimental": rng.random() < 0.04,
    }


def _json_list(items: list[str]) -> str:
    """A list as the registry stores it: JSON text with `", "` separators."""
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _input_types(rng: random.Random) -> str:
    """The JSON *string* the registry stores; a few are empty, broken or not an object."""
    u = rng.random()
    if u < 0.01:
        return rng.choice(_BROKEN_INPUTS)
    if u < 0.04:
        return "{}"
    spec: dict[str, Any] = {"required": _inputs(rng, rng.randint(1, 5))}
    if rng.random() < 0.4:
        spec["optional"] = _inputs(rng, rng.randint(1, 3))
    if rng.random() < 0.25:
        spec["hidden"] = dict(rng.sample(sorted(_HIDDEN.items()), rng.randint(1, 3)))
    return orjson.dumps(spec).decode()


def _inputs(rng: random.Random, count: int) -> dict[str, Any]:
    return {f"{rng.choice(_NOUNS).lower()}_{i}": _input(rng) for i in range(count)}


def _input(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.35:
        return [rng.choice(_TENSOR_TYPES)]
    if kind < 0.5:
        return ["INT", {"default": rng.choice((0, 1, 512, 1024))}]
    if kind < 0.65:
        return ["FLOAT", {"default": rng.choice((0.0, 0.5, 1.0))}]
    if kind < 0.75:
        return ["STRING", {"multiline": rng.random() < 0.5, "default": ""}]
    if kind < 0.8:
        return ["BOOLEAN", {"default": False}]
    if kind < 0.95:
        return [list(rng.choice(_COMBOS))]
    return rng.choice(("INT", "FLOAT", "STRING"))
