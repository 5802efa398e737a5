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
    assert presets.get_level(presets.BASELINE_LEVEL).base_path == "bicubic"
    assert not presets.get_level(presets.BASELINE_LEVEL).generative


@pytest.mark.parametrize("bad", [0, 10, "5", 5.5, None, True])
def test_get_level_rejects(bad):
    with pytest.raises(ValueError, match="level must be an integer in 1..9"):
        presets.get_level(bad)


def test_level_validation_on_construction():
    with pytest.raises(ValueError, match="LoRA scale"):
        presets.Level(level=1, base_path="bicubic", effect="strong", lora_scale=0.5)
    with pytest.raises(ValueError, match="base_path"):
        presets.Level(level=1, base_path="nearest", effect="strong", lora_scale=1.0)  # type: ignore[arg-type]


def test_models_registry():
    assert presets.get_model("detail_lora").revision == "a3802c0280c0d00c2ab18d37454a8744c44e474e"
    assert presets.get_model("detail_lora").pinned
    with pytest.raises(ValueError, match="valid ids"):
        presets.get_model("sdxl")


def test_diffusion_settings_cover_generative_scales_with_reasons():
    assert set(presets.DIFFUSION_SETTINGS) == {1.0, 0.5}
    for field in ("denoise_strength", "steps", "guidance_scale", "controlnet_scale", "tile_size", "tile_overlap"):
        assert presets.DIFFUSION_REASONS[field]
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
    assert [presets.non_generative_twin(n).level for n in range(1, 10)] == [7, 8, 9] * 3
