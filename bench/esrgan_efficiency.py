"""Real-ESRGAN x4plus efficiency: achieved GFLOP/s of the ×4 upscaler against a plain 3×3
convolution (64→64 channels, 128² map) measured in the same run, on the same device, in the
same dtype. Every dtype's measurements are interleaved round by round (conv, tile, photo for
fp32, then for bf16, then the next round), so a machine whose speed drifts during the run
affects all rows alike; medians over the rounds.

    .venv/bin/python bench/esrgan_efficiency.py                      # CPU: fp32 and bf16
    .venv/bin/python bench/esrgan_efficiency.py --device cuda --dtypes fp16,bf16 --size 750x562
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import machine, table

from pipelines.base import NeuralSettings, neural_upscale
from pipelines.device import DTYPES, pick_device
from pipelines.realesrgan import load_upscaler


def conv_flops(model: torch.nn.Module, h: int, w: int) -> int:
    """Multiply-adds ×2 of every convolution for an ``h``×``w`` input (hooks, one pass)."""
    total = [0]

    def hook(mod: torch.nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += 2 * mod.in_channels * mod.out_channels * k * out.shape[-1] * out.shape[-2] // mod.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, h, w, device=next(model.parameters()).device, dtype=next(model.parameters()).dtype))
    for hd in handles:
        hd.remove()
    return total[0]


def timed(fn: Callable[[], object], sync: Callable[[], None] | None) -> float:
    t = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - t


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device")
    p.add_argument("--dtypes", help="comma-separated (default: fp32,bf16 on a CPU, the device's best elsewhere)")
    p.add_argument("--tile", type=int, default=64, help="input tile for the kernel-level measurement")
    p.add_argument("--size", default="160x120", help="WxH of a real photo run through the tiled path")
    p.add_argument("--rounds", type=int, default=5)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device, best = pick_device(args.device, None)
    names = args.dtypes.split(",") if args.dtypes else (["fp32", "bf16"] if device.type == "cpu" else [None])
    dtypes = [DTYPES[n] if n else best for n in names]
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    from PIL import Image
    from skimage import data

    w, h = (int(v) for v in args.size.split("x"))
    photo = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.LANCZOS)
    t = args.tile
    conv_gflop = 2 * 64 * 64 * 9 * 128 * 128 / 1e9
    setups = []
    for dtype in dtypes:
        model = load_upscaler().to(device, dtype).to(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, dtype).to(memory_format=torch.channels_last).eval()
        xc = torch.rand(1, 64, 128, 128, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x = torch.rand(1, 3, t, t, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        settings = NeuralSettings(
            device=device, dtype=dtype, tile=192 if device.type == "cpu" else 1024, pad=16, batch_size=4
        )
        setups.append(
            {
                "conv": lambda conv=conv, xc=xc: conv(xc),
                "tile": lambda model=model, x=x: model(x),
                "photo": lambda model=model, settings=settings: neural_upscale(model, photo, (4 * w, 4 * h), settings),
            }
        )
    flops = conv_flops(load_upscaler().to(device), t, t)
    photo_flops = conv_flops(load_upscaler().to(device), h, w)
    samples: list[dict[str, list[float]]] = [{k: [] for k in s} for s in setups]
    with torch.inference_mode():
        for rnd in range(args.rounds + 1):  # round 0 warms up
            for setup, got in zip(setups, samples, strict=True):
                for key, fn in setup.items():
                    for _ in range(4 if key == "conv" else 1):
                        dt = timed(fn, sync)
                        if rnd:
                            got[key].append(dt)
    med = [{k: statistics.median(v) for k, v in got.items()} for got in samples]

    print(f"# Real-ESRGAN efficiency on {machine()}, {device.type}\n")
    print(f"x4plus: {flops / (t * t) / 1e6:.1f} MFLOP per input pixel (hooks on every convolution); ")
    print(f"{args.rounds} interleaved rounds, medians\n")
    rows = []
    for name, m in zip(names, med, strict=True):
        label = name or str(best).removeprefix("torch.")
        conv_rate = conv_gflop / m["conv"]
        rows.append(
            [
                f"{label}: 3×3 conv 64→64, 128²",
                f"{conv_gflop:.2f}",
                f"{m['conv'] * 1e3:.2f}",
                f"{conv_rate:.0f}",
                "100%",
                "",
            ]
        )
        for key, what, fl in (
            ("tile", f"x4plus, {t}² input tile", flops),
            ("photo", f"x4plus tiled, {w}×{h} photo → ×4", photo_flops),
        ):
            rate = fl / 1e9 / m[key]
            speedup = f"{med[0][key] / m[key]:.2f}×" if len(med) > 1 else ""
            rows.append(
                [
                    f"{label}: {what}",
                    f"{fl / 1e9:.1f}",
                    f"{m[key] * 1e3:.1f}",
                    f"{rate:.0f}",
                    f"{rate / conv_rate:.0%}",
                    speedup,
                ]
            )
    print(table(["what", "GFLOP", "median ms", "GFLOP/s", "of the same-run conv", f"speed vs {names[0]}"], rows))


if __name__ == "__main__":
    main()
