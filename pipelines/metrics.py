"""Metrics as pure functions on aligned arrays (``data_range`` explicit: 1.0 for floats in
[0, 1], 255 for 8-bit pixels).

``METRICS`` is the one registry: each score declared once (key, label, unit, direction, what
it needs, its function). The engine, the lab's table and captions, the CSV/Markdown, the
manifest, the REST JSON, ``cli.py iqa`` and ``evaluate.py`` all iterate it. PSNR of identical images is ``inf``
(reported as such in JSON as the string "inf"); nothing crashes on it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from pipelines.convert import pil_to_array
from pipelines.guards import FACE_DISTANCE_LIMIT, TEXT_CER_LIMIT
from pipelines.strips import strips

if TYPE_CHECKING:
    from pipelines.guards import Face, TextLine
    from pipelines.quality import NiqeChannel

SSIM_RADIUS = 5  # the Gaussian window's radius (σ = 1.5, truncate 3.5): an 11×11 window


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical inputs. Shapes must match.

    Any dtype (uint8 with ``data_range=255`` saves the float copies); summed in row strips.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("psnr: empty images")
    squared = 0.0
    for y0, y1 in strips(a.shape[0], a.shape[1]):
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
    exactly what the strips cover), and memory stays flat. Integer input (the engine's 8-bit
    levels) is scored in float32, one strip at a time: 1.7× faster than scikit-image's float64,
    and the mean moves by less than 1e-6 (the strips' sums are float64); float input keeps its
    dtype (the evaluation's float64 Y channel is scored as the papers' code scores it).
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
    work = np.float32 if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer) else None
    total, count = 0.0, 0
    for y0, y1 in strips(a.shape[0], a.shape[1], r, a.shape[0] - r):  # the rows scikit-image averages over
        _, smap = structural_similarity(
            a[y0 - r : y1 + r].astype(work or a.dtype, copy=False),
            b[y0 - r : y1 + r].astype(work or b.dtype, copy=False),
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


Direction = Literal["higher", "lower", "change"]
Scope = Literal["level", "evaluation"]


@dataclass(frozen=True)
class ScoreInput:
    """What a metric may look at, for one level: its ``output`` (RGB, the content size), the
    bicubic ``baseline`` (same size), the ``low_res`` input, an optional ``ground_truth``, the
    tile ``seams`` of the path that made it (boundary columns and rows, or None when it was
    not tiled), for the evaluation's scores, the ``shave`` border, and the luma NIQE scores
    (``niqe_channel``, a key of ``pipelines.quality.NIQE_CHANNELS``). Values several metrics
    share (the colour drift pair, the SR scores) are computed once per input."""

    output: Image.Image
    baseline: Image.Image | None = None
    low_res: Image.Image | None = None
    ground_truth: Image.Image | None = None
    seams: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    shave: int = 0
    check: Callable[[], None] | None = None  # called between metrics and strips (the engine's cancel)
    niqe_channel: NiqeChannel = "y"

    @functools.cached_property
    def drift(self) -> tuple[float, float]:
        from pipelines.quality import colour_drift

        assert self.baseline is not None
        return colour_drift(self.output, self.baseline, on_strip=self.check)

    @functools.cached_property
    def faces(self) -> tuple[Face, ...] | None:
        """The baseline's faces (found once per baseline); None without a baseline or a face,
        so that the face guard's metrics do not apply and cost nothing."""
        from pipelines.guards import baseline_faces

        return (baseline_faces(self.baseline) or None) if self.baseline is not None else None

    @functools.cached_property
    def text_lines(self) -> tuple[TextLine, ...] | None:
        """The baseline's text lines (read once per baseline); None without a baseline or text."""
        from pipelines.guards import baseline_text

        return (baseline_text(self.baseline) or None) if self.baseline is not None else None

    @functools.cached_property
    def gt_at_output_size(self) -> np.ndarray:
        assert self.ground_truth is not None
        gt = self.ground_truth
        return np.asarray(gt.resize(self.output.size, Image.Resampling.BICUBIC) if gt.size != self.output.size else gt)

    @functools.cached_property
    def sr(self) -> dict[str, float]:
        assert self.ground_truth is not None
        return sr_scores(self.output, self.ground_truth, scale=self.shave)


@dataclass(frozen=True)
class Metric:
    """One score, declared once: its ``key`` in result dicts, ``name`` and ``unit`` for headers,
    the decimals it is shown with, its ``direction`` ("higher"/"lower" is better, or "change":
    a distance from the bicubic baseline, where neither more nor less is better), what it
    ``needs`` besides the output ("baseline", "low_res", "ground_truth", "seams", and the
    baseline's "faces" or "text_lines" for the guards), its
    ``scope`` ("level": the engine scores every level with it; "evaluation": the SR papers'
    scores against a ground truth), ``fn``, which computes it from a :class:`ScoreInput`, and
    its ``short`` name in grid captions (captions show the metrics that have one), and for a
    guard, the ``limit`` beyond which the level is flagged (the caption shows ``flag``) and not
    recommended (``pipelines.recommend``).

    A metric that needs nothing but the output is a *no-reference* score: ``cli.py iqa``
    reports those for any image."""

    key: str
    name: str
    unit: str
    direction: Direction
    description: str
    fn: Callable[[ScoreInput], float] | None = None  # None: measured elsewhere (the evaluation's time)
    needs: frozenset[str] = frozenset()
    scope: Scope = "level"
    decimals: int = 2
    short: str = ""  # the name in a grid cell's caption; "" = not in captions
    limit: float | None = None  # a guard's limit: a value above it flags the level
    flag: str = ""  # what the caption says about a level beyond ``limit``, e.g. "face changed"

    @property
    def label(self) -> str:
        """``name (unit)``, or the name alone for unitless scores."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def higher_is_better(self) -> bool | None:
        return {"higher": True, "lower": False, "change": None}[self.direction]

    @property
    def no_reference(self) -> bool:
        return not self.needs

    def applies(self, inputs: ScoreInput) -> bool:
        """Whether ``inputs`` hold what this metric needs (a ground truth, a tile layout, ...)."""
        return all(getattr(inputs, need) is not None for need in self.needs)

    def flagged(self, value: float | None) -> bool:
        """Whether ``value`` is beyond this guard's ``limit`` (never for other metrics or NaN)."""
        return self.limit is not None and value is not None and value > self.limit

    def format(self, value: float | None) -> str:
        """The value as the lab shows it: ``decimals`` places, "inf", "" for none or NaN."""
        if value is None or math.isnan(value):
            return ""
        return "inf" if math.isinf(value) else f"{value:.{self.decimals}f}"


def _niqe(inputs: ScoreInput) -> float:
    from pipelines.quality import NIQE_MIN_SIDE, niqe

    if min(inputs.output.size) < NIQE_MIN_SIDE:
        return math.nan  # too small for NIQE's 96-px blocks: no score rather than a failed level
    return niqe(inputs.output, convert_to=inputs.niqe_channel)


def _seams(inputs: ScoreInput) -> float:
    from pipelines.quality import seam_score

    assert inputs.seams is not None
    bx, by = inputs.seams
    return seam_score(inputs.output, boundaries_x=bx, boundaries_y=by)


def _face_distance(inputs: ScoreInput) -> float:
    from pipelines.guards import face_distance

    assert inputs.faces is not None
    return face_distance(inputs.output, inputs.faces)


def _faces_added(inputs: ScoreInput) -> float:
    from pipelines.guards import faces_added

    assert inputs.faces is not None
    return float(faces_added(inputs.output, inputs.faces))


def _text_cer(inputs: ScoreInput) -> float:
    from pipelines.guards import text_cer

    assert inputs.text_lines is not None
    return text_cer(inputs.output, inputs.text_lines)


def _array(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image)


METRICS: tuple[Metric, ...] = (
    Metric(
        key="psnr_vs_bicubic",
        name="PSNR vs bicubic",
        unit="dB",
        direction="change",
        description="distance from the bicubic baseline: measures change, not quality",
        fn=lambda i: psnr(_array(i.output), _array(i.baseline), data_range=255.0),
        needs=frozenset({"baseline"}),
        short="PSNR",
    ),
    Metric(
        key="ssim_vs_bicubic",
        name="SSIM vs bicubic",
        unit="",
        direction="change",
        description="structural similarity to the bicubic baseline: measures change, not quality",
        fn=lambda i: ssim(_array(i.output), _array(i.baseline), data_range=255.0),
        needs=frozenset({"baseline"}),
        decimals=4,
        short="SSIM",
    ),
    Metric(
        key="lr_consistency",
        name="LR-consistency",
        unit="dB",
        direction="higher",
        description="PSNR of the output against its input, both at the smaller of their sizes "
        "(an upscale is downscaled back): fidelity to the input",
        fn=lambda i: lr_consistency(i.output, i.low_res),  # type: ignore[arg-type]
        needs=frozenset({"low_res"}),
    ),
    Metric(
        key="niqe",
        name="NIQE",
        unit="",
        direction="lower",
        description="naturalness without a reference (Mittal et al. 2013): lower looks more like a "
        "natural photo; empty below 192 px a side",
        fn=_niqe,
        short="NIQE",
    ),
    Metric(
        key="colour_drift_mean",
        name="Colour drift",
        unit="ΔE00",
        direction="lower",
        description="mean CIEDE2000 between low-passed output and baseline: a shift of skin tones or "
        "sky shows here even when PSNR looks fine (1 ≈ just noticeable)",
        fn=lambda i: i.drift[0],
        needs=frozenset({"baseline"}),
        short="ΔE",
    ),
    Metric(
        key="colour_drift_p95",
        name="Colour drift p95",
        short="ΔE p95",
        unit="ΔE00",
        direction="lower",
        description="95th percentile of the same CIEDE2000 map: a local colour shift",
        fn=lambda i: i.drift[1],
        needs=frozenset({"baseline"}),
    ),
    Metric(
        key="seam_score",
        name="Tile seams",
        short="Seams",
        unit="",
        direction="lower",
        description="gradient energy across tile boundaries over nearby lines (1.0 = no seams; "
        "above 1.5 a seam shows); empty for an untiled level",
        fn=_seams,
        needs=frozenset({"seams"}),
    ),
    # The guards (pipelines/guards.py): scored only when the baseline shows a face / text.
    Metric(
        key="face_distance",
        name="Face identity distance",
        short="Face dist.",
        unit="",
        direction="lower",
        description="largest distance between a baseline face's identity (dlib ResNet) and the level's "
        f"at the same place; above {FACE_DISTANCE_LIMIT:g} the face is another person's; empty without faces",
        fn=_face_distance,
        needs=frozenset({"baseline", "faces"}),
        limit=FACE_DISTANCE_LIMIT,
        flag="face changed",
    ),
    Metric(
        key="faces_added",
        name="Faces added",
        short="Faces +",
        unit="",
        direction="lower",
        description="faces found in the level away from every baseline face (hallucinated); "
        "empty when the baseline has no face",
        fn=_faces_added,
        needs=frozenset({"baseline", "faces"}),
        decimals=0,
        limit=0.0,
        flag="face added",
    ),
    Metric(
        key="text_cer",
        name="Text CER",
        unit="",
        direction="lower",
        description="character error rate of the level's text, read at the baseline's text lines, against "
        f"the baseline's reading; above {TEXT_CER_LIMIT:g} the text changed; empty without text",
        fn=_text_cer,
        needs=frozenset({"baseline", "text_lines"}),
        limit=TEXT_CER_LIMIT,
        flag="text changed",
    ),
    Metric(
        key="psnr_vs_gt",
        name="PSNR vs ground truth",
        unit="dB",
        direction="higher",
        description="fidelity to a ground-truth image, when one is given",
        fn=lambda i: psnr(_array(i.output), i.gt_at_output_size, data_range=255.0),
        needs=frozenset({"ground_truth"}),
    ),
    Metric(
        key="ssim_vs_gt",
        name="SSIM vs ground truth",
        unit="",
        direction="higher",
        description="structural fidelity to a ground truth, when one is given",
        fn=lambda i: ssim(_array(i.output), i.gt_at_output_size, data_range=255.0),
        needs=frozenset({"ground_truth"}),
        decimals=4,
    ),
    # The SR papers' fidelity scores (``sr_scores``), which the evaluation computes per level.
    Metric(
        key="psnr_y",
        name="PSNR-Y",
        unit="dB",
        direction="higher",
        description="PSNR on BT.601 luma against the ground truth, border shaved",
        fn=lambda i: i.sr["psnr_y"],
        needs=frozenset({"ground_truth"}),
        scope="evaluation",
    ),
    Metric(
        key="ssim_y",
        name="SSIM-Y",
        unit="",
        direction="higher",
        description="SSIM on BT.601 luma against the ground truth, border shaved",
        fn=lambda i: i.sr["ssim_y"],
        needs=frozenset({"ground_truth"}),
        scope="evaluation",
        decimals=4,
    ),
    Metric(
        key="psnr_rgb",
        name="PSNR-RGB",
        unit="dB",
        direction="higher",
        description="PSNR on RGB against the ground truth, border shaved",
        fn=lambda i: i.sr["psnr_rgb"],
        needs=frozenset({"ground_truth"}),
        scope="evaluation",
    ),
    Metric(
        key="ssim_rgb",
        name="SSIM-RGB",
        unit="",
        direction="higher",
        description="SSIM on RGB against the ground truth, border shaved",
        fn=lambda i: i.sr["ssim_rgb"],
        needs=frozenset({"ground_truth"}),
        scope="evaluation",
        decimals=4,
    ),
)
LEVEL_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.scope == "level")
SR_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.scope == "evaluation")
NO_REFERENCE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.no_reference)


CAPTION_METRICS: tuple[Metric, ...] = tuple(m for m in LEVEL_METRICS if m.short)
GUARD_METRICS: tuple[Metric, ...] = tuple(m for m in LEVEL_METRICS if m.limit is not None)
FLAG_MARK = "⚠"


def guard_flags(metrics: Mapping[str, float]) -> list[tuple[Metric, float]]:
    """The guards a level's ``metrics`` exceed, with their values (registry order)."""
    return [(m, metrics[m.key]) for m in GUARD_METRICS if m.key in metrics and m.flagged(metrics[m.key])]


def caption_scores(metrics: dict[str, float]) -> str:
    """The short scores line of a grid cell, e.g. ``PSNR 31.20 dB · SSIM 0.9120 · NIQE 4.31``,
    then the flags of the guards it exceeds, e.g. ``⚠ face changed``."""
    parts = []
    for m in CAPTION_METRICS:
        text = m.format(metrics.get(m.key))
        if text:
            parts.append(f"{m.short} {text}{' ' + m.unit if m.unit and m.unit != 'ΔE00' else ''}")
    parts += [f"{FLAG_MARK} {m.flag}" for m, _ in guard_flags(metrics)]
    return " · ".join(parts)


def get_metric(key: str) -> Metric:
    """The registry entry for ``key``; unknown keys raise ValueError listing the valid ones."""
    for m in METRICS:
        if m.key == key:
            return m
    raise ValueError(f"unknown metric {key!r}; valid keys: {[m.key for m in METRICS]}")


def score(inputs: ScoreInput, metrics: Sequence[Metric] = LEVEL_METRICS) -> dict[str, float]:
    """Every metric of ``metrics`` that applies to ``inputs`` (in registry order)."""
    out = {}
    for m in metrics:
        if m.fn is not None and m.applies(inputs):
            if inputs.check is not None:
                inputs.check()
            out[m.key] = float(m.fn(inputs))
    return out


def score_level(
    output: Image.Image,
    baseline: Image.Image,
    low_res: Image.Image,
    ground_truth: Image.Image | None = None,
    *,
    seams: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, float]:
    """The engine's scores of one level (``LEVEL_METRICS``; RGB at the output size); ``check``
    is called between metrics and strips (it may raise to stop)."""
    return score(ScoreInput(output, baseline, low_res, ground_truth, seams, check=check))


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
