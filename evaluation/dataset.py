"""The dataset side of an evaluation: image listing, ground truth/input pairs, seeded degradations."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif"}


@dataclass(frozen=True)
class Degradation:
    """Applied to the low-resolution input in this order: blur, noise, JPEG."""

    blur: float | None = None  # Gaussian sigma, LR pixels
    noise: float | None = None  # Gaussian sigma, 8-bit levels
    jpeg: int | None = None  # quality 1..95

    def __post_init__(self) -> None:
        if self.jpeg is not None and not 1 <= self.jpeg <= 95:
            raise ValueError(f"--jpeg must be in 1..95, got {self.jpeg}")
        for name in ("blur", "noise"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"--{name} must be >= 0, got {v}")

    def encode(self, image: Image.Image, seed: int) -> bytes:
        """The degraded input as the file a user would have: JPEG bytes when JPEG is applied
        (quantisation tables included, so the engine reads the quality as it does for any
        JPEG), PNG otherwise."""
        out = image
        if self.blur:
            out = out.filter(ImageFilter.GaussianBlur(self.blur))
        if self.noise:
            rng = np.random.default_rng(seed)
            arr = np.asarray(out, dtype=np.float64) + rng.normal(0, self.noise, size=np.asarray(out).shape)
            out = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), out.mode)
        buf = io.BytesIO()
        if self.jpeg:
            out.save(buf, "JPEG", quality=self.jpeg)
        else:
            out.save(buf, "PNG")
        return buf.getvalue()

    def apply(self, image: Image.Image, seed: int) -> Image.Image:
        """:meth:`encode`, decoded."""
        out = Image.open(io.BytesIO(self.encode(image, seed)))
        out.load()
        return out

    def label(self) -> str:
        parts = [
            f"blur σ{self.blur:g}" if self.blur else "",
            f"noise σ{self.noise:g}" if self.noise else "",
            f"JPEG q{self.jpeg}" if self.jpeg else "",
        ]
        return ", ".join(p for p in parts if p) or "none"


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that does not depend on the order or the shard an image lands in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def make_pair(path: Path, scale: int) -> tuple[Image.Image, Image.Image]:
    """(ground truth cropped to a multiple of ``scale``, its antialiased bicubic ÷scale)."""
    if path.suffix.lower() in (".heic", ".heif"):
        from pipelines.imaging import enable_heif

        enable_heif()
    hr: Image.Image = Image.open(path)
    hr.load()
    hr = hr.convert("L") if hr.mode in ("L", "I;16", "I") else hr.convert("RGB")
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % scale, h - h % scale))
    lr = hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)
    return hr, lr


def list_images(folders: list[str]) -> list[Path]:
    """The images of ``folders`` (files as given, folders' images by suffix, sorted); exits
    with an error for a path that is neither, or when there is no image at all."""
    out: list[Path] = []
    for f in folders:
        p = Path(f)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES))
        else:
            raise SystemExit(f"error: {f} is not a file or folder")
    if not out:
        raise SystemExit(f"error: no images in {folders}")
    return out


def key_of(path: Path) -> str:
    """An image's name in the results: ``folder__stem`` (unique across the folders of a run)."""
    return f"{path.parent.name}__{path.stem}"
