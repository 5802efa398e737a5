"""bicubic_clean's cleanup: JPEG blocking before/after on real photos, and PSNR against the
uncompressed original. Run: .venv/bin/python bench/deblock.py"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.base import blockiness, deblock  # noqa: E402
from pipelines.metrics import psnr  # noqa: E402


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def main() -> None:
    print("| photo | JPEG q | grid score | blockiness before → after | PSNR before → after (dB) | unchanged |")
    print("|---|---:|---:|---|---|---|")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        clean = Image.fromarray(getattr(data, name)())
        ref = np.asarray(clean, np.float64)
        for q in (10, 20, 30, 50, None):
            x = jpeg(clean, q) if q else clean
            y, score = deblock(x)
            xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
            b0, b1 = blockiness(xa.mean(2)), blockiness(ya.mean(2))
            p0, p1 = psnr(ref, xa, data_range=255), psnr(ref, ya, data_range=255)
            same = "yes" if np.array_equal(xa, ya) else "no"
            print(f"| {name} | {q or '—'} | {score:.2f} | {b0:.2f} → {b1:.2f} | {p0:.2f} → {p1:.2f} | {same} |")


if __name__ == "__main__":
    main()
