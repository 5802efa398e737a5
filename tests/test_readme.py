"""The README's examples run as written on a fresh machine: every code block marked
``<!-- readme-example: ... -->`` is executed — the Python and curl API examples against a lab
started as its own process with no diffusion weights (an empty hub cache, offline), the
command-line example as it stands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!-- readme-example:[^>]*-->\s*```(\w+)\n(.*?)```", re.S)
LAB = "http://127.0.0.1:7860"


def examples() -> list[tuple[str, str]]:
    return MARK.findall((ROOT / "README.md").read_text())


def test_the_readme_marks_its_examples():
    kinds = [lang for lang, _ in examples()]
    assert kinds.count("python") >= 1 and kinds.count("bash") >= 4, kinds


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory):
    """app.py as a user starts it, on a free port, with an empty hub cache and no hub."""
    from conftest import free_port, started_app

    port = free_port()
    home = tmp_path_factory.mktemp("fresh_hf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    with started_app(env, home / "app.log") as url:
        yield url


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_example_runs(index, fresh_lab, tmp_path):
    lang, code = examples()[index]
    code = code.replace(LAB, fresh_lab)
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")  # the README's paths are relative to the repo
    if ".venv/bin/python cli.py" in code:  # the command-line example runs from the repo root
        code = code.replace(".venv/bin/python cli.py", f"{sys.executable} {ROOT / 'cli.py'}")
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"README example {index} ({lang}) failed:\n{code}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    )
    out = work / "out"
    if "-o out/upscaled.png" in code:
        assert (out / "upscaled.png").stat().st_size > 0 and "x-level: 8" in done.stdout.lower()
    if "-o out/upscaled.jpg" in code:  # the formats example: a JPEG under its max_file_size, 300 dpi
        from PIL import Image

        with Image.open(out / "upscaled.jpg") as im:
            assert im.format == "JPEG" and im.width == 512 and round(im.info["dpi"][0]) == 300
        assert (out / "upscaled.jpg").stat().st_size <= 40_000 and "image/jpeg" in done.stdout.lower()
        with Image.open(out / "upscaled.webp") as im:  # --strip-metadata: no manifest, no EXIF but DPI
            assert im.format == "WEBP" and im.width == 512 and "xmp" not in im.info
        with Image.open(out / "upscaled_lossless.webp") as im, Image.open(out / "upscaled.jpg") as jpeg:
            assert im.format == "WEBP" and im.width == 512 and "xmp" in im.info  # the manifest travels
            assert (
                im.size == jpeg.size and b"VP8L" in (out / "upscaled_lossless.webp").read_bytes()
            )  # the lossless chunk
    if "/jobs" in code:  # the jobs example: polled to the end, its result fetched
        from PIL import Image

        assert ": done" in done.stdout, done.stdout
        with Image.open(out / "upscaled_job.png") as im:
            assert im.format == "PNG" and im.width == 512
    if "cli.py grid" in code:
        assert (work / "out" / "astronaut" / "manifest.json").exists()
