"""Cost follows the output: a 1024×768 photo asked for at width 400 (output smaller than the
input). The ×4 level used to upscale the whole input ×4 and shrink it back (189 s on the
project's CPU machine); now the network is skipped and the level says so. Times levels 7–9
(no diffusion weights needed) after a warm-up, median of 3.

    .venv/bin/python bench/small_output.py
"""

from __future__ import annotations

import statistics
import time

from common import machine, table
from PIL import Image
from skimage import data

from pipelines.engine import Engine, EngineConfig
from pipelines.imaging import load_image
from pipelines.request import UpscaleRequest


def main() -> None:
    photo = load_image(Image.fromarray(data.astronaut()).resize((1024, 768), Image.Resampling.LANCZOS))
    rows = []
    for width in (400, 1024):
        times = []
        for seed in range(4):  # a fresh engine each time: no base cache across repeats
            engine = Engine(EngineConfig())
            engine.upscaler()  # the one-time weight load is not the level's cost
            t = time.perf_counter()
            result = engine.run(photo, UpscaleRequest(width=width, levels=(7, 8, 9), seed=seed))
            if seed:  # the first run warms up
                times.append(time.perf_counter() - t)
        lv = result.level(7)
        rows.append(
            [
                f"1024×768 → {lv.image.size[0]}×{lv.image.size[1]}",
                f"{statistics.median(times):.2f}",
                f"{result.timings.get('base_upscale_4', 0):.2f}",
                (lv.message or "network ran")[:60],
            ]
        )
    print(f"machine: {machine()}; levels 7-9, median of 3\n")
    print(table(["case", "run s", "×4 base s", "level 7 says"], rows))


if __name__ == "__main__":
    main()
