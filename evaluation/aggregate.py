"""Per-image records to per-level numbers (pure): means, monotonicity, the recommendation check, best levels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import presets
from evaluation.scores import RECOMMENDATION_KEYS, SCORE_KEYS, number
from pipelines.metrics import Metric


def _status(record: dict[str, Any], level: int) -> str | None:
    """``"ok"``, ``"not run"``, or None when ``level`` was not requested for the image."""
    status: str | None = record["levels"].get(str(level), {}).get("status")
    return status


def aggregate(
    records: list[dict[str, Any]], levels: list[int], *, table: presets.LevelTable = presets.TABLE
) -> dict[str, Any]:
    """Per level (of ``table``, the engine's): mean and standard deviation of each score over
    the images it ran on; ``inf`` values (identical images) are excluded from means and counted."""
    summary: dict[str, Any] = {}
    for n in levels:
        rows = [r["levels"][str(n)] for r in records if _status(r, n) == "ok"]
        not_run = [r["levels"][str(n)] for r in records if _status(r, n) == "not run"]
        entry: dict[str, Any] = {
            "level": n,
            "recipe": table.get(n).recipe,
            "images": len(rows),
            "not_run": len(not_run),
            "not_run_reasons": sorted({str(e.get("reason") or "no reason given") for e in not_run}),
        }
        for k in SCORE_KEYS:
            entry[k] = _column_stats(rows, k)
        summary[str(n)] = entry
    return summary


def _column_stats(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Mean and std of ``key`` over the finite values of ``rows``, and how many were inf; the
    mean is inf when every value is, None when there is none."""
    # a score a level did not get (no seams when untiled, no NIQE below 192 px) is left out
    vals = [v for v in (number(r[key]) for r in rows if r.get(key) is not None) if not math.isnan(v)]
    finite = [v for v in vals if math.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else (math.inf if vals else None),
        "std": float(np.std(finite)) if finite else None,
        "inf": len(vals) - len(finite),
    }


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
                    if _status(r, more) == "ok" and _status(r, less) == "ok"
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


def recommended_levels(
    records: list[dict[str, Any]], floor: float, *, table: presets.LevelTable = presets.TABLE
) -> dict[str, int | None]:
    """Per image: the level the recommender (``pipelines.recommend``; fidelity = LR-consistency,
    naturalness = NIQE, as in the lab) picks among the levels that ran with both scores; None
    when fewer than two did."""
    from pipelines.recommend import recommend

    picks: dict[str, int | None] = {}
    for r in records:
        ran = [
            (table.get(int(n)), {k: number(v) for k, v in e.items() if k in ("lr_consistency", "niqe")})
            for n, e in r["levels"].items()
            if e.get("status") == "ok" and e.get("niqe") is not None and e.get("lr_consistency") is not None
        ]
        picks[r["image"]] = recommend(ran, floor=floor).level if len(ran) > 1 else None
    return picks


def _recommendation_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of each of ``RECOMMENDATION_KEYS`` over the finite values of ``rows``."""
    out = {}
    for k in RECOMMENDATION_KEYS:
        vals = [v for v in (number(x[k]) for x in rows if x.get(k) is not None) if math.isfinite(v)]
        out[k] = {"mean": float(np.mean(vals)) if vals else None, "std": float(np.std(vals)) if vals else None}
    return out


def recommendation_check(
    records: list[dict[str, Any]], floor: float, *, table: presets.LevelTable = presets.TABLE
) -> dict[str, Any]:
    """The recommender on every image (:func:`recommended_levels`), and how the level it picks
    compares with each fixed level over the same images: mean ± std of ``RECOMMENDATION_KEYS``,
    and how often each level was picked."""
    picks = recommended_levels(records, floor, table=table)
    chosen = [r for r in records if picks[r["image"]] is not None]
    fixed = {}
    for n in sorted({int(n) for r in chosen for n in r["levels"]}):
        rows = [r["levels"][str(n)] for r in chosen if _status(r, n) == "ok"]
        if len(rows) == len(chosen):  # only levels that ran on every image compare like with like
            fixed[str(n)] = _recommendation_stats(rows)
    counts: dict[str, int] = {}
    for level in picks.values():
        key = str(level) if level is not None else "none"
        counts[key] = counts.get(key, 0) + 1
    return {
        "floor_db": floor,
        "images": len(chosen),
        "picks": dict(sorted(counts.items())),
        "per_image": picks,
        "recommended": _recommendation_stats([r["levels"][str(picks[r["image"]])] for r in chosen]),
        "fixed": fixed,
    }


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
