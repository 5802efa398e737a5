"""GPU tests (opt-in: run where CUDA is available, e.g. bench/gpu_check.sh on a lent H100)."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import presets
from pipelines.base import NeuralSettings, neural_upscale
from pipelines.engine import Engine, EngineConfig
from pipelines.metrics import psnr
from pipelines.request import UpscaleRequest
from testing.tiny import tiny_settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (opt-in GPU test)"),
]


def test_esrgan_half_precision_matches_fp32():
    from pipelines.realesrgan import load_upscaler

    lr = Image.fromarray(data.astronaut()).resize((96, 96), Image.Resampling.LANCZOS)
    cpu = neural_upscale(load_upscaler(), lr, (384, 384), NeuralSettings(torch.device("cpu"), torch.float32, 192, 16))
    for dtype in (torch.float16, torch.bfloat16):
        model = load_upscaler().to("cuda", dtype)
        gpu = neural_upscale(model, lr, (384, 384), NeuralSettings(torch.device("cuda"), dtype, 48, 16))
        assert psnr(np.asarray(gpu, np.float64) / 255, np.asarray(cpu, np.float64) / 255) > 35, dtype


@pytest.mark.parametrize("dtype", [None, "fp16"])  # None: the automatic choice (bf16 on Hopper)
def test_nine_levels_on_cuda(tiny_models, photo, dtype):
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cuda", dtype=dtype))
    assert engine.dtype in (torch.float16, torch.bfloat16)
    first = engine.run(photo, UpscaleRequest(width=128, levels=presets.LEVEL_NUMBERS, seed=2))
    assert all(lv.status == "ok" and lv.image.size == (128, 128) for lv in first.levels)
    again = engine.run(photo, UpscaleRequest(width=128, levels=presets.LEVEL_NUMBERS, seed=2))
    for a, b in zip(first.levels, again.levels, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_gpu_memory_released_after_a_cancelled_run(tiny_models, photo):
    """A run stopped mid-diffusion leaves no tensors behind on the GPU (written for the next
    lent GPU; not yet run on one)."""
    import gc
    import threading

    from pipelines.errors import Cancelled

    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cuda"))
    request = UpscaleRequest(width=256, levels=presets.LEVEL_NUMBERS, seed=2)
    engine.run(photo, request)  # models loaded, caches warm
    gc.collect()
    torch.cuda.synchronize()
    settled = torch.cuda.memory_allocated()
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage.startswith("diffusion") and done:
            cancel.set()

    stopped = False
    try:
        engine.run(photo, request, progress=progress, cancel=cancel)
    except Cancelled:
        stopped = True  # the traceback (and its frames' tensors) is dropped on leaving except
    assert stopped
    gc.collect()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= settled + (1 << 20)
