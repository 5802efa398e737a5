"""Output formats and metadata: JPEG/WebP at a quality, a file-size target found by bisection,
the source's EXIF (GPS), colour profile and DPI carried through, ``strip_metadata`` removing
them, the manifest embedded and replayed (``cli.py upscale --replay``)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipelines.errors import RequestError
from pipelines.imaging import load_image
from pipelines.output import (
    OutputSpec,
    encode,
    encode_answer,
    is_srgb,
    metadata_for,
    read_manifest,
    srgb_profile,
)
from pipelines.request import RequestFields, parse_request
from pipelines.waifu2x import jpeg_quality

ROOT = Path(__file__).resolve().parent.parent
GPS_IFD, ORIENTATION, MAKE = 0x8825, 0x0112, 0x010F


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def wide_gamut_profile(description: str = "Test Adobe RGB (wide gamut)") -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile with Adobe RGB (1998) primaries (D50)
    and gamma 2.2: Pillow ships no profile but sRGB, and a wide-gamut one changes pixels."""
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + struct.pack(">IIHB", 0, 0, 0, 0) + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.6097559, 0.3111145, 0.0194702)),
        (b"gXYZ", _xyz(0.2052401, 0.6256560, 0.0608902)),
        (b"bXYZ", _xyz(0.1492240, 0.0632355, 0.7445396)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    header = (
        struct.pack(">I", offset + len(body))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + body


def noise(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """Smooth colour with some noise: a picture whose file size moves with the quality."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([x * 200, y * 180, (1 - x) * 160], axis=-1) + rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    exif[ORIENTATION] = 6  # rotate 90° clockwise to view
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "E", 4: (0.0, 7.0, 40.0)}
    return exif


def source_jpeg(tmp_path: Path) -> Path:
    """A phone-like JPEG: EXIF with GPS and orientation 6, a wide-gamut profile, 300 dpi."""
    path = tmp_path / "source.jpg"
    noise((64, 48)).save(path, quality=95, exif=gps_exif(), icc_profile=wide_gamut_profile(), dpi=(300, 300))
    return path


def reopen(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --------------------------------------------------------------------------- formats


def test_jpeg_and_webp_are_encoded_at_the_quality_asked():
    img = noise()
    low = encode(img, OutputSpec(format="jpeg", quality=40), metadata_for_nothing())
    high = encode(img, OutputSpec(format="jpeg", quality=95), metadata_for_nothing())
    assert reopen(low.data).format == "JPEG" and (low.quality, low.lossless) == (40, False)
    assert jpeg_quality(reopen(low.data)) == 40 and jpeg_quality(reopen(high.data)) == 95
    assert low.size == len(low.data) < high.size
    webp = encode(img, OutputSpec(format="webp", quality=60), metadata_for_nothing())
    assert reopen(webp.data).format == "WEBP" and (webp.quality, webp.lossless) == (60, False)
    assert np.abs(np.asarray(reopen(webp.data).convert("RGB"), int) - np.asarray(img, int)).max() > 0
    for spec in (OutputSpec(format="webp", quality=100), OutputSpec(format="webp", lossless=True)):
        exact = encode(img, spec, metadata_for_nothing())
        assert exact.lossless and exact.quality is None
        assert np.array_equal(np.asarray(reopen(exact.data).convert("RGB")), np.asarray(img))


def metadata_for_nothing():
    return metadata_for(spec=OutputSpec(strip_metadata=True), exif=None, icc=None, dpi=None, scale=1, manifest=None)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_max_file_size_gives_the_highest_quality_that_fits(fmt):
    img = noise((192, 128))
    full = encode(img, OutputSpec(format=fmt, quality=100 if fmt == "jpeg" else 99), metadata_for_nothing())
    limit = full.size // 3
    fitted = encode(img, OutputSpec(format=fmt, max_file_size=limit), metadata_for_nothing())
    assert fitted.size <= limit and fitted.quality is not None and 1 < fitted.quality < 100
    above = encode(img, OutputSpec(format=fmt, quality=fitted.quality + 1), metadata_for_nothing())
    assert above.size > limit  # the highest that fits, not merely one that fits
    assert parse_request({"output_format": fmt, "max_file_size": "1MB"}).output.max_file_size == 1_000_000
    assert parse_request({"output_format": fmt, "max_file_size": "500kb"}).output.max_file_size == 500_000


def test_a_max_file_size_no_quality_meets_names_the_field_and_the_smallest_size():
    img = noise((512, 512))
    with pytest.raises(RequestError) as err:
        encode(img, OutputSpec(format="jpeg", max_file_size=2000), metadata_for_nothing())
    assert err.value.field == "max_file_size"
    smallest = encode(img, OutputSpec(format="jpeg", quality=1), metadata_for_nothing()).size
    assert f"the smallest reached was {smallest} bytes at quality 1" in str(err.value)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"quality": 80}, "quality", "jpeg and webp only"),
        ({"output_format": "gif"}, "output_format", "['png', 'jpeg', 'webp']"),
        ({"output_format": "jpeg", "quality": 0}, "quality", "1..100"),
        ({"output_format": "webp", "quality": 101}, "quality", "1..100"),
        ({"output_format": "jpeg", "quality": "high"}, "quality", "1..100"),
        ({"max_file_size": "1MB"}, "max_file_size", "jpeg and webp only"),
        ({"output_format": "jpeg", "max_file_size": "1 GBs"}, "max_file_size", "'1MB' or '500kb'"),
        ({"output_format": "jpeg", "max_file_size": 10}, "max_file_size", "at least 1024"),
        ({"output_format": "jpeg", "lossless": True}, "lossless", "webp only"),
        ({"output_format": "webp", "lossless": True, "max_file_size": 5000}, "max_file_size", "lossless"),
        ({"strip_metadata": "yes"}, "strip_metadata", "true or false"),
        ({"icc": "display-p3"}, "icc", "['srgb', 'source']"),
        ({"dpi": 0}, "dpi", "(0, 100000]"),
    ],
)
def test_each_output_field_is_checked_naming_it(fields, field, words):
    with pytest.raises(RequestError) as err:
        parse_request(fields)
    assert err.value.field == field and words in str(err.value)


def test_a_bad_output_field_is_a_422_at_the_rest_door():
    from lab.rest import Refused, request_and_image

    with pytest.raises(Refused) as err:
        asyncio.run(request_and_image({"image_base64": "AAAA", "quality": 80}))
    doc = json.loads(bytes(err.value.response.body))
    assert err.value.response.status_code == 422 and doc["field"] == "quality"


def test_form_fields_lay_the_output_over_the_request_file():
    base = {"output_format": "jpeg", "quality": 70}
    assert RequestFields(max_file_size="2MB").build(base).output == OutputSpec("jpeg", 70, 2_000_000)
    assert RequestFields(output_format="png").build(base).output == OutputSpec()  # png drops the jpeg quality
    assert parse_request(parse_request(base).to_json()).output == OutputSpec("jpeg", 70)  # replayable


# --------------------------------------------------------------------------- metadata


def test_the_source_metadata_is_kept_on_load(tmp_path):
    loaded = load_image(source_jpeg(tmp_path))
    assert loaded.size == (48, 64)  # orientation applied to the pixels...
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif[ORIENTATION] == 1 and exif[MAKE] == "TestCam"  # ...so the tag says 1
    assert exif.get_ifd(GPS_IFD)[1] == "N"
    assert loaded.icc_profile == wide_gamut_profile() and loaded.dpi == (300.0, 300.0)
    raw = Image.open(source_jpeg(tmp_path)).transpose(Image.Transpose.ROTATE_270)
    converted = ImageCms.profileToProfile(
        raw, ImageCms.ImageCmsProfile(io.BytesIO(wide_gamut_profile())), ImageCms.createProfile("sRGB")
    )
    diff = np.abs(np.asarray(loaded.rgb, int) - np.asarray(converted, int))
    assert diff.max() <= 1  # the models see sRGB (the profile's round trip through bytes: ±1)
    assert np.abs(np.asarray(loaded.rgb, int) - np.asarray(raw, int)).max() > 10  # not the raw values


def answer_bytes(loaded, spec: OutputSpec, manifest=None) -> bytes:
    big = loaded.rgb.resize((loaded.size[0] * 2, loaded.size[1] * 2), Image.Resampling.BICUBIC)
    return encode_answer(big, spec, source=loaded, scale=2.0, manifest=manifest or {"request": {}}, level=8).data


def answer_of(loaded, spec: OutputSpec, manifest=None) -> Image.Image:
    return reopen(answer_bytes(loaded, spec, manifest))


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_exif_gps_profile_dpi_and_manifest_reach_the_output(tmp_path, fmt):
    loaded = load_image(source_jpeg(tmp_path))
    out = answer_of(loaded, OutputSpec(format=fmt), {"request": {"seed": 7}})
    exif = out.getexif()
    assert exif[MAKE] == "TestCam" and exif[ORIENTATION] == 1 and exif.get_ifd(GPS_IFD)[1] == "N"
    assert out.info["icc_profile"] == srgb_profile()  # the pixels are sRGB, and say so
    if fmt != "webp":  # WebP keeps DPI in the EXIF only
        assert out.info["dpi"] == pytest.approx((600, 600), abs=0.01)  # print size kept: 300 dpi × 2
    assert float(exif[0x011A]) == pytest.approx(600)
    assert read_manifest(out) == {"request": {"seed": 7}, "output_level": 8}
    fixed = answer_of(loaded, OutputSpec(format=fmt, dpi=72))
    assert float(fixed.getexif()[0x011A]) == pytest.approx(72)


def test_icc_source_converts_back_to_the_source_profile(tmp_path):
    loaded = load_image(source_jpeg(tmp_path))
    out = answer_of(loaded, OutputSpec(icc="source"))
    assert out.info["icc_profile"] == wide_gamut_profile() and not is_srgb(out.info["icc_profile"])
    srgb = answer_of(loaded, OutputSpec())
    back = ImageCms.profileToProfile(
        out, ImageCms.ImageCmsProfile(io.BytesIO(wide_gamut_profile())), ImageCms.createProfile("sRGB")
    )
    diff = np.abs(np.asarray(back, int) - np.asarray(srgb, int))
    assert diff.mean() < 2 and not np.array_equal(np.asarray(out), np.asarray(srgb))


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_strip_metadata_removes_exif_gps_profile_and_manifest(tmp_path, fmt):
    loaded = load_image(source_jpeg(tmp_path))
    data = answer_bytes(loaded, OutputSpec(format=fmt, strip_metadata=True), {"request": {"seed": 7}})
    out = reopen(data)
    assert MAKE not in out.getexif() and not out.getexif().get_ifd(GPS_IFD)
    assert "icc_profile" not in out.info and "xmp" not in out.info and read_manifest(out) is None
    assert b"TestCam" not in data and b"seed" not in data


# --------------------------------------------------------------------------- the REST answer and the CLI


def test_the_rest_answer_encodes_and_records_the_output(tmp_path):
    from lab.rest import answer
    from pipelines.engine import Engine, EngineConfig

    loaded = load_image(source_jpeg(tmp_path))
    req = parse_request({"upscale_strength": 8, "width": "200%", "output_format": "webp", "quality": 70, "seed": 3})
    result = Engine(EngineConfig(device="cpu")).run(loaded, req)
    response = answer(result, req, as_json=True, source=loaded)
    doc = json.loads(bytes(response.body))
    data = base64.b64decode(doc["image_base64"])
    out = reopen(data)
    assert out.format == "WEBP" and out.size == (96, 128)
    assert doc["manifest"]["output"] == {
        "level": 8,
        "format": "webp",
        "quality": 70,
        "lossless": False,
        "bytes": len(data),
    }
    assert out.getexif().get_ifd(GPS_IFD)[1] == "N" and float(out.getexif()[0x011A]) == pytest.approx(600)
    embedded = read_manifest(out)
    assert embedded["output_level"] == 8 and embedded["request"]["seed"] == 3
    plain = answer(result, req, as_json=False, source=loaded)
    assert plain.media_type == "image/webp" and plain.headers["x-quality"] == "70"


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *argv], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_cli_formats_replay_and_errors(tmp_path):
    src = source_jpeg(tmp_path)
    first, jpeg, again = tmp_path / "first.png", tmp_path / "out.jpg", tmp_path / "again.png"
    run = cli("upscale", str(src), "-o", str(first), "--strength", "8", "--width", "150%", "--seed", "11")
    assert run.returncode == 0, run.stderr
    run = cli("upscale", str(src), "-o", str(jpeg), "--strength", "8", "--width", "150%", "--quality", "60")
    assert run.returncode == 0 and "jpeg quality 60" in run.stdout, run.stderr
    assert Image.open(jpeg).format == "JPEG" and jpeg_quality(Image.open(jpeg)) == 60
    run = cli("upscale", str(src), "--replay", str(first), "-o", str(again))
    assert run.returncode == 0, run.stderr
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(first)))  # same pixels
    assert read_manifest(Image.open(again))["request"] == read_manifest(Image.open(first))["request"]
    replayed = tmp_path / "from_jpeg.png"
    assert cli("upscale", str(src), "--replay", str(jpeg), "-o", str(replayed)).returncode == 0  # XMP read back
    assert np.array_equal(np.asarray(Image.open(replayed)), np.asarray(Image.open(first)))
    stripped = tmp_path / "stripped.webp"
    assert cli("upscale", str(src), "-o", str(stripped), "--strength", "8", "--strip-metadata").returncode == 0
    run = cli("upscale", str(src), "--replay", str(stripped), "-o", str(tmp_path / "x.png"))
    assert run.returncode != 0 and "no upscale-lab manifest" in run.stderr
    run = cli("upscale", str(src), "-o", str(tmp_path / "q.png"), "--strength", "8", "--quality", "50")
    assert run.returncode == 2 and "quality: applies to jpeg and webp only" in run.stderr
    run = cli("upscale", str(src), "-o", str(tmp_path / "s.jpg"), "--strength", "8", "--max-file-size", "1100")
    assert run.returncode == 2 and "max_file_size" in run.stderr and "at quality 1" in run.stderr


def test_grid_refuses_an_output_format_it_cannot_honour(tmp_path):
    """``cli.py grid`` writes PNG sets: a request file asking for another format is an error
    naming the field, never a silent ignore."""
    import subprocess
    import sys

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"width": 96, "output_format": "jpeg"}))
    done = subprocess.run(
        [sys.executable, "cli.py", "grid", "examples/astronaut_portrait.png", "--request", str(request)]
        + ["-o", str(tmp_path / "out"), "--levels", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "output_format" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()
