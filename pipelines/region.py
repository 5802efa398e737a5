"""A preview on a region of the input: the levels for a box of the input only, at the scale the
whole image would get (issue 20, point 2).

The region is given in input pixels (``{"x", "y", "width", "height"}``) and checked against the
input's size; :func:`region_run` turns a whole-image request into the request for the box
(its output size is the box times the whole image's scale; no padding, no canvas) and the
cropped input. The default box is the most detailed window (:func:`most_detailed_window`, by
gradient energy). A preview is a preview: the diffusion of the box sees only the box, so its
tiles fall elsewhere than in the whole image's run, and the levels' images match the whole
run's in kind, not bit for bit. A whole run started from a preview is the request without
``region``: it equals a direct run (same seed, same request)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipelines.errors import RequestError
from pipelines.imaging import LoadedImage

if TYPE_CHECKING:  # pipelines.request imports this module (its ``region`` field)
    from pipelines.request import UpscaleRequest

FIELDS = ("x", "y", "width", "height")
DEFAULT_PREVIEW_OUTPUT = 512  # pixels of output on the default window's longer side
MIN_REGION = 8  # input pixels on a side: smaller boxes say nothing


@dataclass(frozen=True)
class Region:
    """A box of the input in pixels: left ``x``, top ``y``, ``width`` × ``height``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"x {self.x}, y {self.y}, {self.width}×{self.height}"


def parse_region(value: object, input_size: tuple[int, int] | None = None) -> Region:
    """``region`` from JSON (an object with the four whole-number fields), checked against
    ``input_size`` when it is known. Raises RequestError naming ``region`` or ``region.<field>``."""
    if not isinstance(value, Mapping):
        raise RequestError(
            "region", f'must be an object {{"x", "y", "width", "height"}} in input pixels, got {value!r}'
        )
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise RequestError(f"region.{unknown[0]}", f"is not a region field (the fields: {', '.join(FIELDS)})")
    numbers: dict[str, int] = {}
    for name in FIELDS:
        if name not in value:
            raise RequestError(f"region.{name}", "is missing: a region needs x, y, width and height")
        v = value[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v):
            raise RequestError(f"region.{name}", f"must be a whole number of input pixels, got {v!r}")
        numbers[name] = int(v)
    region = Region(**numbers)
    check_region(region, input_size)
    return region


def parse_region_text(text: str) -> Region:
    """``"x,y,width,height"`` (the CLI's ``--region`` and the lab's box) as a Region."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(FIELDS) or not all(re.fullmatch(r"-?[0-9]+", p) for p in parts):
        raise RequestError(
            "region", f"must be x,y,width,height in whole input pixels, e.g. 100,80,256,256; got {text!r}"
        )
    return parse_region(dict(zip(FIELDS, (int(p) for p in parts), strict=True)))


def check_region(region: Region, input_size: tuple[int, int] | None) -> None:
    """Raises RequestError naming the field when ``region`` is not a box of at least
    :data:`MIN_REGION` px on a side inside an input of ``input_size`` (None: not known yet)."""
    for name in ("x", "y"):
        if getattr(region, name) < 0:
            raise RequestError(f"region.{name}", f"must be 0 or more, got {getattr(region, name)}")
    for name in ("width", "height"):
        if getattr(region, name) < MIN_REGION:
            raise RequestError(f"region.{name}", f"must be at least {MIN_REGION} px, got {getattr(region, name)}")
    if input_size is None:
        return
    iw, ih = input_size
    if region.x + region.width > iw:
        raise RequestError(
            "region.width", f"x + width = {region.x + region.width} goes past the input's width, {iw} px (0..{iw})"
        )
    if region.y + region.height > ih:
        raise RequestError(
            "region.height", f"y + height = {region.y + region.height} goes past the input's height, {ih} px (0..{ih})"
        )


def scale_of(input_size: tuple[int, int], request: UpscaleRequest) -> tuple[float, float]:
    """Output pixels per input pixel (x, y) of the whole image's run of ``request``."""
    from pipelines.request import plan_size

    plan = plan_size(input_size, request)
    left, top, right, bottom = plan.crop
    return plan.content[0] / (right - left), plan.content[1] / (bottom - top)


def region_request(request: UpscaleRequest, input_size: tuple[int, int], region: Region) -> UpscaleRequest:
    """The request for ``region`` alone: its output is the region at the whole run's scale
    (both sides given, ``fit: crop`` so it is exactly that size), without padding."""
    check_region(region, input_size)
    sx, sy = scale_of(input_size, request)
    width, height = max(1, round(region.width * sx)), max(1, round(region.height * sy))
    return dataclasses.replace(
        request, width=width, height=height, min_length=None, fit="crop", padding=None, region=None, table=request.table
    )


def crop_image(image: LoadedImage, region: Region) -> LoadedImage:
    """``image`` cut to ``region``; its identity (``sha256``, the engine's cache key) is the
    source's and the box, so a preview never takes a whole image's cached base."""
    tag = hashlib.sha256(f"{image.sha256}:{region.box}".encode()).hexdigest()
    return dataclasses.replace(
        image,
        rgb=image.rgb.crop(region.box),
        alpha=image.alpha.crop(region.box) if image.alpha is not None else None,
        sha256=tag,
    )


def region_run(image: LoadedImage, request: UpscaleRequest, region: Region) -> tuple[LoadedImage, UpscaleRequest]:
    """The cropped input and the request that preview ``region`` of ``image``."""
    return crop_image(image, region), region_request(request, image.size, region)


def most_detailed_window(rgb: Image.Image, size: tuple[int, int]) -> Region:
    """The window of ``size`` (clamped to the image) with the most gradient energy (the sum of
    the luminance gradient's magnitude): where the levels differ most. Ties: the first, top-left."""
    iw, ih = rgb.size
    w, h = min(size[0], iw), min(size[1], ih)
    luma = np.asarray(rgb.convert("L"), dtype=np.float64)
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    integral = np.zeros((ih + 1, iw + 1))
    integral[1:, 1:] = energy.cumsum(0).cumsum(1)
    sums = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return Region(int(x), int(y), w, h)


def default_region(image: LoadedImage, request: UpscaleRequest, *, output_side: int = DEFAULT_PREVIEW_OUTPUT) -> Region:
    """The most detailed window whose output is about ``output_side`` px on its longer side,
    and at most half the input's shorter side (a preview of the whole image saves nothing)."""
    sx, sy = scale_of(image.size, request)
    side = max(MIN_REGION, min(round(output_side / max(sx, sy)), min(image.size) // 2))
    return most_detailed_window(image.rgb, (side, side))


def describe(region: Region, request: UpscaleRequest, input_size: tuple[int, int]) -> str:
    """What a preview's grid says about itself."""
    preview = region_request(request, input_size, region)
    return (
        f"Region preview: input {region} (of {input_size[0]}×{input_size[1]}) → "
        f"{preview.width}×{preview.height} px of output, at the whole image's scale"
    )


def preview(engine: Any, image: LoadedImage, request: UpscaleRequest, region: Region, **run: Any) -> Any:
    """``engine.run`` (a ``pipelines.engine.Engine``) on ``region`` of ``image``. The result's
    manifest is the whole input's and the request with its ``region`` (so it replays on the
    whole input), plus ``preview``: the region and the request the box ran with."""
    cropped, asked = region_run(image, request, region)
    result = engine.run(cropped, asked, **run)
    # what replays it: the whole input and the request with its region (and the seed drawn)
    whole = {**request.to_json(), "region": region.to_json(), "seed": result.seed}
    result.manifest["preview"] = {"region": region.to_json(), "box_request": result.manifest.get("request")}
    result.manifest["request"] = whole
    result.manifest["input"] = {**result.manifest.get("input", {}), "sha256": image.sha256, "size": list(image.size)}
    return result


def estimates(
    engine: Any, image: LoadedImage, request: UpscaleRequest, region: Region
) -> tuple[float | None, float | None]:
    """Seconds the engine expects for the preview of ``region`` and for the whole image (None
    before it has measured the stages they need), from its own measured costs."""
    _, asked = region_run(image, request, region)
    jpeg = image.format == "JPEG"
    return (
        engine.estimate_seconds((region.width, region.height), asked, jpeg=jpeg),
        engine.estimate_seconds(image.size, request, jpeg=jpeg),
    )
