"""Bradley–Terry ratings of the recipes from the arena's votes (pure: votes in, tables out).

The model: recipe i beats recipe j with probability σ(θ_i − θ_j). θ is fitted by maximum
likelihood over all votes at once (not an online Elo update, so the order of the votes does not
matter): a win counts 1 for the winner, a tie half a win for each side (as GenAI-Arena and
Chatbot Arena count them). ``both_bad`` counts as a tie by default (the voter saw no difference
worth preferring; Chatbot Arena's "tie (bothbad)" is a tie too); ``both_bad="exclude"`` drops
those votes. A weak ridge (``RIDGE`` × Σθ²/2, a Gaussian prior of σ = 10 logits) keeps a
recipe that never lost finite (a single vote reads about ±375 points, not ±1000); against
hundreds of votes its pull is far below the intervals. Ratings are shown on the Elo scale:
``1000 + 400·log10(e)·θ`` with the mean θ of the rated recipes at 0, so 400 points apart means
10:1 odds.

Intervals: ``rounds`` (100) bootstrap resamples of the votes (with replacement, seeded), each
refitted; the 95 % interval is the 2.5–97.5 % quantiles of the refitted ratings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from arena.votes import KINDS, Vote

BothBad = Literal["tie", "exclude"]
ELO_PER_LOGIT = 400.0 / math.log(10.0)
ELO_CENTER = 1000.0
BOOTSTRAP_ROUNDS = 100
INTERVAL = (2.5, 97.5)  # percentiles: a 95 % interval
PERSONAL_MIN_VOTES = 30  # a personal leaderboard from this many of one session's votes on
RIDGE = 0.01  # a Gaussian prior of σ = 10 logits on each θ: nothing against hundreds of votes
LEADERBOARD_COLUMNS = ("rank", "recipe", "rating", "lower", "upper", "votes", "wins", "ties", "losses")


@dataclass(frozen=True)
class Rating:
    """One recipe's row: its rating and 95 % interval (Elo scale), and its votes (every vote it
    was in, ``both_bad`` included), won, tied (``both_bad`` counted here) and lost."""

    recipe: str
    rating: float
    lower: float
    upper: float
    votes: int
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class Leaderboard:
    """Recipes by rating, best first; ``votes``: how many votes the fit used; ``kind``: the
    image kind it is for (None = every kind)."""

    rows: tuple[Rating, ...]
    votes: int
    rounds: int
    seed: int
    kind: str | None = None
    both_bad: BothBad = "tie"

    def frame(self) -> pd.DataFrame:
        """The table: rank, recipe, rating, interval, votes, wins, ties, losses (ratings rounded
        to whole points)."""
        rows = [
            (i + 1, r.recipe, round(r.rating), round(r.lower), round(r.upper), r.votes, r.wins, r.ties, r.losses)
            for i, r in enumerate(self.rows)
        ]
        return pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))

    def to_csv(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(path, index=False)
        return path

    def rating(self, recipe: str) -> Rating:
        for r in self.rows:
            if r.recipe == recipe:
                return r
        raise KeyError(f"{recipe!r} has no rating (rated: {[r.recipe for r in self.rows]})")


@dataclass(frozen=True)
class Outcomes:
    """Votes as index pairs: ``first[k]`` scored ``score[k]`` (1, 0.5 or 0) against ``second[k]``."""

    recipes: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    score: np.ndarray


def outcomes(votes: Sequence[Vote], *, both_bad: BothBad = "tie") -> Outcomes:
    """The votes the fit uses, as index pairs over the recipes they name (sorted)."""
    used = [v for v in votes if not (v.outcome == "both_bad" and both_bad == "exclude")]
    recipes = tuple(sorted({r for v in used for r in (v.left, v.right)}, key=recipe_order))
    index = {r: i for i, r in enumerate(recipes)}
    score = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}
    return Outcomes(
        recipes=recipes,
        first=np.array([index[v.left] for v in used], dtype=np.int64),
        second=np.array([index[v.right] for v in used], dtype=np.int64),
        score=np.array([score[v.outcome] for v in used], dtype=np.float64),
    )


def recipe_order(recipe: str) -> tuple[int, int, str]:
    """Levels first, by number, then uploads by name."""
    return (0, int(recipe), "") if recipe.isdigit() else (1, 0, recipe)


def fit_bt(
    n: int, first: np.ndarray, second: np.ndarray, score: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """The maximum-likelihood θ (mean 0) of ``n`` players: ``first[k]`` scored ``score[k]``
    against ``second[k]``; ``start``: where the search begins (the full fit, for a bootstrap
    resample). Votes are summed per ordered pair first, so the cost grows with the number of
    pairs, not of votes."""
    pairs = first * n + second
    won = np.bincount(pairs, weights=score, minlength=n * n)
    lost = np.bincount(pairs, weights=1.0 - score, minlength=n * n)
    keep = np.flatnonzero(won + lost)
    i, j, w_i, w_j = keep // n, keep % n, won[keep], lost[keep]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[i] - theta[j]
        # -log σ(d) = logaddexp(0, -d): stable for any d
        value = float(w_i @ np.logaddexp(0.0, -d) + w_j @ np.logaddexp(0.0, d)) + 0.5 * RIDGE * float(theta @ theta)
        p = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d)
        g = w_j * p - w_i * (1.0 - p)  # d loss / d d
        grad = np.bincount(i, weights=g, minlength=n) - np.bincount(j, weights=g, minlength=n) + RIDGE * theta
        return value, grad

    x0 = np.zeros(n) if start is None else start
    theta = minimize(loss, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-9}).x
    return np.asarray(theta - theta.mean())


def _tally(votes: Sequence[Vote], recipe: str) -> tuple[int, int, int, int]:
    mine = [v for v in votes if recipe in (v.left, v.right)]
    wins = sum(v.winner == recipe for v in mine)
    losses = sum(v.loser == recipe for v in mine)
    return len(mine), wins, len(mine) - wins - losses, losses


def leaderboard(
    votes: Sequence[Vote],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    both_bad: BothBad = "tie",
    kind: str | None = None,
) -> Leaderboard:
    """The Bradley–Terry leaderboard of ``votes`` (only those of image kind ``kind`` when
    given) with ``rounds`` bootstrap resamples (``seed``) for the 95 % intervals. No votes → an
    empty board."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    chosen = [v for v in votes if kind is None or v.kind == kind]
    data = outcomes(chosen, both_bad=both_bad)
    n, count = len(data.recipes), len(data.score)
    if count == 0:
        return Leaderboard((), 0, rounds, seed, kind, both_bad)
    theta = fit_bt(n, data.first, data.second, data.score)
    rng = np.random.default_rng(seed)
    samples = np.full((rounds, n), np.nan)
    for b in range(rounds):
        pick = rng.integers(0, count, count)
        present = np.zeros(n, dtype=bool)
        present[data.first[pick]] = present[data.second[pick]] = True
        sample = fit_bt(n, data.first[pick], data.second[pick], data.score[pick], start=theta)
        sample[present] -= sample[present].mean()  # centre over the recipes this resample rated
        samples[b, present] = sample[present]
    lo, hi = np.nanpercentile(samples, INTERVAL, axis=0) if rounds else (theta, theta)
    rows = [Rating(r, _elo(theta[k]), _elo(lo[k]), _elo(hi[k]), *_tally(chosen, r)) for k, r in enumerate(data.recipes)]
    rows.sort(key=lambda r: (-r.rating, recipe_order(r.recipe)))
    return Leaderboard(tuple(rows), count, rounds, seed, kind, both_bad)


def _elo(theta: float) -> float:
    return ELO_CENTER + ELO_PER_LOGIT * float(theta)


def leaderboards_by_kind(
    votes: Sequence[Vote], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> dict[str, Leaderboard]:
    """``"all"`` and each image kind that has votes → its leaderboard."""
    boards = {"all": leaderboard(votes, rounds=rounds, seed=seed)}
    for kind in KINDS:
        if any(v.kind == kind for v in votes):
            boards[kind] = leaderboard(votes, rounds=rounds, seed=seed, kind=kind)
    return boards


def personal_leaderboard(
    session_votes: Sequence[Vote], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> Leaderboard | None:
    """One session's own leaderboard, once it has cast ``PERSONAL_MIN_VOTES`` votes; None before."""
    if len(session_votes) < PERSONAL_MIN_VOTES:
        return None
    return leaderboard(session_votes, rounds=rounds, seed=seed)
