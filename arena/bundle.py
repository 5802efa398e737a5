"""Build the arena's bundled set (``examples/arena/``): four small inputs from the photos that
ship inside scikit-image's wheel, one per image kind, saved as JPEG at quality ``QUALITY`` (the
messy kind of input people upscale, and what level 9's cleanup acts on: on a clean PNG it equals
level 8), and their levels without diffusion (7: Real-ESRGAN ×4, 8: bicubic, 9: bicubic +
cleanup) at ×2, made by the lab's engine::

    python -m arena.bundle            # rewrites examples/arena/ (about a minute on a CPU)

Levels 1–6 need the diffusion weights and are not bundled (see ``arena/pairs.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from arena.pairs import BUNDLE

log = logging.getLogger("upscale-lab.arena")

SCALE = 2
QUALITY = 40
LEVELS = (7, 8, 9)


def _coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((150, 100), Image.Resampling.LANCZOS)


def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((130, 10, 330, 210)).resize((112, 112), Image.Resampling.LANCZOS)


def _page() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.page()).crop((0, 0, 250, 120)).convert("RGB")


def _logo() -> Image.Image:
    from skimage import data

    rgba = Image.fromarray(data.logo())
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat.resize((120, 120), Image.Resampling.LANCZOS)


# name, kind, where the input comes from, how it is made
SOURCES: tuple[tuple[str, str, str, Callable[[], Image.Image]], ...] = (
    ("coffee", "photo", "skimage.data.coffee, 150×100", _coffee),
    ("astronaut", "portrait", "skimage.data.astronaut, face crop, 112×112", _astronaut),
    ("page", "text/scan", "skimage.data.page, top left 250×120", _page),
    ("logo", "illustration", "skimage.data.logo on white, 120×120", _logo),
)


def build(folder: Path = BUNDLE) -> dict:
    """Write every input, its levels and ``manifest.json`` into ``folder``; returns the manifest."""
    from pipelines.engine import Engine, EngineConfig
    from pipelines.imaging import load_image
    from pipelines.request import UpscaleRequest

    engine = Engine(EngineConfig(device="cpu"))
    entries = []
    for name, kind, source, make in SOURCES:
        data = _jpeg(make())
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "input.jpg").write_bytes(data)
        image = load_image(data)
        request = UpscaleRequest(width=image.size[0] * SCALE, levels=LEVELS, seed=0)
        result = engine.run(image, request)
        levels, labels = {}, {}
        for lv in result.levels:
            if lv.image is None:
                raise SystemExit(f"level {lv.level} of {name} did not run: {lv.message}")
            levels[str(lv.level)] = f"{name}/level{lv.level}.png"
            labels[str(lv.level)] = f"level {lv.level} · {lv.preset.recipe}"
            (folder / levels[str(lv.level)]).write_bytes(_small_png(lv.image))
        entries.append(
            {
                "name": name,
                "kind": kind,
                "source": source,
                "input": f"{name}/input.jpg",
                "sha256": hashlib.sha256(data).hexdigest(),
                "levels": levels,
                "labels": labels,
            }
        )
        log.info("%s: levels %s", name, sorted(levels))
    manifest = {
        "made_by": "python -m arena.bundle",
        "scale": SCALE,
        "input_jpeg_quality": QUALITY,
        "note": "levels 1-6 need the diffusion weights and are not precomputed",
        "images": entries,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def _small_png(image: Image.Image) -> bytes:
    """Lossless, as small as Pillow's PNG encoder makes it."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image.convert("RGB"))).save(buf, "PNG", optimize=True)
    return buf.getvalue()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    build()
