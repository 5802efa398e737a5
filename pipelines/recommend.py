"""Which level to recommend from a table of scores: the most natural level that stays faithful.

A pure function over ``(level preset, scores)`` pairs, for whatever levels ran (one image's
scores or a dataset's means). It reads two scores per level:

- fidelity (``fidelity_key``, higher = more faithful, e.g. LR-consistency in dB): a level is
  eligible when it reaches ``floor``. ``+inf`` (an output identical to its input) reaches any
  floor; NaN reaches none.
- naturalness (``naturalness_key``, lower = more natural, NIQE): the eligible level with the
  lowest finite score wins; scores within ``NIQE_TIE`` of the best are a tie, and a tie goes to
  the less generative level (lower LoRA scale, then the higher level number: on the 1–9 dial a
  higher number is gentler). ``NIQE_TIE`` is 0.1 because our NIQE agrees with the authors'
  MATLAB release to about 0.1: smaller differences are not meaningful.

Levels without both scores are left out, and the reason says so. So are levels beyond a guard's
limit (``pipelines.guards``: a face changed or added, the text changed): they are not
recommended, and the reason names them, the guard and its value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import presets

# NIQE (pipelines/quality.py) agrees with the authors' MATLAB release to about 0.1, so two
# scores closer than this are not a meaningful difference: they count as a tie.
NIQE_TIE: float = 0.1


@dataclass(frozen=True)
class Recommendation:
    """The recommended ``level`` (None when no level qualifies), a one-line ``reason`` for
    people, the fidelity ``floor`` applied, and ``considered``: the levels the pick was made
    from (both scores present, naturalness finite, fidelity at or above the floor)."""

    level: int | None
    reason: str
    floor: float
    considered: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "reason": self.reason, "floor_db": self.floor}


@dataclass(frozen=True)
class _Scored:
    preset: presets.Level
    fidelity: float
    naturalness: float

    @property
    def gentleness(self) -> tuple[float, int]:
        """Sort key: less generative first (lower LoRA scale, then the higher level number)."""
        return (self.preset.lora_scale, -self.preset.level)


def recommend(
    levels: Sequence[tuple[presets.Level, Mapping[str, float]]],
    *,
    floor: float = presets.DEFAULT_FIDELITY_FLOOR_DB,  # docs/metrics.md: why this value
    fidelity_key: str = "lr_consistency",
    naturalness_key: str = "niqe",
) -> Recommendation:
    """Recommend a level from ``levels``: pairs of a preset and its scores (keys as the
    engine's metrics). ``floor`` is in the fidelity score's unit (dB for LR-consistency).

    Never raises on scores (missing, NaN, inf are all answered in the reason); raises
    ValueError when ``floor`` is not a finite number.
    """
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not math.isfinite(floor):
        raise ValueError(f"floor must be a finite number (in the unit of {fidelity_key!r}), got {floor!r}")
    fid_name, nat_name = _metric_name(fidelity_key), _metric_name(naturalness_key)
    floor_text = f"{floor:g} {_metric_unit(fidelity_key)}".rstrip()
    if not levels:
        return Recommendation(None, "no scores yet: run some levels to get a recommendation", floor, ())

    # 1. sort the levels: both scores present / a score missing / naturalness not finite / beyond a guard
    scored = [
        _Scored(preset, float(scores[fidelity_key]), float(scores[naturalness_key]))
        for preset, scores in levels
        if fidelity_key in scores and naturalness_key in scores
    ]
    missing = [preset.level for preset, scores in levels if fidelity_key not in scores or naturalness_key not in scores]
    guarded = _guarded(levels)
    candidates = [s for s in scored if math.isfinite(s.naturalness) and s.preset.level not in guarded]
    notes = list(guarded.values())
    if missing:
        notes.append(
            f"{_levels_text(missing)} {_verb(missing, 'lacks', 'lack')} {fid_name} or {nat_name}: not considered"
        )
    unscored = [s.preset.level for s in scored if not math.isfinite(s.naturalness)]
    if unscored:
        notes.append(f"{_levels_text(unscored)} {_verb(unscored, 'has', 'have')} no finite {nat_name}")
    note = f" ({'; '.join(notes)})" if notes else ""

    # 2. nothing to compare
    if not candidates:
        if guarded:
            return Recommendation(None, f"no level left to recommend{note}", floor, ())
        return Recommendation(None, f"no level has a {nat_name} score to compare{note}", floor, ())

    # 3. the fidelity floor (NaN >= floor is False: not eligible; inf >= floor is True)
    eligible = [s for s in candidates if s.fidelity >= floor]
    if not eligible:
        seen = [s for s in candidates if not math.isnan(s.fidelity)]
        if seen:
            top = max(seen, key=lambda s: s.fidelity)
            best = f"best: level {top.preset.level} at {_value(top.fidelity)} {_metric_unit(fidelity_key)}".rstrip()
        else:
            best = f"no level has a finite {fid_name}"
        reason = (
            f"no level reaches the fidelity floor of {floor_text} {fid_name} ({best}); "
            f"lower the floor to get a recommendation{note}"
        )
        return Recommendation(None, reason, floor, ())

    # 4. the most natural eligible level; near-ties go to the less generative level
    lowest = min(s.naturalness for s in eligible)
    tied = [s for s in eligible if s.naturalness - lowest < NIQE_TIE]
    pick = min(tied, key=lambda s: s.gentleness)
    of = (
        f"the only level with {fid_name} ≥ {floor_text}"
        if len(eligible) == 1
        else f"of the {len(eligible)} levels with {fid_name} ≥ {floor_text}"
    )
    reason = f"level {pick.preset.level}: most natural ({nat_name} {pick.naturalness:.2f}) {of}"
    # the tie decided it when another tied level scored as well or better
    rivals = sorted(s.preset.level for s in tied if s is not pick and s.naturalness <= pick.naturalness)
    if rivals:
        reason += f"; tied with {_levels_text(rivals)} within {NIQE_TIE:g}; the less generative level wins"
    considered = tuple(s.preset.level for s in eligible)
    return Recommendation(pick.preset.level, reason + note, floor, considered)


def _guarded(levels: Sequence[tuple[presets.Level, Mapping[str, float]]]) -> dict[int, str]:
    """Level → why it is not recommended, for the levels beyond a guard's limit, e.g. ``level 4
    not recommended: face changed (Face identity distance 0.71 > 0.6)``."""
    from pipelines.metrics import guard_flags

    out = {}
    for preset, scores in levels:
        flags = guard_flags(scores)
        if flags:
            why = ", ".join(f"{m.flag} ({m.name} {m.format(v)} > {m.limit:g})" for m, v in flags)
            out[preset.level] = f"level {preset.level} not recommended: {why}"
    return out


def _levels_text(numbers: Sequence[int]) -> str:
    """``level 4`` or ``levels 2, 3``."""
    return f"level{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def _verb(numbers: Sequence[int], one: str, many: str) -> str:
    return many if len(numbers) > 1 else one


def _value(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _metric_spec(key: str) -> tuple[str, str]:
    """(name, unit) of a score from the metrics registry; the key itself for keys it does not
    list. Imported here: the registry pulls in numpy/scipy, the recommender needs only text."""
    from pipelines.metrics import get_metric

    try:
        metric = get_metric(key)
    except ValueError:
        return key, ""
    return metric.name, metric.unit


def _metric_name(key: str) -> str:
    return _metric_spec(key)[0]


def _metric_unit(key: str) -> str:
    return _metric_spec(key)[1]
