"""What scoring a level costs, per metric in s/MP, before and after a change of the scoring
code, with the largest change it makes in any score; and the share of scoring in a nine-level
run with SD 1.5-sized parts.

    # per metric, this checkout against an older commit's scoring code (a git worktree):
    .venv/bin/python bench/scoring_cost.py --before 43542b6 --out docs/bench/scoring_cost_cpu.md
    # also the share of a real nine-level run (SD 1.5-sized random parts, cached in --models):
    .venv/bin/python bench/scoring_cost.py --run --models /tmp/sd15_random --run-width 2000

The "levels" scored are real photos from scikit-image upscaled ×4 (bicubic baseline) and
changed the ways levels change them: sharpened, blurred, hue-shifted, noisy, JPEG-compressed,
and one with tile seams. Each code version is timed in its own subprocess (medians of
``--rounds``), the guards' models loaded and warmed before any timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, publish, table

PHOTOS = ("astronaut", "coffee", "chelsea")


def test_images(side: int):
    """``(name, output, baseline, low_res, seams)`` for each photo and change, at ``side``²."""
    import numpy as np
    from PIL import Image, ImageFilter
    from skimage import data

    for photo in PHOTOS:
        rgb = np.asarray(getattr(data, photo)())[..., :3]
        low = Image.fromarray(rgb).resize((side // 4, side // 4), Image.Resampling.LANCZOS)
        base = low.resize((side, side), Image.Resampling.BICUBIC)
        arr = np.asarray(base).astype(np.float64)
        rng = np.random.default_rng(0)
        hsv = np.asarray(base.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + 8) % 256
        seamed = arr.copy()
        tile = side // 4
        for y in range(0, side, tile):
            for x in range(0, side, tile):
                seamed[y : y + tile, x : x + tile] += rng.uniform(-6, 6)
        jpeg = Path(tempfile.mkdtemp()) / "level.jpg"
        base.save(jpeg, quality=40)
        changes = {
            "sharpened": base.filter(ImageFilter.UnsharpMask(2, 150, 0)),
            "blurred": base.filter(ImageFilter.GaussianBlur(2)),
            "hue +11°": Image.fromarray(hsv, "HSV").convert("RGB"),
            "noisy": Image.fromarray(np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)),
            "JPEG q40": Image.open(jpeg).convert("RGB"),
            "tile seams": Image.fromarray(np.clip(seamed, 0, 255).astype(np.uint8)),
        }
        cuts = tuple(range(tile, side, tile))
        for change, out in changes.items():
            yield f"{photo} {change}", out, base, low, (cuts, cuts)


def child(side: int, rounds: int, code: str) -> None:
    """With ``code``'s pipelines: per metric seconds and every score, as JSON."""
    sys.path.insert(0, code)
    from PIL import Image

    from pipelines import guards, metrics

    guards.face_models(), guards.ocr_engine()
    warm = Image.new("RGB", (1200, 1200), (120, 90, 60))
    metrics.score_level(warm, warm.copy(), warm.resize((300, 300)))  # the text detector's one-time setup
    seconds: dict[str, list[float]] = {}
    scores: dict[str, dict[str, float]] = {}
    for name, out, base, low, seams in test_images(side):
        scores[name] = {}
        for _ in range(rounds):
            inputs = metrics.ScoreInput(out, base, low, None, seams)
            if name.endswith("sharpened"):  # the baseline's face and text search: once per baseline
                t = time.perf_counter()
                guards.find_faces(base), guards.find_text(base)  # uncached (the run caches them)
                seconds.setdefault("baseline face and text search (once per run)", []).append(time.perf_counter() - t)
            for m in metrics.LEVEL_METRICS:
                if m.fn is None or not m.applies(inputs):
                    continue
                t = time.perf_counter()
                value = float(m.fn(inputs))
                seconds.setdefault(m.key, []).append(time.perf_counter() - t)
                scores[name][m.key] = value
    per_metric = {k: statistics.median(v) for k, v in seconds.items()}
    print(json.dumps({"seconds": per_metric, "scores": scores}))


def measure(code: Path, side: int, rounds: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(side), str(rounds), str(code)],
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def worktree(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="scoring-before-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev], check=True, capture_output=True
    )
    return folder


def per_metric(side: int, rounds: int, before: str | None) -> list[str]:
    mp = side * side / 1e6
    after = measure(ROOT, side, rounds)
    old = None
    if before:
        tree = worktree(before)
        try:
            old = measure(tree, side, rounds)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    keys = list(after["seconds"])
    rows = []
    for k in keys:
        new_s = after["seconds"][k] / mp
        row = [k, f"{old['seconds'].get(k, float('nan')) / mp:.3f}" if old else "", f"{new_s:.3f}"]
        if old:
            diffs = [
                abs(after["scores"][n][k] - old["scores"][n][k])
                for n in after["scores"]
                if k in after["scores"][n] and k in old["scores"].get(n, {})
            ]
            rel = [
                abs(after["scores"][n][k] - old["scores"][n][k]) / max(1e-12, abs(old["scores"][n][k]))
                for n in after["scores"]
                if k in after["scores"][n] and k in old["scores"].get(n, {})
            ]
            row += [f"{max(diffs):.2g}" if diffs else "", f"{max(rel):.2%}" if rel else ""]
        rows.append(row)
    search = "baseline face and text search (once per run)"
    total_new = sum(v for k, v in after["seconds"].items() if k != search)
    lines = [
        f"## Scoring one level at {side}² ({mp:.1f} MP), per metric (median of {rounds}, {len(after['scores'])} images)",
        "",
        table(
            ["metric", f"before {before} (s/MP)" if before else "", "now (s/MP)"]
            + (["largest change", "largest relative change"] if old else []),
            rows,
        ),
        "",
        f"A level's scores now cost **{total_new:.2f} s** at {mp:.1f} MP ({total_new / mp:.3f} s/MP)"
        + (f", before {sum(v for k, v in old['seconds'].items() if k != search):.2f} s." if old else "."),
    ]
    return lines


def nine_level_share(models: str, width: int, steps: int | None) -> list[str]:
    """A nine-level run of a photo at ``width``² with SD 1.5-sized random parts: scoring's share."""
    from dataclasses import replace

    from PIL import Image
    from region_preview import models as random_models
    from skimage import data

    import presets
    from pipelines import engine as engine_module
    from pipelines.engine import Engine, EngineConfig
    from pipelines.imaging import load_image
    from pipelines.request import UpscaleRequest

    scored: list[float] = []
    original = engine_module.score_level

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            scored.append(time.perf_counter() - t)

    engine_module.score_level = timed
    config = EngineConfig(models=random_models(Path(models)))
    if steps is not None:
        config = replace(config, settings={k: replace(v, steps=steps) for k, v in config.settings.items()})
    assert config.models is not None
    engine = Engine(config)
    photo = load_image(Image.fromarray(data.astronaut()).resize((width // 4, width // 4), Image.Resampling.LANCZOS))
    engine.upscaler()
    engine.refiner()  # models load once per process: not part of the run's time
    scored.clear()
    t = time.perf_counter()
    result = engine.run(photo, UpscaleRequest(width=width, levels=presets.LEVEL_NUMBERS, seed=1))
    total = time.perf_counter() - t
    rows = [[k, f"{v:.1f}"] for k, v in result.timings.items() if v >= 0.05]
    score_s = sum(scored)
    return [
        f"## Scoring in a nine-level run, {width // 4}² → {width}² ({width * width / 1e6:.1f} MP), "
        f"SD 1.5-sized random parts ({engine.device_label()}; steps: {steps or 'the table'})",
        "",
        table(["stage", "s"], rows),
        "",
        f"Scoring ({len(scored)} distinct images): **{score_s:.1f} s of {total:.1f} s = {score_s / total:.1%}** of the run.",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=2000, help="level size in px (square): 2000 = 4 MP")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", help="a git revision whose scoring code to time and compare against")
    p.add_argument("--run", action="store_true", help="also a nine-level run with SD 1.5-sized random parts")
    p.add_argument("--models", default="/tmp/sd15_random", help="where the random parts are (built if missing)")
    p.add_argument("--run-width", type=int, default=2000)
    p.add_argument("--run-steps", type=int, help="diffusion steps of every level (default: the table's)")
    p.add_argument("--no-metrics", action="store_true", help="only the run")
    p.add_argument("--out", help="write the Markdown here too")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(int(a.child[0]), int(a.child[1]), a.child[2])
        return
    lines = [f"# Scoring cost ({machine()})", ""]
    if not a.no_metrics:
        lines += per_metric(a.side, a.rounds, a.before)
    if a.run:
        lines += ["", *nine_level_share(a.models, a.run_width, a.run_steps)]
    publish(lines, a.out)


if __name__ == "__main__":
    main()
