"""Real-ESRGAN x4plus on a GPU, one 750×562 photo → ×4 through the engine's tiled path, in
variants: channels_last (the engine's default), plain NCHW, ``cudnn.benchmark``, and
``torch.compile``; medians of interleaved rounds, against the last recorded H100 figure
(195 ms fp16, docs/performance.md). GPU only.

    python bench/gpu_variants.py --dtype fp16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine, table
from PIL import Image
from skimage import data

from pipelines.base import NeuralSettings, neural_upscale
from pipelines.device import pick_device
from pipelines.realesrgan import load_upscaler

LAST_H100_MS = 195.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="fp16")
    p.add_argument("--size", default="750x562")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    device, dtype = pick_device("cuda", args.dtype)
    w, h = (int(v) for v in args.size.split("x"))
    photo = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.LANCZOS)
    cl = load_upscaler().to(device, dtype).to(memory_format=torch.channels_last)
    nchw = load_upscaler().to(device, dtype)
    compiled = torch.compile(load_upscaler().to(device, dtype).to(memory_format=torch.channels_last))
    variants = {
        "channels_last (engine default)": (cl, True, False),
        "NCHW": (nchw, False, False),
        "channels_last + cudnn.benchmark": (cl, True, True),
        "channels_last + torch.compile": (compiled, True, False),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for rnd in range(args.rounds + 2):  # two warm-up rounds (compile, cudnn autotuning)
        for name, (model, channels_last, bench) in variants.items():
            torch.backends.cudnn.benchmark = bench
            settings = NeuralSettings(device, dtype, tile=1024, pad=16, batch_size=8, channels_last=channels_last)
            torch.cuda.synchronize()
            t = time.perf_counter()
            neural_upscale(model, photo, (4 * w, 4 * h), settings)
            torch.cuda.synchronize()
            if rnd >= 2:
                times[name].append(time.perf_counter() - t)
    torch.backends.cudnn.benchmark = False
    print(f"# x4plus {w}×{h} → ×4, {args.dtype}, {machine()}; {args.rounds} interleaved rounds\n")
    rows = [
        [name, f"{statistics.median(v) * 1e3:.0f}", f"{LAST_H100_MS / (statistics.median(v) * 1e3):.2f}×"]
        for name, v in times.items()
    ]
    print(table(["variant", "median ms", f"speed vs last H100 ({LAST_H100_MS:.0f} ms)"], rows))


if __name__ == "__main__":
    main()
