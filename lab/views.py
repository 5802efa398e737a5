"""What the lab shows, built from a run result: grid items and captions, the score table,
the recommendation line, compare pairs, heatmaps and the run's notes (no events here)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from PIL import Image

import presets
from figures import HEATMAP_FULL_SCALE, change_heatmap
from lab.form import user_error
from pipelines.engine import LevelResult, RunResult
from pipelines.metrics import LEVEL_METRICS, caption_scores
from pipelines.recommend import Recommendation
from pipelines.report import TABLE_COLUMNS, metrics_rows, placeholder

RECOMMEND_BADGE = "★ recommended"
NON_DIFFUSION_MODELS = ("realesrgan_x4plus", "waifu2x_photo")  # the base paths' networks (PyPI wheels)
CELL_MAX = 512  # a grid cell's width in pixels at most

# short headers (the legend spells them out); a non-breaking hyphen keeps "LR‑consistency" whole
SCORE_HEADERS = [
    "level",
    "recipe",
    "status",
    *[(m.short or m.name).replace("-", "\u2011") for m in LEVEL_METRICS],
    "time (s)",
]


def scores_legend() -> str:
    """What the short headers of the score table stand for, with units (from the registry)."""
    parts = [f"**{m.short or m.name}**: {m.label}" for m in LEVEL_METRICS if (m.short or m.name) != m.label]
    return "Columns: " + " · ".join(parts) + " · **time (s)**: seconds the level took (0 when its image was cached)"


def scores_note(table: presets.LevelTable) -> str:
    """What the Scores tab's numbers mean (the baseline level from ``table``)."""
    return (
        f"Distance from bicubic measures **change, not quality**: a low PSNR against level {table.baseline_level} "
        "means the level departed further from a plain bicubic upscale — for better or worse. "
        "The quality scores need no reference: **NIQE** (lower = more natural), **colour drift** "
        "(ΔE00 against bicubic, low-passed; about 1 is just noticeable) and **tile seams** (1.0 = none). "
        "The plot below puts each level on both axes: faithful to the input (right) and natural (up)."
    )


def level_choices(table: presets.LevelTable) -> list[tuple[str, int]]:
    """The compare dropdowns' choices: ``"5: bicubic · medium (LoRA 0.5)"`` → 5."""
    return [(f"{lv.level}: {lv.recipe}", lv.level) for lv in table.levels]


def runnable_default(table: presets.LevelTable, status: dict[str, str]) -> tuple[int, str]:
    """The Single level tab's starting strength: the table's default when it can run here,
    else the level of the same base path without diffusion, and a line that says why."""
    default = table.get(table.default_strength)
    diffusion_missing = [
        mid
        for mid, state in status.items()
        if state.startswith("missing") and mid not in NON_DIFFUSION_MODELS and mid not in presets.OPTIONAL_MODEL_IDS
    ]  # the fast mode's adapter is optional: level 5 runs without it
    if not default.generative or not diffusion_missing:
        return default.level, ""
    fallback = next(
        (lv for lv in table.levels if lv.column == default.column and not lv.generative),
        next(lv for lv in table.levels if not lv.generative),
    )
    why = (
        f"Starts at {fallback.level}: level {default.level} (the API's default) needs the diffusion weights, "
        f"missing here ({', '.join(diffusion_missing)}); see *Device and models*."
    )
    return fallback.level, why


def cell_size(size: tuple[int, int]) -> tuple[int, int]:
    """A grid cell for an output of ``size``: at most CELL_MAX wide, the output's aspect ratio."""
    width = min(CELL_MAX, size[0])
    return width, max(1, round(width * size[1] / size[0]))


def level_items(
    levels: list[LevelResult], cell: tuple[int, int], recommended: int | None = None
) -> list[tuple[Any, str]]:
    """Gallery items for ``levels``: the image with a two-line caption (recipe, then scores),
    or a cell that says why the level did not run."""
    items = []
    for lv in levels:
        caption = f"{lv.level} · {lv.preset.recipe}"
        if lv.level == recommended:
            caption = f"{RECOMMEND_BADGE} · {caption}"
        if lv.image is not None:
            items.append((lv.image, f"{caption}\n{caption_scores(lv.metrics)}"))  # two lines: the scores are never cut
        else:
            items.append(
                (placeholder(cell, f"Level {lv.level} not run. {lv.reason or lv.message}"), f"{caption}\n{lv.status}")
            )
    return items


def level_images(result: RunResult, recommended: int | None = None) -> list[tuple[Any, str]]:
    """Gallery items in grid order; the ``recommended`` level's caption carries the badge."""
    in_grid = sorted(result.levels, key=lambda lv: (lv.preset.row, lv.preset.column))
    return level_items(in_grid, cell_size(result.plan.canvas), recommended)


def preview(level: LevelResult, cell: tuple[int, int]) -> LevelResult:
    """The level with its image shrunk to the grid cell: partial updates stay small whatever
    the output size (the last update carries the full-size images)."""
    if level.image is None or level.image.width <= cell[0]:
        return level
    small = level.image.copy()
    small.thumbnail(cell, Image.Resampling.LANCZOS)
    return replace(level, image=small)


def partial_grid(ready: dict[int, LevelResult], table: presets.LevelTable) -> list[tuple[Any, str]]:
    """The grid while the run goes on: the finished levels (cell-sized), a placeholder for the
    others (``table``'s levels in grid order)."""
    first = next(iter(ready.values()))
    cell = cell_size(first.image.size if first.image is not None else (CELL_MAX, CELL_MAX))
    items = []
    for lv in table.in_grid_order:
        got = ready.get(lv.level)
        if got is None:
            items.append((placeholder(cell, f"Level {lv.level}: running…"), f"{lv.level} · {lv.recipe}\nrunning…"))
        else:
            items.extend(level_items([preview(got, cell)], cell))
    numbers = set(table.numbers)
    extra = [lv for n, lv in sorted(ready.items()) if n not in numbers]  # the custom level, below the grid
    return items + level_items([preview(lv, cell) for lv in extra], cell)


def recommendation_markdown(advice: Recommendation, table: presets.LevelTable = presets.TABLE) -> str:
    """The line under the grid (``table``: the run's, whose custom level is named as such)."""
    if advice.level is None:
        return f"No recommendation: {advice.reason}"
    custom = " (the custom level)" if advice.level == presets.custom_number(table) else ""
    return f"**{RECOMMEND_BADGE}: level {advice.level}{custom}** — {advice.reason.split(': ', 1)[-1]}"


def scores_plot(result: RunResult) -> Any:
    """The scores against level (``figures.scores_figure``) of the table's levels, and the
    custom level beside them as stars at its own tick, "custom" (not joined to their lines)."""
    from figures import drawable_psnr, scores_figure

    custom = [lv for lv in result.levels if isinstance(lv.preset, presets.CustomLevel) and lv.status == "ok"]
    fig = scores_figure(replace(result, levels=[lv for lv in result.levels if lv not in custom]))
    if not custom:
        return fig
    lv, table = custom[0], result.table
    n = lv.level
    ax1, ax2 = fig.axes
    ax1.plot([n], [drawable_psnr(lv.metrics["psnr_vs_bicubic"])], "*", color="C0", markersize=11)
    ax1.plot([n], [lv.metrics["lr_consistency"]], "*", color="C1", markersize=11)
    ax2.plot([n], [lv.metrics["ssim_vs_bicubic"]], "*", color="C2", markersize=11)
    for ax in (ax1, ax2):
        ax.set_xticks([*table.numbers, n], labels=[*map(str, table.numbers), presets.CUSTOM_EFFECT])
        ax.set_xlim(table.min_level - 0.5, n + 0.7)
    return fig


def score_table(result: RunResult) -> dict[str, list[Any]]:
    """The Scores tab's table (``headers`` and ``data``): the columns of ``TABLE_COLUMNS`` that
    have a value in some row (a run without a ground truth has no "vs ground truth" column);
    the levels that ran first, in level order; those that did not, folded into one row each
    status, "not run: missing (see the grid)" (why: in the run's status line and each grid
    cell). No status column: a row with numbers ran."""
    rows = metrics_rows(result)
    headers = dict(zip(TABLE_COLUMNS, SCORE_HEADERS, strict=True))
    # no status column: the rows with numbers ran ("ok"); the others are folded, their status in the recipe cell
    keys = [k for k in TABLE_COLUMNS if k in ("level", "recipe") or (k != "status" and any(r[k] for r in rows))]
    cached = {str(lv.level) for lv in result.levels if lv.cached}
    for row in rows:  # the time of a level whose image came from the engine's cache says so
        row["recipe"] = row["recipe"].replace("-", "\u2011")  # "Real‑ESRGAN" never breaks at its hyphen
        if row["level"] in cached:
            row["seconds"] += " (cached)"
    data = [[row[k] for k in keys] for row in rows if row["status"] == "ok"]
    folded: dict[str, list[int]] = {}
    for lv in result.levels:
        if lv.status != "ok":
            folded.setdefault(lv.status, []).append(lv.level)
    for status, numbers in folded.items():
        data.append([presets.number_ranges(numbers), f"not run: {status} (see the grid)", *[""] * (len(keys) - 2)])
    return {"headers": [headers[k] for k in keys], "data": data}


def compare_pair(result: RunResult | None, a: int, b: int) -> tuple[Any, Any] | None:
    """The two levels' images for the slider (None before any run)."""
    if result is None:
        return None
    by = {lv.level: lv for lv in result.levels}
    la, lb = by.get(int(a)), by.get(int(b))
    if la is None or lb is None or la.image is None or lb.image is None:
        raise user_error(f"levels {a} and {b} must both have run (see the grid)")
    return (la.image, lb.image)


def heatmaps(result: RunResult) -> list[tuple[Any, str]]:
    """Where each level departs from the baseline, on one brightness scale for all levels; a
    level whose pixels equal the baseline's says so in words (its map would be all black)."""
    baseline_level = result.table.baseline_level
    baseline = result.level(baseline_level).image
    white = f"white = ≥{HEATMAP_FULL_SCALE}/255"
    same = f"identical to level {baseline_level} (the baseline)"
    out = []
    for lv in result.levels:
        if lv.image is None or baseline is None or lv.level == baseline_level:
            continue
        if lv.image.size == baseline.size and lv.image.convert("RGB").tobytes() == baseline.convert("RGB").tobytes():
            tile = placeholder(cell_size(lv.image.size), f"Level {lv.level} is {same}, pixel for pixel: no change.")
            out.append((tile, f"{lv.level}: {same}"))
        else:
            out.append((change_heatmap(lv.image, baseline), f"{lv.level}: change vs bicubic ({white})"))
    return out


ESTIMATES: deque[tuple[float, float]] = deque(maxlen=5)  # (estimated, actual) seconds of the last runs


def estimate_note(estimate: float | None, actual: float | None) -> str:
    """After a run: its time against the estimate shown before it, and the last few runs'
    (the estimate comes from the costs earlier runs measured on this device)."""
    if actual is None:
        return ""
    if not estimate:
        return "\n\nNo estimate before this run (the first on this device); the next runs have one."
    ESTIMATES.append((estimate, actual))
    history = ", ".join(f"~{e:.0f} → {a:.0f} s" for e, a in ESTIMATES)
    return f"\n\nEstimated ~{estimate:.0f} s, took {actual:.0f} s (the last runs, estimated → actual: {history})."


def region_note(result: RunResult) -> str:
    """A preview's first line: the grid shows a box of the input, not the whole image."""
    preview = result.manifest.get("preview")
    if not preview:
        return ""
    box = preview["region"]
    size = result.manifest.get("input", {}).get("size", ["?", "?"])
    canvas = result.plan.canvas
    return (
        f"**Region preview**: input box x {box['x']}, y {box['y']}, {box['width']}×{box['height']} "
        f"of {size[0]}×{size[1]} → {canvas[0]}×{canvas[1]} px of output per level, at the whole image's scale.\n\n"
    )


def run_notes(result: RunResult) -> str:
    """The status line after a run: seed, size, time, warnings, the levels that did not run."""
    canvas = result.plan.canvas
    notes = [f"Seed **{result.seed}** · output {canvas[0]}×{canvas[1]} · {result.timings['total']:.1f} s"]
    notes += [f"⚠️ {w}" for w in result.warnings]
    missing = [lv for lv in result.levels if lv.status != "ok"]
    if missing:
        numbers = ", ".join(str(lv.level) for lv in missing)
        notes.append(f"Levels {numbers} did not run: {missing[0].reason or missing[0].message}")
    return "\n\n".join(notes)
