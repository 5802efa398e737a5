"""The command line, as a user runs it (subprocesses, real files)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


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
    assert "1: Real-ESRGAN x4 · strong" in out
    assert "download" in run("--help").stdout


def test_grid_writes_everything_and_reports_missing(tmp_path):
    out = tmp_path / "grid"
    proc = run("grid", str(small_photo(tmp_path)), "-o", str(out), "--width", "96", "--seed", "5")
    names = {p.name for p in out.iterdir()}
    assert {
        "level_7.png",
        "level_8.png",
        "level_9.png",
        "grid.png",
        "metrics.csv",
        "metrics.md",
        "manifest.json",
    } <= names
    assert "python cli.py download" in proc.stdout
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["status"] for r in rows] == ["missing"] * 6 + ["ok"] * 3
    assert Image.open(out / "level_7.png").size == (96, 96)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5


def test_upscale_with_request_file(tmp_path):
    req = tmp_path / "req.json"
    req.write_text(
        json.dumps(
            {"width": 120, "height": 60, "fit": "canvas", "upscale_strength": 8, "background": {"color": "#ff0000"}}
        )
    )
    target = tmp_path / "o.png"
    proc = run("upscale", str(small_photo(tmp_path)), "--request", str(req), "-o", str(target))
    img = Image.open(target)
    assert img.size == (120, 60) and img.getpixel((2, 30)) == (255, 0, 0)
    assert "level 8" in proc.stdout


def test_bad_request_is_a_clear_error(tmp_path):
    proc = run("upscale", str(small_photo(tmp_path)), "-o", str(tmp_path / "x.png"), "--width", "0", check=False)
    assert proc.returncode == 2 and "width" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("upscale", str(small_photo(tmp_path)), "-o", str(tmp_path / "x.png"), "--strength", "3", check=False)
    assert proc.returncode == 3 and "missing" in proc.stderr
