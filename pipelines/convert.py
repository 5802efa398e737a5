"""The one place where images change format.

Boundary format: PIL ``RGB`` images (8-bit). Inside: float32 tensors ``(N, 3, H, W)`` in
``[0, 1]`` (torch) or float64 arrays ``(H, W, 3)`` in ``[0, 1]`` (numpy, for metrics).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → float32 tensor ``(1, 3, H, W)`` in ``[0, 1]`` on the CPU."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def pil_to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → uint8 tensor ``(1, 3, H, W)`` (0..255) on the CPU: a quarter of float32's memory."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Tensor ``(1, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]`` (any dtype/device) → PIL RGB.

    Values are clamped to ``[0, 1]`` and rounded to the nearest 8-bit level.
    """
    t = tensor.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"expected shape (3, H, W), got {tuple(t.shape)}")
    arr = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def pil_to_array(image: Image.Image) -> np.ndarray:
    """PIL RGB or L → float64 array ``(H, W, 3)`` (or ``(H, W)``) in ``[0, 1]``."""
    return np.asarray(image, dtype=np.float64) / 255.0
