"""One table drives the grid: a level table other than the lab's nine, run end to end with the
tiny models. Every consumer (engine, manifest, grid image, score tables, evaluation, UI) must
follow the engine's table; none may assume 3×3 or levels 1..9.

The wide table: 4 base paths × 3 effects = 12 levels in 3 rows × 4 columns, the fourth base
path ("test_nearest", a PIL nearest-neighbour resize) in a base-path registry of the test's own,
given to the engine's config. The tall table: 3 base paths × 4 effects, with a "light" effect at LoRA 0.25 and diffusion settings of its own.
Both are spelled out level by level, so they keep their shapes whatever the lab's own table is.
"""

import argparse
import json
import re

import numpy as np
import pytest
from conftest import serving
from PIL import Image

import figures
import presets
from figures import HEATMAP_FULL_SCALE
from pipelines import base as base_paths
from pipelines.engine import Engine, EngineConfig
from pipelines.errors import RequestError
from pipelines.request import UpscaleRequest, parse_request
from testing.tiny import tiny_settings

Level = presets.Level
LABELS = {"upscale_4": "Real-ESRGAN x4", "bicubic": "bicubic", "bicubic_clean": "bicubic + cleanup"}
NEAREST = "test_nearest"  # the test's own base path: a name the lab's registry does not hold
WIDE = presets.LevelTable(
    levels=(
        Level(1, "upscale_4", "strong", 1.0, row=0, column=0),
        Level(2, "bicubic", "strong", 1.0, row=0, column=1),
        Level(3, "bicubic_clean", "strong", 1.0, row=0, column=2),
        Level(4, NEAREST, "strong", 1.0, row=0, column=3),
        Level(5, "upscale_4", "medium", 0.5, row=1, column=0),
        Level(6, "bicubic", "medium", 0.5, row=1, column=1),
        Level(7, "bicubic_clean", "medium", 0.5, row=1, column=2),
        Level(8, NEAREST, "medium", 0.5, row=1, column=3),
        Level(9, "upscale_4", "off", 0.0, row=2, column=0),
        Level(10, "bicubic", "off", 0.0, row=2, column=1),
        Level(11, "bicubic_clean", "off", 0.0, row=2, column=2),
        Level(12, NEAREST, "off", 0.0, row=2, column=3),
    ),
    base_paths=("upscale_4", "bicubic", "bicubic_clean", NEAREST),
    effects=("strong", "medium", "off"),
    base_path_labels={**LABELS, NEAREST: "nearest neighbour"},
    baseline_level=10,
    default_strength=6,
)
TALL = presets.LevelTable(
    levels=(
        Level(1, "upscale_4", "strong", 1.0, row=0, column=0),
        Level(2, "bicubic", "strong", 1.0, row=0, column=1),
        Level(3, "bicubic_clean", "strong", 1.0, row=0, column=2),
        Level(4, "upscale_4", "medium", 0.5, row=1, column=0),
        Level(5, "bicubic", "medium", 0.5, row=1, column=1),
        Level(6, "bicubic_clean", "medium", 0.5, row=1, column=2),
        Level(7, "upscale_4", "light", 0.25, row=2, column=0),
        Level(8, "bicubic", "light", 0.25, row=2, column=1),
        Level(9, "bicubic_clean", "light", 0.25, row=2, column=2),
        Level(10, "upscale_4", "off", 0.0, row=3, column=0),
        Level(11, "bicubic", "off", 0.0, row=3, column=1),
        Level(12, "bicubic_clean", "off", 0.0, row=3, column=2),
    ),
    base_paths=("upscale_4", "bicubic", "bicubic_clean"),
    effects=("strong", "medium", "light", "off"),
    base_path_labels=LABELS,
    baseline_level=11,
    default_strength=5,
)
NEAREST_NOTE = "nearest-neighbour resize"
CELL = 64  # grid image cell width


def nearest(context: base_paths.BaseContext) -> tuple[Image.Image, str | None]:
    return context.low_res.resize(context.plan.content, Image.Resampling.NEAREST), NEAREST_NOTE


def arr(image):
    return np.asarray(image).astype(int)


WITH_NEAREST = {**base_paths.BASE_SPECS, NEAREST: base_paths.BaseSpec(NEAREST, nearest)}  # the wide table's


@pytest.fixture(scope="module")
def wide_engine(tiny_engine):
    config = EngineConfig(table=WIDE, base_specs=WITH_NEAREST, settings=tiny_settings(), device="cpu", dtype="fp32")
    return Engine(config, refiner=tiny_engine.refiner(), upscaler=tiny_engine.upscaler())


@pytest.fixture(scope="module")
def wide(wide_engine, photo):
    return wide_engine.run(photo, parse_request({"width": 128, "levels": "all", "seed": 3}, table=WIDE))


def test_the_engine_runs_every_level_of_its_table(wide, photo):
    assert [lv.level for lv in wide.levels] == list(range(1, 13)) and wide.table is WIDE
    for lv in wide.levels:
        assert lv.status == "ok", lv.message
        assert lv.image.size == (128, 128) and lv.preset == WIDE.get(lv.level)
    assert wide.level(10).metrics["psnr_vs_bicubic"] == float("inf")  # the baseline is level 10 here
    expected = photo.rgb.resize((128, 128), Image.Resampling.NEAREST)
    assert np.array_equal(arr(wide.level(12).image), arr(expected))  # the registered base, bit for bit
    assert NEAREST_NOTE in wide.level(12).message
    for mine, bicubic in ((4, 2), (8, 6), (12, 10)):  # the new column differs from bicubic's, row by row
        assert np.abs(arr(wide.level(mine).image) - arr(wide.level(bicubic).image)).mean() > 0.5
    strong, medium, off = (arr(wide.level(n).image) for n in (4, 8, 12))
    assert np.abs(strong - medium).mean() > 0.5 and np.abs(medium - off).mean() > 0.5


def test_the_manifest_lists_the_tables_levels(wide):
    manifest = json.loads(wide.manifest_json())
    assert [e["level"] for e in manifest["levels"]] == list(range(1, 13))
    assert [e["base_path"] for e in manifest["levels"]] == [lv.base_path for lv in WIDE.levels]
    assert manifest["request"]["levels"] == list(range(1, 13))


def one_row_table(n: int) -> presets.LevelTable:
    """``n`` levels without diffusion in one row (bicubic first): a table of any size."""
    paths = ("bicubic", *(f"path_{i}" for i in range(2, n + 1)))
    levels = tuple(Level(i, path, "off", 0.0, row=0, column=i - 1) for i, path in enumerate(paths, 1))
    return presets.LevelTable(levels, base_paths=paths, effects=("off",), baseline_level=1, default_strength=1)


def test_requests_are_checked_against_the_engines_table(wide_engine, tiny_engine, photo):
    beyond = presets.TABLE.max_level + 1  # a level the API's default table lacks
    lacks = re.escape(f"levels: each level must be an integer in {presets.TABLE.span}, got {beyond}")
    with pytest.raises(RequestError, match=lacks):
        UpscaleRequest(levels=(beyond,))  # the API's default table
    with pytest.raises(RequestError, match=r"levels: each level must be an integer in 1\.\.12, got 13"):
        parse_request({"levels": [1, 13]}, table=WIDE)
    with pytest.raises(RequestError, match=r"upscale_strength: must be in 1\.\.12, got 13"):
        UpscaleRequest(upscale_strength=13, table=WIDE)
    assert UpscaleRequest(upscale_strength=8, generative_upscale=False, table=WIDE).effective_levels == (12,)
    with pytest.raises(RequestError, match=lacks):  # a request on a table with that level, an engine without it
        tiny_engine.run(photo, UpscaleRequest(width=64, levels=(beyond,), table=one_row_table(beyond)))


def test_an_engine_refuses_a_table_it_cannot_run():
    no_light = {scale: v for scale, v in tiny_settings().items() if scale != 0.25}  # whatever the lab's table has
    with pytest.raises(ValueError, match=r"no DiffusionSettings for LoRA scale\(s\) 0.25"):
        Engine(EngineConfig(table=TALL, settings=no_light, device="cpu"))
    with pytest.raises(ValueError, match=f"unknown base path '{NEAREST}'"):  # the default registry lacks it
        Engine(EngineConfig(table=WIDE, settings=tiny_settings(), device="cpu"))


def test_the_base_path_registry_is_read_only():
    with pytest.raises(TypeError):
        base_paths.BASE_SPECS[NEAREST] = base_paths.BaseSpec(NEAREST, nearest)  # type: ignore[index]
    assert NEAREST not in base_paths.BASE_SPECS


def grid_cells(sheet: Image.Image, table: presets.LevelTable, cell_h: int) -> dict[int, Image.Image]:
    """Each level's picture in a contact sheet of ``table``'s shape (the caption strip above it)."""
    rows, columns = table.shape
    assert sheet.width == columns * CELL and sheet.height % rows == 0
    row_h = sheet.height // rows
    return {
        lv.level: sheet.crop(
            (lv.column * CELL, (lv.row + 1) * row_h - cell_h, (lv.column + 1) * CELL, (lv.row + 1) * row_h)
        )
        for lv in table.levels
    }


def test_files_and_score_tables_follow_the_table(wide):
    from lab.views import score_table
    from pipelines import report

    sheet = report.grid_image(wide, cell_width=CELL)
    for n, cell in grid_cells(sheet, WIDE, CELL).items():  # 4 columns × 3 rows, each level in its cell
        want = wide.level(n).image.convert("RGB").resize((CELL, CELL), Image.Resampling.LANCZOS)
        assert np.array_equal(arr(cell), arr(want)), n
    rows = report.metrics_rows(wide)
    assert [r["level"] for r in rows] == [str(n) for n in range(1, 13)]
    assert rows[11]["recipe"] == "nearest neighbour · off (LoRA 0)" and rows[9]["psnr_vs_bicubic"] == "inf"
    body = [line for line in report.metrics_markdown(wide).splitlines() if line.startswith("| ")][2:]
    assert [line.split(" | ")[0] for line in body] == [f"| {n}" for n in range(1, 13)]
    assert [r[0] for r in score_table(wide)["data"]] == [str(n) for n in range(1, 13)]
    axes = figures.scores_figure(wide).axes
    assert list(axes[0].get_xticks()) == list(range(1, 13))


def test_the_ui_is_laid_out_from_the_engines_table(wide, wide_engine):
    import gradio as gr

    from lab import views
    from lab.ui import build_ui

    with serving(None):
        demo = build_ui(wide_engine)
        blocks = list(demo.blocks.values())
        (gallery,) = [b for b in blocks if isinstance(b, gr.Gallery) and b.elem_id == "grid"]
        assert gallery.columns == 4 and "nearest neighbour" in gallery.label
        left, right = (
            next(b for b in blocks if isinstance(b, gr.Dropdown) and b.label.startswith(s)) for s in ("Left", "Right")
        )
        for dropdown in (left, right):  # the table's levels, then the custom level one past them
            assert [value for _, value in dropdown.choices] == [*range(1, 13), presets.custom_number(WIDE)]
        assert (left.value, right.value) == (6, 10)
        (strength,) = [b for b in blocks if isinstance(b, gr.Slider) and b.label.startswith("upscale_strength")]
        assert (strength.minimum, strength.maximum, strength.value) == (1, 12, 6)
        assert any(isinstance(b, gr.Button) and b.value == "Run all twelve levels" for b in blocks)
        items = views.level_images(wide, recommended=None)
        assert [caption.split(" · ")[0] for _, caption in items] == [str(n) for n in range(1, 13)]
        heat = views.heatmaps(wide)
        assert len(heat) == 11 and all(not caption.startswith("10:") for _, caption in heat)
        assert f"≥{HEATMAP_FULL_SCALE}/255" in heat[0][1]
        partial = views.partial_grid({1: wide.level(1)}, WIDE)
        assert len(partial) == 12 and partial[0][1].startswith("1 · ") and "running" in partial[1][1]


def test_the_evaluation_summarises_the_tables_levels(wide_engine, tmp_path):
    from skimage import data

    import evaluate
    from evaluation.dataset import Degradation
    from evaluation.outputs import write_outputs
    from evaluation.per_image import evaluate_image

    hr = Image.fromarray(data.coffee()).resize((64, 48), Image.Resampling.LANCZOS)
    path = tmp_path / "data" / "coffee.png"
    path.parent.mkdir()
    hr.save(path)
    args = argparse.Namespace(
        scale=2, seed=0, levels=evaluate.chosen_levels("all", WIDE), folders=[str(path.parent)], fidelity_floor=20.0
    )
    record = evaluate_image(wide_engine, path, args, Degradation())
    assert sorted(map(int, record["levels"])) == list(range(1, 13))
    md = write_outputs(tmp_path / "out", [record], args, Degradation(), table=WIDE)
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(line.split(" | ")[0][2:]) for line in rows[: len(WIDE.levels)]] == list(range(1, 13))
    assert "nearest neighbour · medium (LoRA 0.5)" in md and "bicubic baseline (level 10)" in md
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["levels"]) == 12 and summary["levels"]["10"]["psnr_vs_bicubic"]["inf"] == 1
    assert len(summary["monotonicity"]) == 4 * 3  # per base path: (strong, medium), (strong, off), (medium, off)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "repeat(4,max-content)" in page and page.count('<th scope="row" class="num">') == 12
    with pytest.raises(SystemExit, match=r"--levels: level must be an integer in 1\.\.12, got 13"):
        evaluate.chosen_levels([1, 13], WIDE)


def test_a_table_of_four_effects(tiny_engine, photo):
    """3 base paths × 4 effects: a "light" row at LoRA 0.25 with its own diffusion settings."""
    from pipelines import report

    settings = tiny_settings()
    settings[0.25] = presets.DiffusionSettings(**{**vars(settings[0.5]), "lora_scale": 0.25})
    engine = Engine(
        EngineConfig(table=TALL, settings=settings, device="cpu", dtype="fp32"),
        refiner=tiny_engine.refiner(),
        upscaler=tiny_engine.upscaler(),
    )
    result = engine.run(photo, UpscaleRequest(width=64, levels=(2, 5, 8, 11), seed=3, table=TALL))
    assert [lv.status for lv in result.levels] == ["ok"] * 4
    strong, medium, light, off = (arr(result.level(n).image) for n in (2, 5, 8, 11))
    assert np.abs(medium - light).mean() > 0.1 and np.abs(light - off).mean() > 0.1
    assert result.manifest["settings"]["0.25"]["lora_scale"] == 0.25
    sheet = report.grid_image(result, cell_width=CELL)
    cells = grid_cells(sheet, TALL, CELL)  # 3 columns × 4 rows
    want = result.level(8).image.resize((CELL, CELL), Image.Resampling.LANCZOS)
    assert np.array_equal(arr(cells[8]), arr(want))
