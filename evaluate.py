"""Measure the strength dial over a dataset of high-resolution images.

    python evaluate.py ../shared/eval/Set5 --levels 7,8,9 -o eval_runs/set5
    python evaluate.py photos/ --jpeg 30 --noise 3 -o eval_runs/photos_q30
    torchrun --nproc_per_node 2 evaluate.py photos/ -o eval_runs/photos   # sharded

Each image: crop to a multiple of the scale, antialiased bicubic downscale (the SR-paper way),
optional degradations (blur → noise → JPEG, seeded per image), run the chosen levels, score
each output against the ground truth (PSNR/SSIM on Y with the border shaved, and on RGB),
LR-consistency, distance from the bicubic baseline and time. Per-image results are saved as
they finish, so an interrupted run resumes where it stopped. Outputs: per-image CSV/JSON,
a per-level summary (CSV, JSON, Markdown), plots, a self-contained HTML report and a
monotonicity check of the dial.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import html
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

import presets
from cli import add_engine_args, engine_config
from pipelines.report import atomic_write, png_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SCORE_KEYS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "lr_consistency", "psnr_vs_bicubic", "seconds")
PAPER = {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027)}


@dataclass(frozen=True)
class Degradation:
    """Applied to the low-resolution input in this order: blur, noise, JPEG."""

    blur: float | None = None  # Gaussian sigma, LR pixels
    noise: float | None = None  # Gaussian sigma, 8-bit levels
    jpeg: int | None = None  # quality 1..95

    def __post_init__(self) -> None:
        if self.jpeg is not None and not 1 <= self.jpeg <= 95:
            raise ValueError(f"--jpeg must be in 1..95, got {self.jpeg}")
        for name in ("blur", "noise"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"--{name} must be >= 0, got {v}")

    def apply(self, image: Image.Image, seed: int) -> Image.Image:
        out = image
        if self.blur:
            out = out.filter(ImageFilter.GaussianBlur(self.blur))
        if self.noise:
            rng = np.random.default_rng(seed)
            arr = np.asarray(out, dtype=np.float64) + rng.normal(0, self.noise, size=np.asarray(out).shape)
            out = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), out.mode)
        if self.jpeg:
            buf = io.BytesIO()
            out.save(buf, "JPEG", quality=self.jpeg)
            out = Image.open(io.BytesIO(buf.getvalue()))
            out.load()
        return out

    def label(self) -> str:
        parts = [
            f"blur σ{self.blur:g}" if self.blur else "",
            f"noise σ{self.noise:g}" if self.noise else "",
            f"JPEG q{self.jpeg}" if self.jpeg else "",
        ]
        return ", ".join(p for p in parts if p) or "none"


def image_seed(seed: int, name: str) -> int:
    """A per-image seed that does not depend on the order or the shard an image lands in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def make_pair(path: Path, scale: int) -> tuple[Image.Image, Image.Image]:
    """(ground truth cropped to a multiple of ``scale``, its antialiased bicubic ÷scale)."""
    hr = Image.open(path)
    hr.load()
    hr = hr.convert("L") if hr.mode in ("L", "I;16", "I") else hr.convert("RGB")
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % scale, h - h % scale))
    lr = hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)
    return hr, lr


def list_images(folders: list[str]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        p = Path(f)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES))
        else:
            raise SystemExit(f"error: {f} is not a file or folder")
    if not out:
        raise SystemExit(f"error: no images in {folders}")
    return out


def key_of(path: Path) -> str:
    return f"{path.parent.name}__{path.stem}"


def evaluate_image(engine: Any, path: Path, args: argparse.Namespace, deg: Degradation) -> dict[str, Any]:
    from pipelines.imaging import load_image
    from pipelines.metrics import sr_scores
    from pipelines.request import UpscaleRequest

    hr, lr = make_pair(path, args.scale)
    seed = image_seed(args.seed, key_of(path))
    lr = deg.apply(lr, seed)
    buf = io.BytesIO()
    lr.save(buf, "PNG")
    request = UpscaleRequest(width=hr.width, height=hr.height, fit="crop", levels=tuple(args.levels), seed=args.seed)
    result = engine.run(load_image(buf.getvalue()), request)
    levels: dict[str, Any] = {}
    thumbs: dict[str, str] = {}
    for lv in result.levels:
        if lv.image is None:
            levels[str(lv.level)] = {"status": "not run", "reason": lv.reason or lv.message}
            continue
        scores = sr_scores(lv.image, hr, scale=args.scale)
        scores.update(
            {
                "lr_consistency": lv.metrics["lr_consistency"],
                "psnr_vs_bicubic": lv.metrics["psnr_vs_bicubic"],
                "seconds": lv.seconds,
            }
        )
        levels[str(lv.level)] = {"status": "ok", **scores}
        thumbs[str(lv.level)] = thumbnail(lv.image)
    return {
        "image": key_of(path),
        "path": str(path),
        "size": list(hr.size),
        "seed": seed,
        "levels": levels,
        "thumbs": thumbs,
        "gt_thumb": thumbnail(hr),
        "lr_thumb": thumbnail(lr.resize(hr.size, Image.Resampling.NEAREST)),
    }


def thumbnail(image: Image.Image, width: int = 160) -> str:
    t = image.convert("RGB")
    t = t.resize((width, max(1, round(width * t.height / t.width))), Image.Resampling.LANCZOS)
    return base64.b64encode(png_bytes(t)).decode()


def jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def number(v: Any) -> float:
    return math.inf if v == "inf" else float(v)


# --------------------------------------------------------------------------- aggregation


def aggregate(records: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    """Per level: mean and standard deviation of each score over the images it ran on;
    ``inf`` values (identical images) are excluded from means and counted."""
    summary: dict[str, Any] = {}
    for n in levels:
        rows = [r["levels"][str(n)] for r in records if r["levels"].get(str(n), {}).get("status") == "ok"]
        entry: dict[str, Any] = {
            "level": n,
            "recipe": presets.get_level(n).recipe,
            "images": len(rows),
            "not_run": sum(1 for r in records if r["levels"].get(str(n), {}).get("status") == "not run"),
        }
        for k in SCORE_KEYS:
            vals = [number(r[k]) for r in rows]
            finite = [v for v in vals if math.isfinite(v)]
            entry[k] = {
                "mean": float(np.mean(finite)) if finite else (math.inf if vals else None),
                "std": float(np.std(finite)) if finite else None,
                "inf": len(vals) - len(finite),
            }
        summary[str(n)] = entry
    return summary


def monotonic_check(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each base path and each (more generative, less generative) pair of levels: how
    often the more generative one scores closer to the ground truth (higher PSNR-Y)."""
    out = []
    for base in presets.BASE_PATHS:
        col = [lv for lv in presets.LEVELS if lv.base_path == base]  # strong, medium, off
        for i in range(len(col)):
            for j in range(i + 1, len(col)):
                more, less = col[i].level, col[j].level
                pairs = [
                    (r["levels"][str(more)], r["levels"][str(less)])
                    for r in records
                    if r["levels"].get(str(more), {}).get("status") == "ok"
                    and r["levels"].get(str(less), {}).get("status") == "ok"
                ]
                closer = [True for a, b in pairs if number(a["psnr_y"]) > number(b["psnr_y"])]
                out.append(
                    {
                        "base_path": base,
                        "more_generative": more,
                        "less_generative": less,
                        "compared": len(pairs),
                        "more_generative_closer": len(closer),
                    }
                )
    return out


def summary_markdown(summary: dict[str, Any], mono: list[dict[str, Any]], title: str) -> str:
    def fmt(e: dict[str, Any], k: str, digits: int) -> str:
        m = e[k]["mean"]
        if m is None:
            return "—"
        if math.isinf(m):
            return "inf"
        return f"{m:.{digits}f} ± {e[k]['std']:.{digits}f}"

    lines = [
        f"### {title}",
        "",
        "| level | recipe | images | PSNR-Y (dB) | SSIM-Y | PSNR-RGB | SSIM-RGB | LR-consistency (dB) | PSNR vs bicubic (dB) | s / image |",
        "|---:|---|---:|---|---|---|---|---|---|---|",
    ]
    for e in summary.values():
        if e["images"] == 0:
            lines.append(
                f"| {e['level']} | {e['recipe']} | 0 | not run ({e['not_run']} images: weights missing) | | | | | | |"
            )
            continue
        lines.append(
            f"| {e['level']} | {e['recipe']} | {e['images']} | {fmt(e, 'psnr_y', 2)} | {fmt(e, 'ssim_y', 4)} | "
            f"{fmt(e, 'psnr_rgb', 2)} | {fmt(e, 'ssim_rgb', 4)} | {fmt(e, 'lr_consistency', 2)} | "
            f"{fmt(e, 'psnr_vs_bicubic', 2)} | {fmt(e, 'seconds', 2)} |"
        )
    checked = [m for m in mono if m["compared"]]
    lines += [
        "",
        "Monotonicity (does a more generative level score closer to the ground truth, PSNR-Y, than a less generative one with the same base path?):",
        "",
    ]
    if not checked:
        lines.append("- not checked: fewer than two levels of the same base path ran")
    for m in checked:
        lines.append(
            f"- {m['base_path']}: level {m['more_generative']} closer than level {m['less_generative']} on "
            f"{m['more_generative_closer']} of {m['compared']} images"
        )
    return "\n".join(lines) + "\n"


def plots(summary: dict[str, Any], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ran = [e for e in summary.values() if e["images"]]
    out: dict[str, Path] = {}
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    xs = [e["level"] for e in ran]
    ax1.errorbar(
        xs, [e["psnr_y"]["mean"] for e in ran], yerr=[e["psnr_y"]["std"] or 0 for e in ran], fmt="o-", capsize=3
    )
    ax1.set(xlabel="level", ylabel="PSNR-Y vs ground truth (dB)", xticks=list(range(1, 10)))
    ax2.errorbar(
        xs,
        [e["ssim_y"]["mean"] for e in ran],
        yerr=[e["ssim_y"]["std"] or 0 for e in ran],
        fmt="o-",
        color="C2",
        capsize=3,
    )
    ax2.set(xlabel="level", ylabel="SSIM-Y vs ground truth", xticks=list(range(1, 10)))
    fig.tight_layout()
    out["scores_vs_level"] = folder / "scores_vs_level.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(out["scores_vs_level"], buf.getvalue())

    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    for e in ran:
        change = e["psnr_vs_bicubic"]["mean"]
        change = 60.0 if change is None or math.isinf(change) else change
        ax.scatter(change, e["psnr_y"]["mean"], color=f"C{presets.get_level(e['level']).column}")
        ax.annotate(str(e["level"]), (change, e["psnr_y"]["mean"]), textcoords="offset points", xytext=(4, 4))
    ax.set(
        xlabel="PSNR vs bicubic (dB; higher = less change; inf shown at 60)",
        ylabel="PSNR-Y vs ground truth (dB)",
        title="fidelity against change",
    )
    fig.tight_layout()
    out["fidelity_vs_change"] = folder / "fidelity_vs_change.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(out["fidelity_vs_change"], buf.getvalue())
    return out


def html_report(records: list[dict[str, Any]], summary_md: str, plot_paths: dict[str, Path], title: str) -> str:
    def img(b64: str, alt: str) -> str:
        return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'

    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}.grid{display:grid;grid-template-columns:repeat(3,170px);gap:6px}"
        ".cell{font-size:11px}.cell img{width:160px;display:block}.blank{width:160px;height:100px;background:#eee;"
        "display:flex;align-items:center;justify-content:center;color:#777}section{margin:1.5em 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<pre>" + html.escape(summary_md) + "</pre>",
    ]
    for p in plot_paths.values():
        parts.append(img(base64.b64encode(p.read_bytes()).decode(), p.stem))
    for r in records:
        parts.append(
            f"<section><h3>{html.escape(r['image'])} ({r['size'][0]}×{r['size'][1]})</h3>"
            f"<div class='cell'>ground truth / input (nearest)<br>{img(r['gt_thumb'], 'ground truth')}{img(r['lr_thumb'], 'input')}</div>"
            "<div class='grid'>"
        )
        for lv in presets.LEVELS:
            entry = r["levels"].get(str(lv.level))
            if entry is None:
                parts.append("<div class='cell'><div class='blank'>not requested</div></div>")
            elif entry["status"] != "ok":
                parts.append(f"<div class='cell'><div class='blank'>level {lv.level}: not run</div></div>")
            else:
                cap = f"{lv.level}: PSNR-Y {number(entry['psnr_y']):.2f} / SSIM-Y {number(entry['ssim_y']):.4f}"
                parts.append(f"<div class='cell'>{img(r['thumbs'][str(lv.level)], cap)}{html.escape(cap)}</div>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "".join(parts)


def write_outputs(out: Path, records: list[dict[str, Any]], args: argparse.Namespace, deg: Degradation) -> str:
    records = sorted(records, key=lambda r: r["image"])
    summary = aggregate(records, args.levels)
    mono = monotonic_check(records)
    title = f"{', '.join(Path(f).name for f in args.folders)} ×{args.scale} (degradation: {deg.label()})"
    md = summary_markdown(summary, mono, title)
    atomic_write(out / "summary.md", md.encode())
    atomic_write(
        out / "summary.json",
        json.dumps(jsonable({"title": title, "levels": summary, "monotonicity": mono}), indent=2).encode(),
    )
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "level", "status", *SCORE_KEYS])
    for r in records:
        for n in args.levels:
            e = r["levels"].get(str(n), {"status": "not run"})
            w.writerow([r["image"], n, e["status"], *[e.get(k, "") for k in SCORE_KEYS]])
    atomic_write(out / "per_image.csv", buf.getvalue().encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["level", "recipe", "images", "not_run", *[f"{k}_{s}" for k in SCORE_KEYS for s in ("mean", "std")]])
    for e in summary.values():
        w.writerow(
            [
                e["level"],
                e["recipe"],
                e["images"],
                e["not_run"],
                *[e[k][s] for k in SCORE_KEYS for s in ("mean", "std")],
            ]
        )
    atomic_write(out / "summary.csv", buf.getvalue().encode())
    plot_paths = plots(summary, out) if any(e["images"] for e in summary.values()) else {}
    atomic_write(out / "report.html", html_report(records, md, plot_paths, title).encode())
    return md


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="folders (or files) of high-resolution ground-truth images")
    p.add_argument("-o", "--output", required=True, help="output folder (per-image results make re-runs resume)")
    p.add_argument("--scale", type=int, default=4, help="downscale factor for the LR input (default %(default)s)")
    p.add_argument("--levels", default="all", help="comma-separated levels, or 'all' (default)")
    p.add_argument("--jpeg", type=int, help="JPEG-compress the LR input at this quality")
    p.add_argument("--noise", type=float, help="add Gaussian noise of this sigma (8-bit levels) to the LR input")
    p.add_argument("--blur", type=float, help="Gaussian-blur the LR input with this sigma (px)")
    p.add_argument("--seed", type=int, default=0, help="seed for degradations and diffusion (default %(default)s)")
    p.add_argument("--fresh", action="store_true", help="ignore per-image results already in the output folder")
    p.add_argument("--tiny-models", metavar="DIR", help=argparse.SUPPRESS)  # tests: tiny random diffusion parts
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p)
    args = p.parse_args(argv)
    args.levels = (
        list(presets.LEVEL_NUMBERS) if args.levels == "all" else sorted({int(x) for x in args.levels.split(",")})
    )
    for n in args.levels:
        presets.get_level(n)
    if args.scale < 2:
        p.error("--scale must be >= 2")
    return args


def run_config(args: argparse.Namespace, deg: Degradation) -> dict[str, Any]:
    return {
        "scale": args.scale,
        "levels": args.levels,
        "seed": args.seed,
        "degradation": asdict(deg),
        "upscaler": args.upscaler,
        "models": [args.sd15, args.controlnet, args.lora, args.lora_file, args.tiny_models],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deg = Degradation(blur=args.blur, noise=args.noise, jpeg=args.jpeg)
    out = Path(args.output)
    per_image = out / "per_image"
    images = list_images(args.folders)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    state = None
    if world > 1:  # torchrun / accelerate launch: split images between processes
        from accelerate import PartialState

        state = PartialState(backend="gloo", cpu=True)
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    is_main = state is None or state.is_main_process
    config = run_config(args, deg)
    config_path = out / "config.json"
    if is_main:
        if config_path.exists() and not args.fresh and json.loads(config_path.read_text()) != config:
            raise SystemExit(f"error: {out} holds results of a different configuration; use --fresh or another -o")
        atomic_write(config_path, json.dumps(config, indent=2).encode())
    if state is not None:
        state.wait_for_everyone()

    engine_kw: dict[str, Any] = {}
    if args.tiny_models:  # folders written by testing.tiny.build_tiny_models
        from testing.tiny import tiny_settings

        d = Path(args.tiny_models)
        engine_kw["settings"] = tiny_settings()
        args.sd15, args.controlnet, args.lora = str(d / "sd15"), str(d / "controlnet"), str(d / "lora")
        args.lora_file = presets.MODELS["detail_lora"].file
    from pipelines.engine import Engine

    engine = Engine(engine_config(args, **engine_kw))
    mine = images
    if state is not None:
        with state.split_between_processes(images) as part:
            mine = list(part)
    todo = [p for p in mine if args.fresh or not (per_image / f"{key_of(p)}.json").exists()]
    if state is not None:
        print(f"rank {state.process_index}/{world}: {len(mine)} images", file=sys.stderr)
    skipped = len(mine) - len(todo)
    if skipped:
        print(f"resuming: {skipped} of {len(mine)} images already scored", file=sys.stderr)
    from tqdm import tqdm

    t0 = time.perf_counter()
    rank = state.process_index if state is not None else 0
    for path in tqdm(
        todo,
        desc=f"evaluating (rank {rank})" if state else "evaluating",
        unit="image",
        disable=args.no_progress,
        file=sys.stderr,
    ):
        record = evaluate_image(engine, path, args, deg)
        atomic_write(per_image / f"{key_of(path)}.json", json.dumps(jsonable(record)).encode())
    if state is not None:
        state.wait_for_everyone()
    if is_main:
        records = [json.loads((per_image / f"{key_of(p)}.json").read_text()) for p in images]
        md = write_outputs(out, records, args, deg)
        print(md)
        names = {Path(f).name for f in args.folders}
        if (
            8 in args.levels
            and len(names) == 1
            and (name := names.pop()) in PAPER
            and deg.label() == "none"
            and args.scale == 4
        ):
            s = aggregate(records, [8])["8"]
            ref = PAPER[name]
            print(
                f"paper check ({name} ×4 bicubic, Y): {s['psnr_y']['mean']:.2f} dB / {s['ssim_y']['mean']:.4f} "
                f"vs published {ref[0]:.2f} / {ref[1]:.4f} (Δ {s['psnr_y']['mean'] - ref[0]:+.2f} dB, {s['ssim_y']['mean'] - ref[1]:+.4f})"
            )
        print(f"wrote {out}/report.html, summary.md/.csv/.json, per_image.csv ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
