"""Encoding an output image: its format (PNG, JPEG, WebP), quality or file-size target, and the
metadata it carries (the source's EXIF, colour profile and DPI, and the run's manifest).

The engine's images are sRGB, 8-bit, lossless (scores are computed on them); this module is the
last step, after scoring. :class:`OutputSpec` is the request's output fields, validated on
construction (RequestError naming the field); :func:`metadata_for` decides what the output
carries; :func:`encode` writes the bytes. :func:`read_manifest` reads the provenance back
(``cli.py upscale --replay``).

Provenance: the run's manifest (request with seed, models with revisions, the answered level)
is embedded in every output unless ``strip_metadata``: PNG as an ``iTXt`` chunk
(:data:`MANIFEST_KEY`), JPEG and WebP as an XMP packet holding the JSON.
"""

from __future__ import annotations

import functools
import html
import io
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args
from xml.sax.saxutils import escape

from PIL import Image, ImageCms, PngImagePlugin

from pipelines.errors import RequestError

if TYPE_CHECKING:  # types only: the request module imports this one, the engine imports both
    from pipelines.engine import LevelResult, RunResult
    from pipelines.request import UpscaleRequest

OutputFormat = Literal["png", "jpeg", "webp"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
LOSSY_FORMATS = ("jpeg", "webp")
IccChoice = Literal["srgb", "source"]
ICC_CHOICES: tuple[str, ...] = get_args(IccChoice)
MEDIA_TYPES: Mapping[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS: Mapping[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIN_QUALITY, MAX_QUALITY = 1, 100
DEFAULT_QUALITY = 90  # JPEG and WebP when no quality is given
MIN_FILE_SIZE = 1024  # bytes: below this no JPEG/WebP with headers fits
MAX_DPI = 100_000.0
MANIFEST_KEY = "upscale-lab:manifest"  # PNG iTXt keyword of the embedded manifest
XMP_NS = "https://github.com/upscale-lab/ns/manifest/1.0/"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000 * 1000}
_XMP_MANIFEST = re.compile(r"<upscalelab:manifest>(.*?)</upscalelab:manifest>", re.DOTALL)
# EXIF tags (pipelines keep Pillow's numbers; names in PIL.ExifTags.Base)
_ORIENTATION, _X_RES, _Y_RES, _RES_UNIT = 0x0112, 0x011A, 0x011B, 0x0128
_THUMBNAIL_TAGS = (0x0201, 0x0202)  # JPEGInterchangeFormat(Length): an embedded thumbnail's offset
_EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0xA002, 0xA003


def parse_file_size(value: object) -> int:
    """``max_file_size`` as bytes: an integer, or text like ``"1MB"``, ``"500kb"``, ``"2048"``
    (decimal units: 1 kB = 1000 bytes). Raises RequestError naming ``max_file_size``."""
    if isinstance(value, bool):
        raise RequestError("max_file_size", f"must be bytes or a size like '1MB' or '500kb', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = round(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    else:
        raise RequestError("max_file_size", f"must be bytes or a size like '1MB' or '500kb', got {value!r}")
    if size < MIN_FILE_SIZE:
        raise RequestError("max_file_size", f"must be at least {MIN_FILE_SIZE} bytes, got {size}")
    return size


@dataclass(frozen=True)
class OutputSpec:
    """How the answered image is encoded: the request's ``output_format``, ``quality``,
    ``max_file_size`` (bytes; the highest quality that fits), ``lossless`` (WebP),
    ``strip_metadata``, ``icc`` (``srgb``: pixels and profile sRGB; ``source``: converted back
    to the source's profile) and ``dpi`` (None: the source's, scaled with the pixels).

    Every value is checked here; RequestError names the field and what is allowed."""

    format: OutputFormat = "png"
    quality: int | None = None
    max_file_size: int | None = None
    lossless: bool = False
    strip_metadata: bool = False
    icc: IccChoice = "srgb"
    dpi: float | None = None

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise RequestError("output_format", f"must be one of {list(OUTPUT_FORMATS)}, got {self.format!r}")
        lossy = self.format in LOSSY_FORMATS
        q = self.quality
        if q is not None:
            if not lossy:
                raise RequestError("quality", f"applies to {' and '.join(LOSSY_FORMATS)} only, not {self.format}")
            if isinstance(q, bool) or not isinstance(q, int) or not MIN_QUALITY <= q <= MAX_QUALITY:
                raise RequestError("quality", f"must be an integer in {MIN_QUALITY}..{MAX_QUALITY}, got {q!r}")
        for name in ("lossless", "strip_metadata"):
            if not isinstance(getattr(self, name), bool):
                raise RequestError(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.lossless and self.format != "webp":
            raise RequestError("lossless", f"applies to webp only (png is always lossless), not {self.format}")
        if self.max_file_size is not None:
            if not lossy:
                raise RequestError("max_file_size", f"applies to {' and '.join(LOSSY_FORMATS)} only, not {self.format}")
            if self.lossless:
                raise RequestError("max_file_size", "cannot be combined with lossless: it picks a lossy quality")
            object.__setattr__(self, "max_file_size", parse_file_size(self.max_file_size))
        if self.icc not in ICC_CHOICES:
            raise RequestError("icc", f"must be one of {list(ICC_CHOICES)}, got {self.icc!r}")
        dpi = self.dpi
        if dpi is not None:
            if isinstance(dpi, bool) or not isinstance(dpi, int | float) or not 0 < dpi <= MAX_DPI:
                raise RequestError("dpi", f"must be a number in (0, {MAX_DPI:g}], got {dpi!r}")
            object.__setattr__(self, "dpi", float(dpi))

    @property
    def is_lossless(self) -> bool:
        """PNG, WebP with ``lossless`` or at quality 100."""
        return self.format == "png" or (self.format == "webp" and (self.lossless or self.quality == MAX_QUALITY))

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from the defaults, in the request's JSON names."""
        default = OutputSpec()
        return {
            key: getattr(self, name)
            for key, name in _JSON_NAMES.items()
            if getattr(self, name) != getattr(default, name)
        }


# the request's JSON name → OutputSpec's field
_JSON_NAMES: Mapping[str, str] = {
    "output_format": "format",
    "quality": "quality",
    "max_file_size": "max_file_size",
    "lossless": "lossless",
    "strip_metadata": "strip_metadata",
    "icc": "icc",
    "dpi": "dpi",
}
OUTPUT_FIELDS = tuple(_JSON_NAMES)  # the request's top-level fields this module reads


def parse_output(data: Mapping[str, Any]) -> OutputSpec:
    """The output fields of the request JSON ``data`` (others ignored) as an OutputSpec; null
    means not given. Raises RequestError naming the field."""
    kw = {_JSON_NAMES[key]: data[key] for key in OUTPUT_FIELDS if data.get(key) is not None}
    if isinstance(kw.get("format"), str):
        kw["format"] = kw["format"].lower()
    return OutputSpec(**kw)


@dataclass(frozen=True)
class Metadata:
    """What an output carries: ``exif`` (the source's, orientation 1, no thumbnail), ``icc``
    (the profile to convert the sRGB pixels to and embed; None: none), ``dpi`` and the
    ``manifest`` (JSON text) to embed."""

    exif: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    manifest: str | None = None


@dataclass(frozen=True)
class Encoded:
    """An encoded image: ``data``, its ``format``, the ``quality`` used (None for PNG and
    lossless WebP), ``lossless`` and ``size`` (bytes)."""

    data: bytes
    format: str
    quality: int | None
    lossless: bool
    size: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "quality": self.quality, "lossless": self.lossless, "bytes": self.size}


@functools.cache
def srgb_profile() -> bytes:
    """Little CMS's built-in sRGB profile, as ICC bytes."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def is_srgb(icc: bytes) -> bool:
    """True when ``icc`` describes sRGB (by its description, as colour-managed viewers do),
    or cannot be read (then the pixels are taken as they are)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return True  # a grayscale or CMYK profile: the decoder's conversion stands
        return "srgb" in ImageCms.getProfileDescription(profile).lower()
    except (OSError, ImageCms.PyCMSError):
        return True


def to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """``image`` (RGB) converted from the profile ``icc`` to sRGB (perceptual intent); as it is
    when Little CMS cannot use the profile (a broken profile does not refuse the image)."""
    try:
        return _convert(image, icc, srgb_profile())
    except (OSError, ImageCms.PyCMSError):
        return image


def _convert(image: Image.Image, src: bytes, dst: bytes) -> Image.Image:
    out = ImageCms.profileToProfile(
        image, ImageCms.ImageCmsProfile(io.BytesIO(src)), ImageCms.ImageCmsProfile(io.BytesIO(dst)), outputMode="RGB"
    )
    if out is None:  # only with inPlace=True
        raise ValueError("profileToProfile returned no image")
    return out


def clean_exif(exif: Image.Exif) -> bytes | None:
    """A source's EXIF for an output: orientation 1 (the pixels are upright already), no
    embedded thumbnail (it shows the original). None when empty."""
    if not exif:
        return None
    exif[_ORIENTATION] = 1
    for tag in _THUMBNAIL_TAGS:
        exif.pop(tag, None)
    try:
        return exif.tobytes()  # IFD0 and its Exif/GPS sub-IFDs: IFD1 (the thumbnail) is not written
    except (ValueError, TypeError, OSError, struct.error):  # an entry Pillow cannot write back: none kept
        return None


def metadata_for(
    *,
    spec: OutputSpec,
    exif: bytes | None,
    icc: bytes | None,
    dpi: tuple[float, float] | None,
    scale: float,
    manifest: Mapping[str, Any] | None,
) -> Metadata:
    """What the output of a source with ``exif``, ``icc`` and ``dpi`` carries, its pixels
    ``scale`` times the source's: with ``strip_metadata`` no EXIF, no manifest and no profile;
    else the EXIF, the manifest and the sRGB profile (the source's with ``icc: "source"``).
    DPI is ``spec.dpi``, else the source's times ``scale`` (the print size stays)."""
    if spec.dpi is not None:
        out_dpi: tuple[float, float] | None = (spec.dpi, spec.dpi)
    else:
        out_dpi = (dpi[0] * scale, dpi[1] * scale) if dpi else None
    if spec.strip_metadata:
        return Metadata(dpi=out_dpi)
    profile = icc if spec.icc == "source" and icc is not None else srgb_profile()
    text = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False) if manifest is not None else None
    return Metadata(exif=exif, icc=profile, dpi=out_dpi, manifest=text)


class SourceMetadata(Protocol):
    """What :func:`encode_answer` reads of a source image (``pipelines.imaging.LoadedImage``)."""

    @property
    def exif(self) -> bytes | None: ...
    @property
    def icc_profile(self) -> bytes | None: ...
    @property
    def dpi(self) -> tuple[float, float] | None: ...


OUTPUT_LEVEL_KEY = "output_level"  # in an embedded manifest: the level whose image this is


def encode_answer(
    image: Image.Image,
    spec: OutputSpec,
    *,
    source: SourceMetadata | None,
    scale: float,
    manifest: Mapping[str, Any],
    level: int,
    matte: tuple[int, int, int] = (255, 255, 255),
) -> Encoded:
    """One level's ``image`` of a run as the file a person gets (REST, ``cli.py upscale``):
    :func:`metadata_for` the ``source`` (its pixels ``scale`` times the source's), the run's
    ``manifest`` embedded with the ``level`` (what ``--replay`` reruns), then :func:`encode`.

    Raises RequestError naming ``max_file_size`` when no quality fits."""
    metadata = metadata_for(
        spec=spec,
        exif=source.exif if source else None,
        icc=source.icc_profile if source else None,
        dpi=source.dpi if source else None,
        scale=scale,
        manifest={**manifest, OUTPUT_LEVEL_KEY: level},
    )
    return encode(image, spec, metadata, matte=matte)


def encode_level(
    result: RunResult, level: LevelResult, request: UpscaleRequest, *, source: SourceMetadata | None
) -> Encoded:
    """:func:`encode_answer` for ``level`` (a ``LevelResult`` with an image) of ``result`` (its
    ``RunResult``) as ``request`` (its ``UpscaleRequest``) asks: format, background, the scale."""
    if level.image is None:
        raise ValueError(f"level {level.level} has no image to encode ({level.status})")
    return encode_answer(
        level.image,
        request.output,
        source=source,
        scale=result.plan.scale,
        manifest=result.manifest,
        level=level.level,
        matte=request.background_color,
    )


def encode(
    image: Image.Image, spec: OutputSpec, metadata: Metadata, *, matte: tuple[int, int, int] = (255, 255, 255)
) -> Encoded:
    """``image`` (sRGB; RGB, RGBA, L or LA) encoded as ``spec`` says, carrying ``metadata``.
    JPEG has no alpha: an image with alpha is laid over ``matte``. With ``max_file_size`` the
    highest quality (at most ``spec.quality``) whose file fits is found by bisection.

    Raises RequestError naming ``max_file_size`` when even quality 1 does not fit."""
    pixels = _prepared(image, spec.format, metadata.icc, matte)
    if spec.max_file_size is None:
        return _save(pixels, spec, metadata, spec.quality or DEFAULT_QUALITY)
    top = spec.quality or MAX_QUALITY
    best = _save(pixels, spec, metadata, top)
    if best.size <= spec.max_file_size:
        return best
    low = _save(pixels, spec, metadata, MIN_QUALITY)
    if low.size > spec.max_file_size:
        raise RequestError(
            "max_file_size",
            f"{spec.max_file_size} bytes cannot be reached: the smallest reached was {low.size} bytes at "
            f"quality {MIN_QUALITY} ({image.size[0]}×{image.size[1]} {spec.format}); ask for a smaller size or a larger limit",
        )
    lo, hi, best = MIN_QUALITY, top, low  # lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        attempt = _save(pixels, spec, metadata, mid)
        if attempt.size <= spec.max_file_size:
            lo, best = mid, attempt
        else:
            hi = mid
    return best


def _prepared(image: Image.Image, fmt: str, icc: bytes | None, matte: tuple[int, int, int]) -> Image.Image:
    """The pixels to save, carrying no ``info`` (Pillow's savers would write a profile, EXIF
    or XMP found there): alpha flattened for JPEG, converted to ``icc`` when not sRGB."""
    if image.info:
        image = image.copy()
        image.info = {}
    if fmt == "jpeg" and image.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", image.size, matte)
        flat.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        image = flat if image.mode == "RGBA" else flat.convert("L")
    if icc is not None and not is_srgb(icc) and image.mode in ("RGB", "RGBA"):
        alpha = image.getchannel("A") if image.mode == "RGBA" else None
        image = _convert(image.convert("RGB"), srgb_profile(), icc)
        if alpha is not None:
            image.putalpha(alpha)
        image.info = {}
    return image


def _save(image: Image.Image, spec: OutputSpec, metadata: Metadata, quality: int) -> Encoded:
    kw: dict[str, Any] = {}
    lossless = spec.is_lossless or (spec.format == "webp" and quality == MAX_QUALITY)
    if spec.format == "jpeg":
        kw["quality"] = quality
    elif spec.format == "webp":
        kw.update(lossless=lossless, quality=100 if lossless else quality)
    exif = _exif_for(metadata, image.size, spec.format)
    if exif is not None:
        kw["exif"] = exif
    if metadata.icc is not None:
        kw["icc_profile"] = metadata.icc
    if metadata.dpi is not None and spec.format != "webp":  # WebP's DPI lives in the EXIF only
        kw["dpi"] = metadata.dpi
    if metadata.manifest is not None:
        if spec.format == "png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt(MANIFEST_KEY, metadata.manifest, zip=True)
            kw["pnginfo"] = info
        else:
            kw["xmp"] = _xmp(metadata.manifest)
    buf = io.BytesIO()
    image.save(buf, format=spec.format.upper(), **kw)
    data = buf.getvalue()
    used = None if lossless else quality
    return Encoded(data=data, format=spec.format, quality=used, lossless=lossless, size=len(data))


def _exif_for(metadata: Metadata, size: tuple[int, int], fmt: str) -> Image.Exif | None:
    """The EXIF to write: the source's with its resolution and pixel size updated; for WebP,
    which has no DPI field, a resolution-only EXIF when there is DPI but no EXIF."""
    if metadata.exif is None and (metadata.dpi is None or fmt != "webp"):
        return None
    exif = Image.Exif()
    if metadata.exif is not None:
        exif.load(metadata.exif)
        sub = exif.get_ifd(_EXIF_IFD)
        if sub:
            sub[_PIXEL_X], sub[_PIXEL_Y] = size
    if metadata.dpi is not None:
        exif[_X_RES], exif[_Y_RES] = (round(metadata.dpi[0], 4), round(metadata.dpi[1], 4))
        exif[_RES_UNIT] = 2  # inches
    return exif


def _xmp(manifest: str) -> bytes:
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:upscalelab="{XMP_NS}">'
        f"<upscalelab:manifest>{escape(manifest)}</upscalelab:manifest>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def read_manifest(image: Image.Image) -> dict[str, Any] | None:
    """The manifest embedded by :func:`encode` in an opened output image (PNG ``iTXt``, or
    the XMP of a JPEG or WebP); None when it carries none."""
    text: str | None = None
    info_text = getattr(image, "text", None) or {}
    if MANIFEST_KEY in info_text:
        text = str(info_text[MANIFEST_KEY])
    else:
        xmp = image.info.get("xmp")
        if isinstance(xmp, bytes):
            xmp = xmp.decode("utf-8", "replace")
        if isinstance(xmp, str) and (m := _XMP_MANIFEST.search(xmp)):
            text = html.unescape(m.group(1))
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
