"""Scaling: time and peak memory of a nine-level run against output size, real ×4 and tiny
diffusion parts (×8 VAE, so the latent grid scales like SD 1.5's). Each size runs in a fresh
subprocess so its peak resident memory is its own.

    .venv/bin/python bench/scaling.py                  # 1, 2.25, 4, 9 MP at ×4, and 640×427 → 3000 px
    .venv/bin/python bench/scaling.py --sizes 1,4 --no-example
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, table


def child(megapixels: float, example: bool, models_dir: str, steps: int) -> None:
    from PIL import Image
    from skimage import data

    import presets
    from pipelines.engine import Engine, EngineConfig
    from pipelines.imaging import load_image
    from pipelines.models import DiffusionModels
    from pipelines.request import UpscaleRequest
    from testing.tiny import tiny_settings

    d = Path(models_dir)
    models = DiffusionModels(
        sd15=str(d / "sd15"),
        controlnet=str(d / "controlnet"),
        lora=str(d / "lora"),
        lora_file=presets.MODELS["detail_lora"].file,
    )
    engine = Engine(EngineConfig(models=models, settings=tiny_settings(tile_size=512, tile_overlap=128, steps=steps)))
    if example:
        photo = Image.open(ROOT / "examples" / "rocket_640x427.png").convert("RGB")
        width = 3000
    else:
        side = round((megapixels * 1e6) ** 0.5)  # square output, ×4 from a real photo
        photo = Image.fromarray(data.astronaut()).resize((side // 4, side // 4), Image.Resampling.LANCZOS)
        width = 4 * (side // 4)
    engine.upscaler()
    engine.refiner()  # models load once per process: not part of the run's time
    t = time.perf_counter()
    result = engine.run(load_image(photo), UpscaleRequest(width=width, levels=presets.LEVEL_NUMBERS, seed=1))
    seconds = time.perf_counter() - t
    w, h = result.plan.canvas
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "input": list(photo.size),
                "output": [w, h],
                "mp": w * h / 1e6,
                "seconds": seconds,
                "peak_mb": peak_mb,
                "timings": result.timings,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1,2.25,4,9", help="output megapixels (×4 from the input)")
    p.add_argument("--no-example", action="store_true", help="skip the 640×427 → 3000 px example")
    p.add_argument(
        "--steps", type=int, default=4, help="scheduler steps (the preset's 20 makes a 9 MP CPU run take ~20 min)"
    )
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(float(args.child[0]), args.child[1] == "1", args.child[2], int(args.child[3]))
        return
    from testing.tiny import build_tiny_models

    models_dir = tempfile.mkdtemp()
    build_tiny_models(models_dir, vae_factor=8)
    jobs = [(float(s), False) for s in args.sizes.split(",")]
    if not args.no_example:
        jobs.append((6.0, True))
    rows, per_mp = [], []
    for mp, example in jobs:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(mp), "1" if example else "0", models_dir, str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        diffusion = sum(v for k, v in r["timings"].items() if k.startswith("diffusion"))
        rows.append(
            [
                f"{r['input'][0]}×{r['input'][1]}",
                f"{r['output'][0]}×{r['output'][1]}",
                f"{r['mp']:.2f}",
                f"{r['seconds']:.1f}",
                f"{r['seconds'] / r['mp']:.1f}",
                f"{r['timings'].get('base_upscale_4', 0):.1f}",
                f"{diffusion:.1f}",
                f"{r['peak_mb'] / 1024:.2f}",
            ]
        )
        if not example:
            per_mp.append(r["seconds"] / r["mp"])
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"# Nine-level run against output size on {machine()} (real ×4, tiny diffusion ×8 VAE, {args.steps} steps)\n")
    print(table(["input", "output", "MP", "seconds", "s / MP", "×4 s", "diffusion s", "peak RSS GB"], rows))
    if len(per_mp) > 1:
        mid = sorted(per_mp)[len(per_mp) // 2]
        spread = max(abs(v / mid - 1) for v in per_mp)
        print(f"\ntime per MP: max deviation from the median {spread:.0%} (target within ±25%)")


if __name__ == "__main__":
    main()
