"""Metrics as pure functions on aligned arrays (``data_range`` explicit: 1.0 for floats in
[0, 1], 255 for 8-bit pixels).

``METRICS`` (the engine's scores of every level) and ``SR_METRICS`` (the evaluation's, against
a ground truth) list each with its label, unit and direction. PSNR of identical images is ``inf``
(reported as such in JSON as the string "inf"); nothing crashes on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from pipelines.convert import pil_to_array

STRIP_ROWS = 256  # metrics work on row strips: memory stays flat whatever the image size
SSIM_RADIUS = 5  # the Gaussian window's radius (σ = 1.5, truncate 3.5): an 11×11 window


def _strips(height: int, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
    stop = height if stop is None else stop
    return [(y, min(stop, y + STRIP_ROWS)) for y in range(start, stop, STRIP_ROWS)]


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical inputs. Shapes must match.

    Any dtype (uint8 with ``data_range=255`` saves the float copies); summed in row strips.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("psnr: empty images")
    squared = 0.0
    for y0, y1 in _strips(a.shape[0]):
        d = a[y0:y1].astype(np.float64) - b[y0:y1].astype(np.float64)
        squared += float(np.vdot(d, d))
    mse = squared / a.size
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> float:
    """SSIM with an 11×11 Gaussian window (σ = 1.5, population covariance) — the convention
    of the SR literature (Wang et al. 2004). ``(H, W)`` or ``(H, W, C)`` arrays, any dtype.

    Scored in row strips, each with the window's radius of context: the mean SSIM map is
    scikit-image's on the whole image (it averages the map without a 5-pixel border, which is
    exactly what the strips cover), and memory stays flat. Integer input is converted to
    float64 by scikit-image, one strip at a time.
    """
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    kw = {"channel_axis": -1} if a.ndim == 3 else {}
    side = min(a.shape[:2])
    if side < 3:
        return math.nan  # no window fits: SSIM is undefined for images this small
    if side < 11:
        win = side if side % 2 else side - 1
        return float(structural_similarity(a, b, data_range=data_range, win_size=win, **kw))
    r = SSIM_RADIUS
    total, count = 0.0, 0
    for y0, y1 in _strips(a.shape[0], r, a.shape[0] - r):  # the rows scikit-image averages over
        _, smap = structural_similarity(
            a[y0 - r : y1 + r],
            b[y0 - r : y1 + r],
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            full=True,
            **kw,
        )
        inner = smap[r:-r, r:-r]
        total += float(inner.sum(dtype=np.float64))
        count += inner.size
    return total / count


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(H, W, 3)`` RGB in [0, 1], as in MATLAB's rgb2ycbcr: Y in [16, 235]/255."""
    return (16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def shave(a: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on every side (the SR papers' convention: border = scale)."""
    if border <= 0:
        return a
    return a[border:-border, border:-border]


def downscale(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Antialiased bicubic resize (what LR-consistency and the eval's LR inputs use)."""
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def lr_consistency(output: Image.Image, low_res: Image.Image) -> float:
    """PSNR (dB) between ``output`` and its input ``low_res``, compared at the smaller of the
    two sizes: how far the output contradicts its own input (higher = more consistent).

    Both are brought to (min of the widths, min of the heights) by :func:`downscale`, so only
    ever shrunk: an upscaled output is downscaled back to the input's size (the usual
    definition); an output smaller than its input is compared with the input downscaled to
    the output's size (scaling the output up instead would score the resize's blur, about
    25 dB whatever the level). An output equal to its input resized that way scores ``inf``.
    Both images must have the same mode.
    """
    common = (min(output.width, low_res.width), min(output.height, low_res.height))
    return psnr(pil_to_array(downscale(output, common)), pil_to_array(downscale(low_res, common)))


@dataclass(frozen=True)
class MetricSpec:
    """One score: its ``key`` in result dicts, ``name`` and ``unit`` for headers, its direction
    and the decimals it is shown with. ``higher_is_better`` is None for a distance from the
    bicubic baseline: it measures change, and neither more nor less change is better."""

    key: str
    name: str
    unit: str
    higher_is_better: bool | None
    description: str
    decimals: int = 2

    @property
    def label(self) -> str:
        """``name (unit)``, or the name alone for unitless scores."""
        return f"{self.name} ({self.unit})" if self.unit else self.name


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        key="psnr_vs_bicubic",
        name="PSNR vs bicubic",
        unit="dB",
        higher_is_better=None,
        description="distance from the bicubic baseline (level 8): measures change, not quality",
    ),
    MetricSpec(
        key="ssim_vs_bicubic",
        name="SSIM vs bicubic",
        unit="",
        higher_is_better=None,
        description="structural similarity to the bicubic baseline: measures change, not quality",
        decimals=4,
    ),
    MetricSpec(
        key="lr_consistency",
        name="LR-consistency",
        unit="dB",
        higher_is_better=True,
        description="PSNR of the output against its input, both at the smaller of their sizes "
        "(an upscale is downscaled back)",
    ),
    MetricSpec(
        key="psnr_vs_gt",
        name="PSNR vs ground truth",
        unit="dB",
        higher_is_better=True,
        description="fidelity to a ground-truth image, when one is given",
    ),
    MetricSpec(
        key="ssim_vs_gt",
        name="SSIM vs ground truth",
        unit="",
        higher_is_better=True,
        description="structural fidelity to a ground truth, when one is given",
        decimals=4,
    ),
)
# What :func:`sr_scores` returns: the SR papers' fidelity scores against a ground truth.
SR_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        key="psnr_y",
        name="PSNR-Y",
        unit="dB",
        higher_is_better=True,
        description="PSNR on BT.601 luma against the ground truth, border shaved",
    ),
    MetricSpec(
        key="ssim_y",
        name="SSIM-Y",
        unit="",
        higher_is_better=True,
        description="SSIM on BT.601 luma against the ground truth, border shaved",
        decimals=4,
    ),
    MetricSpec(
        key="psnr_rgb",
        name="PSNR-RGB",
        unit="dB",
        higher_is_better=True,
        description="PSNR on RGB against the ground truth, border shaved",
    ),
    MetricSpec(
        key="ssim_rgb",
        name="SSIM-RGB",
        unit="",
        higher_is_better=True,
        description="SSIM on RGB against the ground truth, border shaved",
        decimals=4,
    ),
)
METRIC_BY_KEY = {m.key: m for m in (*METRICS, *SR_METRICS)}


def score_level(
    output: Image.Image, baseline: Image.Image, low_res: Image.Image, ground_truth: Image.Image | None = None
) -> dict[str, float]:
    """All metrics of one level (RGB, at the output size), on the 8-bit pixels in strips."""
    out = np.asarray(output)
    base = np.asarray(baseline)
    scores = {
        "psnr_vs_bicubic": psnr(out, base, data_range=255.0),
        "ssim_vs_bicubic": ssim(out, base, data_range=255.0),
        "lr_consistency": lr_consistency(output, low_res),
    }
    if ground_truth is not None:
        gt = np.asarray(
            ground_truth.resize(output.size, Image.Resampling.BICUBIC)
            if ground_truth.size != output.size
            else ground_truth
        )
        scores["psnr_vs_gt"] = psnr(out, gt, data_range=255.0)
        scores["ssim_vs_gt"] = ssim(out, gt, data_range=255.0)
    return scores


def json_number(value: float) -> float | str | None:
    """JSON has no infinity or NaN: ``inf`` becomes the string "inf", NaN becomes null."""
    if math.isnan(value):
        return None
    return "inf" if math.isinf(value) else round(value, 4)


def to_y_uint8(image: Image.Image) -> np.ndarray:
    """BT.601 Y of an 8-bit image, rounded to integers as MATLAB's ``rgb2ycbcr`` does on
    uint8 input (the SR papers' evaluation code); float64 array in [16, 235]."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return np.round(rgb_to_y(rgb) * 255.0)


def sr_scores(output: Image.Image, ground_truth: Image.Image, *, scale: int) -> dict[str, float]:
    """The SR papers' fidelity scores (``SR_METRICS``): PSNR/SSIM on Y (BT.601, 16–235,
    rounded) and on RGB, with ``scale`` pixels shaved from every border. Sizes must match."""
    if output.size != ground_truth.size:
        raise ValueError(f"sr_scores: sizes differ {output.size} vs {ground_truth.size}")
    y_out, y_gt = shave(to_y_uint8(output), scale), shave(to_y_uint8(ground_truth), scale)
    rgb_out = shave(np.asarray(output.convert("RGB"), dtype=np.float64), scale)
    rgb_gt = shave(np.asarray(ground_truth.convert("RGB"), dtype=np.float64), scale)
    return {
        "psnr_y": psnr(y_out, y_gt, data_range=255.0),
        "ssim_y": ssim(y_out, y_gt, data_range=255.0),
        "psnr_rgb": psnr(rgb_out, rgb_gt, data_range=255.0),
        "ssim_rgb": ssim(rgb_out, rgb_gt, data_range=255.0),
    }
