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
from pipelines.engine_args import add_engine_args, engine_config
from pipelines.metrics import LEVEL_METRICS, SR_METRICS, Metric, get_metric
from pipelines.report import atomic_write, png_bytes
from views import level_axis

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif"}
SECONDS = Metric(key="seconds", name="Time", unit="s / image", direction="lower", description="wall time of the level")
# The summary's score columns, in order, from the metrics registry: the SR papers' scores
# against the ground truth, then the engine's scores of every level (those against a ground
# truth the SR scores already cover), then the time.
SUMMARY_COLUMNS: tuple[Metric, ...] = (
    *SR_METRICS,
    *(m for m in LEVEL_METRICS if "ground_truth" not in m.needs),
    SECONDS,
)
SCORE_KEYS = tuple(c.key for c in SUMMARY_COLUMNS)
THUMB_WIDTH = 160
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

    def encode(self, image: Image.Image, seed: int) -> bytes:
        """The degraded input as the file a user would have: JPEG bytes when JPEG is applied
        (quantisation tables included, so the engine reads the quality as it does for any
        JPEG), PNG otherwise."""
        out = image
        if self.blur:
            out = out.filter(ImageFilter.GaussianBlur(self.blur))
        if self.noise:
            rng = np.random.default_rng(seed)
            arr = np.asarray(out, dtype=np.float64) + rng.normal(0, self.noise, size=np.asarray(out).shape)
            out = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), out.mode)
        buf = io.BytesIO()
        if self.jpeg:
            out.save(buf, "JPEG", quality=self.jpeg)
        else:
            out.save(buf, "PNG")
        return buf.getvalue()

    def apply(self, image: Image.Image, seed: int) -> Image.Image:
        """:meth:`encode`, decoded."""
        out = Image.open(io.BytesIO(self.encode(image, seed)))
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
    if path.suffix.lower() in (".heic", ".heif"):
        from pipelines.imaging import enable_heif

        enable_heif()
    hr: Image.Image = Image.open(path)
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
    data = deg.encode(lr, seed)  # a JPEG stays a JPEG file: the cleanup reads its quality
    lr = Image.open(io.BytesIO(data)).convert("RGB")
    request = UpscaleRequest(
        width=hr.width,
        height=hr.height,
        fit="crop",
        levels=tuple(args.levels),
        seed=args.seed,
        table=engine.config.table,
    )
    result = engine.run(load_image(data), request)
    levels: dict[str, Any] = {}
    thumbs: dict[str, str] = {}
    for lv in result.levels:
        if lv.image is None:
            levels[str(lv.level)] = {"status": "not run", "reason": lv.reason or lv.message}
            continue
        scores = sr_scores(lv.image, hr, scale=args.scale)
        scores.update({m.key: lv.metrics[m.key] for m in SUMMARY_COLUMNS if m.key in lv.metrics})
        scores["seconds"] = lv.seconds
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


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH) -> str:
    t = image.convert("RGB")
    t = t.resize((width, max(1, round(width * t.height / t.width))), Image.Resampling.LANCZOS)
    return base64.b64encode(png_bytes(t)).decode()


def jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def number(v: Any) -> float:
    return math.inf if v == "inf" else float(v)


# --------------------------------------------------------------------------- aggregation


def aggregate(
    records: list[dict[str, Any]], levels: list[int], *, table: presets.LevelTable = presets.TABLE
) -> dict[str, Any]:
    """Per level (of ``table``, the engine's): mean and standard deviation of each score over
    the images it ran on; ``inf`` values (identical images) are excluded from means and counted."""
    summary: dict[str, Any] = {}
    for n in levels:
        rows = [r["levels"][str(n)] for r in records if r["levels"].get(str(n), {}).get("status") == "ok"]
        entry: dict[str, Any] = {
            "level": n,
            "recipe": table.get(n).recipe,
            "images": len(rows),
            "not_run": sum(1 for r in records if r["levels"].get(str(n), {}).get("status") == "not run"),
            "not_run_reasons": sorted(
                {
                    str(r["levels"][str(n)].get("reason") or "no reason given")
                    for r in records
                    if r["levels"].get(str(n), {}).get("status") == "not run"
                }
            ),
        }
        for k in SCORE_KEYS:
            # a score a level did not get (no seams when untiled, no NIQE below 192 px) is left out
            vals = [v for v in (number(r[k]) for r in rows if r.get(k) is not None) if not math.isnan(v)]
            finite = [v for v in vals if math.isfinite(v)]
            entry[k] = {
                "mean": float(np.mean(finite)) if finite else (math.inf if vals else None),
                "std": float(np.std(finite)) if finite else None,
                "inf": len(vals) - len(finite),
            }
        summary[str(n)] = entry
    return summary


def monotonic_check(
    records: list[dict[str, Any]], *, table: presets.LevelTable = presets.TABLE
) -> list[dict[str, Any]]:
    """For each base path of ``table`` and each (more generative, less generative) pair of its
    levels: how often the more generative one scores closer to the ground truth (higher PSNR-Y)."""
    out = []
    for base in table.base_paths:
        col = table.column(base)  # most generative first: strong, medium, off
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


RECOMMENDATION_KEYS = ("psnr_y", "ssim_y", "lr_consistency", "niqe")  # the comparison's columns


def recommendation_check(
    records: list[dict[str, Any]], floor: float, *, table: presets.LevelTable = presets.TABLE
) -> dict[str, Any]:
    """The recommender on every image (``pipelines.recommend``, fidelity = LR-consistency,
    naturalness = NIQE, as in the lab), and how the level it picks compares with each fixed
    level over the same images: mean ± std of ``RECOMMENDATION_KEYS``, and how often each
    level was picked."""
    from pipelines.recommend import recommend

    picks: dict[str, int | None] = {}
    for r in records:
        ran = [
            (table.get(int(n)), {k: number(v) for k, v in e.items() if k in ("lr_consistency", "niqe")})
            for n, e in r["levels"].items()
            if e.get("status") == "ok" and e.get("niqe") is not None and e.get("lr_consistency") is not None
        ]
        picks[r["image"]] = recommend(ran, floor=floor).level if len(ran) > 1 else None
    chosen = [r for r in records if picks[r["image"]] is not None]

    def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for k in RECOMMENDATION_KEYS:
            vals = [v for v in (number(x[k]) for x in rows if x.get(k) is not None) if math.isfinite(v)]
            out[k] = {"mean": float(np.mean(vals)) if vals else None, "std": float(np.std(vals)) if vals else None}
        return out

    fixed = {}
    for n in sorted({int(n) for r in chosen for n in r["levels"]}):
        rows = [r["levels"][str(n)] for r in chosen if r["levels"].get(str(n), {}).get("status") == "ok"]
        if len(rows) == len(chosen):  # only levels that ran on every image compare like with like
            fixed[str(n)] = stats(rows)
    counts: dict[str, int] = {}
    for level in picks.values():
        counts[str(level) if level is not None else "none"] = counts.get(str(level) if level else "none", 0) + 1
    return {
        "floor_db": floor,
        "images": len(chosen),
        "picks": dict(sorted(counts.items())),
        "per_image": picks,
        "recommended": stats([r["levels"][str(picks[r["image"]])] for r in chosen]),
        "fixed": fixed,
    }


def recommendation_markdown(check: dict[str, Any]) -> str:
    picks = ", ".join(f"{'no pick' if k == 'none' else 'level ' + k} × {v}" for k, v in check["picks"].items())
    lines = [
        f"Recommended level (fidelity floor {check['floor_db']:g} dB LR-consistency; most natural above it): "
        f"{picks or 'no images'}.",
        "",
    ]
    if not check["images"]:
        return "\n".join(lines + ["- no image had a recommendation", ""])
    columns = [get_metric(k) for k in RECOMMENDATION_KEYS]
    lines += [
        "| level | " + " | ".join(c.label for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    rows = [("recommended", check["recommended"]), *((f"{n} (always)", st) for n, st in check["fixed"].items())]
    for name, st in rows:
        cells = [
            f"{st[c.key]['mean']:.{c.decimals}f} ± {st[c.key]['std']:.{c.decimals}f}"
            if st[c.key]["mean"] is not None
            else "—"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", f"Over the {check['images']} images with a recommendation.", ""])


def best_levels(summary: dict[str, Any], column: Metric) -> set[int]:
    """The levels whose mean is best in ``column`` (by its direction; ties at the shown
    decimals all count). Empty when the column has no direction (a distance from the
    baseline) or fewer than two distinct means to compare."""
    if column.higher_is_better is None:
        return set()
    means = {
        e["level"]: round(e[column.key]["mean"], column.decimals)
        for e in summary.values()
        if e["images"] and e[column.key]["mean"] is not None
    }
    if len(set(means.values())) < 2:
        return set()
    best = max(means.values()) if column.higher_is_better else min(means.values())
    return {level for level, mean in means.items() if mean == best}


def shown(stats: dict[str, Any], decimals: int) -> tuple[str, str]:
    """A summary cell as text: (mean, spread), e.g. ("28.42", "± 1.03"); ("inf", "") when
    every image scored inf; ("—", "") when nothing was scored. Images scoring inf are left
    out of a finite mean and counted after the spread."""
    mean = stats["mean"]
    if mean is None:
        return "—", ""
    if math.isinf(mean):
        return "inf", ""
    spread = f"± {stats['std']:.{decimals}f}"
    if stats["inf"]:
        spread += f" (+{stats['inf']} inf)"
    return f"{mean:.{decimals}f}", spread


def not_run_text(entry: dict[str, Any]) -> str:
    images = entry["not_run"]
    reasons = "; ".join(entry.get("not_run_reasons", [])) or "no reason given"
    return f"not run on {images} image{'s' if images != 1 else ''}: {reasons}"


def legend(
    marking: str, columns: tuple[Metric, ...] = SUMMARY_COLUMNS, *, table: presets.LevelTable = presets.TABLE
) -> str:
    """The table's legend: what the cells are, how the best is shown (``marking``, e.g. "in
    bold") and which way is better, all from the columns' specs; the baseline from ``table``."""
    names = {flag: ", ".join(c.name for c in columns if c.higher_is_better is flag) for flag in (True, False, None)}
    directions = [
        f"{word} is better: {names[flag]}" for flag, word in ((True, "higher"), (False, "lower")) if names[flag]
    ]
    parts = [
        f"Mean ± standard deviation over the images. The best level in each column is {marking} when levels differ",
        f" ({'; '.join(directions)})." if directions else ".",
    ]
    if names[None]:
        parts.append(
            f" {names[None]} is the distance from the bicubic baseline (level {table.baseline_level}): it"
            " measures change, not quality, so no level is marked; inf means identical to the baseline."
        )
    return "".join(parts)


def monotonicity_sentence(m: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    return (
        f"{table.column_label(m['base_path'])}: level {m['more_generative']} closer than level "
        f"{m['less_generative']} on {m['more_generative_closer']} of {m['compared']} images"
    )


MONOTONICITY_QUESTION = (
    "Does a more generative level score closer to the ground truth (PSNR-Y) than a less "
    "generative one with the same base path?"
)


def summary_markdown(
    summary: dict[str, Any], mono: list[dict[str, Any]], title: str, *, table: presets.LevelTable = presets.TABLE
) -> str:
    """The summary as Markdown (``summary.md`` and the console): a table of mean ± standard
    deviation per level, the best of each column in bold, and the monotonicity check."""
    best = {c.key: best_levels(summary, c) for c in SUMMARY_COLUMNS}
    lines = [
        f"### {title}",
        "",
        "| level | recipe | images | " + " | ".join(c.label for c in SUMMARY_COLUMNS) + " |",
        "|---:|---|---:|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for e in summary.values():
        if e["images"] == 0:
            rest = " |" * (len(SUMMARY_COLUMNS) - 1)
            lines.append(f"| {e['level']} | {e['recipe']} | 0 | {not_run_text(e)} |{rest}")
            continue
        cells = []
        for c in SUMMARY_COLUMNS:
            text = " ".join(x for x in shown(e[c.key], c.decimals) if x)
            cells.append(f"**{text}**" if e["level"] in best[c.key] else text)
        lines.append(f"| {e['level']} | {e['recipe']} | {e['images']} | " + " | ".join(cells) + " |")
    lines += ["", legend("in bold", table=table), ""]
    checked = [m for m in mono if m["compared"]]
    lines += [f"Monotonicity: {MONOTONICITY_QUESTION}", ""]
    if not checked:
        lines.append("- not checked: fewer than two levels of the same base path ran")
    lines += [f"- {monotonicity_sentence(m, table=table)}" for m in checked]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def scores_vs_level_figure(
    summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE
) -> Any:  # matplotlib.figure.Figure
    """PSNR-Y and SSIM-Y against the ground truth per level: mean with ± std error bars."""
    from matplotlib.figure import Figure

    ran = [e for e in summary.values() if e["images"]]
    xs = [e["level"] for e in ran]
    fig = Figure(figsize=(8, 3.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, key, color in zip(axes, ("psnr_y", "ssim_y"), ("C0", "C2"), strict=True):
        spec = get_metric(key)
        ax.errorbar(
            xs,
            [e[key]["mean"] for e in ran],
            yerr=[e[key]["std"] or 0 for e in ran],
            fmt="o-",
            color=color,
            capsize=3,
        )
        level_axis(ax, table)
        ax.set_ylabel(f"{spec.name} vs ground truth" + (f" ({spec.unit})" if spec.unit else ""))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fidelity_vs_change_figure(
    summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE
) -> Any:  # matplotlib.figure.Figure
    """Mean PSNR-Y against mean PSNR vs bicubic, one point per level, coloured by base path;
    levels that land on the same spot share one label."""
    from matplotlib.figure import Figure

    ran = [e for e in summary.values() if e["images"]]
    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    spots: dict[tuple[float, float], list[int]] = {}
    for e in ran:
        change = e["psnr_vs_bicubic"]["mean"]
        change = 60.0 if change is None or math.isinf(change) else change
        fidelity = e["psnr_y"]["mean"]
        ax.scatter(change, fidelity, color=f"C{table.get(e['level']).column}")
        spots.setdefault((round(change, 1), round(fidelity, 1)), []).append(e["level"])
    xs, ys = [x for x, _ in spots], [y for _, y in spots]
    near_x, near_y = 0.05 * (max(xs) - min(xs) or 1), 0.05 * (max(ys) - min(ys) or 1)
    previous: tuple[float, float] | None = None
    for (change, fidelity), levels in sorted(spots.items(), key=lambda kv: kv[0][1], reverse=True):
        # a spot just below the previous one puts its label underneath, so the two stay apart
        crowded = previous is not None and abs(previous[0] - change) < near_x and previous[1] - fidelity < near_y
        ax.annotate(
            ", ".join(map(str, sorted(levels))),
            (change, fidelity),
            textcoords="offset points",
            xytext=(6, -11) if crowded else (6, 4),
            fontsize=8,
        )
        previous = (change, fidelity)
    for i, label in enumerate(table.column_labels):
        ax.scatter([], [], color=f"C{i}", label=label)
    ax.legend(fontsize=7, loc="lower right")
    ax.margins(0.12)
    ax.grid(alpha=0.3)
    ax.set(
        xlabel="PSNR vs bicubic (dB; higher = less change; inf shown at 60)",
        ylabel="PSNR-Y vs ground truth (dB)",
        title="fidelity against change",
    )
    fig.tight_layout()
    return fig


def perception_distortion_summary_figure(
    summary: dict[str, Any], check: dict[str, Any] | None, *, table: presets.LevelTable = presets.TABLE
) -> Any:
    """Each level at (mean PSNR-Y against the ground truth, mean NIQE) with ± std bars; the
    recommended level's mean as its own ringed point."""
    from views import PDPoint, perception_distortion_figure

    def point(label: str, st: dict[str, Any], **kw: Any) -> PDPoint:
        return PDPoint(
            label=label,
            fidelity=st["psnr_y"]["mean"] if st["psnr_y"]["mean"] is not None else math.nan,
            naturalness=st["niqe"]["mean"] if st["niqe"]["mean"] is not None else math.nan,
            fidelity_spread=st["psnr_y"]["std"],
            naturalness_spread=st["niqe"]["std"],
            **kw,
        )

    points = [
        point(str(e["level"]), e, generative=table.get(e["level"]).generative) for e in summary.values() if e["images"]
    ]
    if check is not None and check["images"]:
        points.append(point("recommended", check["recommended"], highlight=True))
    return perception_distortion_figure(
        points,
        fidelity_label="PSNR-Y vs ground truth (dB, higher = more faithful)",
        title="Fidelity against naturalness (mean ± std over the images)",
    )


PLOT_CAPTIONS = {
    "perception_distortion": "The perception–distortion view: each level's mean fidelity to the ground truth "
    "against its mean naturalness (NIQE, up = more natural), ± one standard deviation; the recommended level's "
    "mean is ringed.",
    "scores_vs_level": "Fidelity to the ground truth per level: mean ± standard deviation over the images.",
    "fidelity_vs_change": "Fidelity against change from the bicubic baseline, one point per level.",
}


def plots(
    summary: dict[str, Any],
    folder: Path,
    check: dict[str, Any] | None = None,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> dict[str, Path]:
    """Write ``scores_vs_level.png``, ``fidelity_vs_change.png`` and ``perception_distortion.png``;
    returns their paths by name."""
    import matplotlib

    matplotlib.use("Agg")
    out: dict[str, Path] = {}
    for name, fig in (
        ("scores_vs_level", scores_vs_level_figure(summary, table=table)),
        ("fidelity_vs_change", fidelity_vs_change_figure(summary, table=table)),
        ("perception_distortion", perception_distortion_summary_figure(summary, check, table=table)),
    ):
        out[name] = folder / f"{name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        atomic_write(out[name], buf.getvalue())
    return out


# --------------------------------------------------------------------------- HTML report

REPORT_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;--best:#dafbe1;--best-fg:#116329}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff;
 margin:0 auto;padding:2rem 2.5rem 4rem;max-width:1240px}
h1{font-size:1.7rem;line-height:1.25;margin:0 0 .3rem}
h2{font-size:1.2rem;margin:2.4rem 0 .8rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:0 0 .6rem}
.meta,.note,figcaption,.dim{color:var(--muted)}
.meta{margin:0 0 1.5rem}
.note{font-size:13px;max-width:90ch;margin:.6rem 0 0}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:13.5px}
th,td{padding:.42rem .7rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
thead th{background:var(--head);font-weight:600;vertical-align:bottom;border-bottom:2px solid var(--line)}
tbody th{font-weight:600}
tbody tr:hover{background:#f6f8fa}
tr.group-start>*{border-top:2px solid var(--line)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.unit{display:block;font-weight:400;font-size:12px;color:var(--muted)}
.dir{color:var(--muted);font-weight:400;margin-left:.2em}
.sd{display:block;color:var(--muted);font-size:12px}
td.best{background:var(--best);color:var(--best-fg)}
td.best .sd{color:var(--best-fg)}
.not-run{color:var(--muted);font-style:italic;white-space:normal}
.recipe{white-space:nowrap}
.recipe .sub{display:block;font-size:12px;color:var(--muted)}
figure{margin:0}
.plots{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
.plots img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{font-size:12.5px;margin-top:.25rem;max-width:60ch}
.card{border:1px solid var(--line);border-radius:8px;padding:1rem 1.25rem 1.2rem;margin:1.2rem 0}
.card-body{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}
.pair{display:flex;flex-direction:column;gap:.8rem}
.levels{display:grid;gap:.6rem .9rem;align-items:start}
.levels .colhead,.levels .rowhead{font-size:12.5px;font-weight:600;color:var(--muted)}
.levels .rowhead{align-self:center;text-align:right}
.thumb{width:THUMB_PX}
.thumb img,.blank{width:THUMB_PX;display:block;border-radius:4px}
.blank{background:#eef1f4;color:var(--muted);display:flex;align-items:center;justify-content:center;
 font-size:12px;text-align:center;padding:.5rem}
.thumb figcaption{font-size:12px;line-height:1.35;margin-top:.2rem;font-variant-numeric:tabular-nums}
""".replace("THUMB_PX", f"{THUMB_WIDTH}px")


def _header_cell(column: Metric) -> str:
    arrow, hint = {
        True: ("↑", "higher is better"),
        False: ("↓", "lower is better"),
        None: ("", "measures change from the bicubic baseline, not quality"),
    }[column.higher_is_better]
    direction = f'<span class="dir">{arrow}</span>' if arrow else ""
    unit = html.escape(column.unit) if column.unit else "&nbsp;"
    return (
        f'<th scope="col" class="num" title="{html.escape(f"{column.description}; {hint}")}">'
        f'{html.escape(column.name)}{direction}<span class="unit">{unit}</span></th>'
    )


def summary_table_html(summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    """The per-level table: numbers right-aligned with each column's fixed decimals, units
    under the names, the best level of each column highlighted (class ``best``)."""
    best = {c.key: best_levels(summary, c) for c in SUMMARY_COLUMNS}
    head = (
        '<th scope="col" class="num">Level</th><th scope="col">Recipe</th><th scope="col" class="num">Images</th>'
        + "".join(_header_cell(c) for c in SUMMARY_COLUMNS)
    )
    rows, previous_row = [], None
    for e in summary.values():
        preset = table.get(e["level"])
        group = ' class="group-start"' if previous_row is not None and preset.row != previous_row else ""
        previous_row = preset.row
        cells = [
            f'<th scope="row" class="num">{e["level"]}</th>',
            f'<td class="recipe">{html.escape(table.column_label(preset.base_path))}'
            f'<span class="sub">{html.escape(preset.effect)} · LoRA {preset.lora_scale:g}</span></td>',
            f'<td class="num">{e["images"]}</td>',
        ]
        if not e["images"]:
            cells.append(f'<td class="not-run" colspan="{len(SUMMARY_COLUMNS)}">{html.escape(not_run_text(e))}</td>')
        for c in SUMMARY_COLUMNS if e["images"] else ():
            mean, spread = shown(e[c.key], c.decimals)
            inner = f'<span class="mean">{mean}</span>' + (f'<span class="sd">{spread}</span>' if spread else "")
            if e["level"] in best[c.key]:
                cells.append(f'<td class="num best" title="best {html.escape(c.name)}"><strong>{inner}</strong></td>')
            else:
                cells.append(f'<td class="num">{inner}</td>')
        rows.append(f"<tr{group}>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table class="scores"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="note">{html.escape(legend("highlighted", table=table))}</p>'
    )


def monotonicity_html(mono: list[dict[str, Any]], *, table: presets.LevelTable = presets.TABLE) -> str:
    checked = [m for m in mono if m["compared"]]
    if not checked:
        return f'<p class="note">{html.escape(MONOTONICITY_QUESTION)} Not checked: fewer than two levels of the same base path ran.</p>'
    rows = "".join(
        f"<tr><td>{html.escape(table.column_label(m['base_path']))}</td>"
        f'<td class="num">{m["more_generative"]}</td><td class="num">{m["less_generative"]}</td>'
        f'<td class="num">{m["more_generative_closer"]} of {m["compared"]}</td></tr>'
        for m in checked
    )
    return (
        f"<p>{html.escape(MONOTONICITY_QUESTION)}</p>"
        '<div class="table-wrap"><table class="monotonicity"><thead><tr><th scope="col">Base path</th>'
        '<th scope="col" class="num">More generative level</th><th scope="col" class="num">Less generative level</th>'
        '<th scope="col" class="num">Images where it is closer</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def recommendation_html(check: dict[str, Any]) -> str:
    """The recommendation check as a table: the recommended level against each fixed level."""
    picks = ", ".join(f"{'no pick' if k == 'none' else 'level ' + k} × {v}" for k, v in check["picks"].items())
    intro = (
        f'<p class="note">The lab\'s recommendation on each image (the most natural level, lowest NIQE, among '
        f"those with LR-consistency ≥ {check['floor_db']:g} dB; ties to the less generative): "
        f"{html.escape(picks or 'no images')}.</p>"
    )
    if not check["images"]:
        return intro
    columns = [get_metric(k) for k in RECOMMENDATION_KEYS]
    head = "".join(f'<th scope="col" class="num">{html.escape(c.label)}</th>' for c in columns)
    rows = []
    for name, st in [("recommended", check["recommended"]), *((f"{n} (always)", v) for n, v in check["fixed"].items())]:
        cells = "".join(
            f'<td class="num">{st[c.key]["mean"]:.{c.decimals}f} <span class="dim">± {st[c.key]["std"]:.{c.decimals}f}</span></td>'
            if st[c.key]["mean"] is not None
            else '<td class="num">—</td>'
            for c in columns
        )
        rows.append(f'<tr><th scope="row">{html.escape(name)}</th>{cells}</tr>')
    return (
        intro + '<div class="table-wrap"><table class="recommendation"><thead><tr><th scope="col">Level</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def image_card_html(record: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    """One image: ground truth and input side by side with the grid of levels (rows: effect,
    columns: base path, both read from ``table``), each captioned with its scores."""
    w, h = record["size"]
    blank_height = max(1, round(THUMB_WIDTH * h / w))
    psnr_y, ssim_y = get_metric("psnr_y"), get_metric("ssim_y")
    cells = ['<div class="colhead"></div>']
    cells += [f'<div class="colhead">{html.escape(label)}</div>' for label in table.column_labels]
    for row, effect in enumerate(table.row_labels):
        cells.append(f'<div class="rowhead">{html.escape(effect)}</div>')
        for preset in (lv for lv in table.in_grid_order if lv.row == row):
            entry = record["levels"].get(str(preset.level))
            if entry is None or entry["status"] != "ok":
                why = "not requested" if entry is None else "not run"
                cells.append(
                    f'<figure class="thumb"><div class="blank" style="height:{blank_height}px">'
                    f"level {preset.level}: {why}</div></figure>"
                )
                continue
            scores = "<br>".join(
                html.escape(f"{m.name} {number(entry[m.key]):.{m.decimals}f} {m.unit}".strip())
                for m in (psnr_y, ssim_y)
            )
            cells.append(
                f'<figure class="thumb">{_img(record["thumbs"][str(preset.level)], f"level {preset.level}")}'
                f"<figcaption><b>Level {preset.level}</b><br>{scores}</figcaption></figure>"
            )
    return (
        f'<section class="card"><h3>{html.escape(record["image"])} <span class="dim">{w}×{h}</span></h3>'
        '<div class="card-body"><div class="pair">'
        f'<figure class="thumb">{_img(record["gt_thumb"], "ground truth")}<figcaption>ground truth</figcaption></figure>'
        f'<figure class="thumb">{_img(record["lr_thumb"], "input")}<figcaption>input (nearest-neighbour)</figcaption></figure>'
        f'</div><div class="levels" style="grid-template-columns:max-content repeat({table.shape[1]},'
        f'max-content)">{"".join(cells)}</div></div></section>'
    )


def html_report(
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    mono: list[dict[str, Any]],
    plot_paths: dict[str, Path],
    title: str,
    check: dict[str, Any] | None = None,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> str:
    """The self-contained report (images inlined as data URIs, no external resources): title,
    the per-level table, the monotonicity check, the plots and every image's grid. All text
    from file names and results is escaped."""
    ran = [e["level"] for e in summary.values() if e["images"]]
    meta = f"{len(records)} image{'s' if len(records) != 1 else ''} · levels {', '.join(map(str, ran)) or 'none'} ran"
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f'<header><h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p></header>',
        "<section><h2>Scores per level</h2>",
        summary_table_html(summary, table=table),
        "</section><section><h2>Monotonicity</h2>",
        monotonicity_html(mono, table=table),
        "</section>",
    ]
    if check is not None:
        parts += ["<section><h2>Recommended level</h2>", recommendation_html(check), "</section>"]
    if plot_paths:
        parts.append('<section><h2>Plots</h2><div class="plots">')
        for name, path in plot_paths.items():
            caption = PLOT_CAPTIONS.get(name, name)
            parts.append(
                f"<figure>{_img(base64.b64encode(path.read_bytes()).decode(), caption)}"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div></section>")
    parts.append("<section><h2>Images</h2>")
    parts += [image_card_html(r, table=table) for r in records]
    parts.append("</section></body></html>")
    return "".join(parts)


def write_outputs(
    out: Path,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    deg: Degradation,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> str:
    """Every output file of an evaluation (summary, per-image CSV, plots, HTML report) from
    ``records``, levels read from ``table`` (the engine's); returns the Markdown summary."""
    records = sorted(records, key=lambda r: r["image"])
    summary = aggregate(records, args.levels, table=table)
    mono = monotonic_check(records, table=table)
    title = f"{', '.join(Path(f).name for f in args.folders)} ×{args.scale} (degradation: {deg.label()})"
    check = recommendation_check(records, args.fidelity_floor, table=table)
    md = summary_markdown(summary, mono, title, table=table) + "\n" + recommendation_markdown(check)
    atomic_write(out / "summary.md", md.encode())
    atomic_write(
        out / "summary.json",
        json.dumps(
            jsonable({"title": title, "levels": summary, "monotonicity": mono, "recommendation": check}), indent=2
        ).encode(),
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
    plot_paths = plots(summary, out, check, table=table) if any(e["images"] for e in summary.values()) else {}
    page = html_report(records, summary, mono, plot_paths, title, check, table=table)
    atomic_write(out / "report.html", page.encode())
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
    p.add_argument(
        "--fidelity-floor",
        type=float,
        default=presets.DEFAULT_FIDELITY_FLOOR_DB,
        metavar="DB",
        help="the recommendation's LR-consistency floor (default %(default)s dB; see docs/metrics.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p)
    args = p.parse_args(argv)
    if args.levels != "all":  # checked against the engine's level table by chosen_levels
        try:
            args.levels = sorted({int(x) for x in args.levels.split(",")})
        except ValueError:
            p.error(f"--levels must be comma-separated levels like 7,8,9 or 'all', got {args.levels!r}")
    if args.scale < 2:
        p.error("--scale must be >= 2")
    return args


def chosen_levels(levels: list[int] | str, table: presets.LevelTable) -> list[int]:
    """``--levels`` on the engine's ``table``: ``"all"`` → every level; a level the table lacks
    exits with the allowed range."""
    if levels == "all":
        return list(table.numbers)
    for n in levels:
        try:
            table.get(int(n))
        except ValueError as exc:
            raise SystemExit(f"error: --levels: {exc}") from None
    return [int(n) for n in levels]


def build_engine(args: argparse.Namespace) -> Any:  # pipelines.engine.Engine
    """The engine the flags ask for (models, device, dtype, batch)."""
    from pipelines.engine import Engine

    return Engine(engine_config(args))


def run_config(args: argparse.Namespace, deg: Degradation) -> dict[str, Any]:
    return {
        "scale": args.scale,
        "levels": args.levels,
        "seed": args.seed,
        "degradation": asdict(deg),
        "upscaler": args.upscaler,
        "models": [args.sd15, args.controlnet, args.lora, args.lora_file],
    }


def distributed() -> Any:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1): accelerate's PartialState (gloo on
    CPU, the cores split between processes); else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    from accelerate import PartialState

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return PartialState(backend="gloo", cpu=True)


def check_config(out: Path, config: dict[str, Any], fresh: bool) -> None:
    """Record the run's configuration; refuse to mix results of another one in ``out``."""
    path = out / "config.json"
    if path.exists() and not fresh and json.loads(path.read_text()) != config:
        raise SystemExit(f"error: {out} holds results of a different configuration; use --fresh or another -o")
    atomic_write(path, json.dumps(config, indent=2).encode())


def paper_check(records: list[dict[str, Any]], args: argparse.Namespace, deg: Degradation, table: Any) -> str | None:
    """The bicubic baseline against the published ×4 figures, when the run is that setting."""
    names = {Path(f).name for f in args.folders}
    name = next(iter(names)) if len(names) == 1 else None
    if table.baseline_level not in args.levels or name not in PAPER or deg.label() != "none" or args.scale != 4:
        return None
    s = aggregate(records, [table.baseline_level], table=table)[str(table.baseline_level)]
    ref = PAPER[name]
    return (
        f"paper check ({name} ×4 bicubic, Y): {s['psnr_y']['mean']:.2f} dB / {s['ssim_y']['mean']:.4f} "
        f"vs published {ref[0]:.2f} / {ref[1]:.4f} (Δ {s['psnr_y']['mean'] - ref[0]:+.2f} dB, "
        f"{s['ssim_y']['mean'] - ref[1]:+.4f})"
    )


def main(argv: list[str] | None = None) -> int:
    """Score every image not scored yet (this process's share), then, on the main process,
    merge the per-image results into the summary, plots and report."""
    from tqdm import tqdm

    args = parse_args(argv)
    deg = Degradation(blur=args.blur, noise=args.noise, jpeg=args.jpeg)
    out = Path(args.output)
    per_image = out / "per_image"
    images = list_images(args.folders)
    state = distributed()
    is_main = state is None or state.is_main_process
    engine = build_engine(args)
    table = engine.config.table
    args.levels = chosen_levels(args.levels, table)
    if is_main:
        check_config(out, run_config(args, deg), args.fresh)
    if state is not None:
        state.wait_for_everyone()
    mine = images
    if state is not None:
        with state.split_between_processes(images) as part:
            mine = list(part)
        print(f"rank {state.process_index}/{state.num_processes}: {len(mine)} images", file=sys.stderr)
    todo = [p for p in mine if args.fresh or not (per_image / f"{key_of(p)}.json").exists()]
    if len(mine) > len(todo):
        print(f"resuming: {len(mine) - len(todo)} of {len(mine)} images already scored", file=sys.stderr)
    t0 = time.perf_counter()
    desc = f"evaluating (rank {state.process_index})" if state else "evaluating"
    for path in tqdm(todo, desc=desc, unit="image", disable=args.no_progress, file=sys.stderr):
        record = evaluate_image(engine, path, args, deg)
        atomic_write(per_image / f"{key_of(path)}.json", json.dumps(jsonable(record)).encode())
    if state is not None:
        state.wait_for_everyone()
    if is_main:
        records = [json.loads((per_image / f"{key_of(p)}.json").read_text()) for p in images]
        print(write_outputs(out, records, args, deg, table=table))
        check = paper_check(records, args, deg, table)
        if check:
            print(check)
        print(f"wrote {out}/report.html, summary.md/.csv/.json, per_image.csv ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
