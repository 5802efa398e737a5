"""Plot views for the UI and reports, built from plain numbers (no engine, no gradio).

matplotlib is imported inside each function, with the non-interactive Agg backend, as
importing this module draws nothing and opens no window. Here: the scores against level, the
change heatmaps and the perception–distortion view (the lab's Scores and Compare tabs), and the
evaluation's figures over a dataset (``evaluation_figures``, written by ``evaluation/outputs.py``);
file outputs (the captioned grid PNG, tables) are in ``pipelines/report.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import presets

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INF_PAD = 0.15  # infinite fidelity sits this fraction of the x range beyond the largest finite value
GENERATIVE_STYLE = {"marker": "o", "color": "C3", "label": "generative (LoRA > 0)"}
NON_GENERATIVE_STYLE = {"marker": "s", "color": "C0", "label": "non-generative"}


@dataclass(frozen=True)
class PDPoint:
    """One level on the perception–distortion plane: ``fidelity`` (higher = more faithful, e.g.
    LR-consistency in dB; ``inf`` for an output identical to its input), ``naturalness`` (lower
    = more natural, e.g. NIQE), optional spreads (± one standard deviation over a dataset),
    ``highlight`` for the recommended level, ``generative`` for a level with the LoRA on."""

    label: str
    fidelity: float
    naturalness: float
    fidelity_spread: float | None = None
    naturalness_spread: float | None = None
    highlight: bool = False
    generative: bool = False


def perception_distortion_figure(
    points: Sequence[PDPoint],
    *,
    fidelity_label: str,
    naturalness_label: str = "NIQE (lower = more natural)",
    title: str,
    floor: float | None = None,
) -> Figure:
    """Naturalness against fidelity, one labelled marker per point: x grows to the right with
    fidelity, the y axis is inverted so that up is more natural; the best trade-offs sit top right.

    Points whose naturalness is not finite, or whose fidelity is NaN or ``-inf``, are left out;
    ``+inf`` fidelity is drawn at the right edge and labelled ``(∞)``. ``floor``, when given,
    is a dashed vertical line labelled "fidelity floor". No drawable point → a figure that says
    so. Never raises on the values.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # 1. the points that can be placed; points at the same spot (levels with equal scores) share one label
    shown = merge_coincident(
        [p for p in points if math.isfinite(p.naturalness) and (math.isfinite(p.fidelity) or p.fidelity == math.inf)]
    )

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.subplots()
    ax.set_title(title)
    if not shown:
        message = "no scores yet" if not points else "no finite scores to plot"
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return fig

    # 2. where infinite fidelity goes: just beyond every finite value and the floor
    finite_x = [p.fidelity for p in shown if math.isfinite(p.fidelity)] + ([floor] if floor is not None else [])
    lo, hi = (min(finite_x), max(finite_x)) if finite_x else (0.0, 0.0)
    edge = hi + max(INF_PAD * (hi - lo), 1.0)

    def x_of(p: PDPoint) -> float:
        return edge if math.isinf(p.fidelity) else p.fidelity

    # 3. one marker group per kind, with error bars where spreads are given
    for generative, style in ((False, NON_GENERATIVE_STYLE), (True, GENERATIVE_STYLE)):
        group = [p for p in shown if p.generative == generative]
        if group:
            _group(ax, group, x_of, style)
    labels = [_label(ax, p, x_of(p)) for p in shown]

    # 4. the recommended point, the floor, the axes
    for p in shown:
        if p.highlight:
            ax.scatter(
                [x_of(p)],
                [p.naturalness],
                s=320,
                facecolors="none",
                edgecolors="black",
                linewidths=1.8,
                label="recommended" if "recommended" in p.label else f"recommended: {p.label}",
                zorder=3,
            )
    if floor is not None:
        ax.axvline(floor, linestyle="--", color="grey", linewidth=1.2, label="fidelity floor")
    if any(math.isinf(p.fidelity) for p in shown):
        _infinity_tick(ax, hi, edge)
    ax.invert_yaxis()
    ax.set_xlabel(f"{fidelity_label}  → more faithful")
    ax.set_ylabel(f"{naturalness_label}  ↑ more natural")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    keep_inside(ax, labels)
    return fig


def _label(ax: Any, p: PDPoint, x: float) -> Any:
    """The point's label, up and to the right of its marker at (``x``, naturalness)."""
    text = f"{p.label} (∞)" if math.isinf(p.fidelity) else p.label
    return ax.annotate(text, (x, p.naturalness), xytext=(6, 6), textcoords="offset points", fontsize=9)


LABEL_FIT_ROUNDS = 4  # widening the limits shrinks the scale, which moves the labels: a few rounds settle it
LABEL_FIT_MARGIN_PX = 3.0  # room between a label and the axes' frame


def keep_inside(ax: Any, artists: Sequence[Any]) -> None:
    """Widen the data limits of ``ax`` until every one of ``artists`` (labels placed at a fixed
    offset in points from a data point) lies inside the axes' frame: a label of the top or
    rightmost point would otherwise run over the frame into the title or out of the figure.
    Works in display space, so inverted axes and fixed ticks stay as they are; the limits only
    ever grow. A label wider than the axes cannot fit and stops after ``LABEL_FIT_ROUNDS``."""
    if not artists:
        return
    for _ in range(LABEL_FIT_ROUNDS):
        frame = ax.get_window_extent()
        boxes = [a.get_window_extent() for a in artists]
        pad = LABEL_FIT_MARGIN_PX
        left = max(0.0, frame.x0 + pad - min(b.x0 for b in boxes))
        right = max(0.0, max(b.x1 for b in boxes) - frame.x1 + pad)
        bottom = max(0.0, frame.y0 + pad - min(b.y0 for b in boxes))
        top = max(0.0, max(b.y1 for b in boxes) - frame.y1 + pad)
        if not (left or right or bottom or top):
            return
        # the data values that would sit at the frame grown by the overflow become the new limits
        (x0, y0), (x1, y1) = ax.transData.inverted().transform(
            [(frame.x0 - left, frame.y0 - bottom), (frame.x1 + right, frame.y1 + top)]
        )
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)


def _infinity_tick(ax: Any, hi: float, edge: float) -> None:
    """Mark x = ``edge`` as "∞": the finite ticks stop halfway between the largest finite value
    ``hi`` and the edge, and the axis ends far enough beyond the edge for its marker and label."""
    right = edge + (edge - hi)
    ticks = [float(t) for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= hi + (edge - hi) / 2]
    ax.set_xticks([*ticks, edge], labels=[f"{t:g}" for t in ticks] + ["∞"])
    ax.set_xlim(min(ax.get_xlim()[0], hi), right)


def _spread(value: float | None) -> float:
    """A spread as an error-bar length: missing or non-finite → no bar."""
    return value if value is not None and math.isfinite(value) and value > 0 else 0.0


def _group(ax: Any, group: Sequence[PDPoint], x_of: Callable[[PDPoint], float], style: dict[str, str]) -> None:
    """One errorbar call for a group of points: markers, legend entry and any ± bars."""
    xerr = [0.0 if math.isinf(p.fidelity) else _spread(p.fidelity_spread) for p in group]
    yerr = [_spread(p.naturalness_spread) for p in group]
    ax.errorbar(
        [x_of(p) for p in group],
        [p.naturalness for p in group],
        xerr=xerr if any(xerr) else None,
        yerr=yerr if any(yerr) else None,
        linestyle="none",
        markersize=7,
        capsize=3,
        **style,
    )


def merge_coincident(points: Sequence[PDPoint]) -> list[PDPoint]:
    """Points with the same coordinates and kind become one, labelled ``"8, 9"`` (highlighted
    when any of them is); order kept."""
    groups: dict[tuple[float, float, bool], list[PDPoint]] = {}
    for p in points:
        groups.setdefault((p.fidelity, p.naturalness, p.generative), []).append(p)
    return [
        group[0]
        if len(group) == 1
        else replace(group[0], label=", ".join(p.label for p in group), highlight=any(p.highlight for p in group))
        for group in groups.values()
    ]


def run_quality_figure(result: Any, advice: Any = None) -> Figure:
    """The lab's perception–distortion view of one run (a ``RunResult``): each level that ran
    at (LR-consistency, NIQE), the ``advice`` (a ``Recommendation``) ringed, its floor drawn."""
    points = [
        PDPoint(
            label=lv.preset.tag,  # the level's number; "custom" for the custom level
            fidelity=lv.metrics.get("lr_consistency", math.nan),
            naturalness=lv.metrics.get("niqe", math.nan),
            highlight=advice is not None and lv.level == advice.level,
            generative=lv.preset.generative,
        )
        for lv in result.levels
        if lv.status == "ok"
    ]
    return perception_distortion_figure(
        points,
        fidelity_label="LR-consistency (dB, higher = more faithful to the input)",
        title="Fidelity against naturalness, per level",
        floor=advice.floor if advice is not None else None,
    )


# --- the lab's other views ------------------------------------------------------------

HEATMAP_FULL_SCALE = 64  # 8-bit difference shown at full brightness: comparable across levels


def change_heatmap(image: Any, baseline: Any) -> Any:  # PIL images in, a PIL image out
    """Where ``image`` departs from ``baseline``: mean absolute difference over channels,
    0 → black, ``HEATMAP_FULL_SCALE`` (of 255) or more → white-hot, 'inferno' colour map."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    b = np.asarray(baseline.convert("RGB").resize(image.size), dtype=np.float32)
    diff = np.abs(a - b).mean(axis=2) / HEATMAP_FULL_SCALE
    rgba = colormaps["inferno"](np.clip(diff, 0, 1))
    return Image.fromarray((rgba[..., :3] * 255).astype("uint8"), "RGB")


LEVEL_AXIS_PAD = 0.5  # half a level beyond the first and last: their markers and error bars stay whole


def level_axis(ax: Any, table: Any) -> None:  # table: presets.LevelTable
    """Label a matplotlib axis ``ax`` as the level axis of ``table``: a tick per level, and the
    range padded by ``LEVEL_AXIS_PAD`` either side, whichever levels ran (ticks alone would end
    the axis exactly on the last level, cutting its marker and error bar in half)."""
    ax.set_xticks(list(table.numbers))
    ax.set_xlim(table.min_level - LEVEL_AXIS_PAD, table.max_level + LEVEL_AXIS_PAD)
    ax.set_xlabel("level")


PSNR_INF_SHOWN_AS = 60.0  # dB: where an infinite PSNR (identical images) is drawn on a PSNR axis
PSNR_INF_NOTE = f"inf shown as {PSNR_INF_SHOWN_AS:g}"


def drawable_psnr(value: float | None) -> float:
    """A PSNR as a point on a plot: infinite or missing → ``PSNR_INF_SHOWN_AS``."""
    return PSNR_INF_SHOWN_AS if value is None or math.isinf(value) else value


def scores_figure(result: Any) -> Figure:  # result: pipelines.engine.RunResult
    """PSNR and SSIM against the bicubic baseline, and LR-consistency, plotted against level."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ok = [lv for lv in result.levels if lv.status == "ok"]
    levels = [lv.level for lv in ok]
    ax1.plot(
        levels,
        [drawable_psnr(lv.metrics["psnr_vs_bicubic"]) for lv in ok],
        "o-",
        label=f"PSNR vs bicubic ({PSNR_INF_NOTE})",
    )
    ax1.plot(levels, [lv.metrics["lr_consistency"] for lv in ok], "s--", label="LR-consistency")
    level_axis(ax1, result.table)
    ax1.set_ylabel("dB")
    ax1.legend(fontsize=7)
    ax2.plot(levels, [lv.metrics["ssim_vs_bicubic"] for lv in ok], "o-", color="C2")
    level_axis(ax2, result.table)
    ax2.set_ylabel("SSIM vs bicubic")
    ax2.set_ylim(0, 1.02)
    fig.tight_layout()
    return fig


# --- the evaluation's figures (evaluate.py: per-level means over a dataset) -------------------

EVALUATION_CAPTIONS = {
    "perception_distortion": "The perception–distortion view: each level's mean fidelity to the ground truth "
    "against its mean naturalness (NIQE, up = more natural), ± one standard deviation; the recommended level's "
    "mean is ringed.",
    "scores_vs_level": "Fidelity to the ground truth per level: mean ± standard deviation over the images.",
    "fidelity_vs_change": "Fidelity against change from the bicubic baseline, one point per level.",
}


def evaluation_figures(
    summary: dict[str, Any], check: dict[str, Any] | None = None, *, table: presets.LevelTable = presets.TABLE
) -> dict[str, Figure]:
    """The evaluation's figures by name (the keys of ``EVALUATION_CAPTIONS``, in the report's
    order) from its per-level ``summary`` and recommendation ``check``."""
    import matplotlib

    matplotlib.use("Agg")
    return {
        "scores_vs_level": scores_vs_level_figure(summary, table=table),
        "fidelity_vs_change": fidelity_vs_change_figure(summary, table=table),
        "perception_distortion": perception_distortion_summary_figure(summary, check, table=table),
    }


def scores_vs_level_figure(summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> Figure:
    """PSNR-Y and SSIM-Y against the ground truth per level: mean with ± std error bars."""
    from matplotlib.figure import Figure

    from pipelines.metrics import get_metric  # imports torch: kept out of this module's import

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


def fidelity_vs_change_figure(summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> Figure:
    """Mean PSNR-Y against mean PSNR vs bicubic, one point per level, coloured by base path;
    levels that land on the same spot share one label."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    spots: dict[tuple[float, float], list[int]] = {}
    for e in (e for e in summary.values() if e["images"]):
        change = drawable_psnr(e["psnr_vs_bicubic"]["mean"])
        fidelity = e["psnr_y"]["mean"]
        ax.scatter(change, fidelity, color=f"C{table.get(e['level']).column}")
        spots.setdefault((round(change, 1), round(fidelity, 1)), []).append(e["level"])
    _label_spots(ax, spots)
    for i, label in enumerate(table.column_labels):
        ax.scatter([], [], color=f"C{i}", label=label)
    ax.legend(fontsize=7, loc="lower right")
    ax.margins(0.12)
    ax.grid(alpha=0.3)
    ax.set(
        xlabel=f"PSNR vs bicubic (dB; higher = less change; {PSNR_INF_NOTE})",
        ylabel="PSNR-Y vs ground truth (dB)",
        title="fidelity against change",
    )
    fig.tight_layout()
    return fig


def _label_spots(ax: Any, spots: dict[tuple[float, float], list[int]]) -> None:
    """Label each (x, y) spot with its levels, top to bottom; a spot just below the previous
    one puts its label underneath, so the two stay apart."""
    xs, ys = [x for x, _ in spots], [y for _, y in spots]
    near_x, near_y = 0.05 * (max(xs) - min(xs) or 1), 0.05 * (max(ys) - min(ys) or 1)
    previous: tuple[float, float] | None = None
    for (x, y), levels in sorted(spots.items(), key=lambda kv: kv[0][1], reverse=True):
        crowded = previous is not None and abs(previous[0] - x) < near_x and previous[1] - y < near_y
        ax.annotate(
            ", ".join(map(str, sorted(levels))),
            (x, y),
            textcoords="offset points",
            xytext=(6, -11) if crowded else (6, 4),
            fontsize=8,
        )
        previous = (x, y)


def summary_points(
    summary: dict[str, Any], check: dict[str, Any] | None, *, table: presets.LevelTable = presets.TABLE
) -> list[PDPoint]:
    """The evaluation summary's levels as points (mean PSNR-Y against the ground truth, mean
    NIQE, ± std), and the recommended level's mean as its own ringed point."""

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
    return points


def perception_distortion_summary_figure(
    summary: dict[str, Any], check: dict[str, Any] | None, *, table: presets.LevelTable = presets.TABLE
) -> Figure:
    """Each level at (mean PSNR-Y against the ground truth, mean NIQE) with ± std bars; the
    recommended level's mean as its own ringed point."""
    points = summary_points(summary, check, table=table)
    return perception_distortion_figure(
        points,
        fidelity_label="PSNR-Y vs ground truth (dB, higher = more faithful)",
        title="Fidelity against naturalness (mean ± std over the images)",
    )


# --- the arena's leaderboard (lab/arena_tab.py) ---------------------------------------------------


def arena_figure(rows: Sequence[tuple[str, float, float, float, int]], *, title: str) -> Figure:
    """The arena's leaderboard: one row per recipe (label, rating, interval low, interval high,
    votes), best at the top, the rating as a dot on its 95 % interval bar and the vote count at
    the right. No rows → a figure that says so."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.9 + 0.42 * max(len(rows), 2)), dpi=100)
    ax = fig.subplots()
    if not rows:
        ax.text(0.5, 0.5, "no votes yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ys = list(range(len(rows)))[::-1]  # the first row (the best) at the top
    ratings = [r[1] for r in rows]
    low = [max(0.0, r[1] - r[2]) for r in rows]  # a percentile interval need not hold the fit itself
    high = [max(0.0, r[3] - r[1]) for r in rows]
    ax.errorbar(ratings, ys, xerr=[low, high], fmt="o", color="C0", ecolor="C0", elinewidth=3, alpha=0.85, capsize=4)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    for y, r in zip(ys, rows, strict=True):
        ax.annotate(f"{r[4]} vote{'' if r[4] == 1 else 's'}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.axvline(1000, color="0.6", lw=0.8, ls="--")
    ax.margins(x=0.08, y=0.25)
    ax.grid(axis="x", alpha=0.3)
    ax.set(xlabel="Bradley–Terry rating (Elo scale, mean 1000) with 95 % bootstrap interval", title=title)
    fig.tight_layout()
    return fig


# --- sweeps over custom-level settings (evaluation/sweep.py, lab/sweep_tab.py) ----------------

SWEEP_STYLE: dict[str, Any] = {"marker": "*", "color": "C2", "markersize": 13, "linestyle": "none"}


def sweep_axis_figure(
    axis_label: str, panels: dict[str, dict[str, list[tuple[float, float | None, float | None]]]]
) -> Figure:
    """Scores against the values of one swept setting (``axis_label`` on x): one panel per
    score (its y label → series), one line per series (a value of the other swept setting) of
    (value, mean, std) points with ± std bars. Missing means are left out; an infinite one
    (identical to the baseline) is drawn at ``PSNR_INF_SHOWN_AS``. No panel → a figure that
    says so."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    columns = 2 if len(panels) > 1 else 1
    rows = max(1, -(-len(panels) // columns))
    fig = Figure(figsize=(4.2 * columns, 3.1 * rows), dpi=100)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    if not panels:
        axes[0].text(0.5, 0.5, "no scores to plot", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
    for ax, (ylabel, series) in zip(axes, panels.items(), strict=False):
        infinite = False
        for i, (name, points) in enumerate(series.items()):
            shown = [(x, m, s) for x, m, s in points if m is not None and not math.isnan(m)]
            infinite = infinite or any(math.isinf(m) for _, m, _ in shown)
            ax.errorbar(
                [x for x, _, _ in shown],
                [drawable_psnr(m) if math.isinf(m) else m for _, m, _ in shown],
                yerr=[_spread(s) for _, _, s in shown],
                fmt="o-",
                color=f"C{i}",
                capsize=3,
                label=name,
            )
        ax.set_ylabel(ylabel + (f"\n({PSNR_INF_NOTE})" if infinite else ""), fontsize=8)
        ax.set_xlabel(axis_label, fontsize=8)
        ax.margins(x=0.1)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(f"Scores against {axis_label}: mean ± std over the images", fontsize=10)
    fig.tight_layout()
    return fig


def _sweep_overlay(fig: Figure, points: Sequence[PDPoint], legend: str) -> Figure:
    """Mark ``points`` (already placed by :func:`perception_distortion_figure`) as stars with a
    legend entry of their own, so the sweep stands apart from the levels."""
    ax = fig.axes[0]
    drawn = [p for p in points if math.isfinite(p.fidelity) and math.isfinite(p.naturalness)]
    if not drawn or not ax.get_legend():
        return fig
    ax.plot([p.fidelity for p in drawn], [p.naturalness for p in drawn], label=legend, zorder=4, **SWEEP_STYLE)
    ax.legend(fontsize=8, loc="best")
    return fig


def sweep_perception_distortion_figure(
    summary: dict[str, Any],
    check: dict[str, Any] | None,
    points: Sequence[PDPoint],
    legend: str,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> Figure:
    """The evaluation's perception–distortion view (each level's mean PSNR-Y against the ground
    truth and mean NIQE, ± std; the recommended level ringed) with the sweep's ``points`` added
    as stars (``legend``: what their labels are, e.g. "sweep (creativity/resemblance)")."""
    levels = summary_points(summary, check, table=table)
    swept = [replace(p, generative=True) for p in points]
    fig = perception_distortion_figure(
        [*levels, *swept],
        fidelity_label="PSNR-Y vs ground truth (dB, higher = more faithful)",
        title="Fidelity against naturalness: the levels and the sweep (mean ± std)",
    )
    return _sweep_overlay(fig, swept, legend)


def sweep_quality_figure(points: Sequence[PDPoint], legend: str) -> Figure:
    """The lab's perception–distortion view of a sweep: each point at (LR-consistency, NIQE)."""
    swept = [replace(p, generative=True) for p in points]
    fig = perception_distortion_figure(
        swept,
        fidelity_label="LR-consistency (dB, higher = more faithful to the input)",
        title="Fidelity against naturalness, per sweep point",
    )
    return _sweep_overlay(fig, swept, legend)
