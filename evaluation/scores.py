"""The evaluation's score columns (read from the metrics registry) and how scores are stored in JSON."""

from __future__ import annotations

import math
from typing import Any

from pipelines.metrics import LEVEL_METRICS, SR_METRICS, Metric

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
RECOMMENDATION_KEYS = ("psnr_y", "ssim_y", "lr_consistency", "niqe")  # the recommendation check's columns


def jsonable(v: Any) -> Any:
    """``v`` (a score, or a dict of them, nested) as JSON can hold it: NaN → None, ±inf → "inf"."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def number(v: Any) -> float:
    """A stored score back as a float: "inf" → ``math.inf``."""
    return math.inf if v == "inf" else float(v)
