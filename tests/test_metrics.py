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
