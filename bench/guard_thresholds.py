"""Where the face and text guards' limits come from: identity distances of the same person under
JPEG, blur and a ×4 from a quarter-size input (bicubic, and the real Real-ESRGAN x4plus) against
distances between different people and faces pasted over one another; the character error rate
of the same text under the same degradations against altered text. Writes
``out/guards/thresholds.json`` and prints the tables the README quotes.

    .venv/bin/python bench/guard_thresholds.py                       # the shippable images only
    .venv/bin/python bench/guard_thresholds.py --faces ../shared/eval/Set5 ../shared/eval/Set14

``--faces`` adds the faces found in other folders' images (measured, never copied).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT, machine
from PIL import Image

from pipelines import guards
from testing import guard_images as gi

Degrade = Callable[[Image.Image], Image.Image]


Neural = Callable[[Image.Image, int], Image.Image]


def degradations(neural: Neural) -> dict[str, Degrade]:
    """What a level may do to a face or a line of text that is still the same person or text."""
    return {
        "jpeg q20": lambda im: gi.jpeg(im, 20),
        "jpeg q40": lambda im: gi.jpeg(im, 40),
        "jpeg q75": lambda im: gi.jpeg(im, 75),
        "blur σ1": lambda im: gi.blur(im, 1.0),
        "blur σ2": lambda im: gi.blur(im, 2.0),
        "blur σ3": lambda im: gi.blur(im, 3.0),
        "bicubic ↓2↑2": lambda im: gi.down_up(im, 2),
        "bicubic ↓4↑4": lambda im: gi.down_up(im, 4),
        "Real-ESRGAN ↓4 ×4": lambda im: neural(im, 4),
    }


def realesrgan() -> Neural:
    """The lab's level-7 base path: Real-ESRGAN x4plus (fp32, CPU) on a 1/factor-size input,
    brought to the image's size."""
    import torch

    import presets
    from pipelines.base import NeuralSettings, neural_upscale
    from pipelines.realesrgan import load_upscaler

    model = load_upscaler()
    settings = NeuralSettings(torch.device("cpu"), torch.float32, presets.ESRGAN_TILE, presets.ESRGAN_TILE_PAD)

    def up(image: Image.Image, factor: int) -> Image.Image:
        small = image.resize((image.width // factor, image.height // factor), Image.Resampling.BICUBIC)
        with torch.inference_mode():
            return neural_upscale(model, small, image.size, settings)

    return up


def people(folders: list[Path]) -> dict[str, Image.Image]:
    """One image per person: the two shippable ones, then every image of ``folders`` with
    exactly one face."""
    found = {"astronaut": gi.astronaut(), "grace_hopper": gi.hopper()}
    for folder in folders:
        for path in sorted(folder.glob("*.png")):
            image = Image.open(path).convert("RGB")
            if len(guards.detect_face_boxes(image)) == 1:
                found[path.stem] = image
    return found


def face_table(images: dict[str, Image.Image], degrade: dict[str, Degrade]) -> dict[str, object]:
    """Same person degraded (the guard at the original's face), different people (descriptor
    to descriptor), and each person's face pasted over every other's (the guard at the box)."""
    faces = {name: guards.find_faces(im)[0] for name, im in images.items()}
    same: dict[str, dict[str, float]] = {}
    for name, image in images.items():
        same[name] = {}
        for how, fn in degrade.items():
            same[name][how] = round(guards.face_distance(fn(image), [faces[name]]), 3)
        baseline = gi.down_up(image, 4)  # the lab's case: level 7 against the bicubic baseline
        base_faces = guards.find_faces(baseline)
        if base_faces:
            same[name]["level 7 vs level 8 (↓4)"] = round(
                guards.face_distance(degrade["Real-ESRGAN ↓4 ×4"](image), base_faces[:1]), 3
            )
    different = {
        f"{a} / {b}": round(float(((faces[a].descriptor - faces[b].descriptor) ** 2).sum() ** 0.5), 3)
        for a, b in itertools.combinations(images, 2)
    }
    pasted = {}
    for a, b in itertools.permutations(images, 2):
        swapped = gi.paste(images[a], images[b], faces[a].box, faces[b].box)
        pasted[f"{b} into {a}"] = round(guards.face_distance(swapped, [faces[a]]), 3)
    return {"same": same, "different": different, "pasted": pasted}


def alter(lines: tuple[str, ...], every: int) -> tuple[str, ...]:
    """Every ``every``-th letter or digit replaced by the next one (a→b, 9→0)."""
    out, n = [], 0
    for line in lines:
        chars = []
        for ch in line:
            if ch.isalnum():
                n += 1
                if n % every == 0:
                    ch = {"z": "a", "Z": "A", "9": "0"}.get(ch, chr(ord(ch) + 1))
            chars.append(ch)
        out.append("".join(chars))
    return tuple(out)


def text_table(degrade: dict[str, Degrade], neural: Neural) -> dict[str, object]:
    """CER of the rendered page (and scikit-image's ``page``) degraded, and of altered text."""
    from skimage import data

    pages = {"rendered": gi.render_text(), "skimage page": Image.fromarray(data.page()).convert("RGB")}
    same: dict[str, dict[str, float]] = {}
    for name, page in pages.items():
        lines = guards.find_text(page)
        same[name] = {how: round(guards.text_cer(fn(page), lines), 3) for how, fn in degrade.items()}
        for k in (2, 4):  # the lab's case: level 7 (neural) against the bicubic baseline, from a 1/k input
            baseline = gi.down_up(page, k)
            level = neural(page, k)
            read = guards.find_text(baseline)
            same[name][f"level 7 vs level 8 (↓{k}, {len(read)} lines)"] = round(guards.text_cer(level, read), 3)
    lines = guards.find_text(pages["rendered"])
    altered = {f"1 in {k} characters changed": alter(gi.TEXT_LINES, k) for k in (20, 10, 5, 2)}
    altered["misspelt (ALTERED_LINES)"] = gi.ALTERED_LINES
    altered["other text (OTHER_LINES)"] = gi.OTHER_LINES
    changed = {how: round(guards.text_cer(gi.render_text(text), lines), 3) for how, text in altered.items()}
    return {"same": same, "altered": changed, "baseline_reading": [line.text for line in lines]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=Path, nargs="*", default=[], help="folders of further images with faces")
    p.add_argument("--only", choices=("faces", "text"), help="measure one guard only")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "guards" / "thresholds.json")
    args = p.parse_args()
    t = time.perf_counter()
    neural = realesrgan()
    degrade = degradations(neural)
    result: dict[str, object] = {"machine": machine()}
    if args.only in (None, "faces"):
        result["faces"] = face_table(people(args.faces), degrade)
    if args.only in (None, "text"):
        result["text"] = text_table(degrade, neural)
    result["seconds"] = round(time.perf_counter() - t, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
