"""What `synth` draws from: word tables, distributions fitted to the real registry, and the
`Package` spec each synthetic registry node is built from."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime


def _words(text: str) -> tuple[str, ...]:
    """A table of words written as one string (easier to read and extend than a literal)."""
    return tuple(text.split())


# The most packages `generate` makes: about twice the real registry (about 5,100 in 2026). At
# 10,000 the cache is about 440 MB and generating it takes about 1.3 GB of memory (bench/synth.md).
MAX_NODES = 10_000
EPOCH = datetime(2023, 6, 1, tzinfo=UTC)
SPAN_DAYS = 820

WORDS = _words(
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
UNICODE_WORDS = (
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
AUTHORS = _words(
    "ltdrdata kijai cubiq rgthree pythongosssss jags111 WASasquatch yolain Fannovel16 chflame163 "
    "Kosinkadink ssitu city96 lquesada shiimizu BadCafeCode Acly lldacing AIGODLIKE MrForExample "
    "Gourieff huchenlei Suzie1 kaibioinfo storyicon Jonseed cdb-boop 1038lab spacepxl Łukasz "
    "Ferrán 山田太郎 李明 ZHO-ZHO-ZHO"
)
LICENSES = (
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
TAGS = _words(
    "image video audio upscale controlnet lora 3d animation mask segmentation face text utils "
    "sampler latent workflow api llm"
)
CATEGORIES = ("", "image", "video", "audio", "3d", "utility", "model", "conditioning", "llm")
DEPENDENCIES = (
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
VERSION_COUNTS = ((0.04, 0, 0), (0.84, 1, 6), (0.975, 7, 16), (0.992, 17, 39), (1.0, 40, 75))
# Comfy nodes per package; the last range spans several pages of 50.
CATALOGUE_SIZES = ((0.55, 1, 8), (0.85, 9, 20), (0.98, 21, 60), (1.0, 61, 170))
# Where version histories start; the last two soon cross 1.9 -> 1.10 and 0.0.9 -> 0.0.10.
FIRST_RELEASES = ((0, 1, 0), (1, 0, 0), (1, 0, 0), (1, 8, 0), (0, 0, 8))
PRE_RELEASES = ("rc.1", "rc.2", "beta", "beta.1", "alpha", "alpha.2", "dev")
NON_SEMVER = ("nightly-2024", "latest", "main", "dev-build", "2024-nightly", "unstable")
RARE_STATUSES = (
    ("NodeVersionStatusBanned", "malicious code detected"),
    ("NodeVersionStatusDeleted", "removed by the publisher"),
    ("NodeVersionStatusFlagged", "suspicious pip dependency"),
    ("NodeVersionStatusPending", "awaiting review"),
)
# Extraction: a package's newest version is pending more often than its older ones (the
# backlog); `Behaviour.pending_share` adds the serve-time share on top of these.
EXTRACTION_PENDING_NEWEST = 0.06
EXTRACTION_PENDING_OLDER = 0.02
EXTRACTION_FAILED = 0.01
# Versions whose string is not x.y.z (pre-releases, odd strings) that have no download URL.
NON_STRICT_WITHOUT_URL = 0.3
# Shared comfy-node names one of their providers claims (preempted_comfy_node_names).
PREEMPT_SHARE = 0.6
# Comfy-node policies, as (cumulative share, policy).
POLICIES = (
    (0.97, "ComfyNodePolicyActive"),
    (0.99, "ComfyNodePolicyLocalOnly"),
    (1.0, "ComfyNodePolicyBanned"),
)
OS = ("linux", "windows", "macos")
ACCELERATORS = ("cuda", "rocm", "mps", "cpu", "xpu")

# Comfy-node class names several packages provide (real registries have such collisions).
SHARED_NAMES = _words(
    "ImageResize+ LoadImageBatch ImageBlend MaskToImage ImageToMask SaveImageExtended "
    "CLIPTextEncodeAdvanced ImageCrop+ ImageScaleBy ColorMatch GetImageSize+ SimpleMath+ "
    "StringConcatenate PreviewAny BatchCount+ ImageBatchMulti FloatConstant IntConstant "
    "RemoveBackground UpscaleModelLoader+ LatentUpscaleBy+ CheckpointLoaderSimpleWithName "
    "ImageListToBatch ImageBatchToList ShowText PromptSchedule GrowMaskWithBlur ImageComposite+ "
    "ConditioningCombineMultiple SwitchAny"
)
UNICODE_NAMES = ("🔥 Fast Sampler", "Nœud Flou", "图像缩放", "Überblend ✨", "マスク合成")
VERBS = _words("Load Save Apply Encode Decode Resize Crop Blend Merge Split Detect Upscale Sample")
NOUNS = _words("Image Mask Latent Model Prompt Lora Face Batch Text Frame Depth Pose Noise Tile")
TENSOR_TYPES = ("IMAGE", "MASK", "LATENT", "MODEL", "CLIP", "VAE", "CONDITIONING", "CONTROL_NET")
COMBOS = (
    ["a.safetensors", "b.safetensors"],
    ["nearest", "bilinear", "bicubic", "lanczos"],
    ["enable", "disable"],
    ["sd15", "sdxl", "flux", "sd3"],
)
HIDDEN = {"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
BROKEN_INPUTS = ('{"required": {"image": ["IMAGE"]', "{'required': {}}", "[]", "null", "")


def unique(candidate: str, seen: set[str]) -> str:
    name, n = candidate, 1
    while name in seen:
        n += 1
        name = f"{candidate}-{n}"
    seen.add(name)
    return name


def draw(rng: random.Random, table: tuple[tuple[float, int, int], ...]) -> int:
    """A count from a heavy-tailed table of (cumulative share, low, high) ranges."""
    u = rng.random()
    for bound, low, high in table:
        if u < bound:
            return low if low == high else rng.randint(low, high)
    raise AssertionError("the last bound of a table is 1.0")


@dataclass
class Package:
    """What one registry node (package) is built from before it becomes cache JSON."""

    node_id: str
    words: list[str]
    author: str
    version_count: int
    banned: bool = False
    deleted: bool = False
    shared_names: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
