"""Where a guided diffusion step spends its time: the SD 1.5-sized UNet (random weights, no
download) on a CFG batch of 2 at a 64² latent (a 512 px tile), profiled per operator family
(convolutions, linear/matmul, attention, the rest) in fp32 and bf16, and the step time with
each attention implementation diffusers offers on this device.

    .venv/bin/python bench/unet_profile.py                       # CPU: fp32 vs bf16, per family
    .venv/bin/python bench/unet_profile.py --attention           # also: attention processors
    .venv/bin/python bench/unet_profile.py --out docs/bench/unet_profile_cpu.md

Run it on an idle machine (nothing else running: the load is printed with the table); the
figures are medians of ``--rounds`` profiled steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from common import machine, publish, table
from diffusion_cost import SD15_UNET

FAMILIES = {
    "convolution": ("conv", "mkldnn_convolution"),
    "linear / matmul": ("addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul", "baddbmm"),
    "attention": ("scaled_dot_product", "flash_attention", "softmax"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def family(name: str) -> str:
    for fam, keys in FAMILIES.items():
        if any(k in name for k in keys):
            return fam
    return "the rest"


def build_unet(dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**SD15_UNET).to("cpu", dtype).eval()


def inputs(dtype: torch.dtype, latent: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, latent, latent, generator=g).to(dtype)
    emb = torch.randn(2, 77, 768, generator=g).to(dtype)
    return x, torch.tensor([500, 500]), emb


def profiled_step(unet: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Self CPU seconds per family of one step (top-level aten ops only, no double counting)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        unet(args[0], args[1], encoder_hidden_states=args[2])
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        seconds[family(event.key)] += event.self_cpu_time_total / 1e6
    return dict(seconds)


def step_time(unet: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> float:
    with torch.inference_mode():
        t = time.perf_counter()
        unet(args[0], args[1], encoder_hidden_states=args[2])
        return time.perf_counter() - t


def per_family(rounds: int, latent: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, dtype in DTYPES.items():
        unet, args = build_unet(dtype), inputs(dtype, latent)
        step_time(unet, args)  # warm-up: oneDNN picks its kernels
        runs = [profiled_step(unet, args) for _ in range(rounds)]
        walls = [step_time(unet, args) for _ in range(rounds)]
        fams = [*FAMILIES, "the rest"]
        rows.append(
            [name, f"{statistics.median(walls):.2f}"]
            + [f"{statistics.median(r.get(f, 0.0) for r in runs):.2f}" for f in fams]
        )
    return rows


def attention_variants(rounds: int, latent: int) -> list[list[object]]:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    rows: list[list[object]] = []
    for name, dtype in DTYPES.items():
        unet, args = build_unet(dtype), inputs(dtype, latent)
        for label, processor in (
            ("SDPA (AttnProcessor2_0)", AttnProcessor2_0()),
            ("baddbmm + softmax", AttnProcessor()),
        ):
            unet.set_attn_processor(processor)
            step_time(unet, args)
            rows.append([name, label, f"{statistics.median(step_time(unet, args) for _ in range(rounds)):.2f}"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latent", type=int, default=64, help="latent side (64 = a 512 px tile)")
    p.add_argument("--attention", action="store_true", help="also time the attention processors")
    p.add_argument("--out", help="write the Markdown here too")
    a = p.parse_args()
    lines = [
        f"# UNet step per operator family ({machine()})",
        "",
        f"SD 1.5-sized UNet, random weights, CFG batch 2, latent {a.latent}², median of {a.rounds}.",
        "",
        table(["dtype", "step (s)", *[f"{f} (s)" for f in FAMILIES], "the rest (s)"], per_family(a.rounds, a.latent)),
    ]
    if a.attention:
        lines += ["", table(["dtype", "attention", "step (s)"], attention_variants(a.rounds, a.latent))]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
