"""Input formats (issue 15): phone photos (HEIC/HEIF, AVIF) load with the same limits as the
rest, multi-page TIFFs are refused like animations, and formats still refused are named."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest
from PIL import Image

from pipelines.errors import InputError
from pipelines.imaging import load_image
from pipelines.request import UpscaleRequest

ROOT = Path(__file__).resolve().parents[1]


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.open(ROOT / "examples" / "rocket_640x427.png").convert("RGB").resize(size, Image.Resampling.LANCZOS)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    if fmt == "HEIF":
        from pipelines.imaging import enable_heif

        enable_heif()  # the encoder: the test writes HEIC before the lab has read one
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite every ``ispe`` (image spatial extent) box of a HEIF/AVIF: the header then
    claims ``width``×``height`` pixels while the coded data stays tiny."""
    out = bytearray(data)
    spots = [m.start() for m in re.finditer(b"ispe", data)]
    assert spots, "no ispe box"
    for i in spots:  # box type, then 4 bytes of version/flags, then width and height
        out[i + 8 : i + 16] = struct.pack(">II", width, height)
    return bytes(out)


@pytest.mark.parametrize("fmt, brand", [("HEIF", b"heic"), ("AVIF", b"avif")])
def test_phone_photo_formats_load_and_upscale(fmt, brand, missing_engine):
    data = encode(photo(), fmt, quality=90)
    assert data[4:12] == b"ftyp" + brand
    loaded = load_image(data)
    assert loaded.format == fmt and loaded.size == (64, 48) and loaded.rgb.mode == "RGB"
    result = missing_engine.run(loaded, UpscaleRequest(width=128, levels=(8,), seed=1))
    assert result.level(8).status == "ok" and result.level(8).image.size == (128, 96)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_photo_formats_keep_the_limits(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view: 64×48 stored → 48×64 shown
    assert load_image(encode(photo(), fmt, exif=exif.tobytes())).size == (48, 64)
    small = encode(Image.new("RGB", (64, 64), (20, 120, 200)), fmt)  # no clean-aperture crop
    bomb = claim_size(small, 9000, 8000)
    assert len(bomb) < 1000
    with pytest.raises(InputError, match=r"9000×8000 = 72\.0 MP.*refused before decoding"):
        load_image(bomb)
    with pytest.raises(InputError, match="limit is"):
        load_image(small, max_bytes=100)


def test_heif_opener_is_registered_lazily(tmp_path):
    """Importing the lab registers nothing; the first HEIC it reads registers the opener."""
    import subprocess
    import sys

    (tmp_path / "photo.heic").write_bytes(encode(photo(), "HEIF"))
    code = (
        "import sys, PIL.Image, pipelines.engine\n"
        "from pipelines.imaging import load_image\n"
        "assert 'HEIF' not in PIL.Image.OPEN and 'pillow_heif' not in sys.modules, 'registered at import'\n"
        f"assert load_image({str(tmp_path / 'photo.heic')!r}).format == 'HEIF'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_multi_page_tiff_is_refused_naming_the_pages():
    pages = [Image.new("RGB", (16, 12), (80 * i, 40, 200 - 60 * i)) for i in range(3)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(InputError, match=r"a multi-page TIFF \(3 pages\) is not supported: save the page"):
        load_image(data)
    assert load_image(encode(pages[0], "TIFF")).size == (16, 12)


def test_tiff_with_a_thumbnail_page_is_one_page():
    """Cameras and scanners add a reduced-resolution copy (NewSubfileType bit 0) after the image."""
    page, thumb = photo(), photo((16, 12))
    data = encode(page, "TIFF", save_all=True, append_images=[thumb], tiffinfo={254: 0})
    entry = struct.pack("<HHI", 254, 4, 1) + struct.pack("<I", 0)  # tag, LONG, count 1, value 0
    second = data.index(entry, data.index(entry) + 1)
    data = data[:second] + struct.pack("<HHI", 254, 4, 1) + struct.pack("<I", 1) + data[second + 12 :]
    assert load_image(data).size == (64, 48)


@pytest.mark.parametrize(
    "data, name",
    [
        (b"\xff\x0a" + b"\x00" * 64, "JPEG XL"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 64, "JPEG XL"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64, "MP4 video"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\x00" * 64, "Canon raw (CR3)"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML"),
        (b"PK\x03\x04" + b"\x00" * 64, "ZIP"),
    ],
    ids=["jxl", "jxl-box", "mp4", "cr3", "svg", "html", "zip"],
)
def test_refused_formats_are_named(data, name):
    with pytest.raises(InputError, match=re.escape(f"{name} files are not supported; accepted formats: PNG")):
        load_image(data)


def test_formats_pillow_reads_but_the_lab_does_not_are_named():
    with pytest.raises(InputError, match="ICO images are not supported; accepted formats: .*HEIC/HEIF, AVIF"):
        load_image(encode(photo((32, 32)), "ICO"))
