"""Where to put the recommender's LR-consistency floor: what honest ×4 outputs score against
their input, and what outputs that contradict it score.

For every image of Set5 and Set14 (high-resolution originals in ../shared/eval), the input is
made as ``evaluate.py`` makes it (crop to a multiple of 4, antialiased bicubic ÷4), levels 7
(Real-ESRGAN ×4) and 8 (bicubic) run through the engine, and their ``lr_consistency`` is read
from the level's metrics. Then deliberate contradictions of the input are applied to the
bicubic output and scored with the same function: a shift by one input pixel (right, and right and down), a Gaussian blur
of σ = 2 input pixels, a hue rotation of 10° and 5°, and Gaussian noise of σ = 8 levels.

    nice .venv/bin/python bench/fidelity_floor.py > docs/bench/fidelity_floor.md
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Callable

import numpy as np
from common import ROOT, machine, table
from PIL import Image
from scipy import ndimage
from skimage import color

import presets
from evaluate import make_pair
from pipelines.engine import Engine, EngineConfig
from pipelines.imaging import load_image
from pipelines.metrics import lr_consistency
from pipelines.request import UpscaleRequest

EVAL = ROOT.parent / "shared" / "eval"
SETS = ("Set5", "Set14")
SCALE = 4
CANDIDATES = (22.0, 24.0, 25.0, 26.0, 28.0, 30.0)  # floors (dB) to compare
COMMAND = "nice .venv/bin/python bench/fidelity_floor.py > docs/bench/fidelity_floor.md"


def shift(*, down: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Content moved right (and down) by one input pixel (``SCALE`` output pixels), edges repeated."""
    dy = SCALE if down else 0

    def move(rgb: np.ndarray) -> np.ndarray:
        return np.pad(rgb[: rgb.shape[0] - dy, :-SCALE], ((dy, 0), (SCALE, 0), (0, 0)), mode="edge")

    return move


def blur(rgb: np.ndarray) -> np.ndarray:
    """Gaussian blur of σ = 2 input pixels."""
    return ndimage.gaussian_filter(rgb.astype(np.float64), sigma=(2 * SCALE, 2 * SCALE, 0))


def hue(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    def rotate(rgb: np.ndarray) -> np.ndarray:
        hsv = color.rgb2hsv(rgb)
        hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
        return color.hsv2rgb(hsv) * 255.0

    return rotate


def noise(rgb: np.ndarray) -> np.ndarray:
    """Gaussian noise of σ = 8 levels (seeded: the same noise every run)."""
    return rgb.astype(np.float64) + np.random.default_rng(0).normal(0.0, 8.0, rgb.shape)


# (label, transform of the bicubic output as uint8 RGB → float in [0, 255])
CONTRADICTIONS: tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...] = (
    ("bicubic, shifted 1 LR px right", shift(down=False)),
    ("bicubic, shifted 1 LR px right and down", shift(down=True)),
    ("bicubic, blurred σ = 2 LR px", blur),
    ("bicubic, hue +10°", hue(10.0)),
    ("bicubic, hue +5°", hue(5.0)),
    ("bicubic, noise σ = 8 levels", noise),
)


def to_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))


def measure(engine: Engine) -> dict[str, list[float]]:
    """LR-consistency (dB) per kind of output, one value per image, in image order."""
    scores: dict[str, list[float]] = {"Real-ESRGAN ×4 (level 7)": [], "bicubic ×4 (level 8)": []}
    scores.update({label: [] for label, _ in CONTRADICTIONS})
    for name in SETS:
        for path in sorted((EVAL / name).glob("*.png")):
            hr, lr = make_pair(path, SCALE)
            request = UpscaleRequest(width=hr.width, height=hr.height, fit="crop", levels=(7, 8), seed=0)
            result = engine.run(load_image(lr), request)
            esrgan, bicubic = result.level(7), result.level(8)
            if bicubic.image is None:
                raise RuntimeError(f"{path.name}: level 8 did not run: {bicubic.message}")
            scores["Real-ESRGAN ×4 (level 7)"].append(esrgan.metrics["lr_consistency"])
            scores["bicubic ×4 (level 8)"].append(bicubic.metrics["lr_consistency"])
            low_res = lr.convert("RGB")
            pixels = np.asarray(bicubic.image.convert("RGB"))
            for label, transform in CONTRADICTIONS:
                scores[label].append(lr_consistency(to_image(transform(pixels)), low_res))
    return scores


def main() -> None:
    paths = [p for name in SETS for p in sorted((EVAL / name).glob("*.png"))]
    if not paths:
        print(f"no Set5/Set14 images under {EVAL}: nothing to measure")
        return
    scores = measure(Engine(EngineConfig()))
    n = len(paths)
    floor = presets.DEFAULT_FIDELITY_FLOOR_DB
    today = datetime.date.today().isoformat()
    print(f"# LR-consistency floor ({n} images of {' + '.join(SETS)}, ×{SCALE})\n")
    print(f"machine: {machine()}; {today}; `{COMMAND}`\n")

    rows: list[list[object]] = [
        [
            label,
            f"{statistics.median(v):.2f}",
            f"{min(v):.2f}",
            f"{max(v):.2f}",
            f"{sum(x >= floor for x in v)}/{n}",
        ]
        for label, v in scores.items()
    ]
    print(table(["output", "median dB", "min dB", "max dB", f"≥ {floor:g} dB"], rows) + "\n")

    esrgan = scores["Real-ESRGAN ×4 (level 7)"]
    rejected = CONTRADICTIONS[:3]  # the shifts and the blur: what a floor must keep out
    rows = []
    for c in CANDIDATES:
        row: list[object] = [f"{c:g}" + (" (default)" if c == floor else ""), f"{sum(x >= c for x in esrgan)}/{n}"]
        row += [f"{sum(x < c for x in scores[label])}/{n}" for label, _ in rejected]
        rows.append(row)
    headers = ["floor dB", "Real-ESRGAN admitted"] + [
        f"{label.removeprefix('bicubic, ')}: rejected" for label, _ in rejected
    ]
    print(table(headers, rows) + "\n")

    worst = min(range(n), key=esrgan.__getitem__)
    print(f"lowest Real-ESRGAN score: {paths[worst].parent.name}/{paths[worst].name} {esrgan[worst]:.2f} dB")
    for label, _ in rejected:
        best = max(range(n), key=scores[label].__getitem__)
        print(f"highest {label}: {paths[best].parent.name}/{paths[best].name} {scores[label][best]:.2f} dB")


if __name__ == "__main__":
    main()
