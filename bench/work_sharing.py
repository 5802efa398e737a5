"""Work sharing: one nine-level run against nine independent single-level runs (each
computing its own base path and diffusion pass), real Real-ESRGAN ×4 and tiny diffusion parts.

    .venv/bin/python bench/work_sharing.py [--size 128] [--repeats 3] [--jpeg 20]

The input is a PNG by default: without a JPEG grid ``bicubic_clean`` equals ``bicubic``, so
the nine-level run refines that base once (levels 3 and 6 are levels 2 and 5). ``--jpeg Q``
saves the input as a JPEG of quality Q first: the cleanup then changes it, and all six
diffusion passes are needed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

from common import machine, table

import presets
from pipelines.engine import Engine, EngineConfig
from pipelines.imaging import load_image
from pipelines.refiner import unet_call_counter
from pipelines.request import UpscaleRequest
from testing.tiny import build_tiny_models, tiny_settings


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=128, help="input side (px); output is ×4")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device")
    p.add_argument("--steps", type=int, default=20, help="scheduler steps (the preset's 20 by default)")
    p.add_argument("--vae-factor", type=int, default=8, choices=(2, 8), help="tiny VAE downsampling (8 like SD 1.5)")
    p.add_argument("--jpeg", type=int, metavar="Q", help="save the input as a JPEG of this quality first")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    from PIL import Image
    from skimage import data

    models = build_tiny_models(tempfile.mkdtemp(), vae_factor=args.vae_factor)
    settings = tiny_settings(tile_size=512, tile_overlap=128, steps=args.steps)
    # base_cache_size=0: nothing carries over between runs, as for separate API calls
    engine = Engine(EngineConfig(models=models, settings=settings, device=args.device, base_cache_size=0))
    small = Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.Resampling.LANCZOS)
    if args.jpeg:
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=args.jpeg)
        photo = load_image(buf.getvalue())
    else:
        photo = load_image(small)
    kind = f"JPEG q{args.jpeg}" if args.jpeg else "PNG"
    width = 4 * args.size
    calls = unet_call_counter(engine.refiner())
    engine.run(photo, UpscaleRequest(width=width, levels=(8,), seed=1))  # warm-up: loads the ×4 model

    nine_times, single_sums, nine_calls, single_calls = [], [], 0, 0
    stages: dict[str, dict[str, float]] = {"nine": {}, "singles": {}}

    def add(which: str, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            key = "diffusion" if k.startswith("diffusion") else k
            if key != "total":
                stages[which][key] = stages[which].get(key, 0.0) + v / args.repeats

    for _ in range(args.repeats):
        c0 = calls()
        t = time.perf_counter()
        add("nine", engine.run(photo, UpscaleRequest(width=width, levels=presets.LEVEL_NUMBERS, seed=1)).timings)
        nine_times.append(time.perf_counter() - t)
        nine_calls = calls() - c0
        c0 = calls()
        t = time.perf_counter()
        for n in presets.LEVEL_NUMBERS:
            add("singles", engine.run(photo, UpscaleRequest(width=width, levels=(n,), seed=1)).timings)
        single_sums.append(time.perf_counter() - t)
        single_calls = calls() - c0
    nine, singles = statistics.median(nine_times), statistics.median(single_sums)
    print(
        f"# Work sharing on {machine()}: {args.size}² {kind} → {width}², real ×4, tiny diffusion (×{args.vae_factor} VAE, {args.steps} steps)\n"
    )
    print(
        table(
            ["run", "median s", "UNet calls", "ratio"],
            [
                ["one nine-level run", f"{nine:.2f}", nine_calls, f"{nine / singles:.2f}"],
                ["nine single-level runs (sum)", f"{singles:.2f}", single_calls, "1.00"],
            ],
        )
    )
    keys = sorted(set(stages["nine"]) | set(stages["singles"]), key=lambda k: -stages["singles"].get(k, 0))
    print("\nper stage (mean seconds per repeat):\n")
    print(
        table(
            ["stage", "nine-level run", "nine single runs", "ratio"],
            [
                [
                    k,
                    f"{stages['nine'].get(k, 0):.2f}",
                    f"{stages['singles'].get(k, 0):.2f}",
                    f"{stages['nine'].get(k, 0) / stages['singles'][k]:.2f}" if stages["singles"].get(k) else "—",
                ]
                for k in keys
            ],
        )
    )
    print(
        f"\ntarget: ratio <= 0.40 → {'met' if nine / singles <= 0.40 else 'NOT met'} ({args.repeats} repeats, medians)"
    )


if __name__ == "__main__":
    main()
