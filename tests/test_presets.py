"""The level table's mechanism, on a 3 × 3 table of the test's own (``NINE``), and the one place
that pins the lab's table (``presets.TABLE``) to DESIGN.md's nine levels: a new row or column of
levels fails :func:`test_levels_match_design_table` (edit ``DESIGN_TABLE`` and that test) and
nothing else in the tests."""

import pytest

import presets

DESIGN_TABLE = [  # (level, base path, effect, LoRA scale): the pin, and nothing else, reads it
    (1, "upscale_4", "strong", 1.0),
    (2, "bicubic", "strong", 1.0),
    (3, "bicubic_clean", "strong", 1.0),
    (4, "upscale_4", "medium", 0.5),
    (5, "bicubic", "medium", 0.5),
    (6, "bicubic_clean", "medium", 0.5),
    (7, "upscale_4", "off", 0.0),
    (8, "bicubic", "off", 0.0),
    (9, "bicubic_clean", "off", 0.0),
]
LABELS = {"upscale_4": "Real-ESRGAN x4", "bicubic": "bicubic", "bicubic_clean": "bicubic + cleanup"}
EFFECTS = (("strong", 1.0), ("medium", 0.5), ("off", 0.0))
NINE = presets.LevelTable(  # the mechanism's tests run on this table, whatever the lab's is
    levels=tuple(
        presets.Level(3 * r + c + 1, base, effect, scale, row=r, column=c)
        for r, (effect, scale) in enumerate(EFFECTS)
        for c, base in enumerate(LABELS)
    ),
    base_paths=tuple(LABELS),
    effects=tuple(effect for effect, _ in EFFECTS),
    base_path_labels=LABELS,
    baseline_level=8,
    default_strength=5,
)


def test_levels_match_design_table():
    """The pin: the lab's table is DESIGN.md's (levels 1–9, base path × effect × LoRA scale,
    numbered row by row, baseline 8, default 5, the column labels)."""
    got = [(lv.level, lv.base_path, lv.effect, lv.lora_scale) for lv in presets.LEVELS]
    assert got == DESIGN_TABLE
    for lv in presets.LEVELS:
        assert lv.level == 3 * lv.row + lv.column + 1
    assert (presets.BASELINE_LEVEL, presets.TABLE.default_strength) == (8, 5)
    assert presets.TABLE.column_labels == ("Real-ESRGAN x4", "bicubic", "bicubic + cleanup")


def test_grid_order_and_baseline():
    t = presets.TABLE  # whatever its size: the grid's cells row by row, the baseline plain bicubic
    rows, columns = t.shape
    assert [(lv.row, lv.column) for lv in t.in_grid_order] == [(r, c) for r in range(rows) for c in range(columns)]
    assert t.get(presets.BASELINE_LEVEL).base_path == "bicubic"
    assert not t.get(presets.BASELINE_LEVEL).generative


@pytest.mark.parametrize("bad", [0, 10, "5", 5.5, None, True])
def test_get_level_rejects(bad):
    with pytest.raises(ValueError, match="level must be an integer in 1..9"):
        NINE.get(bad)


def table_with(**changes):
    """NINE's parts with ``changes`` (levels given as (n, base, effect, scale, row, column))."""
    levels = changes.pop("levels", None)
    parts = {
        "levels": NINE.levels
        if levels is None
        else tuple(presets.Level(n, b, e, s, row=r, column=c) for n, b, e, s, r, c in levels),
        "base_paths": NINE.base_paths,
        "effects": NINE.effects,
        "baseline_level": NINE.baseline_level,
        "default_strength": NINE.default_strength,
        "base_path_labels": NINE.base_path_labels,
    }
    return presets.LevelTable(**{**parts, **changes})


def rows(*edits):
    """NINE as (n, base, effect, scale, row, column), with ``edits`` {index: row} applied."""
    out = [(lv.level, lv.base_path, lv.effect, lv.lora_scale, lv.row, lv.column) for lv in NINE.levels]
    for index, row in edits:
        out[index] = row
    return out


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"levels": rows((1, (2, "bicubic", "strong", 0.5, 0, 1)))}, "effect 'strong' means LoRA scale 1.0"),
        ({"levels": rows((1, (2, "nearest", "strong", 1.0, 0, 1)))}, "base_path must be one of"),
        ({"levels": rows((1, (2, "bicubic", "strong", 1.0, 1, 1)))}, "is row 0, column 1; got row 1"),
        ({"levels": rows((8, (10, "bicubic_clean", "off", 0.0, 2, 2)))}, "numbers must be 1..9"),
        ({"levels": rows()[:8]}, "grid needs 9 levels"),
        ({"baseline_level": 7}, "baseline level must be plain bicubic"),
        ({"baseline_level": 5}, "baseline level must be plain bicubic"),
        ({"default_strength": 10}, "default_strength must be a level of the table"),
        ({"base_path_labels": {"nearest": "nearest"}}, "base paths the table lacks"),
        ({"effects": ("strong", "strong", "off")}, "effects must name each one once"),
    ],
)
def test_table_validation_on_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        table_with(**changes)
    with pytest.raises(ValueError, match="lora_scale must be in"):
        presets.Level(1, "bicubic", "strong", 1.5, row=0, column=0)


def test_the_table_derives_what_consumers_need():
    t = NINE
    assert (t.numbers, t.min_level, t.max_level, t.span, t.shape) == (tuple(range(1, 10)), 1, 9, "1..9", (3, 3))
    assert t.count_text == "nine" and t.generative_scales == (1.0, 0.5)
    assert t.column_labels == ("Real-ESRGAN x4", "bicubic", "bicubic + cleanup") and t.row_labels == t.effects
    assert [lv.level for lv in t.column("bicubic")] == [2, 5, 8] and t.baseline.level == 8
    assert t.level_for("bicubic_clean", 0.5).level == 6
    with pytest.raises(ValueError, match="no level has base path 'nearest'"):
        t.level_for("nearest", 0.5)
    assert t.get(1).recipe == "Real-ESRGAN x4 · strong (LoRA 1)"
    assert (t.baseline_level, t.default_strength) == (8, 5)
    table = presets.TABLE  # the short names are the lab's table's parts
    assert (presets.LEVELS, presets.LEVEL_NUMBERS, presets.BASELINE_LEVEL) == (
        table.levels,
        table.numbers,
        table.baseline_level,
    )
    assert (presets.MIN_LEVEL, presets.MAX_LEVEL) == (table.min_level, table.max_level)
    assert presets.number_ranges([7, 8, 9]) == "7–9" and presets.number_ranges([1, 2, 5], dash="-") == "1, 2, 5"


def test_models_registry():
    assert presets.get_model("detail_lora").revision == "a3802c0280c0d00c2ab18d37454a8744c44e474e"
    assert presets.get_model("detail_lora").pinned
    with pytest.raises(ValueError, match="valid ids"):
        presets.get_model("sdxl")


def test_diffusion_settings_cover_generative_scales_with_reasons():
    assert set(presets.DIFFUSION_SETTINGS) == set(presets.TABLE.generative_scales)
    for field in ("denoise_strength", "steps", "guidance_scale", "controlnet_scale", "tile_size", "tile_overlap"):
        assert presets.DIFFUSION_REASONS[field]
    reasons = presets.DIFFUSION_REASONS  # the numbers in the prose are the settings' own
    assert reasons["denoise_strength"].startswith("0.45 / 0.30: ") and "at 'strong'" in reasons["denoise_strength"]
    assert reasons["steps"].startswith("20 scheduler steps") and "(9 and 6)" in reasons["steps"]
    assert reasons["guidance_scale"].startswith("6 / 5: ") and reasons["controlnet_scale"].startswith("0.8 / 1.0: ")
    assert reasons["tile_size"].startswith("512 px") and reasons["tile_overlap"].startswith("128 px")
    changed = {
        s: presets.DiffusionSettings(**{**vars(v), "steps": 30, "guidance_scale": v.guidance_scale + 1})
        for s, v in presets.DIFFUSION_SETTINGS.items()
    }
    other = presets.diffusion_reasons(changed)
    assert other["steps"].startswith("30 scheduler steps") and "(13 and 9)" in other["steps"]
    assert other["guidance_scale"].startswith("7 / 6: ")
    with pytest.raises(ValueError, match="tile_size"):
        presets.DiffusionSettings(
            lora_scale=1.0,
            denoise_strength=0.4,
            steps=10,
            guidance_scale=5,
            controlnet_scale=1,
            tile_size=500,
            tile_overlap=64,
        )


def test_non_generative_twin():
    assert [NINE.non_generative_twin(n).level for n in range(1, 10)] == [7, 8, 9] * 3
    for lv in presets.TABLE.levels:  # the lab's table, whatever its size
        twin = presets.TABLE.non_generative_twin(lv.level)
        assert twin.base_path == lv.base_path and not twin.generative
