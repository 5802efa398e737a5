"""Decoding untrusted image bytes, safely, into the engine's boundary format.

Limits are checked on the header before any pixel is decoded; EXIF orientation is applied;
alpha is split off (upscaled separately and re-attached at compose time); grayscale, palette,
CMYK and 16-bit inputs are normalised to 8-bit RGB with the original family remembered.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import presets
from pipelines.errors import InputError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
MAX_INPUT_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class LoadedImage:
    """An input ready for the engine: ``rgb`` (mode RGB), ``alpha`` (mode L or None),
    ``grayscale`` (the input had no colour), ``sha256`` of the encoded bytes."""

    rgb: Image.Image
    alpha: Image.Image | None
    grayscale: bool
    sha256: str
    format: str
    jpeg_quality: int | None = None  # the IJG quality a JPEG file was saved at (its quantisation tables)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def load_image(
    source: bytes | str | Path | Image.Image,
    *,
    max_pixels: int = presets.MAX_INPUT_PIXELS,
    max_bytes: int = MAX_INPUT_BYTES,
) -> LoadedImage:
    """Decode ``source`` (encoded bytes, a file path, or an already decoded PIL image).

    Raises InputError (empty, not an image, unsupported format, animated, truncated, over
    ``max_pixels`` or ``max_bytes``) with a message meant for the person who sent it.
    """
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"cannot read image file {path.name!r}: {exc.strerror}") from exc
        if size > max_bytes:
            raise InputError(f"file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
        data = path.read_bytes()
    if not data:
        raise InputError("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InputError(f"file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    return _decode(data, max_pixels=max_pixels)


def _decode(data: bytes, *, max_pixels: int) -> LoadedImage:
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            if fmt not in ALLOWED_FORMATS:
                raise InputError(f"{fmt} images are not supported; use one of {ALLOWED_FORMATS}")
            w, h = img.size
            if w < 1 or h < 1:
                raise InputError(f"image has no pixels ({w}×{h})")
            if w * h > max_pixels:
                raise InputError(
                    f"image is {w}×{h} = {w * h / 1e6:.1f} MP; the input limit is "
                    f"{max_pixels / 1e6:.0f} MP (refused before decoding)"
                )
            frames = int(getattr(img, "n_frames", 1))
            if frames > 1 and fmt in ("GIF", "PNG", "WEBP"):
                raise InputError(f"animated images are not supported (this {fmt} has {frames} frames)")
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"image header claims far more pixels than the input limit of {max_pixels / 1e6:.0f} MP "
            "(a decompression bomb?); refused before decoding"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError("the file is not a recognised image (PNG, JPEG, WebP, ...)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"the image is truncated or corrupt: {exc}") from exc
    quality = None
    if fmt == "JPEG":
        from pipelines.waifu2x import jpeg_quality

        quality = jpeg_quality(img)
    img = ImageOps.exif_transpose(img) or img
    loaded = _normalise(img, digest, fmt)
    return replace(loaded, jpeg_quality=quality)


def _normalise(img: Image.Image, digest: str, fmt: str) -> LoadedImage:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("RGBa", "La"):
        img = img.convert("RGBA")
    elif mode == "LA":
        pass
    alpha: Image.Image | None = None
    if img.mode in ("RGBA", "LA"):
        alpha = img.getchannel("A")
        if alpha.getextrema() == (255, 255):
            alpha = None  # fully opaque: nothing to keep
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    grayscale = img.mode == "L"
    if img.mode != "RGB":
        img = img.convert("RGB")
    return LoadedImage(rgb=img, alpha=alpha, grayscale=grayscale, sha256=digest, format=fmt)


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
