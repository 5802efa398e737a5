"""Metrics as pure functions on aligned arrays (``data_range`` explicit: 1.0 for floats in
[0, 1], 255 for 8-bit pixels).

``METRICS`` lists each with its label and direction. PSNR of identical images is ``inf``
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
    """PSNR (dB) of ``output`` downscaled to ``low_res``'s size against ``low_res``: how far
    the output contradicts its own input (higher = more consistent)."""
    return psnr(pil_to_array(downscale(output, low_res.size)), pil_to_array(low_res))


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    higher_is_better: bool
    description: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "psnr_vs_bicubic",
        "PSNR vs bicubic (dB)",
        True,
        "distance from the bicubic baseline (level 8): measures change, not quality",
    ),
    MetricSpec("ssim_vs_bicubic", "SSIM vs bicubic", True, "structural similarity to the bicubic baseline"),
    MetricSpec(
        "lr_consistency",
        "LR-consistency (dB)",
        True,
        "PSNR of the output downscaled back to the input size, against the input",
    ),
    MetricSpec("psnr_vs_gt", "PSNR vs ground truth (dB)", True, "fidelity to a ground-truth image, when one is given"),
    MetricSpec("ssim_vs_gt", "SSIM vs ground truth", True, "structural fidelity to a ground truth, when one is given"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


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
    """The SR papers' fidelity scores: PSNR/SSIM on Y (BT.601, 16–235, rounded) and on RGB,
    with ``scale`` pixels shaved from every border. Sizes must match."""
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
