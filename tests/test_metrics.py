import math

import numpy as np
import pytest
from PIL import Image

from pipelines.metrics import lr_consistency, psnr, rgb_to_y, shave, ssim


def test_psnr_hand_computed():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)  # mse 0.01 → 10·log10(1/0.01)
    assert psnr(a * 255, b * 255, data_range=255) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf


def test_ssim_identical_and_different():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 1 - a) < 0


def test_y_channel_bt601():
    rgb = np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    y = rgb_to_y(rgb) * 255
    np.testing.assert_allclose(y[0], [235.0, 16.0, 16 + 65.481], atol=1e-9)


def test_shave():
    a = np.arange(100).reshape(10, 10)
    assert shave(a, 4).shape == (2, 2) and shave(a, 0).shape == (10, 10)


def test_lr_consistency_of_exact_box_upscale():
    lr = Image.new("RGB", (8, 8), (100, 150, 200))
    assert lr_consistency(lr.resize((32, 32)), lr) == math.inf


@pytest.mark.parametrize("shape", [(700, 90, 3), (523, 61)])  # several strips, colour and grey
def test_strip_ssim_and_psnr_equal_whole_image_scores(shape, monkeypatch):
    """Row strips (flat memory) give scikit-image's whole-image SSIM and the plain PSNR."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from pipelines import strips

    monkeypatch.setattr(strips, "STRIP_PIXELS", 100 * shape[1])  # 100-row strips at this width

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
    assert len(strips.strips(*shape[:2])) > 2  # really strip-wise
    kw = {"channel_axis": -1} if len(shape) == 3 else {}
    whole = structural_similarity(
        a / 255, b / 255, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw
    )
    assert ssim(a / 255, b / 255) == pytest.approx(whole, abs=1e-12)  # float64: scikit-image's exactly
    assert ssim(a, b, data_range=255) == pytest.approx(whole, abs=1e-6)  # 8-bit: scored in float32
    assert psnr(a, b, data_range=255) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_scores_at_nine_megapixels_stay_in_flat_memory():
    """Scoring a 3000×3000 level allocates a few strips, not whole-image float copies."""
    import threading
    import time

    import psutil

    from pipelines.metrics import score_level

    rng = np.random.default_rng(0)
    # The guards' models load, and the text detector sets itself up on its first image
    # (~270 MB kept, whatever the size: it reads a copy of at most TEXT_DETECT_SIDE px),
    # once per process, not per image: a first, smaller image pays for that here.
    small = Image.fromarray(rng.integers(0, 256, (1200, 1200, 3), dtype=np.uint8))
    score_level(small, small.copy(), small.resize((300, 300)))
    out = Image.fromarray(rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8))
    base = Image.fromarray(rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8))
    low = base.resize((750, 750))
    proc = psutil.Process()
    start = proc.memory_info().rss
    peak = [start]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    t = threading.Thread(target=watch)
    t.start()
    scores = score_level(out, base, low)
    done.set()
    t.join()
    assert 0 < scores["ssim_vs_bicubic"] < 0.1 and scores["psnr_vs_bicubic"] < 10  # two unrelated noise images
    assert peak[0] - start < 300e6  # a whole-image float64 copy alone is 216 MB; before: +1.47 GB


def test_strips_hold_a_fixed_number_of_pixels_whatever_the_width():
    """A strip of a wide image has fewer rows: its size (the metrics' memory) does not grow
    with the width; a very wide one still gets MIN_STRIP_ROWS."""
    from pipelines.strips import MIN_STRIP_ROWS, STRIP_PIXELS, strip_rows, strips

    for width in (500, 2048, 3000, 8000):
        assert strip_rows(width) * width <= STRIP_PIXELS
        spans = strips(1000, width)
        assert spans[0][0] == 0 and spans[-1][1] == 1000
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # no gap, no overlap
    assert strip_rows(3000) < strip_rows(1000)
    assert strip_rows(10**7) == MIN_STRIP_ROWS


def test_lr_consistency_compares_at_the_smaller_size():
    """Issue 15: width 400 on a 1024×768 photo scored about 25 dB at every level, because the
    output was scaled *up* to the input's size. Now both meet at the smaller size."""
    from PIL import ImageDraw
    from skimage import data

    from pipelines.metrics import downscale

    photo = Image.fromarray(data.astronaut()).resize((256, 192), Image.Resampling.LANCZOS)

    def altered(image: Image.Image) -> Image.Image:
        out = image.copy()
        w, h = out.size
        ImageDraw.Draw(out).rectangle((w // 4, h // 4, w // 2, h // 2), fill=(255, 0, 255))
        return out

    smaller = downscale(photo, (100, 75))  # a "width: 100" output that only resizes
    assert lr_consistency(smaller, photo) == math.inf
    assert lr_consistency(altered(smaller), photo) < 25

    low = downscale(photo, (64, 48))  # an upscale: compared at the input's size, as before
    larger = low.resize((256, 192), Image.Resampling.BICUBIC)
    assert lr_consistency(larger, low) > 30
    assert lr_consistency(altered(larger), low) < 25
    assert lr_consistency(photo, photo) == math.inf
