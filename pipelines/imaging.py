"""Decoding untrusted image bytes, safely, into the engine's boundary format.

Limits are checked on the header before any pixel is decoded; EXIF orientation is applied;
alpha is split off (upscaled separately and re-attached at compose time); grayscale, palette,
CMYK and 16-bit inputs are normalised to 8-bit RGB with the original family remembered.
An RGB colour profile other than sRGB is converted to sRGB (the models see sRGB); the source's
EXIF (orientation 1, no thumbnail), ICC profile and DPI are kept for the output
(``pipelines.output.metadata_for``).

Accepted formats are ``ACCEPTED_FORMATS``, all under the same byte limit, pixel limit (read
from the header, before decoding) and EXIF orientation. HEIC/HEIF (phone photos) is read by
pillow-heif, whose Pillow opener is registered by the first ISO-media input (an ``ftyp`` box),
not at import; AVIF is read by Pillow itself. Animations and multi-page TIFFs are refused (one
image in, one image out); a HEIF file holding several images is read as its primary image, the
one every viewer shows. Formats people send that are not read (JPEG XL, PDF, SVG, camera raw,
video, ...) are named in the error, from their magic bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import presets
from pipelines.errors import InputError, LabError
from pipelines.output import clean_exif, is_srgb, to_srgb

# Pillow's format id → the name a person knows it by.
ACCEPTED_FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "PNG": "PNG",
        "JPEG": "JPEG",
        "MPO": "JPEG (multi-picture)",
        "HEIF": "HEIC/HEIF",
        "AVIF": "AVIF",
        "WEBP": "WebP",
        "TIFF": "TIFF",
        "BMP": "BMP",
        "GIF": "GIF",
    }
)
ACCEPTED_NAMES = ", ".join(name for fmt, name in ACCEPTED_FORMATS.items() if fmt != "MPO")
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP", "AVIF")  # several frames = an animation: refused

# ISO base media files (HEIF, AVIF, MP4, ...) start with an ``ftyp`` box naming a brand.
_REFUSED_BRANDS: Mapping[bytes, str] = MappingProxyType(
    {
        b"crx ": "Canon raw (CR3)",
        b"qt  ": "QuickTime video",
        **{b: "MP4 video" for b in (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash")},
        b"M4V ": "MP4 video",
        b"3gp4": "3GP video",
        b"3gp5": "3GP video",
        b"jxl ": "JPEG XL",
    }
)
# Magic bytes at the start of formats people send that this lab does not read.
_REFUSED_MAGIC = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"%PDF", "PDF"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"FUJIFILMCCD-RAW", "Fujifilm raw (RAF)"),
    (b"II*\x00\x10\x00\x00\x00CR", "Canon raw (CR2)"),
    (b"IIRO", "Olympus raw (ORF)"),
    (b"IIU\x00", "Panasonic raw (RW2)"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
)


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
    exif: bytes | None = None  # the source's EXIF: orientation set to 1 (applied to the pixels), no thumbnail
    icc_profile: bytes | None = None  # the source's ICC profile (``rgb`` is converted to sRGB when it is not)
    dpi: tuple[float, float] | None = None  # the source's resolution in dots per inch

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def load_image(
    source: bytes | str | Path | Image.Image,
    *,
    max_pixels: int = presets.MAX_INPUT_PIXELS,
    max_bytes: int = presets.MAX_INPUT_BYTES,
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


def refused_format(data: bytes) -> str | None:
    """The name of a format this lab does not read, recognised from ``data``'s first bytes
    (JPEG XL, PDF, SVG, HTML, camera raw, video, archives, ...); None when not one of them."""
    if data[4:8] == b"ftyp":
        return _REFUSED_BRANDS.get(data[8:12])
    for magic, name in _REFUSED_MAGIC:
        if data.startswith(magic):
            return name
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


@functools.cache
def enable_heif() -> None:
    """Register pillow-heif's HEIF opener with Pillow, once.

    :func:`load_image` calls it for the first ISO-media input (``ftyp``); it is public for code
    that hands files to ``PIL.Image.open`` itself (an upload widget, the evaluation's ground
    truths). Raises LabError when pillow-heif is not installed.
    """
    try:
        import pillow_heif
    except ImportError as exc:
        raise LabError("HEIC/HEIF input needs the pillow-heif package (see requirements.txt)") from exc
    # No thumbnails or depth maps: only the primary image is ever decoded.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def _pages(img: Image.Image) -> int:
    """Pages of a TIFF, not counting reduced-resolution copies (thumbnails/previews: bit 0 of
    NewSubfileType). Reads the page headers only."""
    frames = int(getattr(img, "n_frames", 1))
    if frames == 1:
        return 1
    pages = 0
    for i in range(frames):
        img.seek(i)
        if not int(getattr(img, "tag_v2", {}).get(254, 0)) & 1:
            pages += 1
    img.seek(0)
    return pages


def _decode(data: bytes, *, max_pixels: int) -> LoadedImage:
    digest = hashlib.sha256(data).hexdigest()
    refused = refused_format(data)
    if refused is not None:
        raise InputError(f"{refused} files are not supported; accepted formats: {ACCEPTED_NAMES}")
    if data[4:8] == b"ftyp":  # HEIF, or AVIF with brands pillow-heif's opener declines
        enable_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            if fmt not in ACCEPTED_FORMATS:
                raise InputError(f"{fmt} images are not supported; accepted formats: {ACCEPTED_NAMES}")
            w, h = img.size
            if w < 1 or h < 1:
                raise InputError(f"image has no pixels ({w}×{h})")
            if w * h > max_pixels:
                raise InputError(
                    f"image is {w}×{h} = {w * h / 1e6:.1f} MP; the input limit is "
                    f"{max_pixels / 1e6:.0f} MP (refused before decoding)"
                )
            frames = int(getattr(img, "n_frames", 1))
            if frames > 1 and fmt in ANIMATED_FORMATS:
                raise InputError(f"animated images are not supported (this {fmt} has {frames} frames)")
            if fmt == "TIFF" and (pages := _pages(img)) > 1:
                raise InputError(
                    f"a multi-page TIFF ({pages} pages) is not supported: save the page you want as its own file"
                )
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"image header claims far more pixels than the input limit of {max_pixels / 1e6:.0f} MP "
            "(a decompression bomb?); refused before decoding"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"the file is not a recognised image (accepted formats: {ACCEPTED_NAMES})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"the image is truncated or corrupt: {exc}") from exc
    quality = None
    if fmt == "JPEG":
        from pipelines.waifu2x import jpeg_quality

        quality = jpeg_quality(img)
    icc, dpi = img.info.get("icc_profile") or None, _dpi(img.info.get("dpi"))
    img = ImageOps.exif_transpose(img) or img
    exif = clean_exif(img.getexif())  # after the transpose: it edits the image's own EXIF
    loaded = _normalise(img, digest, fmt)
    if icc is not None and not loaded.grayscale and not is_srgb(icc):
        loaded = replace(loaded, rgb=to_srgb(loaded.rgb, icc))
    return replace(loaded, jpeg_quality=quality, exif=exif, icc_profile=icc, dpi=dpi)


def _dpi(value: object) -> tuple[float, float] | None:
    """A decoder's ``dpi`` as two positive floats; None when absent or meaningless (0, NaN)."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    try:
        x, y = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 and np.isfinite(x) and np.isfinite(y) else None


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
