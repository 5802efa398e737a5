"""The evaluation tool: metrics conventions, a synthetic dataset end to end, resume, sharding."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import evaluate
from pipelines.metrics import sr_scores, to_y_uint8

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = [
    "per_image.csv",
    "summary.csv",
    "summary.json",
    "summary.md",
    "report.html",
    "scores_vs_level.png",
    "fidelity_vs_change.png",
    "config.json",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for name in ("astronaut", "coffee", "chelsea"):
        img = Image.fromarray(getattr(data, name)())
        img.resize((66, 50), Image.Resampling.LANCZOS).save(folder / f"{name}.png")  # not multiples of 4
    Image.fromarray(data.camera()).resize((48, 48)).save(folder / "camera_gray.png")
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tiny_models):
    return str(Path(tiny_models.sd15).parent)


def run_eval(*args, env=None, launcher=None):
    cmd = [*(launcher or [sys.executable]), str(ROOT / "evaluate.py"), *args, "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_y_channel_and_shave_conventions():
    img = Image.new("RGB", (12, 12), (255, 0, 0))
    assert to_y_uint8(img)[0, 0] == round(16 + 65.481)
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8))
    gt = img.copy()
    gt.paste(noisy.crop((0, 0, 4, 12)), (0, 0))  # differences only inside the 4-px border
    assert sr_scores(img, gt, scale=4)["psnr_y"] == float("inf")  # shaved away
    assert sr_scores(img, gt, scale=2)["psnr_y"] < 40


def test_degradations_are_seeded_and_composable():
    lr = Image.fromarray(data.astronaut()).resize((32, 32))
    deg = evaluate.Degradation(blur=1.0, noise=5.0, jpeg=30)
    a, b = deg.apply(lr, 7), deg.apply(lr, 7)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(deg.apply(lr, 8)))
    assert evaluate.image_seed(0, "x") == evaluate.image_seed(0, "x") != evaluate.image_seed(1, "x")


def test_end_to_end_every_output_and_resume(dataset, tiny_dir, tmp_path):
    out = tmp_path / "run"
    proc = run_eval(str(dataset), "-o", str(out), "--tiny-models", tiny_dir, "--jpeg", "40")
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["levels"]["1"]["images"] == 4 and summary["levels"]["8"]["images"] == 4
    assert len(summary["monotonicity"]) == 9
    assert "Monotonicity" in proc.stdout
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 * 11

    def scores(path):  # every column but the time
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    first = scores(out / "per_image.csv")
    # interrupt: drop two images' results, run again: only those two are recomputed
    victims = sorted((out / "per_image").glob("*.json"))[:2]
    kept = {p: p.stat().st_mtime_ns for p in sorted((out / "per_image").glob("*.json"))[2:]}
    for v in victims:
        v.unlink()
    proc = run_eval(str(dataset), "-o", str(out), "--tiny-models", tiny_dir, "--jpeg", "40")
    assert "resuming: 2 of 4 images already scored" in proc.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert scores(out / "per_image.csv") == first  # same seeds → same scores


def test_levels_without_weights_are_not_run(dataset, tmp_path):
    out = tmp_path / "missing"
    run_eval(str(dataset), "-o", str(out), "--levels", "2,8")
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert {r.split(",")[2] for r in rows if r.split(",")[1] == "2"} == {"not run"}
    assert {r.split(",")[2] for r in rows if r.split(",")[1] == "8"} == {"ok"}
    assert "not run" in (out / "summary.md").read_text()


def test_two_processes_give_the_same_table(dataset, tiny_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_eval(str(dataset), "-o", str(one), "--tiny-models", tiny_dir, "--levels", "2,5,8", "--blur", "0.8")
    from conftest import free_port

    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    proc = run_eval(
        str(dataset),
        "-o",
        str(two),
        "--tiny-models",
        tiny_dir,
        "--levels",
        "2,5,8",
        "--blur",
        "0.8",
        launcher=torchrun,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert "rank 0/2: 2 images" in proc.stderr and "rank 1/2: 2 images" in proc.stderr
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((two / "summary.json").read_text())
    for n in ("2", "5", "8"):
        for k in ("psnr_y", "ssim_y", "lr_consistency"):
            assert a["levels"][n][k]["mean"] == pytest.approx(b["levels"][n][k]["mean"], abs=0.02), (n, k)
    shutil.rmtree(two)
