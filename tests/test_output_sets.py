"""A run's output folder is one consistent set: its manifest lists exactly the files beside
it, whatever happened to earlier runs into the same folder (killed, disk full)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from PIL import Image

from pipelines import report
from pipelines.errors import LabError
from pipelines.imaging import load_image
from pipelines.request import UpscaleRequest

ROOT = Path(__file__).resolve().parents[1]


def assert_one_set(folder: Path) -> dict:
    """``folder`` holds exactly the files its manifest lists (with their sizes and sha256),
    no hidden or temporary file, and nothing of a run's is left beside it."""
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = manifest["files"]
    present = sorted(p.name for p in folder.iterdir())
    assert present == sorted([*listed, "manifest.json"]), (present, sorted(listed))
    for name, entry in listed.items():
        data = (folder / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    siblings = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]
    assert not siblings, siblings
    return manifest


def levels_run(manifest: dict) -> list[int]:
    return [lv["level"] for lv in manifest["levels"]]


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.png"
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((40, 40)).save(path)
    return path


# A ``cli.py grid`` that stops for a minute after the first file of its set is written (and
# says so), so the test can kill it exactly there.
SLOW_GRID = textwrap.dedent(
    """
    import sys, time
    import cli
    from pipelines import report

    real = report.run_files

    def slow(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 1:  # the first file is written
                print("WRITING", flush=True)
                time.sleep(60)
            yield item

    report.run_files = slow
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def grid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "grid", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_a_run_killed_mid_write_leaves_the_earlier_set_and_a_rerun_replaces_it(tmp_path, picture):
    out = tmp_path / "out"
    first = grid(str(picture), "-o", str(out), "--width", "80", "--levels", "8,9", "--seed", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert levels_run(assert_one_set(out)) == [8, 9]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    args = [str(picture), "-o", str(out), "--width", "96", "--levels", "8", "--seed", "2"]
    killed = subprocess.Popen(
        [sys.executable, "-c", SLOW_GRID, "grid", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "WRITING"
        staging = [p for p in tmp_path.iterdir() if p.name.startswith(".out.new-")]
        assert len(staging) == 1 and any(staging[0].iterdir())  # the new set was being written
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
    # the folder still holds the earlier run's complete set, untouched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    rerun = grid(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = assert_one_set(out)  # no level_9.png of the earlier run, no leftover of the killed one
    assert levels_run(manifest) == [8] and manifest["seed"] == 2
    assert Image.open(out / "level_8.png").size == (96, 96)


def test_a_failure_between_two_files_keeps_the_earlier_set(tiny_engine, tmp_path, monkeypatch):
    """An injected full disk after the first file: the earlier complete set stays, no
    temporary stays; the next save writes its own set."""
    image = load_image(Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((32, 32)))
    older = tiny_engine.run(image, UpscaleRequest(width=64, levels=(8, 9), seed=1))
    newer = tiny_engine.run(image, UpscaleRequest(width=64, levels=(8,), seed=2))
    out = tmp_path / "out"
    report.save_run(older, out, grid_cell_width=64)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = report.run_files

    def full_after_one(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield item

    monkeypatch.setattr(report, "run_files", full_after_one)
    with pytest.raises(LabError, match="No space left on device"):
        report.save_run(newer, out, grid_cell_width=64)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.setattr(report, "run_files", real)
    report.save_run(newer, out, grid_cell_width=64)
    assert levels_run(assert_one_set(out)) == [8]


def test_leftovers_of_killed_runs_are_cleaned_and_a_set_moved_aside_is_put_back(tmp_path):
    """What killed runs leave beside a folder: unfinished sets (removed) and, from a run
    killed between its two renames, the earlier set moved aside with no folder in its place
    (put back)."""
    out = tmp_path / "out"
    unfinished = tmp_path / ".out.new-abc"
    unfinished.mkdir()
    (unfinished / "level_8.png").write_bytes(b"half")
    aside = tmp_path / ".out.old-def"
    aside.mkdir()
    (aside / "manifest.json").write_text("{}")
    report._tidy(out.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "manifest.json").read_text() == "{}"
    stale = tmp_path / ".out.old-ghi"  # the folder is there: a moved-aside set is just stale
    stale.mkdir()
    report._tidy(out.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_old_hidden_temporaries_inside_the_folder_go_with_the_old_set(tiny_engine, tmp_path):
    image = load_image(Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((32, 32)))
    result = tiny_engine.run(image, UpscaleRequest(width=64, levels=(8,), seed=3))
    out = tmp_path / "out"
    out.mkdir()
    (out / "level_9.png").write_bytes(b"an earlier run's")
    (out / ".level_7.png.x1y2.tmp").write_bytes(b"a killed per-file write")
    report.save_run(result, out, grid_cell_width=64)
    assert levels_run(assert_one_set(out)) == [8]


def test_a_folder_holding_other_files_is_never_replaced(tiny_engine, tmp_path):
    image = load_image(Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((32, 32)))
    result = tiny_engine.run(image, UpscaleRequest(width=64, levels=(8,), seed=3))
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(LabError, match="holiday.jpg"):
        report.save_run(result, mine, grid_cell_width=64)
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_saves_at_once_into_one_folder_leave_one_whole_set(tiny_engine, tmp_path):
    image = load_image(Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((32, 32)))
    results = [tiny_engine.run(image, UpscaleRequest(width=64, levels=levels, seed=4)) for levels in ((8,), (8, 9))]
    out = tmp_path / "out"
    errors: list[BaseException] = []

    def save(result):
        try:
            for _ in range(5):
                report.save_run(result, out, grid_cell_width=64)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert levels_run(assert_one_set(out)) in ([8], [8, 9])
