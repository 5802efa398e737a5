import pytest

import presets

DESIGN_TABLE = [
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


def test_levels_match_design_table():
    got = [(lv.level, lv.base_path, lv.effect, lv.lora_scale) for lv in presets.LEVELS]
    assert got == DESIGN_TABLE


def test_grid_layout_is_row_major():
    for lv in presets.LEVELS:
        assert lv.level == 3 * lv.row + lv.column + 1
    assert presets.TABLE.get(presets.BASELINE_LEVEL).base_path == "bicubic"
    assert not presets.TABLE.get(presets.BASELINE_LEVEL).generative


@pytest.mark.parametrize("bad", [0, 10, "5", 5.5, None, True])
def test_get_level_rejects(bad):
    with pytest.raises(ValueError, match="level must be an integer in 1..9"):
        presets.TABLE.get(bad)


def table_with(**changes):
    """The default table's parts with ``changes`` (levels given as (n, base, effect, scale, row, column))."""
    levels = changes.pop("levels", None)
    parts = {
        "levels": presets.TABLE.levels
        if levels is None
        else tuple(presets.Level(n, b, e, s, row=r, column=c) for n, b, e, s, r, c in levels),
        "base_paths": presets.TABLE.base_paths,
        "effects": presets.TABLE.effects,
        "baseline_level": presets.TABLE.baseline_level,
        "default_strength": presets.TABLE.default_strength,
        "base_path_labels": presets.TABLE.base_path_labels,
    }
    return presets.LevelTable(**{**parts, **changes})


def rows(*edits):
    """The design table as (n, base, effect, scale, row, column), with ``edits`` {index: row} applied."""
    out = [(n, b, e, s, (n - 1) // 3, (n - 1) % 3) for n, b, e, s in DESIGN_TABLE]
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
    t = presets.TABLE
    assert (t.numbers, t.min_level, t.max_level, t.span, t.shape) == (tuple(range(1, 10)), 1, 9, "1..9", (3, 3))
    assert t.count_text == "nine" and t.generative_scales == (1.0, 0.5)
    assert t.column_labels == ("Real-ESRGAN x4", "bicubic", "bicubic + cleanup") and t.row_labels == t.effects
    assert [lv.level for lv in t.column("bicubic")] == [2, 5, 8] and t.baseline.level == 8
    assert t.level_for("bicubic_clean", 0.5).level == 6
    with pytest.raises(ValueError, match="no level has base path 'nearest'"):
        t.level_for("nearest", 0.5)
    assert t.get(1).recipe == "Real-ESRGAN x4 · strong (LoRA 1)"
    assert (presets.LEVELS, presets.BASELINE_LEVEL, t.default_strength) == (t.levels, 8, 5)
    assert presets.number_ranges([7, 8, 9]) == "7–9" and presets.number_ranges([1, 2, 5], dash="-") == "1, 2, 5"


def test_models_registry():
    assert presets.get_model("detail_lora").revision == "a3802c0280c0d00c2ab18d37454a8744c44e474e"
    assert presets.get_model("detail_lora").pinned
    with pytest.raises(ValueError, match="valid ids"):
        presets.get_model("sdxl")


def test_diffusion_settings_cover_generative_scales_with_reasons():
    assert set(presets.DIFFUSION_SETTINGS) == {1.0, 0.5}
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
    assert [presets.TABLE.non_generative_twin(n).level for n in range(1, 10)] == [7, 8, 9] * 3
