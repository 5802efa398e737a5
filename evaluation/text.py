"""The words both summaries (Markdown and HTML) share: score cells, legend, monotonicity question, picks."""

from __future__ import annotations

import math
from typing import Any

import presets
from evaluation.scores import SUMMARY_COLUMNS
from pipelines.metrics import Metric
from pipelines.quality import NIQE_CHANNELS, NiqeChannel

MONOTONICITY_QUESTION = (
    "Does a more generative level score closer to the ground truth (PSNR-Y) than a less "
    "generative one with the same base path?"
)


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
    """Why a level of the summary has no scores: on how many images it did not run, and why."""
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


def niqe_channel_text(channel: NiqeChannel) -> str:
    """Which luma the summary's NIQE scored (``evaluate.py --niqe-channel``)."""
    return f"NIQE channel: {channel}, {NIQE_CHANNELS[channel]} (evaluate.py --niqe-channel {channel})."


def picks_text(check: dict[str, Any]) -> str:
    """How often the recommendation check picked each level, e.g. "level 4 × 2, no pick × 1";
    "" when there were no images."""
    return ", ".join(f"{'no pick' if k == 'none' else 'level ' + k} × {v}" for k, v in check["picks"].items())
