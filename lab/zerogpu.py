"""ZeroGPU support: the ``gpu`` decorator (``spaces.GPU`` on a ZeroGPU Space, a no-op elsewhere)."""

from __future__ import annotations

try:  # ZeroGPU wants `spaces` imported before torch initialises CUDA: app.py imports this module first
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None

from typing import Any

from pipelines.errors import LabError
from pipelines.imaging import LoadedImage
from pipelines.request import UpscaleRequest, plan_size


def estimate_gpu_seconds(*args: Any, **kwargs: Any) -> int:
    """ZeroGPU duration: about 10 s per output megapixel per diffusion level, at least 60 s."""
    request: UpscaleRequest | None = next((a for a in args if isinstance(a, UpscaleRequest)), None)
    image: LoadedImage | None = next((a for a in args if isinstance(a, LoadedImage)), None)
    if request is None or image is None:
        return 120
    try:
        plan = plan_size(image.size, request)
    except LabError:
        return 60
    mp = plan.content[0] * plan.content[1] / 1e6
    generative = sum(1 for n in request.effective_levels if request.table.get(n).generative)
    return int(min(300, max(60, 20 + 10 * mp * max(1, generative))))


if spaces is not None:  # on a ZeroGPU Space the GPU is attached only inside spaces.GPU functions
    gpu = spaces.GPU(duration=estimate_gpu_seconds)
else:  # anywhere else: run plainly

    def gpu(fn):  # type: ignore[no-untyped-def]
        return fn
