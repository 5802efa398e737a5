"""What a newcomer sees at the command line and in the compare tab (issue "What a newcomer
sees", points 5–8): the README's REST request works with ``cli.py upscale --request``, a level
identical to the baseline says so instead of showing a black heatmap, progress written to a
file or a pipe is one plain line per stage, and the evaluation states the NIQE channel."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "examples" / "astronaut_portrait.png"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``cli.py`` as a user runs it, stdout and stderr each a pipe (not a terminal)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def readme_request(folder: Path, **fields: object) -> Path:
    """The request the README's curl example builds (``image_base64`` of the portrait, width
    512, strength 8), with ``fields`` laid over it."""
    body = {"image_base64": base64.b64encode(PORTRAIT.read_bytes()).decode(), "width": 512, "upscale_strength": 8}
    path = folder / "request.json"
    path.write_text(json.dumps({**body, **fields}))
    return path


def test_the_readmes_rest_request_runs_with_upscale_request(tmp_path):
    """One request format for both doors: the JSON the README posts to the REST API."""
    target = tmp_path / "out.png"
    proc = cli("upscale", "--request", str(readme_request(tmp_path)), "-o", str(target))
    assert Image.open(target).size == (512, 512)
    assert "level 8" in proc.stdout


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image_base64": "not base64!"}, "error: image_base64: is not valid base64"),
        ({"url": "https://example.com/a.png"}, "error: url: give either 'url' or 'image_base64', not both"),
        ({"image_base64": base64.b64encode(b"hello").decode()}, "is not a recognised image"),
    ],
    ids=["not-base64", "with-url", "not-an-image"],
)
def test_a_bad_inline_image_is_refused_as_the_rest_api_refuses_it(tmp_path, fields, message):
    proc = cli(
        "upscale", "--request", str(readme_request(tmp_path, **fields)), "-o", str(tmp_path / "x.png"), check=False
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_an_input_given_as_well_wins_over_the_requests_image(tmp_path):
    small = tmp_path / "small.png"
    Image.open(PORTRAIT).resize((48, 48)).save(small)
    target = tmp_path / "out.png"
    cli("upscale", str(small), "--request", str(readme_request(tmp_path, width=96)), "-o", str(target))
    assert Image.open(target).size == (96, 96)


def test_progress_to_a_pipe_is_one_plain_line_per_stage(tmp_path):
    """Issue point 8: with stderr a pipe, tqdm printed rates like "233016.89step/s"."""
    small = tmp_path / "small.png"
    Image.open(PORTRAIT).resize((48, 48)).save(small)
    proc = cli("grid", str(small), "-o", str(tmp_path / "grid"), "--levels", "8,9", "--width", "96")
    assert "step/s" not in proc.stderr and "\r" not in proc.stderr and "%|" not in proc.stderr
    assert "base: bicubic\n" in proc.stderr


def test_a_level_identical_to_the_baseline_says_so_in_the_heatmaps(missing_engine, photo):
    """Issue point 5: level 9 of a PNG (no JPEG grid: the cleanup changes nothing) equals level
    8, and its heatmap was solid black with no word why."""
    from lab import views
    from pipelines.request import UpscaleRequest

    result = missing_engine.run(photo, UpscaleRequest(width=96, levels=(8, 9), seed=1))
    assert result.level(9).image.tobytes() == result.level(8).image.tobytes()
    ((tile, caption),) = views.heatmaps(result)
    assert caption == "9: identical to level 8 (the baseline)"
    assert np.asarray(tile).max() > 0  # words on a grey cell, not a black map

    changed = np.asarray(result.level(9).image).copy()
    changed[:8] = 255 - changed[:8]
    level_9 = dataclasses.replace(result.level(9), image=Image.fromarray(changed))
    edited = dataclasses.replace(result, levels=[result.level(8), level_9])
    ((heat, caption),) = views.heatmaps(edited)
    assert caption.startswith("9: change vs bicubic") and heat.size == level_9.image.size


class Recording:
    """An engine that keeps the results of its runs (``results``)."""

    def __init__(self, engine):
        self.engine, self.config, self.results = engine, engine.config, []

    def run(self, *args, **kwargs):
        self.results.append(self.engine.run(*args, **kwargs))
        return self.results[-1]


def test_the_evaluation_scores_and_states_the_niqe_channel(missing_engine, tmp_path):
    """Issue point 7: ``evaluate.py --niqe-channel gray`` scores NIQE as the MATLAB release
    (rgb2gray) and says so in summary.md, summary.json and the report; the default stays Y."""
    from skimage import data

    import evaluate
    from evaluation.dataset import Degradation
    from evaluation.outputs import write_outputs
    from evaluation.per_image import evaluate_image
    from pipelines.quality import niqe

    path = tmp_path / "data" / "coffee.png"
    path.parent.mkdir()
    Image.fromarray(data.coffee()).resize((256, 192), Image.Resampling.LANCZOS).save(path)
    args = evaluate.parse_args([str(path.parent), "-o", str(tmp_path / "out"), "--levels", "8", "--channel", "gray"])
    assert args.niqe_channel == "gray" and evaluate.run_config(args, Degradation())["niqe_channel"] == "gray"
    assert evaluate.parse_args([str(path.parent), "-o", "x"]).niqe_channel == "y"

    engine = Recording(missing_engine)
    y = evaluate_image(engine, path, args, Degradation())["levels"]["8"]["niqe"]
    record = evaluate_image(engine, path, args, Degradation(), niqe_channel="gray")
    output = engine.results[-1].level(8).image
    assert y == engine.results[0].level(8).metrics["niqe"] == pytest.approx(niqe(output))  # the default: Y
    assert record["levels"]["8"]["niqe"] == pytest.approx(niqe(output, convert_to="gray")) != y

    out = tmp_path / "out"
    md = write_outputs(out, [record], args, Degradation(), niqe_channel="gray")
    assert "NIQE channel: gray, MATLAB's rgb2gray" in md
    assert json.loads((out / "summary.json").read_text())["niqe_channel"] == "gray"
    assert "NIQE channel: gray" in (out / "report.html").read_text()
    assert "NIQE channel: y, BT.601 Y" in write_outputs(tmp_path / "default", [record], args, Degradation())


def test_an_older_evaluation_folder_still_resumes(tmp_path):
    """config.json written before ``niqe_channel`` existed reads as the default, Y."""
    from evaluation.outputs import check_config

    old = {"scale": 4, "levels": [8], "seed": 0}
    (tmp_path / "config.json").write_text(json.dumps(old))
    check_config(tmp_path, {**old, "niqe_channel": "y"}, fresh=False)  # no SystemExit
    with pytest.raises(SystemExit, match="different configuration"):
        check_config(tmp_path, {**old, "niqe_channel": "gray"}, fresh=False)


def test_evaluate_progress_to_a_pipe_is_one_line_per_image(tmp_path, monkeypatch, capsys):
    import evaluate
    from evaluation.dataset import Degradation

    calls = []
    monkeypatch.setattr(evaluate, "evaluate_image", lambda *a, **kw: calls.append(kw) or {"image": "x"})
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    args = argparse.Namespace(output=str(tmp_path), no_progress=False, niqe_channel="gray")
    evaluate.score_images(None, images, args, Degradation(), "evaluating")
    err = capsys.readouterr().err
    assert err.splitlines() == ["evaluating: image 1/2 a.png", "evaluating: image 2/2 b.png"]
    assert "image/s" not in err and calls == [{"niqe_channel": "gray"}] * 2


def test_a_cached_levels_time_is_marked_in_the_markdown_and_stays_a_number_in_the_csv(photo):
    """Issue point 8: a level whose image came from the cache reported ``0.000`` seconds as if
    it had been computed. Marked by ``LevelResult.cached`` (set here as the engine would)."""
    import csv
    import io

    from pipelines.engine import Engine, EngineConfig
    from pipelines.report import metrics_csv, metrics_markdown
    from pipelines.request import UpscaleRequest

    result = Engine(EngineConfig(device="cpu")).run(photo, UpscaleRequest(width=96, levels=(8, 9), seed=1))
    assert "(cached)" not in metrics_markdown(result) and "reused cached images" not in metrics_markdown(result)
    setattr(result.level(8), "cached", True)  # noqa: B010 — the field the engine sets
    md = metrics_markdown(result)
    (row_8,) = [line for line in md.splitlines() if line.startswith("| 8 |")]
    assert row_8.endswith(f"{result.level(8).seconds:.3f} (cached) |")
    assert "(cached)" not in next(line for line in md.splitlines() if line.startswith("| 9 |"))
    assert "- level 8 reused cached images of an earlier run" in md
    rows = {r["level"]: r for r in csv.DictReader(io.StringIO(metrics_csv(result)))}
    assert float(rows["8"]["seconds"]) == pytest.approx(result.level(8).seconds, abs=5e-4)


def test_the_engine_reports_which_levels_came_from_its_cache(photo):
    """A second run of the same image and size takes its base images from the engine's cache:
    those levels are reported as cached; the first run's are not."""
    from pipelines.engine import Engine, EngineConfig
    from pipelines.report import cached_levels
    from pipelines.request import UpscaleRequest

    engine = Engine(EngineConfig(device="cpu"))  # its own base cache, empty
    request = UpscaleRequest(width=80, levels=(8, 9), seed=2)
    assert cached_levels(engine.run(photo, request)) == []
    assert cached_levels(engine.run(photo, request)) == [8, 9]
