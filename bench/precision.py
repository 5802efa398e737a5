"""Drift of a reduced-precision diffusion pass against fp32: SD 1.5-sized random parts (the
same weights in both runs), one 256 px base, one LoRA-1.0 pass with the preset settings
(9 of 20 steps). Reports PSNR and the largest difference of the colour-fixed output against
the fp32 output, and the relative error of the final latents where the engine exposes them.

    .venv/bin/python bench/precision.py                 # CPU: bf16 vs fp32
    python bench/precision.py --device cuda --dtypes fp16,bf16

Run it in an older checkout too (``git worktree add /tmp/old <commit>``; the script copes with
the older API) to compare before and after a precision change.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from common import machine, table
from diffusion_cost import random_refiner
from PIL import Image

import presets
from pipelines.convert import pil_to_tensor
from pipelines.device import pick_device
from pipelines.refiner import RefineJob, refine


def one_pass(
    device: torch.device, dtype: torch.dtype, base: Image.Image
) -> tuple[np.ndarray, torch.Tensor | None, float]:
    ref = random_refiner(device, dtype)
    fields = {
        "bases": {"b": pil_to_tensor(base)},
        "scales": {1.0: ["b"]},
        "prompt": presets.DEFAULT_PROMPT,
        "negative_prompt": presets.DEFAULT_NEGATIVE_PROMPT,
        "seed": 0,
        "settings": {1.0: presets.DIFFUSION_SETTINGS[1.0]},
    }
    if "keep_latents" in RefineJob.__dataclass_fields__:
        fields["keep_latents"] = True
    t = time.perf_counter()
    out = refine(ref, RefineJob(**fields))
    seconds = time.perf_counter() - t
    if isinstance(out, tuple):  # the older API: (images, warnings)
        return np.asarray(out[0][(1.0, "b")], dtype=np.float64), None, seconds
    return np.asarray(out.images[(1.0, "b")], dtype=np.float64), out.latents[(1.0, "b")].float(), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", default="bf16", help="comma-separated, each against fp32")
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.Resampling.LANCZOS)
    device, _ = pick_device(args.device, "fp32")
    ref_img, ref_lat, ref_s = one_pass(device, torch.float32, base)
    rows = [["fp32", f"{ref_s:.1f}", "reference", "", ""]]
    for name in args.dtypes.split(","):
        _, dtype = pick_device(args.device, name)
        img, lat, seconds = one_pass(device, dtype, base)
        mse = float(np.mean((img - ref_img) ** 2))
        psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
        rel = "" if lat is None or ref_lat is None else f"{float((lat - ref_lat).norm() / ref_lat.norm()):.2%}"
        rows.append([name, f"{seconds:.1f}", f"{psnr:.2f}", f"{np.abs(img - ref_img).max():.0f}", rel])
    print(f"machine: {machine()}; {args.size}px base, LoRA 1.0 preset pass\n")
    print(table(["dtype", "s", "PSNR vs fp32 (dB)", "max diff (/255)", "latent rel. error"], rows))


if __name__ == "__main__":
    main()
