"""Device and dtype choice: CUDA (bf16 where supported, else fp16), MPS (fp16), CPU (fp32)."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str | None = None, dtype: str | None = None) -> tuple[torch.device, torch.dtype]:
    """Resolve ``device`` ("cuda", "cuda:1", "mps", "cpu" or None = best available) and
    ``dtype`` ("fp32", "fp16", "bf16" or None = best for the device).

    Raises ValueError naming the argument for unknown or unavailable choices.
    """
    if device is None:
        if torch.cuda.is_available():
            dev = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device: unknown device {device!r} (cpu, cuda, cuda:N, mps)") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was asked for but no CUDA device is available")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device: 'mps' was asked for but MPS is not available")
    if dtype is None:
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif dev.type == "mps":
            dt = torch.float16
        else:
            dt = torch.float32
    else:
        if dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {sorted(DTYPES)}, got {dtype!r}")
        dt = DTYPES[dtype]
    return dev, dt


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)
