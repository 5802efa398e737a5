"""The lab's scores against people's votes (``evaluate.py --votes VOTES``): which of its own
scores to trust.

For each predictor (PSNR-Y and SSIM-Y against the ground truth, LR-consistency, NIQE, colour
drift, and the recommendation):

* **agreement on pairs**: over the decided votes (``left`` or ``right``; ties and ``both_bad``
  say no preference and are left out) between two levels, the fraction where the predictor
  prefers the winner (by its direction; an exact tie of the scores counts half). A vote on an
  image of this evaluation (its input's sha256, recomputed here, equals the vote's
  ``image_hash``) is judged by that image's scores; any other vote by the levels' means over
  the evaluation. The recommendation prefers the level it picked for the image (a vote on two
  other levels is not counted); by level, the level it picked more often.
* **Kendall's τ** (τ-b) between the predictor's per-level means (directed: higher = better;
  for the recommendation, how often it picked the level) and the levels' Bradley–Terry ratings
  from the same votes (``arena.ratings``), over the levels that have both.

Votes naming an upload (``upload:<name>``) have no scores and only enter the ratings.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import kendalltau

import presets
from arena.ratings import Leaderboard, leaderboard
from arena.votes import Vote, read_votes
from evaluation.aggregate import aggregate, recommended_levels
from evaluation.dataset import Degradation, image_seed, key_of, make_pair
from evaluation.scores import number
from pipelines.metrics import get_metric
from pipelines.report import atomic_write

RECOMMENDATION = "recommendation"
PREDICTORS = ("psnr_y", "ssim_y", "lr_consistency", "niqe", "colour_drift_mean", RECOMMENDATION)
AGREEMENT_COLUMNS = (
    "predictor",
    "label",
    "compared",
    "by_image",
    "by_level_mean",
    "agreement",
    "kendall_tau",
    "levels",
)


def input_hashes(records: Sequence[dict[str, Any]], scale: int, deg: Degradation, seed: int) -> dict[str, str]:
    """sha256 of each record's input file as the evaluation made it (ground truth ÷ ``scale``,
    then ``deg`` with the image's seed) → the record's image key: what a vote on that input has
    as its ``image_hash``."""
    out = {}
    for r in records:
        path = Path(r["path"])
        if path.exists():
            _, lr = make_pair(path, scale)
            data = deg.encode(lr, image_seed(seed, key_of(path)))
            out[hashlib.sha256(data).hexdigest()] = r["image"]
    return out


def _directed(key: str, value: Any) -> float | None:
    """``value`` of score ``key`` as higher = better; None where there is none."""
    if value is None:
        return None
    v = number(value)
    if math.isnan(v):
        return None
    return v if get_metric(key).higher_is_better else -v


def _per_image(record: dict[str, Any] | None, key: str, level: int, pick: int | None) -> float | None:
    if record is None:
        return None
    if key == RECOMMENDATION:
        return None if pick is None else float(level == pick)
    entry = record["levels"].get(str(level), {})
    return _directed(key, entry.get(key)) if entry.get("status") == "ok" else None


def level_scores(
    records: Sequence[dict[str, Any]], picks: dict[str, int | None], levels: Sequence[int], table: presets.LevelTable
) -> dict[str, dict[int, float]]:
    """Per predictor, per level: the directed mean over the evaluation (the recommendation:
    how many images it was picked for)."""
    summary = aggregate(list(records), list(levels), table=table)
    out: dict[str, dict[int, float]] = {}
    for key in PREDICTORS:
        if key == RECOMMENDATION:
            out[key] = {n: float(sum(p == n for p in picks.values())) for n in levels}
            continue
        means = {n: _directed(key, summary[str(n)][key]["mean"]) for n in levels if summary[str(n)]["images"]}
        out[key] = {n: v for n, v in means.items() if v is not None and math.isfinite(v)}
    return out


def agreement(
    votes: Sequence[Vote],
    records: Sequence[dict[str, Any]],
    hashes: dict[str, str],
    picks: dict[str, int | None],
    by_level: dict[str, dict[int, float]],
) -> dict[str, dict[str, Any]]:
    """Per predictor: decided votes it could judge (``compared``; ``by_image`` of them on the
    image's own scores), and the fraction where it preferred the winner (None when none)."""
    by_key = {r["image"]: r for r in records}
    decided = [v for v in votes if v.winner is not None and v.left.isdigit() and v.right.isdigit()]
    out = {}
    for key in PREDICTORS:
        agree, compared, own = 0.0, 0, 0
        for v in decided:
            image = hashes.get(v.image_hash)
            winner, loser = int(v.winner or 0), int(v.loser or 0)
            pick = picks.get(image) if image else None
            w, lo = (_per_image(by_key.get(image or ""), key, n, pick) for n in (winner, loser))
            if w is not None and lo is not None and not (key == RECOMMENDATION and w == lo):
                own += 1
            else:
                w, lo = by_level[key].get(winner), by_level[key].get(loser)
                if w is None or lo is None or (key == RECOMMENDATION and w == lo):
                    continue
            compared += 1
            agree += 1.0 if w > lo else 0.5 if w == lo else 0.0
        out[key] = {"compared": compared, "by_image": own, "agreement": agree / compared if compared else None}
    return out


def rank_correlation(board: Leaderboard, means: dict[int, float]) -> tuple[float | None, int]:
    """Kendall's τ-b between the board's level ratings and ``means`` over the levels with both."""
    levels = [n for n in means if str(n) in {r.recipe for r in board.rows}]
    if len(levels) < 2:
        return None, len(levels)
    tau = kendalltau([board.rating(str(n)).rating for n in levels], [means[n] for n in levels]).statistic
    return (None if math.isnan(tau) else float(tau)), len(levels)


def votes_table(
    votes: Sequence[Vote],
    records: Sequence[dict[str, Any]],
    hashes: dict[str, str],
    *,
    floor: float,
    levels: Sequence[int],
    table: presets.LevelTable = presets.TABLE,
) -> tuple[pd.DataFrame, Leaderboard]:
    """The agreement table (``AGREEMENT_COLUMNS``, one row per predictor) and the levels'
    Bradley–Terry leaderboard from ``votes``."""
    picks = recommended_levels(list(records), floor, table=table)
    by_level = level_scores(records, picks, levels, table)
    agreed = agreement(votes, records, hashes, picks, by_level)
    board = leaderboard(votes)
    rows = []
    for key in PREDICTORS:
        label = "recommendation" if key == RECOMMENDATION else get_metric(key).label
        tau, count = rank_correlation(board, by_level[key])
        a = agreed[key]
        rows.append(
            (key, label, a["compared"], a["by_image"], a["compared"] - a["by_image"], a["agreement"], tau, count)
        )
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS)), board


def votes_markdown(frame: pd.DataFrame, board: Leaderboard, source: str) -> str:
    """The agreement table and the leaderboard as Markdown."""

    def cell(v: Any, digits: int) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    lines = [
        f"### Scores against votes ({board.votes} votes from {source})",
        "",
        "| predictor | decided votes judged | on the image's own scores | agreement | Kendall's τ (levels) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in frame.itertuples():
        lines.append(
            f"| {r.label} | {r.compared} | {r.by_image} | {cell(r.agreement, 3)} | {cell(r.kendall_tau, 2)} ({r.levels}) |"
        )
    lines += ["", "| rank | recipe | rating | 95 % interval | votes |", "|---:|---|---:|---|---:|"]
    for rank, r in enumerate(board.rows, 1):
        lines.append(f"| {rank} | {r.recipe} | {r.rating:.0f} | {r.lower:.0f}–{r.upper:.0f} | {r.votes} |")
    return "\n".join(lines) + "\n"


def votes_report(
    out: Path, records: list[dict[str, Any]], args: argparse.Namespace, deg: Degradation, *, table: presets.LevelTable
) -> str:
    """``evaluate.py --votes``: read ``args.votes``, write ``votes.md``, ``votes_agreement.csv``
    and ``votes_leaderboard.csv`` into ``out``; returns the Markdown. Exits with a message
    for a file that is not a votes export."""
    try:
        votes = read_votes(Path(args.votes))
    except ValueError as exc:
        raise SystemExit(f"error: --votes: {exc}") from None
    hashes = input_hashes(records, args.scale, deg, args.seed)
    frame, board = votes_table(votes, records, hashes, floor=args.fidelity_floor, levels=args.levels, table=table)
    md = votes_markdown(frame, board, Path(args.votes).name)
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write(out / "votes_agreement.csv", buf.getvalue().encode())
    atomic_write(out / "votes_leaderboard.csv", board.frame().to_csv(index=False).encode())
    atomic_write(out / "votes.md", md.encode())
    return md
