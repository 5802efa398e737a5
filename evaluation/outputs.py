"""Writing an evaluation's files: config, per-image CSV, summaries (CSV, JSON, Markdown), plots, report."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

import presets
from evaluation.aggregate import aggregate, monotonic_check, recommendation_check
from evaluation.dataset import Degradation
from evaluation.html_report import html_report
from evaluation.markdown import recommendation_markdown, summary_markdown
from evaluation.scores import SCORE_KEYS, jsonable
from evaluation.text import niqe_channel_text
from figures import evaluation_figures
from pipelines.quality import NiqeChannel
from pipelines.report import atomic_write

# Settings added to config.json after runs were written without them, with the value those
# runs had: an older folder still resumes under the same settings.
CONFIG_ADDED = {"niqe_channel": "y"}


def check_config(out: Path, config: dict[str, Any], fresh: bool) -> None:
    """Record the run's configuration; refuse to mix results of another one in ``out``."""
    path = out / "config.json"
    if path.exists() and not fresh and {**CONFIG_ADDED, **json.loads(path.read_text())} != config:
        raise SystemExit(f"error: {out} holds results of a different configuration; use --fresh or another -o")
    atomic_write(path, json.dumps(config, indent=2).encode())


def per_image_csv(records: list[dict[str, Any]], levels: list[int]) -> str:
    """One row per image and level: status and every score (empty where there is none)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "level", "status", *SCORE_KEYS])
    for r in records:
        for n in levels:
            e = r["levels"].get(str(n), {"status": "not run"})
            w.writerow([r["image"], n, e["status"], *[e.get(k, "") for k in SCORE_KEYS]])
    return buf.getvalue()


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per level: recipe, image counts, mean and std of every score."""
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
    return buf.getvalue()


def write_plots(
    summary: dict[str, Any],
    folder: Path,
    check: dict[str, Any] | None = None,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> dict[str, Path]:
    """Write ``figures.evaluation_figures`` as PNGs (``scores_vs_level.png``,
    ``fidelity_vs_change.png``, ``perception_distortion.png``); returns their paths by name."""
    out: dict[str, Path] = {}
    for name, fig in evaluation_figures(summary, check, table=table).items():
        out[name] = folder / f"{name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        atomic_write(out[name], buf.getvalue())
    return out


def write_outputs(
    out: Path,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    deg: Degradation,
    *,
    table: presets.LevelTable = presets.TABLE,
    niqe_channel: NiqeChannel = "y",
) -> str:
    """Every output file of an evaluation (summary, per-image CSV, plots, HTML report) from
    ``records``, levels read from ``table`` (the engine's); returns the Markdown summary.
    ``args``: ``folders``, ``scale``, ``levels``, ``fidelity_floor``; ``niqe_channel``: the
    luma the records' NIQE scored, stated under the summary table and in ``summary.json``."""
    records = sorted(records, key=lambda r: r["image"])
    summary = aggregate(records, args.levels, table=table)
    mono = monotonic_check(records, table=table)
    title = f"{', '.join(Path(f).name for f in args.folders)} ×{args.scale} (degradation: {deg.label()})"
    check = recommendation_check(records, args.fidelity_floor, table=table)
    md = (
        summary_markdown(summary, mono, title, table=table)
        + f"\n{niqe_channel_text(niqe_channel)}\n\n"
        + recommendation_markdown(check)
    )
    atomic_write(out / "summary.md", md.encode())
    everything = {
        "title": title,
        "niqe_channel": niqe_channel,
        "levels": summary,
        "monotonicity": mono,
        "recommendation": check,
    }
    atomic_write(out / "summary.json", json.dumps(jsonable(everything), indent=2).encode())
    atomic_write(out / "per_image.csv", per_image_csv(records, args.levels).encode())
    atomic_write(out / "summary.csv", summary_csv(summary).encode())
    plot_paths = write_plots(summary, out, check, table=table) if any(e["images"] for e in summary.values()) else {}
    page = html_report(records, summary, mono, plot_paths, title, check, table=table, niqe_channel=niqe_channel)
    atomic_write(out / "report.html", page.encode())
    return md
