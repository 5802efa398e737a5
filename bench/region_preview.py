"""What a region preview saves: the engine's own stage timings for a level on the whole image
and on a box of it (at the whole image's scale), with SD 1.5-sized random parts (UNet,
ControlNet, VAE, a 12-layer text encoder: the real cost, no download) and the level table's
real diffusion settings.

    .venv/bin/python bench/region_preview.py                       # 128² → 512² (×4), box 64²
    .venv/bin/python bench/region_preview.py --input 256 --box 96 --levels 5,8
    .venv/bin/python bench/region_preview.py --models /tmp/sd15_random --out docs/bench/region_preview_cpu.md

Run it on an idle machine; the load average is printed with the table. The parts are written
once to ``--models`` (about 4 GB) and reused.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from common import machine, publish, table


def models(folder: Path):
    import presets
    from pipelines.models import DiffusionModels
    from testing.tiny import CONTROLNET_DIR, LORA_DIR, SD15_DIR, build_tiny_models

    if (folder / SD15_DIR / "unet").is_dir():
        spec = presets.MODELS["detail_lora"]
        return DiffusionModels(
            sd15=str(folder / SD15_DIR),
            controlnet=str(folder / CONTROLNET_DIR),
            lora=str(folder / LORA_DIR),
            lora_file=spec.file,
        )
    print(f"writing SD 1.5-sized random parts to {folder} (once)", flush=True)
    return build_tiny_models(folder, sd15_sized=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="/tmp/sd15_random", help="folder for the random SD 1.5-sized parts")
    p.add_argument("--input", type=int, default=128, help="input side (px); the output is ×4")
    p.add_argument("--box", type=int, default=64, help="the region's side (input px)")
    p.add_argument("--levels", default="5", help="levels to run (default 5: bicubic + LoRA 0.5)")
    p.add_argument("--out", help="write the Markdown here too")
    a = p.parse_args()

    from PIL import Image
    from skimage import data

    from pipelines.engine import Engine, EngineConfig
    from pipelines.imaging import load_image
    from pipelines.region import Region
    from pipelines.request import UpscaleRequest

    engine = Engine(EngineConfig(models=models(Path(a.models))))
    photo = load_image(Image.fromarray(data.astronaut()).resize((a.input, a.input), Image.Resampling.LANCZOS))
    levels = tuple(int(n) for n in a.levels.split(","))
    whole = UpscaleRequest(width=a.input * 4, levels=levels, seed=1)
    offset = (a.input - a.box) // 2
    box = Region(offset, offset, a.box, a.box)
    engine.run(photo, UpscaleRequest(width=64, levels=(8,), seed=1))  # loads the ×4 network and warms up
    runs = {"whole image": engine.run(photo, whole), f"box {a.box}²": engine.run(photo, replace(whole, region=box))}
    keys = sorted({k for r in runs.values() for k in r.timings if r.timings[k] >= 0.005})
    rows = [[k] + [f"{r.timings.get(k, 0.0):.2f}" for r in runs.values()] for k in keys]
    w, b = (r.timings["total"] for r in runs.values())
    lines = [
        f"# Region preview against the whole image ({machine()}; {engine.device_label()})",
        "",
        f"Input {a.input}² → {a.input * 4}² output (×4); box {a.box}² → {a.box * 4}²; levels {a.levels}; "
        "SD 1.5-sized random parts, the table's diffusion settings.",
        "",
        table(["stage (s)", *runs], rows),
        "",
        f"The whole image costs **{w / b:.1f}×** the box ({w:.1f} s against {b:.1f} s in all).",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
