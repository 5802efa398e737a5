import math

import pytest

import presets
from pipelines.metrics import get_metric
from pipelines.recommend import NIQE_TIE, Recommendation, recommend


def table(scores: dict[int, tuple[float, float]]):
    """Score rows for presets.LEVELS: level → (LR-consistency dB, NIQE)."""
    return [(presets.TABLE.get(n), {"lr_consistency": fid, "niqe": nat}) for n, (fid, nat) in scores.items()]


def test_floor_excludes_a_more_natural_level():
    rec = recommend(table({1: (22.0, 3.0), 4: (31.0, 4.5), 7: (35.0, 5.0)}), floor=30.0)
    assert rec.level == 4
    assert rec.considered == (4, 7)
    assert rec.reason == "level 4: most natural (NIQE 4.50) of the 2 levels with LR-consistency ≥ 30 dB"


def test_floor_is_inclusive():
    rec = recommend(table({4: (30.0, 4.0), 7: (40.0, 6.0)}), floor=30.0)
    assert rec.level == 4


def test_tie_goes_to_lower_lora_scale():
    # level 4 (LoRA 0.5) is 0.05 more natural than level 7 (LoRA 0): a tie, the gentler wins
    rec = recommend(table({1: (33.0, 4.60), 4: (33.0, 4.20), 7: (36.0, 4.25)}))
    assert rec.level == 7
    assert "NIQE 4.25" in rec.reason
    assert "tied with level 4 within 0.1; the less generative level wins" in rec.reason


def test_tie_at_equal_lora_scale_goes_to_higher_level_number():
    rec = recommend(table({7: (40.0, 4.20), 8: (40.0, 4.24), 9: (40.0, 4.28)}))
    assert rec.level == 9
    assert "tied with levels 7, 8" in rec.reason


def test_lora_scale_decides_before_level_number():
    # a table of its own where the numbers run against the LoRA scale: 3 is off, 9 is strong
    gentle = presets.Level(3, "bicubic", "off", 0.0, row=0, column=0)
    strong = presets.Level(9, "bicubic", "strong", 1.0, row=2, column=2)
    rows = [(strong, {"lr_consistency": 40.0, "niqe": 4.20}), (gentle, {"lr_consistency": 40.0, "niqe": 4.26})]
    assert recommend(rows).level == 3


def test_difference_beyond_the_tie_is_kept():
    rec = recommend(table({4: (33.0, 4.20), 7: (36.0, 4.20 + 3 * NIQE_TIE)}))
    assert rec.level == 4
    assert "tied" not in rec.reason


def test_nothing_above_the_floor():
    rec = recommend(table({1: (20.0, 3.0), 7: (27.34, 5.0)}), floor=30.0)
    assert rec.level is None
    assert rec.considered == ()
    assert rec.reason == (
        "no level reaches the fidelity floor of 30 dB LR-consistency (best: level 7 at 27.3 dB); "
        "lower the floor to get a recommendation"
    )
    assert rec.to_json() == {"level": None, "reason": rec.reason, "floor_db": 30.0}


def test_inf_fidelity_is_eligible_nan_is_not():
    rec = recommend(table({1: (math.nan, 2.0), 8: (math.inf, 6.0)}), floor=50.0)
    assert rec.level == 8
    assert rec.considered == (8,)
    assert "the only level with LR-consistency ≥ 50 dB" in rec.reason


def test_nan_fidelity_alone_reaches_no_floor():
    rec = recommend(table({1: (math.nan, 2.0)}))
    assert rec.level is None
    assert "no level has a finite LR-consistency" in rec.reason


def test_non_finite_niqe_is_left_out():
    rec = recommend(table({4: (40.0, math.nan), 5: (40.0, math.inf), 7: (35.0, 5.0)}))
    assert rec.level == 7
    assert "levels 4, 5 have no finite NIQE" in rec.reason


def test_infinite_niqe_is_never_picked():
    rec = recommend(table({7: (40.0, math.inf), 8: (40.0, math.inf)}))
    assert rec.level is None
    assert "levels 7, 8 have no finite NIQE" in rec.reason


def test_missing_keys_are_not_considered():
    rows = [
        (presets.TABLE.get(2), {"lr_consistency": 40.0}),
        (presets.TABLE.get(3), {"niqe": 1.0}),
        (presets.TABLE.get(7), {"lr_consistency": 35.0, "niqe": 5.0}),
    ]
    rec = recommend(rows)
    assert rec.level == 7
    assert rec.considered == (7,)
    assert "levels 2, 3 lack LR-consistency or NIQE: not considered" in rec.reason


def test_no_niqe_anywhere():
    rows = [(lv, {"lr_consistency": 40.0}) for lv in presets.LEVELS]
    rec = recommend(rows)
    assert rec.level is None
    assert rec.reason.startswith("no level has a NIQE score")


def test_empty_input():
    rec = recommend([])
    assert rec == Recommendation(None, rec.reason, presets.DEFAULT_FIDELITY_FLOOR_DB, ())
    assert "no scores" in rec.reason


def test_other_keys_and_a_four_level_table():
    # a table of its own: one strong, one medium, two off levels, scored against a ground truth
    own = [
        presets.Level(2, "bicubic", "strong", 1.0, row=0, column=0),
        presets.Level(5, "bicubic", "medium", 0.5, row=1, column=0),
        presets.Level(6, "bicubic_clean", "medium", 0.5, row=1, column=1),
        presets.Level(8, "bicubic", "off", 0.0, row=2, column=0),
    ]
    psnr_gt = {2: 24.0, 5: 26.5, 6: 26.0, 8: 27.0}
    niqe = {2: 3.1, 5: 3.9, 6: 3.95, 8: 6.0}
    rows = [(lv, {"psnr_vs_gt": psnr_gt[lv.level], "quality": niqe[lv.level]}) for lv in own]
    rec = recommend(rows, floor=25.0, fidelity_key="psnr_vs_gt", naturalness_key="quality")
    assert rec.level == 6  # 5 and 6 tie at LoRA 0.5: the higher number wins
    assert rec.considered == (5, 6, 8)
    assert f"{get_metric('psnr_vs_gt').name} ≥ 25 dB" in rec.reason
    assert recommend(rows, floor=28.0, fidelity_key="psnr_vs_gt", naturalness_key="quality").level is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "30", None, True])
def test_floor_must_be_finite(bad):
    with pytest.raises(ValueError, match="floor"):
        recommend(table({7: (35.0, 5.0)}), floor=bad)
