"""Images the face and text guards are measured and tested on, all shippable: two people whose
photos come inside installed wheels (scikit-image's ``astronaut``, Eileen Collins, NASA, public
domain; matplotlib's ``grace_hopper.jpg``, US Navy, public domain), text rendered with Pillow in
the DejaVu Sans that matplotlib ships, and the degradations a level may bring (JPEG, blur, a
bicubic or neural ×4 from a quarter-size input).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TEXT_LINES = (
    "Invoice 2024-117 due March 3",
    "Total amount: 1,250.00 EUR",
    "Please pay by bank transfer",
)
ALTERED_LINES = (  # the same layout, other words and digits: what a generative level may write
    "Invoice 2021-717 dve March 8",
    "Tota1 amovnt: 7,850.00 FUR",
    "Piease pay bv bank transter",
)
OTHER_LINES = (  # the same layout, other text altogether
    "Delivery note for parcel 88",
    "Weight: 14 kg, two boxes",
    "Handle with care at all times",
)


def astronaut() -> Image.Image:
    """Eileen Collins (scikit-image's ``astronaut``), 512×512 RGB; her face is about 90 px wide."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def hopper() -> Image.Image:
    """Grace Hopper (matplotlib's sample data), 512×600 RGB; her face is about 190 px wide."""
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` px (matplotlib ships it)."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)


def render_text(
    lines: tuple[str, ...] = TEXT_LINES, *, size: tuple[int, int] = (640, 240), px: int = 32
) -> Image.Image:
    """``lines`` in black on an off-white page of ``size``, ``px`` high, one under another."""
    image = Image.new("RGB", size, (245, 243, 236))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((24, 24 + i * round(px * 1.6)), line, fill=(20, 20, 20), font=font(px))
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` through a JPEG round trip at ``quality``."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def blur(image: Image.Image, sigma: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def down_up(image: Image.Image, factor: int = 4) -> Image.Image:
    """Bicubic down by ``factor`` and back up: what the lab's bicubic baseline makes of a small input."""
    small = image.resize((image.width // factor, image.height // factor), Image.Resampling.BICUBIC)
    return small.resize(image.size, Image.Resampling.BICUBIC)


def paste(
    image: Image.Image, donor: Image.Image, box: tuple[int, int, int, int], donor_box: tuple[int, int, int, int]
) -> Image.Image:
    """``image`` with ``donor``'s ``donor_box`` (a face) resized into ``box``, feathered at the
    edge: a level whose diffusion turned one face into another person's."""
    left, top, right, bottom = box
    patch = donor.crop(donor_box).resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    mask = Image.new("L", patch.size, 0)
    inset = max(2, min(patch.size) // 12)
    ImageDraw.Draw(mask).rectangle((inset, inset, patch.width - inset, patch.height - inset), fill=255)
    out = image.copy()
    out.paste(patch, (left, top), mask.filter(ImageFilter.GaussianBlur(inset / 2)))
    return out


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))
