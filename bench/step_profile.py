"""Where one guided diffusion step spends its time, and what makes it faster on this device.

SD 1.5-sized random parts (UNet, ControlNet from it, VAE; no download), the engine's step: the
ControlNet and the UNet on a CFG batch of 2, at 512 px and 256 px tiles (64² and 32² latents).

1. **Per part and operator family** (convolutions, linear/matmul, attention, norms, the rest),
   fp32 and bf16: self CPU seconds of the top-level operators, medians of ``--rounds``.
2. **The VAE** per tile (encode and decode), in the dtype the engine runs it (fp32 beside a
   bf16 UNet).
3. **Variants** of the bf16 step at 512 px, interleaved round by round against the fp32 step
   (so a drift of the machine's speed hits all alike): the attention kernels torch's SDPA has
   on this device (its default choice, the flash kernel alone, the math kernel alone),
   diffusers' ``baddbmm`` + softmax processor, channels_last weights and activations, and
   ``torch.compile`` (inductor, frozen weights) with its compile time.

    .venv/bin/python bench/step_profile.py --out docs/bench/step_profile_cpu.md
    .venv/bin/python bench/step_profile.py --tiles 512 --no-compile      # quicker
    .venv/bin/python bench/step_profile.py --device cuda --dtypes fp32,fp16,bf16

Run it on an idle machine: bench/common.py refuses a busy one and prints the load.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from common import machine, publish, table
from diffusion_cost import build

FAMILIES = {
    "convolution": ("conv", "mkldnn_convolution"),
    "linear / matmul": ("addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul", "baddbmm"),
    "attention": ("scaled_dot_product", "flash_attention", "softmax"),
    "norms": ("group_norm", "layer_norm"),
}
FAMILY_NAMES = [*FAMILIES, "the rest"]


def family(name: str) -> str:
    for fam, keys in FAMILIES.items():
        if any(k in name for k in keys):
            return fam
    return "the rest"


def dtype_of(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


class Step:
    """One guided step of given parts at a tile size: ``controlnet()``, ``unet()``, ``__call__``."""

    def __init__(self, device: torch.device, dtype: torch.dtype, tile: int, parts: tuple | None = None) -> None:
        unet, controlnet, vae = parts or build(device, dtype)
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.device, self.dtype = device, dtype
        g = torch.Generator().manual_seed(1)
        lat = tile // 8
        self.x = torch.randn(2, 4, lat, lat, generator=g).to(device, dtype)
        self.cond = torch.rand(2, 3, tile, tile, generator=g).to(device, dtype)
        self.emb = torch.randn(2, 77, 768, generator=g).to(device, dtype)
        self.t = torch.tensor([500, 500], device=device)
        self.residuals: tuple = ()

    def run_controlnet(self) -> None:
        self.residuals = self.controlnet(
            self.x, self.t, encoder_hidden_states=self.emb, controlnet_cond=self.cond, return_dict=False
        )

    def run_unet(self) -> None:
        down, mid = self.residuals
        self.unet(
            self.x,
            self.t,
            encoder_hidden_states=self.emb,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )

    def __call__(self) -> None:
        with torch.inference_mode():
            self.run_controlnet()
            self.run_unet()
        self.sync()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def wall(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def profiled(fn: Callable[[], None], device: torch.device) -> dict[str, float]:
    """Self seconds per family of one call (top-level aten ops; CUDA: device time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        own = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        seconds[family(event.key)] += own / 1e6
    return dict(seconds)


def per_part(device: torch.device, dtypes: list[str], tiles: list[int], rounds: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for tile in tiles:
        steps = {}
        for name in dtypes:
            step = Step(device, dtype_of(name), tile)
            step()  # warm-up: oneDNN picks its kernels
            with torch.inference_mode():
                step.run_controlnet()
            cn = [profiled(step.run_controlnet, device) for _ in range(rounds)]
            un = [profiled(step.run_unet, device) for _ in range(rounds)]
            steps[name] = statistics.median(wall(step) for _ in range(rounds))
            for part, runs in (("ControlNet", cn), ("UNet", un)):
                fams = [statistics.median(r.get(f, 0.0) for r in runs) for f in FAMILY_NAMES]
                rows.append([f"{tile} px", name, part, f"{sum(fams):.2f}"] + [f"{v:.2f}" for v in fams])
            rows.append([f"{tile} px", name, "**step (wall)**", f"**{steps[name]:.2f}**"] + [""] * len(FAMILY_NAMES))
            del step
        base = dtypes[0]
        for name in dtypes[1:]:
            rows.append(
                [f"{tile} px", f"{name} vs {base}", "step speed-up", f"**{steps[base] / steps[name]:.2f}×**"]
                + [""] * len(FAMILY_NAMES)
            )
    return rows


def vae_rows(device: torch.device, tiles: list[int], rounds: int, dtype_name: str) -> list[list[object]]:
    _, _, vae = build(device, dtype_of(dtype_name))
    rows: list[list[object]] = []
    for tile in tiles:
        x = torch.rand(1, 3, tile, tile).to(device, dtype_of(dtype_name)) * 2 - 1
        with torch.inference_mode():
            latent = vae.encode(x).latent_dist.mean
            vae.decode(latent)

            def enc() -> None:
                vae.encode(x)

            def dec() -> None:
                vae.decode(latent)

            e = statistics.median(wall(enc) for _ in range(rounds))
            d = statistics.median(wall(dec) for _ in range(rounds))
        rows.append([f"{tile} px", dtype_name, f"{e:.2f}", f"{d:.2f}"])
    return rows


@contextlib.contextmanager
def sdpa(backend: str | None) -> Iterator[None]:
    if backend is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, backend)]):
        yield


def variants(device: torch.device, rounds: int, tile: int, fast: str, compile_: bool) -> list[list[object]]:
    """The bf16 (``fast``) step's variants against the fp32 step, interleaved."""
    from diffusers.models.attention_processor import AttnProcessor

    ref = Step(device, torch.float32, tile)
    parts = build(device, dtype_of(fast))
    plain = Step(device, dtype_of(fast), tile, parts)
    cases: dict[str, Callable[[], None]] = {"fp32 step (reference)": ref, f"{fast}: SDPA, torch's choice": plain}
    notes: dict[str, str] = {}

    def with_backend(backend: str) -> Callable[[], None]:
        def run() -> None:
            with sdpa(backend):
                plain()

        return run

    for label, backend in (("flash kernel only", "FLASH_ATTENTION"), ("math kernel only", "MATH")):
        try:
            with_backend(backend)()
            cases[f"{fast}: SDPA, {label}"] = with_backend(backend)
        except RuntimeError as exc:
            notes[f"{fast}: SDPA, {label}"] = f"not available: {str(exc).splitlines()[0][:80]}"

    slow = Step(device, dtype_of(fast), tile, build(device, dtype_of(fast)))
    slow.unet.set_attn_processor(AttnProcessor())
    slow.controlnet.set_attn_processor(AttnProcessor())
    cases[f"{fast}: baddbmm + softmax"] = slow
    cl_parts = tuple(m.to(memory_format=torch.channels_last) for m in build(device, dtype_of(fast)))
    cl = Step(device, dtype_of(fast), tile, cl_parts)
    cl.x, cl.cond = (
        cl.x.contiguous(memory_format=torch.channels_last),
        cl.cond.contiguous(memory_format=torch.channels_last),
    )
    cases[f"{fast}: channels_last"] = cl
    if compile_:
        import torch._inductor.config as inductor

        inductor.freezing = True  # inference: weights are constants, oneDNN prepacks them
        comp = Step(device, dtype_of(fast), tile, build(device, dtype_of(fast)))
        comp.unet = torch.compile(comp.unet)
        comp.controlnet = torch.compile(comp.controlnet)
        try:
            seconds = wall(comp)
            notes[f"{fast}: torch.compile (inductor, frozen)"] = f"compile + first step {seconds:.0f} s"
            cases[f"{fast}: torch.compile (inductor, frozen)"] = comp
        except Exception as exc:  # noqa: BLE001 - a failed compile is a finding, not a crash
            notes[f"{fast}: torch.compile (inductor, frozen)"] = f"failed: {str(exc).splitlines()[0][:100]}"
    times: dict[str, list[float]] = {k: [] for k in cases}
    for rnd in range(rounds + 1):  # round 0 warms up
        for label, fn in cases.items():
            s = wall(fn)
            if rnd:
                times[label].append(s)
            print(f"  round {rnd} {label}: {s:.2f} s", file=sys.stderr, flush=True)
    ref_s = statistics.median(times["fp32 step (reference)"])
    rows = [
        [label, f"{statistics.median(v):.2f}", f"{ref_s / statistics.median(v):.2f}×", notes.get(label, "")]
        for label, v in times.items()
    ]
    rows += [[label, "—", "—", note] for label, note in notes.items() if label not in times]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", default="fp32,bf16", help="the first is the reference")
    p.add_argument("--tiles", default="512,256", help="tile sizes in px (latent = tile / 8)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-variants", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)")
    p.add_argument("--out", help="write the Markdown here too")
    a = p.parse_args()
    device = torch.device(a.device)
    dtypes = a.dtypes.split(",")
    tiles = [int(t) for t in a.tiles.split(",")]
    lines = [
        f"# One guided step per part and operator family ({machine()}, {a.device})",
        "",
        f"SD 1.5-sized random UNet + ControlNet, CFG batch 2, medians of {a.rounds}. Family columns: "
        "self seconds of the top-level operators (profiled runs); *step (wall)*: unprofiled.",
        "",
        table(
            ["tile", "dtype", "part", "total (s)", *[f"{f} (s)" for f in FAMILY_NAMES]],
            per_part(device, dtypes, tiles, a.rounds),
        ),
        "",
        "## VAE per tile (the engine keeps it in fp32 beside a bf16 UNet on the CPU)",
        "",
        table(["tile", "dtype", "encode (s)", "decode (s)"], vae_rows(device, tiles, a.rounds, "fp32")),
    ]
    if not a.no_variants and len(dtypes) > 1:
        lines += [
            "",
            f"## Variants of the {dtypes[-1]} step at {tiles[0]} px against the {dtypes[0]} step (interleaved)",
            "",
            table(
                ["variant", "s per step", f"speed vs {dtypes[0]}", "note"],
                variants(device, a.rounds, tiles[0], dtypes[-1], not a.no_compile),
            ),
        ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
