"""The request: the commercial API's JSON, validated and normalised into one frozen dataclass,
and the sizing rules as a pure function.

Request format (compatible with the commercial generative-upscale API)::

    {"url": "https://example.com/photo.png", "width": 3000, "height": "200%",
     "min_length": 1024, "fit": "canvas", "padding": "5%",
     "background": {"color": "#ffffff",
                    "generate": {"adapter_type": "upscale", "description": "a prompt"}},
     "generative_upscale": true, "upscale_strength": 5,
     "seed": 42, "negative_prompt": "...", "levels": [1, 5, 9],
     "custom": {"start_from": 5, "creativity": 0.4, "resemblance": 0.8}, "fast": false}

Every unknown field, wrong type or out-of-range value raises :class:`RequestError` naming the
field and what is allowed; nothing is silently ignored or corrected.

Three ways in, one set of checks: :func:`parse_request` (the JSON), :class:`RequestFields`
(the app's form and the CLI's flags, optionally over a JSON file) and direct construction all
end in :class:`UpscaleRequest`, whose ``__post_init__`` checks every value.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal, get_args

import presets
from pipelines.errors import RequestError
from pipelines.output import OUTPUT_FIELDS, OutputSpec, parse_file_size, parse_output
from pipelines.region import Region, parse_region, parse_region_text

Fit = Literal["canvas", "crop", "bounds", "cover"]
FITS: tuple[str, ...] = get_args(Fit)
TOP_LEVEL_FIELDS = (
    "url",
    "fidelity_floor",
    "width",
    "height",
    "min_length",
    "fit",
    "padding",
    "background",
    "generative_upscale",
    "upscale_strength",
    "seed",
    "negative_prompt",
    "levels",
    "custom",
    "region",
    "fast",
    *OUTPUT_FIELDS,  # output_format, quality, max_file_size, ...: pipelines.output.OutputSpec
)
MAX_SEED = 2**32 - 1
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_INTEGER = re.compile(r"^-?\d+$")
_MAX_DIGITS = 18
_HEX_COLOR = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Percent:
    """A size relative to a reference length (``value`` is in percent, > 0)."""

    value: float

    def of(self, reference: int) -> int:
        return int(round(reference * self.value / 100.0))

    def __str__(self) -> str:
        return f"{self.value:g}%"


Length = int | Percent


CUSTOM_SETTINGS = tuple(f.name for f in presets.CUSTOM_FIELDS)
CUSTOM_EXTRAS = ("prompt", "negative_prompt", "seed")  # the run's, unless the custom level has its own
CUSTOM_KEYS = ("start_from", "base_path", *CUSTOM_SETTINGS, *CUSTOM_EXTRAS)


@dataclass(frozen=True)
class CustomRecipe:
    """The lab extra ``custom``: a level with a recipe of its own, beside or instead of the
    table's. Every field is optional: None = what ``start_from`` (a level; None = the request's
    strength) has, on the engine that runs it; ``prompt``, ``negative_prompt`` and ``seed``
    None = the run's. Each given value is checked on construction against
    :data:`presets.CUSTOM_FIELDS` (RequestError naming ``custom.<field>`` and the range);
    ``start_from`` against the request's table and ``base_path`` against the engine's base
    paths when the engine resolves the recipe (:meth:`resolve`)."""

    start_from: int | None = None
    base_path: str | None = None
    lora_scale: float | None = None
    creativity: float | None = None
    resemblance: float | None = None
    guidance: float | None = None
    steps: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for spec in presets.CUSTOM_FIELDS:
            value = getattr(self, spec.name)
            if value is not None:
                try:
                    object.__setattr__(self, spec.name, spec.check(value))
                except ValueError as exc:
                    raise RequestError(f"custom.{spec.name}", f"{exc} ({spec.label})") from None
        if self.base_path is not None and (not isinstance(self.base_path, str) or not self.base_path.strip()):
            raise RequestError("custom.base_path", f"must be the name of a base path, got {self.base_path!r}")
        for name in ("prompt", "negative_prompt"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _parse_prompt(f"custom.{name}", getattr(self, name)))
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise RequestError("custom.seed", f"must be an integer in 0..{MAX_SEED}, got {seed!r}")
        if self.tile_size is not None and self.tile_overlap is not None and self.tile_overlap >= self.tile_size:
            raise RequestError(
                "custom.tile_overlap", f"must be less than tile_size {self.tile_size}, got {self.tile_overlap}"
            )

    def to_json(self) -> dict[str, Any]:
        """The fields that were given, as the request's ``custom`` object."""
        return {k: getattr(self, k) for k in CUSTOM_KEYS if getattr(self, k) is not None}

    def resolve(
        self,
        table: presets.LevelTable,
        settings: Mapping[float, presets.DiffusionSettings],
        strength: int,
        base_paths: Sequence[str],
    ) -> presets.CustomLevel:
        """The custom level beside ``table``: the given fields over those of ``start_from`` (or
        ``strength``) in ``settings`` (the engine's). Raises RequestError naming
        ``custom.start_from``, ``custom.base_path`` (not one of ``base_paths``, the engine's
        registry) or ``custom.tile_overlap`` (not below the tile size)."""
        start = _check_start_from(self.start_from if self.start_from is not None else strength, table)
        base, defaults = presets.custom_defaults(table, settings, start)
        base = self.base_path if self.base_path is not None else base
        if base not in base_paths:
            raise RequestError("custom.base_path", f"must be one of {sorted(base_paths)}, got {base!r}")
        given = {f.attribute: getattr(self, f.name) for f in presets.CUSTOM_FIELDS if getattr(self, f.name) is not None}
        values = {**vars(defaults), **given}
        if values["tile_overlap"] >= values["tile_size"]:
            raise RequestError(
                "custom.tile_overlap",
                f"must be less than the tile size {values['tile_size']}, got {values['tile_overlap']}",
            )
        return presets.custom_level(
            table,
            presets.DiffusionSettings(**values),
            base_path=base,
            start_from=start,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
        )


def _check_start_from(value: object, table: presets.LevelTable) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not table.min_level <= value <= table.max_level:
        raise RequestError("custom.start_from", f"must be a level in {table.span}, got {value!r}")
    return value


def parse_custom(value: object) -> CustomRecipe:
    """The request's ``custom`` object (decoded JSON) as a :class:`CustomRecipe`; RequestError
    naming ``custom`` (not an object, unknown keys) or ``custom.<field>``."""
    if not isinstance(value, Mapping):
        raise RequestError("custom", f"must be an object with any of {list(CUSTOM_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(CUSTOM_KEYS))
    if unknown:
        raise RequestError("custom", f"unsupported field(s) {unknown}; supported: {list(CUSTOM_KEYS)}")
    return CustomRecipe(**{k: v for k, v in value.items() if v is not None})


def parse_custom_text(text: str) -> CustomRecipe:
    """``--custom creativity=0.4,steps=30,base_path=bicubic``: comma-separated ``key=value``
    pairs (numbers as numbers, the rest as text; a prompt with commas belongs in a request
    file). RequestError naming ``custom`` or ``custom.<key>``."""
    pairs: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RequestError("custom", f"must be key=value pairs separated by commas, got {item!r}")
        if key not in CUSTOM_KEYS:
            raise RequestError("custom", f"unknown setting {key!r}; settings: {list(CUSTOM_KEYS)}")
        pairs[key] = _number_or_text(raw.strip())
    return parse_custom(pairs)


def _number_or_text(raw: str) -> object:
    """``"30"`` → 30, ``"0.4"`` → 0.4, anything else as it is."""
    if _INTEGER.match(raw) and len(raw) <= _MAX_DIGITS:
        return int(raw)
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


@dataclass(frozen=True)
class UpscaleRequest:
    """A validated, normalised request. Build it with :func:`parse_request` (JSON),
    :meth:`RequestFields.build` (a form or flags) or directly: the checks below are the same.

    ``table`` is the level table whose levels ``levels`` and ``upscale_strength`` name (the
    default: the lab's nine); an engine with another table checks the request against its own
    (:meth:`with_table`). It is not part of the request's JSON or of its equality.
    ``upscale_strength`` None means "not given": the table's ``default_strength``
    (:attr:`strength`), resolved against whichever table the request is on."""

    url: str | None = None
    width: Length | None = None
    height: Length | None = None
    min_length: int | None = None
    fit: Fit = "canvas"
    padding: Length | None = None
    background_color: tuple[int, int, int] = (255, 255, 255)
    generative_upscale: bool = True
    upscale_strength: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    levels: tuple[int, ...] | None = None
    fidelity_floor: float | None = None  # dB of LR-consistency for the recommendation; None: the default
    output: OutputSpec = OutputSpec()  # how the answer is encoded (format, quality, metadata); checked there
    custom: CustomRecipe | None = None  # the lab extra: a level with its own recipe (beside ``levels``, or alone)
    region: Region | None = None  # the lab extra: a preview of this box of the input (pipelines/region.py)
    fast: bool = False  # the lab extra: the diffusion levels in the few-step fast mode (presets.FAST_MODE)
    table: presets.LevelTable = field(default=presets.TABLE, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Every value check lives here, so JSON parsing, form fields and direct construction
        # share them; the parsers only turn text and JSON shapes into these fields.
        if self.min_length is not None:
            ml = self.min_length
            if isinstance(ml, bool) or not isinstance(ml, int) or ml < 1:
                raise RequestError("min_length", f"must be a positive integer of pixels, got {ml!r}")
            if self.width is not None or self.height is not None:
                raise RequestError("min_length", "cannot be combined with width or height; give one or the other")
        if self.fit not in FITS:
            raise RequestError("fit", f"must be one of {list(FITS)}, got {self.fit!r}")
        if not isinstance(self.generative_upscale, bool):
            raise RequestError("generative_upscale", f"must be true or false, got {self.generative_upscale!r}")
        if self.upscale_strength is not None:
            _check_strength(self.upscale_strength, self.table)
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise RequestError("seed", f"must be an integer in 0..{MAX_SEED}, got {seed!r}")
        if self.levels is not None:
            object.__setattr__(self, "levels", _check_levels(self.levels, self.table))  # sorted, each once
        if self.custom is not None:
            if not isinstance(self.custom, CustomRecipe):
                raise RequestError("custom", f"must be a custom recipe, got {type(self.custom).__name__}")
            if self.custom.start_from is not None:
                _check_start_from(self.custom.start_from, self.table)
            if not self.generative_upscale:
                raise RequestError(
                    "custom", "cannot be combined with generative_upscale: false (set custom.lora_scale to 0 instead)"
                )
        if not isinstance(self.fast, bool):
            raise RequestError("fast", f"must be true or false, got {self.fast!r}")
        if self.fast and self.custom is not None:
            raise RequestError(
                "fast", "cannot be combined with custom (the custom level has its own steps and guidance)"
            )
        floor = self.fidelity_floor
        if floor is not None:
            if isinstance(floor, bool) or not isinstance(floor, int | float) or not math.isfinite(floor):
                raise RequestError("fidelity_floor", f"must be a number of dB, got {floor!r}")
            if not 0 <= floor <= presets.MAX_FIDELITY_FLOOR_DB:
                raise RequestError(
                    "fidelity_floor", f"must be in 0..{presets.MAX_FIDELITY_FLOOR_DB:g} dB, got {floor!r}"
                )
            object.__setattr__(self, "fidelity_floor", float(floor))

    @property
    def floor(self) -> float:
        """The fidelity floor the recommendation applies (dB of LR-consistency)."""
        return presets.DEFAULT_FIDELITY_FLOOR_DB if self.fidelity_floor is None else self.fidelity_floor

    @property
    def strength(self) -> int:
        """The strength level this request asks for: ``upscale_strength``, or its table's
        ``default_strength`` when none was given."""
        return self.table.default_strength if self.upscale_strength is None else self.upscale_strength

    @property
    def effective_levels(self) -> tuple[int, ...]:
        """The table's levels this request runs: ``levels`` if given, else none beside a
        ``custom`` level, else the single strength level (its non-generative twin when
        ``generative_upscale`` is false). The custom level is not among them (it is no level
        of the table): the engine adds it."""
        if self.levels is not None:
            return self.levels
        if self.custom is not None:  # the custom level alone
            return ()
        if not self.generative_upscale:
            return (self.table.non_generative_twin(self.strength).level,)
        return (self.strength,)

    def with_table(self, table: presets.LevelTable) -> UpscaleRequest:
        """This request on ``table`` (an engine's): its levels and strength checked against that
        table, a strength not given being that table's default. Raises RequestError naming
        ``levels`` or ``upscale_strength`` for a level the table lacks (``levels: each level
        must be an integer in 1..12, got 13``)."""
        return self if table is self.table else replace(self, table=table)

    def to_json(self) -> dict[str, Any]:
        """The normalised request in the API's JSON shape (replayable with parse_request)."""
        out: dict[str, Any] = {
            "width": _length_json(self.width),
            "height": _length_json(self.height),
            "min_length": self.min_length,
            "fit": self.fit,
            "padding": _length_json(self.padding),
            "background": {"color": "#{:02x}{:02x}{:02x}".format(*self.background_color)},
            "generative_upscale": self.generative_upscale,
            "upscale_strength": self.upscale_strength,
            "seed": self.seed,
            "negative_prompt": self.negative_prompt,
            "levels": list(self.levels) if self.levels is not None else None,
            "fidelity_floor": self.fidelity_floor,
            "custom": self.custom.to_json() if self.custom is not None else None,
            "region": self.region.to_json() if self.region is not None else None,
            "fast": True if self.fast else None,  # recorded when on: a normal request reads as before
        }
        if self.url is not None:
            out["url"] = self.url
        if self.prompt is not None:
            out["background"]["generate"] = {"adapter_type": "upscale", "description": self.prompt}
        out.update(self.output.to_json())
        return {k: v for k, v in out.items() if v is not None}


def _length_json(value: Length | None) -> int | str | None:
    return None if value is None else (str(value) if isinstance(value, Percent) else value)


def _check_levels(levels: object, table: presets.LevelTable) -> tuple[int, ...]:
    """Levels of ``table``, sorted, each once; RequestError naming ``levels`` otherwise."""
    if not isinstance(levels, list | tuple) or not levels:
        raise RequestError("levels", f"must be a non-empty list of levels {table.span}, got {levels!r}")
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, int) or not table.min_level <= lv <= table.max_level:
            raise RequestError("levels", f"each level must be an integer in {table.span}, got {lv!r}")
    return tuple(sorted(set(levels)))


def _check_strength(value: object, table: presets.LevelTable) -> int:
    """A level of ``table``; RequestError naming ``upscale_strength`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError("upscale_strength", f"must be an integer in {table.span}, got {value!r}")
    if not table.min_level <= value <= table.max_level:
        raise RequestError("upscale_strength", f"must be in {table.span}, got {value}")
    return value


MAX_PERCENT = 100_000.0  # ×1000: far beyond the output-pixel limit for any input


def parse_length(field: str, value: object, *, allow_zero: bool = False) -> Length:
    """Parse pixels (int) or a percentage string ``"N%"``; raises RequestError naming ``field``."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool):
        raise RequestError(field, f"must be an integer number of pixels or 'N%', got {value!r}")
    if isinstance(value, int):
        if value < low:
            raise RequestError(field, f"must be >= {low} pixels, got {value}")
        return value
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if not m:
            raise RequestError(field, f"must be pixels (integer) or a percentage like '200%', got {value!r}")
        pct = float(m.group(1))
        if pct <= 0 and not allow_zero:
            raise RequestError(field, f"percentage must be > 0%, got {value!r}")
        if pct > MAX_PERCENT:  # larger would overflow before the output-size limit could say so
            raise RequestError(field, f"percentage must be at most {MAX_PERCENT:g}%, got {value!r}")
        return Percent(pct)
    raise RequestError(field, f"must be an integer number of pixels or 'N%', got {value!r}")


def parse_length_text(field: str, text: str | None, *, allow_zero: bool = False) -> Length | None:
    """A length typed in a form field or given as a flag: ``"1280"`` (pixels) or ``"200%"``,
    whitespace around it allowed; None or blank = not given.

    The digits become an integer and go through :func:`parse_length`, so a form, a flag and the
    JSON get the same message (``width: must be >= 1 pixels, got -5``). Raises RequestError
    naming ``field``.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if _INTEGER.match(text):
        if len(text) > _MAX_DIGITS:  # int() refuses past 4300 digits; any size is far shorter
            raise RequestError(field, f"must be pixels or a percentage like '200%', got {len(text)} digits")
        return parse_length(field, int(text), allow_zero=allow_zero)
    return parse_length(field, text, allow_zero=allow_zero)


def draw_seed() -> int:
    """A fresh random seed in ``0..MAX_SEED``: the one draw for runs that were given none."""
    return secrets.randbelow(MAX_SEED + 1)


def parse_color(value: object) -> tuple[int, int, int]:
    if isinstance(value, str):
        m = _HEX_COLOR.match(value.strip())
        if m:
            h = m.group(1)
            return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    raise RequestError("background.color", f"must be a hex colour like '#ffffff', got {value!r}")


def _parse_background(value: object) -> tuple[tuple[int, int, int], str | None]:
    if not isinstance(value, Mapping):
        raise RequestError("background", f"must be an object, got {type(value).__name__}")
    unknown = set(value) - {"color", "generate"}
    if unknown:
        raise RequestError("background", f"unsupported field(s) {sorted(unknown)}; supported: color, generate")
    color = parse_color(value["color"]) if "color" in value else (255, 255, 255)
    prompt = None
    if "generate" in value:
        gen = value["generate"]
        if not isinstance(gen, Mapping):
            raise RequestError("background.generate", "must be an object")
        unknown = set(gen) - {"adapter_type", "description"}
        if unknown:
            raise RequestError(
                "background.generate",
                f"unsupported field(s) {sorted(unknown)}; supported: adapter_type, description",
            )
        adapter = gen.get("adapter_type", "upscale")
        if adapter != "upscale":
            raise RequestError(
                "background.generate.adapter_type",
                f"only 'upscale' is supported by this lab, got {adapter!r}",
            )
        desc = gen.get("description")
        if desc is not None:
            prompt = _parse_prompt("background.generate.description", desc)
    return color, prompt


def _parse_prompt(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise RequestError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > presets.MAX_PROMPT_CHARS:
        raise RequestError(field, f"is {len(value)} characters; at most {presets.MAX_PROMPT_CHARS} are allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") passes JSON but not the tokenizer or the manifest
        raise RequestError(field, f"contains a character that cannot be encoded at position {exc.start}") from None
    return value.strip()


def _parse_levels(value: object, table: presets.LevelTable) -> object:
    """``"all"`` → every level; a list passes on to UpscaleRequest, which checks and sorts it."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return table.numbers
        raise RequestError("levels", f"must be a list of levels {table.span} or 'all', got {value!r}")
    return value


def parse_request(data: Mapping[str, Any], *, table: presets.LevelTable = presets.TABLE) -> UpscaleRequest:
    """Validate the API JSON (already decoded) into an :class:`UpscaleRequest`: the JSON's
    shapes (length strings, the background object, ``"all"``) become fields here, and
    UpscaleRequest checks every value; ``levels`` and ``upscale_strength`` against ``table``
    (the engine's that will run it; the default: the lab's nine levels).

    Raises RequestError naming the first offending field and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise RequestError("request", f"must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(TOP_LEVEL_FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"is not supported by this lab; supported fields: {list(TOP_LEVEL_FIELDS)}")
    kw: dict[str, Any] = {}
    if data.get("url") is not None:
        if not isinstance(data["url"], str) or not data["url"].strip():
            raise RequestError("url", "must be a non-empty string")
        kw["url"] = data["url"].strip()
    for name in ("width", "height"):
        if data.get(name) is not None:
            kw[name] = parse_length(name, data[name])
    if data.get("padding") is not None:
        kw["padding"] = parse_length("padding", data["padding"], allow_zero=True)
    if data.get("background") is not None:
        kw["background_color"], kw["prompt"] = _parse_background(data["background"])
    if data.get("negative_prompt") is not None:
        kw["negative_prompt"] = _parse_prompt("negative_prompt", data["negative_prompt"])
    if data.get("levels") is not None:
        kw["levels"] = _parse_levels(data["levels"], table)
    if data.get("custom") is not None:
        kw["custom"] = parse_custom(data["custom"])
    if data.get("region") is not None:  # checked against the input's size when it is loaded
        kw["region"] = parse_region(data["region"])
    for name in ("min_length", "seed", "fidelity_floor"):  # null = not given
        if data.get(name) is not None:
            kw[name] = data[name]
    for name in ("fit", "generative_upscale", "fast"):  # null is a wrong value
        if name in data:
            kw[name] = data[name]
    if "upscale_strength" in data:  # null is a wrong value here too, not "the table's default"
        if data["upscale_strength"] is None:
            _check_strength(None, table)  # raises, naming the field
        kw["upscale_strength"] = data["upscale_strength"]
    return UpscaleRequest(**kw, output=parse_output(data), table=table)


INLINE_IMAGE_FIELD = "image_base64"  # the lab's extra beside "url": the image itself, in base64


def take_inline_image(data: dict[str, Any]) -> bytes | None:
    """Remove the lab extra ``image_base64`` from the request JSON ``data`` and return its
    decoded bytes (None when absent or null), so that :func:`parse_request` sees the API's
    fields only. One rule for every door (REST, ``cli.py upscale --request``); the bytes are
    then an image to check with ``pipelines.imaging.load_image`` (format and size limits).

    Raises RequestError naming ``url`` when both are given, ``image_base64`` when it is not
    base64 text.
    """
    b64 = data.pop(INLINE_IMAGE_FIELD, None)
    if b64 is None:
        return None
    if data.get("url") is not None:
        raise RequestError("url", f"give either 'url' or '{INLINE_IMAGE_FIELD}', not both")
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RequestError(INLINE_IMAGE_FIELD, "is not valid base64") from exc


@dataclass(frozen=True, kw_only=True)
class RequestFields:
    """The request as flat fields: the app's form and the CLI's flags both become one of these,
    and :meth:`build` is where either becomes an :class:`UpscaleRequest`.

    None = not given. ``width``, ``height`` and ``padding`` are text as typed (see
    :func:`parse_length_text`; blank = not given); ``background`` a hex colour; a blank
    ``prompt`` is not given (the preset prompt), a blank ``negative_prompt`` asks for none;
    ``seed`` may come from a number box as a float, which must be whole. ``output_format``,
    ``quality``, ``max_file_size`` (bytes or text like ``"1MB"``) and ``strip_metadata`` are
    laid over the base's output fields (:class:`pipelines.output.OutputSpec` checks them);
    ``custom``'s given fields over the base's ``custom`` object.
    """

    width: str | None = None
    height: str | None = None
    padding: str | None = None
    min_length: int | None = None
    fit: str | None = None
    background: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: float | None = None
    upscale_strength: int | None = None
    generative_upscale: bool | None = None
    levels: Sequence[int] | None = None
    fidelity_floor: float | None = None
    custom: CustomRecipe | None = None
    region: str | None = None  # "x,y,width,height" in input pixels
    fast: bool | None = None
    output_format: str | None = None
    quality: int | None = None
    max_file_size: str | int | None = None
    strip_metadata: bool | None = None

    def build(
        self, base: Mapping[str, Any] | None = None, *, table: presets.LevelTable = presets.TABLE
    ) -> UpscaleRequest:
        """The fields laid over the API JSON ``base`` (a request file; the fields win), validated;
        levels against ``table`` (the engine's that will run it).

        Raises RequestError naming the first offending field and what is allowed.
        """
        request = parse_request(base if base is not None else {}, table=table)
        changes: dict[str, Any] = {}
        for name, allow_zero in (("width", False), ("height", False), ("padding", True)):
            length = parse_length_text(name, getattr(self, name), allow_zero=allow_zero)
            if length is not None:
                changes[name] = length
        if self.background is not None:
            changes["background_color"] = parse_color(self.background)
        if self.prompt is not None and self.prompt.strip():
            changes["prompt"] = _parse_prompt("background.generate.description", self.prompt)
        if self.negative_prompt is not None:
            changes["negative_prompt"] = _parse_prompt("negative_prompt", self.negative_prompt)
        if self.seed is not None:
            changes["seed"] = _whole_seed(self.seed)
        if self.levels is not None:
            changes["levels"] = tuple(self.levels)
        for name in ("min_length", "fit", "upscale_strength", "generative_upscale", "fidelity_floor", "fast"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        if self.custom is not None:  # its fields over the base's custom object
            over = request.custom.to_json() if request.custom is not None else {}
            changes["custom"] = CustomRecipe(**{**over, **self.custom.to_json()})
        if self.region is not None and self.region.strip():
            changes["region"] = parse_region_text(self.region)
        output = self._output(request.output)
        if output != request.output:
            changes["output"] = output
        return replace(request, **changes)

    def _output(self, base: OutputSpec) -> OutputSpec:
        """``base`` with the output fields that were given (a new format drops the base's
        quality and size target, which belong to the format they were given for)."""
        changes: dict[str, Any] = {}
        if self.output_format is not None and self.output_format.lower() != base.format:
            changes.update(format=self.output_format.lower(), quality=None, max_file_size=None, lossless=False)
        if self.quality is not None:
            changes["quality"] = self.quality
        if self.max_file_size is not None:
            size = self.max_file_size
            changes["max_file_size"] = parse_file_size(int(size) if isinstance(size, str) and size.isdigit() else size)
        if self.strip_metadata is not None:
            changes["strip_metadata"] = self.strip_metadata
        return replace(base, **changes) if changes else base


def _whole_seed(seed: float) -> int | float:
    """A number box's float as an integer when it is whole (UpscaleRequest checks the range)."""
    if isinstance(seed, float):
        if not seed.is_integer():
            raise RequestError("seed", f"must be a whole number, got {seed}")
        return int(seed)
    return seed


# --------------------------------------------------------------------------- sizing


@dataclass(frozen=True)
class SizePlan:
    """Where the output comes from and where it goes.

    ``crop``: box (left, top, right, bottom) of the input actually used;
    ``content``: (width, height) the cropped input is upscaled to;
    ``canvas``: (width, height) of the final image; ``offset``: (x, y) of the content in it.
    """

    crop: tuple[int, int, int, int]
    content: tuple[int, int]
    canvas: tuple[int, int]
    offset: tuple[int, int]

    @property
    def scale(self) -> float:
        """Output pixels per input pixel (horizontally): what a print size scales by."""
        return self.content[0] / max(1, self.crop[2] - self.crop[0])


def simplest_ratio(width: int, height: int) -> Fraction:
    """The simplest fraction within half a pixel of ``width / height``.

    Pixel sizes are rounded measurements: 640×427 is a 3:2 image rounded to whole pixels, so
    its ratio is taken as 3/2 (which is why ``height: 1000`` gives 1500, not 1499).
    """
    lo = Fraction(2 * width - 1, 2 * height + 1)
    hi = Fraction(2 * width + 1, max(2 * height - 1, 1))
    return _simplest_between(lo, hi)


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """Stern–Brocot: the fraction with the smallest denominator in [lo, hi] (0 < lo <= hi)."""
    fl = math.floor(lo)
    if fl == lo:
        return Fraction(fl)
    if fl + 1 <= hi:
        return Fraction(fl + 1)
    rest = _simplest_between(1 / (hi - fl), 1 / (lo - fl))
    return fl + 1 / rest


def follow_ratio(ratio: Fraction, *, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """The one sizing rule: exactly one of ``width``/``height`` is given, the other side is it
    times ``ratio`` (width / height, see :func:`simplest_ratio`), rounded, at least 1 px.

    ``width``, ``height`` and ``min_length`` (which sets the shorter side) all go through it,
    so ``height: 1000`` and ``min_length: 1000`` give the same size on a landscape photo.
    """
    if width is not None and height is None:
        return (width, max(1, round(width / ratio)))
    if height is not None and width is None:
        return (max(1, round(height * ratio)), height)
    raise ValueError(f"follow_ratio: give exactly one of width and height, got {width=}, {height=}")


def _resolve(field: str, value: Length, reference: int) -> int:
    px = value.of(reference) if isinstance(value, Percent) else value
    if px < 1:
        raise RequestError(field, f"resolves to {px} px; it must be at least 1 px")
    return px


def plan_size(
    input_size: tuple[int, int],
    request: UpscaleRequest,
    *,
    max_output_pixels: int = presets.MAX_OUTPUT_PIXELS,
) -> SizePlan:
    """Compute crop, content and canvas once (pure). Raises RequestError for impossible sizes."""
    iw, ih = input_size
    if iw < 1 or ih < 1:
        raise RequestError("image", f"has no pixels ({iw}×{ih})")
    ratio = simplest_ratio(iw, ih)
    crop = (0, 0, iw, ih)
    w_req = _resolve("width", request.width, iw) if request.width is not None else None
    h_req = _resolve("height", request.height, ih) if request.height is not None else None
    ref = w_req or h_req or 0
    pad = 0
    if request.padding is not None:
        pad = request.padding.of(ref) if isinstance(request.padding, Percent) else request.padding

    if w_req is not None and h_req is not None:
        aw, ah = w_req - 2 * pad, h_req - 2 * pad
        if aw < 1 or ah < 1:
            raise RequestError("padding", f"{pad} px on each side leaves no room in {w_req}×{h_req}")
        box_ratio = Fraction(aw, ah)
        fit_inside = request.fit in ("canvas", "bounds")
        width_limited = (box_ratio <= ratio) if fit_inside else (box_ratio >= ratio)
        content = follow_ratio(ratio, width=aw) if width_limited else follow_ratio(ratio, height=ah)
        if request.fit == "crop":
            crop = _centre_crop(iw, ih, box_ratio)
            content = (aw, ah)
        if request.fit in ("canvas", "crop"):
            canvas = (w_req, h_req)
        else:
            canvas = (content[0] + 2 * pad, content[1] + 2 * pad)
    else:
        if w_req is not None:
            content = follow_ratio(ratio, width=w_req - 2 * pad)
        elif h_req is not None:
            content = follow_ratio(ratio, height=h_req - 2 * pad)
        else:
            if request.min_length is not None and request.min_length > min(iw, ih):
                # The shorter side set to min_length is a width or height request: same rule.
                ml = request.min_length
                content = follow_ratio(ratio, width=ml) if iw < ih else follow_ratio(ratio, height=ml)
            else:
                factor = 1.0 if request.min_length is not None else presets.DEFAULT_SCALE_PERCENT / 100.0
                # A pure scale factor needs no ratio: both sides scale by it.
                content = (max(1, round(iw * factor)), max(1, round(ih * factor)))
            if request.padding is not None and isinstance(request.padding, Percent):
                pad = request.padding.of(max(content))
        if content[0] < 1 or content[1] < 1:
            raise RequestError("padding", f"{pad} px on each side leaves no room for the image")
        canvas = (content[0] + 2 * pad, content[1] + 2 * pad)

    if canvas[0] * canvas[1] > max_output_pixels or content[0] * content[1] > max_output_pixels:
        big = canvas if canvas[0] * canvas[1] >= content[0] * content[1] else content
        field = "width" if request.width is not None else "height" if request.height else "size"
        raise RequestError(
            field,
            f"output would be {big[0]}×{big[1]} = {big[0] * big[1] / 1e6:.1f} MP; "
            f"the limit is {max_output_pixels / 1e6:.1f} MP",
        )
    offset = ((canvas[0] - content[0]) // 2, (canvas[1] - content[1]) // 2)
    return SizePlan(crop=crop, content=content, canvas=canvas, offset=offset)


def _centre_crop(iw: int, ih: int, box_ratio: Fraction) -> tuple[int, int, int, int]:
    if Fraction(iw, ih) > box_ratio:  # input wider than the box: trim the sides
        cw = max(1, round(ih * box_ratio))
        x0 = (iw - cw) // 2
        return (x0, 0, x0 + cw, ih)
    ch = max(1, round(iw / box_ratio))
    y0 = (ih - ch) // 2
    return (0, y0, iw, y0 + ch)
