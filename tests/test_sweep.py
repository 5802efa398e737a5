"""Sweeps over one or two custom-level settings (issue 20, point 3): the ``--sweep`` flags and
their errors, the points, a 2 × 3 sweep through the evaluation with the tiny models (files,
plots, the monotonicity check per axis) and the lab's Sweep tab run by its handler."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

import presets
from evaluation.dataset import key_of, list_images
from evaluation.sweep import (
    MAX_VALUES,
    Axis,
    SweepPoint,
    monotonicity,
    monotonicity_lines,
    parse_axes,
    parse_axis,
    sweep_points,
)
from pipelines.request import CustomRecipe

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE
CUSTOM = presets.custom_number(TABLE)
CREATIVITY = (0.2, 0.5, 0.9)  # the first axis: three values
RESEMBLANCE = (0.3, 1.2)  # the second: two
SWEEP = ["--sweep", "creativity=0.5, 0.2,0.9", "--sweep", "resemblance=1.2,0.3"]  # any order, spaces allowed
# the baseline level beside the sweep; few steps: the tiny models at 192 px take seconds a point
FLAGS = ["--levels", str(TABLE.baseline_level), *SWEEP, "--sweep-from", "start_from=5,steps=4"]


# --------------------------------------------------------------------------- flags and points


def test_an_axis_is_a_setting_and_its_values_checked_as_the_custom_level_checks_them():
    assert parse_axis("creativity=0.5, 0.2,0.9") == Axis("creativity", CREATIVITY)  # sorted
    steps = parse_axis("steps=20,10")
    assert steps == Axis("steps", (10, 20)) and all(type(v) is int for v in steps.values)
    assert parse_axes(["creativity=0.2", "guidance=3,6"])[1].label == presets.custom_field("guidance").label


@pytest.mark.parametrize(
    ("texts", "says"),
    [
        (["creativity=7"], "custom.creativity: must be a number in 0.05..1, got 7 (creativity = denoise strength)"),
        (["resemblance=0.5,high"], "custom.resemblance: must be a number in 0..2, got 'high'"),
        (["steps=2.5"], "custom.steps: must be an integer in 1..50, got 2.5"),
        (["tile_size=100"], "custom.tile_size: must be an integer in 64..1024, a multiple of 64, got 100"),
        (["hdr=3,6"], "unknown custom setting 'hdr'; settings: ['lora_scale', 'creativity'"),
        (["creativity"], "expected NAME=v1,v2,..."),
        (["creativity="], "creativity: give one to 5 values"),
        ([f"creativity={','.join(str(0.1 * i) for i in range(1, MAX_VALUES + 2))}"], "at most 5 values, got 6"),
        (["creativity=0.2,0.20"], "a value is given twice"),
        (["creativity=0.2", "creativity=0.3"], "creativity is swept twice"),
        (["creativity=0.2", "guidance=3", "steps=4"], "at most 2 settings, got 3"),
    ],
)
def test_a_bad_sweep_names_what_is_wrong(texts, says):
    with pytest.raises(ValueError) as caught:
        parse_axes(texts)
    assert says in str(caught.value)


def test_points_are_the_product_the_first_axis_fastest():
    axes = parse_axes(["creativity=0.2,0.5,0.9", "resemblance=0.3,1.2"])
    points = sweep_points(axes)
    assert [p.short for p in points] == ["0.2/0.3", "0.5/0.3", "0.9/0.3", "0.2/1.2", "0.5/1.2", "0.9/1.2"]
    assert points[4].key == "creativity=0.5,resemblance=1.2" and points[4].label == "creativity 0.5 · resemblance 1.2"
    recipe = points[4].recipe(CustomRecipe(start_from=4))
    assert (recipe.start_from, recipe.creativity, recipe.resemblance, recipe.guidance) == (4, 0.5, 1.2, None)
    assert [p.short for p in sweep_points(axes[:1])] == ["0.2", "0.5", "0.9"]


def record(points: dict[str, tuple[float, float]]) -> dict:
    """One image's sweep: (LR-consistency, PSNR vs bicubic) per point key."""
    return {
        "image": "x",
        "sweep": {
            "points": {k: {"status": "ok", "lr_consistency": a, "psnr_vs_bicubic": b} for k, (a, b) in points.items()}
        },
    }


def test_the_monotonicity_check_follows_each_axis_and_its_expected_direction():
    """More creativity should move further from the input (scores fall), more resemblance closer
    (scores rise); one line per value of the other axis; a step the wrong way fails the axis."""
    axes = parse_axes(["creativity=0.2,0.5,0.9", "resemblance=0.3,1.2"])
    scores = {p.key: (40 - 10 * p.value("creativity") + p.value("resemblance"),) * 2 for p in sweep_points(axes)}
    mono = monotonicity([record(scores), record(scores)], axes)
    assert [(m["axis"], m["expected"], m["verdict"]) for m in mono] == [
        ("creativity", "falls", "holds"),
        ("resemblance", "rises", "holds"),
    ]
    assert [ln["at"] for ln in mono[0]["lines"]] == [{"resemblance": 0.3}, {"resemblance": 1.2}]
    assert mono[0]["lines"][0]["means"]["lr_consistency"] == pytest.approx([38.3, 35.3, 31.3])
    assert mono[0]["lines"][0]["images_holding"] == 2
    text = "\n".join(monotonicity_lines(mono))
    assert "**creativity: holds** (expected as it grows: further from the input: the scores fall)" in text
    assert "  - resemblance 0.3: LR-consistency 38.30 → 35.30 → 31.30 dB (falls)" in text
    scores[SweepPoint((("creativity", 0.9), ("resemblance", 1.2))).key] = (99.0, 99.0)  # one step the wrong way
    broken = monotonicity([record(scores)], axes)
    assert [m["verdict"] for m in broken] == ["fails", "holds"]
    assert broken[0]["lines"][1]["moves"] == {"lr_consistency": "mixed", "psnr_vs_bicubic": "mixed"}
    steps = monotonicity([record({"steps=10": (30, 30), "steps=20": (31, 29)})], parse_axes(["steps=10,20"]))
    assert steps[0]["verdict"] == "no expected direction" and steps[0]["lines"][0]["moves"]["lr_consistency"] == "rises"


# --------------------------------------------------------------------------- the evaluation


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two photos, 192 px a side (NIQE needs 192): the ×4 input is 48 px."""
    folder = tmp_path_factory.mktemp("sweep_hr")
    for name in ("astronaut", "coffee"):
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.resize((192, 192), Image.Resampling.LANCZOS).save(folder / f"{name}.png")
    return folder


def evaluate(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "evaluate.py"), *args, "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--sweep", "creativity=0.2,1.5"], "--sweep: custom.creativity: must be a number in 0.05..1, got 1.5"),
        (["--sweep", "fractality=3"], "--sweep: unknown custom setting 'fractality'"),
        (
            ["--sweep", "creativity=0.2", "--sweep-from", "12"],
            "--sweep-from: custom.start_from: must be a level in 1..9",
        ),
        (
            ["--sweep", "creativity=0.2", "--sweep-from", "steps=99"],
            "--sweep-from: custom.steps: must be an integer in 1..50",
        ),
        (["--sweep", "tile_overlap=32,64", "--sweep-from", "tile_size=64"], "custom.tile_overlap: must be less than"),
        (["--sweep-from", "4"], "--sweep-from needs --sweep"),
    ],
)
def test_a_bad_sweep_flag_exits_2_with_the_fields_name_and_range(tmp_path, capsys, flags, says):
    import evaluate as tool

    with pytest.raises(SystemExit) as exited:
        tool.parse_args([str(tmp_path), "-o", str(tmp_path / "out"), *flags])
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_the_flags_give_the_axes_and_the_points_base_recipe(tmp_path):
    import evaluate as tool

    args = tool.parse_args([str(tmp_path), "-o", str(tmp_path), *SWEEP, "--sweep-from", "start_from=4,steps=3"])
    assert args.sweep == (Axis("creativity", CREATIVITY), Axis("resemblance", RESEMBLANCE))
    assert args.sweep_from.start_from == 4 and args.sweep_from.steps == 3
    assert sweep_points(args.sweep)[0].recipe(args.sweep_from).to_json() == {
        "start_from": 4, "creativity": 0.2, "resemblance": 0.3, "steps": 3,
    }  # fmt: skip
    assert tool.parse_args([str(tmp_path), "-o", str(tmp_path), *SWEEP, "--sweep-from", "6"]).sweep_from.start_from == 6
    plain = tool.parse_args([str(tmp_path), "-o", str(tmp_path)])
    assert plain.sweep == () and "sweep" not in tool.run_config(plain, tool.Degradation())  # old folders resume


def test_a_2_by_3_sweep_over_a_dataset(dataset, tiny_models, tmp_path):
    out = tmp_path / "run"
    models = ["--sd15", tiny_models.sd15, "--controlnet", tiny_models.controlnet, "--lora", tiny_models.lora]
    proc = evaluate(str(dataset), "-o", str(out), *models, *FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = [p.key for p in sweep_points(parse_axes(SWEEP[1::2]))]
    # the per-image records hold every point's scores (so a run resumes)
    for path in sorted((out / "per_image").glob("*.json")):
        sweep = json.loads(path.read_text())["sweep"]
        assert list(sweep["points"]) == keys and set(sweep["thumbs"]) == set(keys)
        assert all(
            e["status"] == "ok" and e["psnr_y"] and e["lr_consistency"] and e["niqe"] for e in sweep["points"].values()
        )
    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    images = sorted(key_of(path) for path in list_images([str(dataset)]))
    assert [(r["image"], r["point"]) for r in rows] == [(i, k) for i in images for k in keys]
    assert {r["creativity"] for r in rows} == {"0.2", "0.5", "0.9"} and {r["status"] for r in rows} == {"ok"}
    by_point = {(r["image"], r["point"]): r for r in rows}
    for i in images:  # more creativity: another image (the tiny models' diffusion has an effect)
        assert len({by_point[i, k]["psnr_y"] for k in keys}) > len(RESEMBLANCE)
    summary = json.loads((out / "sweep.json").read_text())
    assert [p["images"] for p in summary["points"]] == [2] * 6
    mean = {p["point"]: p["lr_consistency"]["mean"] for p in summary["points"]}
    per_image = {(r["image"], r["point"]): float(r["lr_consistency"]) for r in rows}
    assert mean[keys[0]] == pytest.approx(sum(per_image[i, keys[0]] for i in images) / len(images))
    md = (out / "sweep.md").read_text()
    assert (
        md.startswith("### Sweep of creativity (3) × resemblance (2) from level 5, steps 4") and md.count("\n| 0.") == 6
    )
    assert "Monotonicity" in md and "Monotonicity" in proc.stdout
    verdicts = {m["axis"]: m["verdict"] for m in summary["monotonicity"]}
    assert set(verdicts) == {"creativity", "resemblance"} and set(verdicts.values()) <= {"holds", "fails"}
    for axis, verdict in verdicts.items():
        assert f"**{axis}: {verdict}**" in md
    assert md.count("  - resemblance ") == len(RESEMBLANCE) and md.count("  - creativity ") == len(CREATIVITY)
    assert "LR-consistency " in md and " → " in md and "PSNR vs bicubic " in md  # the numbers along each line
    for name in ("sweep_creativity.png", "sweep_resemblance.png", "sweep_perception_distortion.png"):
        with Image.open(out / name) as im:
            assert im.width > 300, name
    # resume: every image scored, nothing run again, the same table
    before = (out / "sweep.csv").read_text()
    again = evaluate(str(dataset), "-o", str(out), *models, *FLAGS)
    assert again.returncode == 0 and "resuming: 2 of 2 images already scored" in again.stderr
    assert (out / "sweep.csv").read_text() == before
    other = evaluate(str(dataset), "-o", str(out), *models, *FLAGS[:-2])  # another base recipe
    assert other.returncode != 0 and "different configuration" in other.stderr  # another sweep: not mixed in


# --------------------------------------------------------------------------- the lab's Sweep tab


def lab_form(path: Path, width: str = "96"):
    from lab.form import UIInput

    return UIInput.of(str(path), "", width, "", "canvas", "", "", "", 7, False)


@pytest.fixture
def small_photo(tmp_path):
    path = tmp_path / "portrait.png"
    Image.open(ROOT / "examples" / "astronaut_portrait.png").convert("RGB").resize((48, 48)).save(path)
    return path


def test_the_lab_runs_a_2_by_3_sweep_on_the_preview_region(tiny_engine, small_photo):
    """Six points on the most detailed window (a 24-px box of the 48-px input at the whole
    image's ×2), each its own image with its scores; a row per point; the figure; the
    monotonicity check per axis; the progress per point; no run left in the cancel registry."""
    from conftest import serving

    from lab import supervision, sweep_tab

    seen: list[tuple[float, str]] = []
    values = ("creativity", "0.3, 0.6, 0.9", "resemblance", "1.2, 0.4", TABLE.default_strength, False)
    with serving(tiny_engine):
        out = sweep_tab.run_sweep(
            values, lab_form(small_photo), "sweep-test", lambda v, desc="": seen.append((v, desc)), threading.Event()
        )
    assert len(out.items) == len(out.points) == 6
    assert [p.short for p, _ in out.points] == ["0.3/0.4", "0.6/0.4", "0.9/0.4", "0.3/1.2", "0.6/1.2", "0.9/1.2"]
    for (point, lv), (image, caption) in zip(out.points, out.items, strict=True):
        assert lv.status == "ok" and lv.preset.settings.denoise_strength == point.value("creativity")
        assert lv.preset.settings.controlnet_scale == point.value("resemblance") and lv.preset.start_from == 5
        assert image.size == (48, 48)  # the 24-px box at ×2
        assert caption.startswith(f"{point.label}\n") and "PSNR" in caption
    pixels = {out.points[i][1].image.tobytes() for i in range(3)}
    assert len(pixels) == 3  # more creativity: another image
    assert out.table["headers"][:3] == ["creativity", "resemblance", "status"]
    assert [row[:3] for row in out.table["data"]][::3] == [["0.3", "0.4", "ok"], ["0.3", "1.2", "ok"]]
    lr = out.table["headers"].index(next(h for h in out.table["headers"] if h.startswith("LR")))
    assert all(row[lr] for row in out.table["data"])  # every point scored
    assert "Region preview: input x" in out.note and "24×24 (of 48×48)" in out.note and "seed 7" in out.note
    assert "**creativity: " in out.note and "**resemblance: " in out.note and "LR-consistency" in out.note
    assert out.figure.axes  # the perception–distortion view
    assert seen[-1][0] > 0.99 and "point 6/6: creativity 0.9 · resemblance 1.2" in seen[-1][1]
    assert not supervision.CANCELS.sessions()


def test_the_lab_sweeps_the_whole_image_and_a_cancel_keeps_the_points_done(tiny_engine, small_photo):
    from conftest import serving

    from lab import supervision, sweep_tab

    cancel = threading.Event()

    def progress(value, desc=""):
        if desc.startswith("point 2/"):  # the second point has started: the person presses Cancel
            supervision.CANCELS.cancel("sweep-cancel")

    values = ("guidance", "3, 6, 9", sweep_tab.NO_SECOND, "", TABLE.default_strength, True)
    with serving(tiny_engine):
        out = sweep_tab.run_sweep(values, lab_form(small_photo), "sweep-cancel", progress, cancel)
    assert cancel.is_set() and [p.short for p, _ in out.points] == ["3"]
    assert out.items[0][0].size == (96, 96)  # the whole image
    assert out.note.startswith("Cancelled after 1 of 3 points.") and "the whole image" in out.note
    assert not supervision.CANCELS.sessions()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (("creativity", "0.2, 7", "none", ""), "sweep: custom.creativity: must be a number in 0.05..1, got 7"),
        (("creativity", "0.2", "creativity", "0.3"), "sweep: creativity is swept twice"),
        (("steps", "1,2,3,4,5,6", "none", ""), "sweep: steps: at most 5 values, got 6"),
        (("creativity", "0.2", "guidance", ""), "sweep: guidance: give one to 5 values"),
    ],
)
def test_the_tabs_mistakes_name_their_field(tiny_engine, small_photo, values, says):
    from conftest import serving

    from lab import sweep_tab
    from pipelines.errors import LabError

    with serving(tiny_engine), pytest.raises(LabError, match=says):
        sweep_tab.run_sweep((*values, 5, False), lab_form(small_photo), None, None, threading.Event())


def test_the_tab_builds_and_wires_on_its_own():
    import gradio as gr

    from lab.form import FORM_FIELDS
    from lab.sweep_tab import build_sweep_tab, setting_choices, wire_sweep_tab

    with gr.Blocks():
        tab = build_sweep_tab(TABLE)
        wire_sweep_tab(tab, [gr.Textbox() for _ in FORM_FIELDS])
    assert [name for _, name in setting_choices()] == [f.name for f in presets.CUSTOM_FIELDS]
    assert len(tab.inputs) == 6
