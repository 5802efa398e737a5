"""The cleanup pass: blocking measurably reduced on JPEG q<=30, clean inputs untouched."""

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from pipelines.base import bicubic, bicubic_clean, blockiness, deblock
from pipelines.metrics import psnr


def jpeg(img, q):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def gray(img):
    return np.asarray(img, dtype=np.float64).mean(axis=2)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("quality", [10, 20, 30])
def test_blocking_reduced_on_compressed(name, quality):
    clean = Image.fromarray(getattr(data, name)())
    compressed = jpeg(clean, quality)
    fixed, score = deblock(compressed)
    assert score >= 1.25
    before, after = blockiness(gray(compressed)), blockiness(gray(fixed))
    assert after < before - 0.2 * (before - 1.0)  # at least a fifth of the excess blocking gone
    # and closer to (or as close as) the original, never visibly worse
    a = np.asarray(clean, np.float64)
    assert (
        psnr(a, np.asarray(fixed, np.float64), data_range=255)
        > psnr(a, np.asarray(compressed, np.float64), data_range=255) - 0.1
    )


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_clean_input_untouched(name):
    clean = Image.fromarray(getattr(data, name)())
    size = (clean.width * 2, clean.height * 2)
    assert np.array_equal(np.asarray(bicubic_clean(clean, size)), np.asarray(bicubic(clean, size)))
