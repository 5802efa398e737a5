"""Real-ESRGAN x4plus efficiency: achieved GFLOP/s of the ×4 upscaler against a plain 3×3
convolution (64→64 channels, 128² map) measured in the same run on the same device.

    .venv/bin/python bench/esrgan_efficiency.py [--device cuda] [--dtype fp16] [--size 750x562]
"""

from __future__ import annotations

import argparse

import torch
from common import machine, median_time, table

from pipelines.base import NeuralSettings, neural_upscale
from pipelines.device import pick_device
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--tile", type=int, default=64, help="input tile for the kernel-level measurement")
    p.add_argument("--size", default="160x120", help="WxH of a real photo run through the tiled path")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device, dtype = pick_device(args.device, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model = load_upscaler().to(device, dtype).to(memory_format=torch.channels_last)

    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, dtype).to(memory_format=torch.channels_last).eval()
    xc = torch.rand(1, 64, 128, 128, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv_gflop = 2 * 64 * 64 * 9 * 128 * 128 / 1e9
    with torch.inference_mode():
        t_conv = median_time(lambda: conv(xc), repeats=args.repeats * 4, warmup=3, sync=sync)
    conv_rate = conv_gflop / t_conv

    t = args.tile
    x = torch.rand(1, 3, t, t, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = conv_flops(model, t, t)
    with torch.inference_mode():
        t_model = median_time(lambda: model(x), repeats=args.repeats, warmup=1, sync=sync)
    model_rate = flops / 1e9 / t_model
    plain = load_upscaler().to(device, dtype)  # contiguous (NCHW) layout: what channels_last buys
    xp = x.contiguous()
    with torch.inference_mode():
        t_plain = median_time(lambda: plain(xp), repeats=args.repeats, warmup=1, sync=sync)

    from PIL import Image
    from skimage import data

    w, h = (int(v) for v in args.size.split("x"))
    photo = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.LANCZOS)
    settings = NeuralSettings(
        device=device, dtype=dtype, tile=192 if device.type == "cpu" else 1024, pad=16, batch_size=4
    )
    t_photo = median_time(
        lambda: neural_upscale(model, photo, (4 * w, 4 * h), settings),
        repeats=max(1, args.repeats // 2),
        warmup=1,
        sync=sync,
    )
    photo_flops = conv_flops(model, h, w)

    print(f"# Real-ESRGAN efficiency on {machine()}, {device.type} {dtype}\n")
    print(f"x4plus: {flops / (t * t) / 1e6:.1f} MFLOP per input pixel (hooks on every convolution)\n")
    rows = [
        ["3×3 conv 64→64, 128²", f"{conv_gflop:.2f}", f"{t_conv * 1e3:.2f}", f"{conv_rate:.0f}", "100%"],
        [
            f"x4plus, {t}² input tile",
            f"{flops / 1e9:.1f}",
            f"{t_model * 1e3:.1f}",
            f"{model_rate:.0f}",
            f"{model_rate / conv_rate:.0%}",
        ],
        [
            f"x4plus, {t}² tile, NCHW (no channels_last)",
            f"{flops / 1e9:.1f}",
            f"{t_plain * 1e3:.1f}",
            f"{flops / 1e9 / t_plain:.0f}",
            f"{flops / 1e9 / t_plain / conv_rate:.0%}",
        ],
        [
            f"x4plus tiled, {w}×{h} photo → ×4",
            f"{photo_flops / 1e9:.1f}",
            f"{t_photo * 1e3:.1f}",
            f"{photo_flops / 1e9 / t_photo:.0f}",
            f"{photo_flops / 1e9 / t_photo / conv_rate:.0%}",
        ],
    ]
    print(table(["what", "GFLOP", "median ms", "GFLOP/s", "of conv"], rows))


if __name__ == "__main__":
    main()
