"""What the fast mode saves: one level's diffusion pass in the normal mode (DDIM, the level's
steps, classifier-free guidance) against the fast mode (the LCM-LoRA adapter, LCMScheduler, its
few steps, no guidance), with SD 1.5-sized random parts (UNet, ControlNet, VAE, a 12-layer text
encoder and an LCM-LoRA of the real rank 64 over the real target layers: the real cost, no
download), the level table's diffusion settings and the engine's own stage timings.

    .venv/bin/python bench/fast_mode.py                             # 128² → 512² (one 512 px tile), levels 2,5
    .venv/bin/python bench/fast_mode.py --input 256 --levels 2 --repeat 3
    .venv/bin/python bench/fast_mode.py --tiny --input 32           # the script itself, in seconds

Run it on an idle machine; the load average is printed with the table. The parts are written
once to ``--models`` (about 4 GB, plus the 135 MB adapter) and reused. It measures cost only:
the image quality of the fast mode is not measured here (random weights have none).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import machine, publish, table

LCM_RANK = 64  # lcm-lora-sdv1-5: 67.5 M parameters, rank 64 over the distillation script's targets


def models(folder: Path, *, tiny: bool):
    """The SD 1.5-sized parts in ``folder`` (written once), with a rank-64 LCM-LoRA beside them
    (written once from the folder's UNet); ``tiny``: the test models in a temporary folder."""
    from dataclasses import replace

    import presets
    from pipelines.models import DiffusionModels
    from testing.tiny import CONTROLNET_DIR, LORA_DIR, SD15_DIR, build_tiny_models

    if tiny:
        return build_tiny_models(tempfile.mkdtemp(prefix="fast_mode_bench_"))
    if (folder / SD15_DIR / "unet").is_dir():
        built = DiffusionModels(
            sd15=str(folder / SD15_DIR),
            controlnet=str(folder / CONTROLNET_DIR),
            lora=str(folder / LORA_DIR),
            lora_file=presets.MODELS["detail_lora"].file,
        )
    else:
        print(f"writing SD 1.5-sized random parts to {folder} (once)", flush=True)
        built = build_tiny_models(folder, sd15_sized=True)
    fast_dir, name = folder / f"fast_lora_r{LCM_RANK}", str(presets.MODELS["fast_lora"].file)
    if not (fast_dir / name).is_file():
        write_lcm_lora(Path(built.sd15) / "unet", fast_dir / name)
    return replace(built, fast_lora=str(fast_dir), fast_lora_file=name)


def write_lcm_lora(unet_dir: Path, path: Path) -> None:
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from testing.tiny import lcm_lora

    print(f"writing a rank-{LCM_RANK} LCM-LoRA to {path} (once)", flush=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(str(unet_dir))
    state = lcm_lora(unet, rank=LCM_RANK, std=0.01)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    print(f"  {sum(v.numel() for k, v in state.items() if k.endswith('weight')) / 1e6:.1f} M parameters", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="/tmp/sd15_random", help="folder for the random SD 1.5-sized parts")
    p.add_argument("--input", type=int, default=128, help="input side (px); the output is ×4")
    p.add_argument("--levels", default="2,5", help="levels to time, one pass each (default 2,5: bicubic, both scales)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each mode per level (the median is shown)")
    p.add_argument("--tiny", action="store_true", help="the tiny test models and small tiles: checks the script")
    p.add_argument("--out", help="write the Markdown here too")
    a = p.parse_args()

    from PIL import Image
    from skimage import data

    import presets
    from pipelines.engine import Engine, EngineConfig
    from pipelines.imaging import load_image
    from pipelines.request import UpscaleRequest
    from testing.tiny import tiny_settings

    config = EngineConfig(models=models(Path(a.models), tiny=a.tiny))
    engine = Engine(config if not a.tiny else EngineConfig(models=config.models, settings=tiny_settings()))
    photo = load_image(Image.fromarray(data.astronaut()).resize((a.input, a.input), Image.Resampling.LANCZOS))
    for fast in (False, True):  # loads the ×4 network, the parts and the adapter; first calls warm up
        engine.run(photo, UpscaleRequest(width=64, levels=(8, *map(int, a.levels.split(",")[:1])), seed=1, fast=fast))
    rows, ratios = [], []
    for level in (int(n) for n in a.levels.split(",")):
        lv = presets.TABLE.get(level)
        normal, fast = (
            engine.config.settings[lv.lora_scale],
            presets.FAST_MODE.settings(engine.config.settings[lv.lora_scale]),
        )
        key = f"diffusion_{lv.lora_scale:g}"
        seconds = {}
        for mode in (False, True):
            request = UpscaleRequest(width=a.input * 4, levels=(level,), seed=1, fast=mode)
            seconds[mode] = statistics.median(engine.run(photo, request).timings[key] for _ in range(a.repeat))
        ratios.append(seconds[False] / seconds[True])
        rows.append(
            [
                f"{level} ({lv.recipe})",
                f"{normal.run_steps} DDIM, guidance {normal.guidance_scale:g}",
                f"{seconds[False]:.2f}",
                f"{fast.run_steps} LCM, guidance {fast.guidance_scale:g}",
                f"{seconds[True]:.2f}",
                f"**{ratios[-1]:.2f}×**",
            ]
        )
    headers = ["level", "normal: steps run", "normal (s)", "fast: steps run", "fast (s)", "normal / fast"]
    lines = [
        f"# Fast mode against the normal mode ({machine()}; {engine.device_label()})",
        "",
        f"Input {a.input}² → {a.input * 4}² output (×4); one level per run, its diffusion pass (the engine's "
        f"`diffusion_<scale>` timing), median of {a.repeat}; "
        + (
            "the tiny test models (a check of the script, not a measurement)."
            if a.tiny
            else "SD 1.5-sized random parts, a rank-64 LCM-LoRA."
        ),
        "",
        table(headers, rows),
        "",
        "Cost only: the fast mode's image quality has not been measured here.",
    ]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
