"""The waifu2x cleanup (``pipelines.waifu2x.cleanup``) against issue 14's targets, on inputs
degraded the way ``evaluate.py --jpeg Q`` degrades them (HR cropped to a multiple of 4,
antialiased bicubic ÷4, JPEG at quality Q):

- fidelity: mean PSNR-Y (BT.601, 4 px shaved) of plain bicubic ×4 (level 8) vs cleanup then
  bicubic ×4 (the proposed level 9), with the former deblocking filter for reference;
  target +0.25 dB at each quality;
- blocking at the input resolution (``pipelines.base.blockiness`` on the 8×8 JPEG grid, 1.0 =
  none, and ``find_grid``'s score) before and after;
- time: the cleanup vs the Real-ESRGAN ×4 (``neural_upscale``, the engine's tile settings) on
  the same input; target ≤ 10 %.

Run: .venv/bin/python bench/cleanup.py [--sets DIR ...] [--qualities 20,30,40] [--no-timing]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, machine, table
from PIL import Image

import presets
from evaluate import Degradation, image_seed, key_of, list_images, make_pair
from pipelines import waifu2x
from pipelines.base import BLOCK, BLOCKING_THRESHOLD, NeuralSettings, bicubic, blockiness, find_grid, neural_upscale
from pipelines.metrics import sr_scores
from pipelines.realesrgan import load_upscaler

SCALE = 4
TARGET_DB = 0.25
TARGET_TIME = 0.10
SEED = 0  # evaluate.py's per-image seed (only blur/noise use it; JPEG is deterministic)


# The cleanup before waifu2x (a hand-written deblocking filter), kept here for comparison.


def _deblock_columns(a: np.ndarray, start: int, alpha: float, beta: float) -> None:
    """In place: ramp small steps across vertical boundaries at x = start + 8k."""
    w = a.shape[1]
    xs = np.arange(start if start >= 4 else start + BLOCK, w - 3, BLOCK)
    if len(xs) == 0:
        return
    p = [a[:, xs - 1 - i].copy() for i in range(4)]
    q = [a[:, xs + i].copy() for i in range(4)]
    step = q[0] - p[0]
    flat = (np.abs(step) < alpha) & (np.abs(p[1] - p[0]) < beta) & (np.abs(q[1] - q[0]) < beta)
    step = step * flat
    for i in range(4):  # each of the 9 gaps then carries step/9
        a[:, xs - 1 - i] = p[i] + step * (4 - i) / 9
        a[:, xs + i] = q[i] - step * (4 - i) / 9


def deblock(image: Image.Image) -> tuple[Image.Image, float]:
    """Remove JPEG blocking (see module doc). Returns the image and the measured blockiness;
    an image without blocking is returned unchanged."""
    a = np.asarray(image, dtype=np.float64)
    gray = a.mean(axis=2)
    if min(gray.shape) < 8 * BLOCK:  # too few blocks to tell a grid from texture
        return image.copy(), 1.0
    (ox, oy), score = find_grid(gray)
    if score < BLOCKING_THRESHOLD:
        return image.copy(), score
    inner = np.delete(np.abs(np.diff(gray, axis=1)), np.arange((ox - 1) % BLOCK, gray.shape[1] - 1, BLOCK), axis=1)
    beta = max(2.0, 2.0 * float(np.median(inner)) + 1.0)
    alpha = 6.0 * beta
    a = a.copy()
    _deblock_columns(a, ox, alpha, beta)
    t = np.ascontiguousarray(a.transpose(1, 0, 2))
    _deblock_columns(t, oy, alpha, beta)
    a = t.transpose(1, 0, 2)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB"), score


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), np.float64).mean(axis=2)


def degrade(path: Path, quality: int) -> tuple[Image.Image, Image.Image]:
    """(ground truth, its ÷4 JPEG-compressed input), as evaluate.py makes them."""
    hr, lr = make_pair(path, SCALE)
    return hr, Degradation(jpeg=quality).apply(lr, image_seed(SEED, key_of(path)))


def measure(paths: list[Path], quality: int) -> dict[str, float]:
    """Means over ``paths`` of PSNR-Y per method and blockiness before/after."""
    rows: dict[str, list[float]] = {}
    for path in paths:
        hr, lr = degrade(path, quality)
        estimated = waifu2x.jpeg_quality(lr)
        if estimated is None:
            raise RuntimeError(f"{path.name}: the degraded input carries no JPEG tables")
        rgb = lr.convert("RGB")
        cleaned = waifu2x.cleanup(rgb, noise_level=waifu2x.noise_level_for_quality(estimated))
        deblocked, _ = deblock(rgb)
        outputs = {"bicubic": rgb, "deblock": deblocked, "waifu2x": cleaned}
        for name, image in outputs.items():
            rows.setdefault(f"psnr_{name}", []).append(sr_scores(bicubic(image, hr.size), hr, scale=SCALE)["psnr_y"])
            rows.setdefault(f"block_{name}", []).append(blockiness(gray(image)))
            rows.setdefault(f"grid_{name}", []).append(find_grid(gray(image))[1])
        rows.setdefault("quality_error", []).append(abs(estimated - quality))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def timing(paths: list[Path], quality: int) -> tuple[float, float]:
    """Total seconds over ``paths``: (cleanup, Real-ESRGAN ×4 to the HR size), each input
    run once after one warm-up run on the first."""
    model = load_upscaler()
    settings = NeuralSettings(
        device=torch.device("cpu"), dtype=torch.float32, tile=presets.ESRGAN_TILE, pad=presets.ESRGAN_TILE_PAD
    )
    inputs = [degrade(p, quality) for p in paths]
    level = waifu2x.noise_level_for_quality(quality)
    hr0, lr0 = inputs[0]
    waifu2x.cleanup(lr0.convert("RGB"), noise_level=level)
    neural_upscale(model, lr0.convert("RGB"), hr0.size, settings)
    t_clean = t_esrgan = 0.0
    for hr, lr in inputs:
        rgb = lr.convert("RGB")
        t = time.perf_counter()
        waifu2x.cleanup(rgb, noise_level=level)
        t_clean += time.perf_counter() - t
        t = time.perf_counter()
        neural_upscale(model, rgb, hr.size, settings)
        t_esrgan += time.perf_counter() - t
    return t_clean, t_esrgan


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_sets = [str(ROOT.parent / "shared" / "eval" / s) for s in ("Set5", "Set14")]
    p.add_argument("--sets", nargs="+", default=default_sets, help="folders of HR images")
    p.add_argument("--qualities", default="20,30,40", help="JPEG qualities, comma-separated")
    p.add_argument("--no-timing", action="store_true", help="skip the Real-ESRGAN timing")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    qualities = [int(q) for q in args.qualities.split(",")]
    sets = {Path(s).name: list_images([s]) for s in args.sets}

    print(f"Machine: {machine()}\n")
    fidelity, blocking = [], []
    gains: dict[int, list[float]] = {}
    for name, paths in sets.items():
        for q in qualities:
            m = measure(paths, q)
            gain = m["psnr_waifu2x"] - m["psnr_bicubic"]
            gains.setdefault(q, []).extend([gain] * len(paths))
            fidelity.append(
                [
                    f"{name} ({len(paths)})",
                    f"q{q} → level {waifu2x.noise_level_for_quality(q)}",
                    f"{m['psnr_bicubic']:.3f}",
                    f"{m['psnr_deblock']:.3f} ({m['psnr_deblock'] - m['psnr_bicubic']:+.3f})",
                    f"{m['psnr_waifu2x']:.3f}",
                    f"**{gain:+.3f}**",
                    "yes" if gain >= TARGET_DB else "no",
                    f"{m['quality_error']:.1f}",
                ]
            )
            blocking.append(
                [
                    name,
                    f"q{q}",
                    f"{m['block_bicubic']:.3f} / {m['grid_bicubic']:.2f}",
                    f"{m['block_deblock']:.3f} / {m['grid_deblock']:.2f}",
                    f"{m['block_waifu2x']:.3f} / {m['grid_waifu2x']:.2f}",
                ]
            )
    for q, g in gains.items():  # the sets pooled, each image weighted once
        fidelity.append(["+".join(sets), f"q{q}", "", "", "", f"**{statistics.fmean(g):+.3f}**", "", ""])
    print("### PSNR-Y (dB), ×4, mean per set\n")
    print(
        table(
            [
                "set (images)",
                "JPEG q → waifu2x level",
                "bicubic (level 8)",
                "deblock + bicubic (level 9 today)",
                "waifu2x cleanup + bicubic",
                "gain over bicubic",
                f"≥ +{TARGET_DB} dB",
                "error of the estimated q",
            ],
            fidelity,
        )
    )
    print("\n### Blocking at the input resolution (blockiness / find_grid score; 1.0 = none)\n")
    print(table(["set", "JPEG q", "input", "deblocked", "waifu2x cleanup"], blocking))
    if not args.no_timing:
        rows = []
        q = qualities[len(qualities) // 2]
        for name, paths in sets.items():
            t_clean, t_esrgan = timing(paths, q)
            ratio = t_clean / t_esrgan
            rows.append(
                [
                    f"{name} ({len(paths)}, q{q})",
                    f"{t_clean:.2f}",
                    f"{t_esrgan:.2f}",
                    f"**{100 * ratio:.1f} %**",
                    "yes" if ratio <= TARGET_TIME else "no",
                ]
            )
        print("\n### Time, total over the set (CPU fp32; one run per image after a warm-up)\n")
        print(table(["set", "cleanup (s)", "Real-ESRGAN ×4 (s)", "cleanup / ×4", f"≤ {100 * TARGET_TIME:.0f} %"], rows))


if __name__ == "__main__":
    main()
