"""What the arena shows: two results of the same image, sides and order drawn at random, their
recipes hidden until the vote.

Pairs come from the user's own last run (any two of its levels that produced an image, or a
level and an upload from another upscaler) or from the bundled set in ``examples/arena/``
(``manifest.json``: per image its kind, its input file and sha256, and its levels 7–9, made by
``python -m arena.bundle`` with the real Real-ESRGAN ×4 and the bicubic paths). The diffusion
levels 1–6 cannot be precomputed without the diffusion weights, so the bundle holds none; a
visitor's own run brings them in where the weights are present.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from arena.votes import KINDS, UPLOAD_PREFIX, check_recipe

BUNDLE = Path(__file__).resolve().parents[1] / "examples" / "arena"
CROP_MAX = 512  # px a side: a larger output is shown as a random crop of this size (the same on both sides)


@dataclass(frozen=True)
class Candidate:
    """One result of an image: its ``recipe`` (a level id or ``upload:<name>``), the label
    shown after the vote, and its image (RGB)."""

    recipe: str
    label: str
    image: Image.Image


@dataclass(frozen=True)
class ArenaImage:
    """An input image and its results that may be paired: ``image_hash`` is the sha256 of the
    input file (the run manifest's ``input.sha256``), ``kind`` one of ``votes.KINDS``."""

    image_hash: str
    kind: str
    name: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Pair:
    """Two candidates of one image as shown: ``crop`` (x0, y0, x1, y1) is the part shown, in
    output pixels, the same on both sides."""

    image: ArenaImage
    left: Candidate
    right: Candidate
    crop: tuple[int, int, int, int]

    @property
    def crop_text(self) -> str:
        return ",".join(map(str, self.crop))

    def shown(self) -> tuple[Image.Image, Image.Image]:
        """The left and right images as shown (the crop)."""
        return self.left.image.crop(self.crop), self.right.image.crop(self.crop)


@functools.cache
def bundled_images(folder: Path = BUNDLE) -> tuple[ArenaImage, ...]:
    """The bundled set (``folder/manifest.json``), images loaded once."""
    manifest = json.loads((folder / "manifest.json").read_text())
    out = []
    for entry in manifest["images"]:
        candidates = tuple(
            Candidate(level, entry["labels"][level], _rgb(folder / path)) for level, path in entry["levels"].items()
        )
        out.append(ArenaImage(entry["sha256"], entry["kind"], entry["name"], candidates))
    return tuple(out)


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def run_images(result: Any, kind: str, upload: tuple[str, Image.Image] | None = None) -> ArenaImage:
    """The levels of a lab run (``pipelines.engine.RunResult``) that produced an image (levels
    of its table only: not the custom level), and ``upload`` (name, image) from another
    upscaler, resized to the levels' size when it differs. Raises ValueError for an unknown
    ``kind`` or an upload name a recipe cannot hold."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    table = result.table
    candidates = [
        Candidate(str(lv.level), f"level {lv.level} · {lv.preset.recipe}", lv.image.convert("RGB"))
        for lv in result.levels
        if lv.image is not None and lv.level in table.numbers
    ]
    if upload is not None and candidates:
        name, image = upload
        recipe = check_recipe(UPLOAD_PREFIX + name.strip())
        size = candidates[0].image.size
        shown = image.convert("RGB")
        if shown.size != size:
            shown = shown.resize(size, Image.Resampling.LANCZOS)
        candidates.append(Candidate(recipe, f"{name.strip()} (another upscaler)", shown))
    return ArenaImage(result.manifest["input"]["sha256"], kind, "your last run", tuple(candidates))


def next_pair(
    images: Sequence[ArenaImage], rng: random.Random, *, voted: Callable[[str, str, str], bool] = lambda h, a, b: False
) -> Pair | None:
    """A pair drawn uniformly from every pair of candidates of ``images`` that ``voted``
    (image hash, recipe, recipe) says is not voted on yet; sides drawn at random; a random
    crop of at most ``CROP_MAX`` a side. None when no pair is left."""
    open_pairs = [
        (img, a, b)
        for img in images
        for i, a in enumerate(img.candidates)
        for b in img.candidates[i + 1 :]
        if a.image.size == b.image.size and not voted(img.image_hash, a.recipe, b.recipe)
    ]
    if not open_pairs:
        return None
    img, a, b = rng.choice(open_pairs)
    if rng.random() < 0.5:
        a, b = b, a
    return Pair(img, a, b, _crop(a.image.size, rng))


def _crop(size: tuple[int, int], rng: random.Random) -> tuple[int, int, int, int]:
    w, h = size
    cw, ch = min(w, CROP_MAX), min(h, CROP_MAX)
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return x0, y0, x0 + cw, y0 + ch
