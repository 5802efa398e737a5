"""``cli.py batch``: a nested folder with a corrupt file, an interrupted batch resumed, the summary
CSV, output formats, a diffusion level through the tiny models, and two processes under
torchrun splitting the work."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import presets
from pipelines.batch import SUMMARY_CSV, BatchJob, list_inputs, plan_items, request_for, run_batch
from pipelines.engine import EngineConfig
from pipelines.output import read_manifest
from pipelines.request import RequestFields, parse_custom_text

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE
BICUBIC = TABLE.baseline_level  # no diffusion, milliseconds
CLEAN = TABLE.level_for("bicubic_clean", 0.0).level  # no diffusion
DIFFUSED = [lv.level for lv in TABLE.column("bicubic") if lv.generative][-1]  # the mildest diffusion over bicubic
SIZE = (40, 32)  # the inputs
WIDTH = 80  # the outputs: ×2
GOOD = ["a.png", "sub/b.jpg", "sub/b.png", "sub/deeper/c.webp"]  # sorted as the batch sorts
BAD = "sub/bad.png"


def photo_folder(tmp_path: Path, *, corrupt: bool = True) -> Path:
    """``in/`` holding :data:`GOOD` (two sharing a stem), a corrupt :data:`BAD`, a text file
    and a hidden folder's image (neither is an input)."""
    src = tmp_path / "in"
    photo = Image.open(ROOT / "examples" / "astronaut_portrait.png").convert("RGB").resize(SIZE)
    for name in GOOD:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        photo.save(src / name)
    if corrupt:
        (src / BAD).write_bytes(b"\x89PNG\r\n\x1a\n but then not an image at all")
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden").mkdir()
    photo.save(src / ".hidden" / "x.png")
    return src


def run_cli(*args: str, launcher: list[str] | None = None, env: dict[str, str] | None = None):
    cmd = [*(launcher or [sys.executable]), str(ROOT / "cli.py"), "batch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, **(env or {})})


def outputs(out: Path) -> dict[str, int]:
    """The files a batch wrote under ``out`` (relative path → mtime), its own state aside."""
    return {
        p.relative_to(out).as_posix(): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and p.name != SUMMARY_CSV and ".batch" not in p.relative_to(out).parts
    }


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / SUMMARY_CSV).open(newline="") as f:
        return list(csv.DictReader(f))


def ran(stderr: str) -> list[str]:
    """The inputs the plain progress lines (stderr not a terminal) say were run."""
    return re.findall(r"^batch(?: \(rank \d/\d\))?: \d+/\d+ (\S+) (?:ok|failed)", stderr, re.M)


def levels_of(name: str, levels: list[int], ext: str = ".png") -> list[str]:
    """Where the batch writes ``name``'s levels: stem (full name when two inputs share it),
    ``_LN`` with several levels."""
    stem = name if name.startswith("sub/b.") else name.rsplit(".", 1)[0]
    return [f"{stem}{f'_L{n}' if len(levels) > 1 else ''}{ext}" for n in levels]


def test_inputs_and_output_names(tmp_path):
    """Subfolders walked, images only, hidden files and an output folder inside the input left
    out; two inputs sharing a stem keep their suffix; several levels get _LN."""
    src = photo_folder(tmp_path)
    (src / "results").mkdir()
    Image.new("RGB", (8, 8)).save(src / "results" / "earlier_output.png")
    found = [p.as_posix() for p in list_inputs(src, src / "results")]
    assert found == sorted([*GOOD, BAD])
    job = BatchJob(src, src / "results", RequestFields(levels=(BICUBIC, CLEAN)).build())
    items = plan_items([Path(p) for p in found], job)
    assert {it.name: [o.as_posix() for o in it.outputs.values()] for it in items} == {
        name: levels_of(name, [BICUBIC, CLEAN]) for name in found
    }
    jpeg = BatchJob(src, tmp_path / "o", RequestFields(upscale_strength=BICUBIC, output_format="jpeg").build())
    assert [o.as_posix() for it in plan_items([Path("sub/deeper/c.webp")], jpeg) for o in it.outputs.values()] == [
        "sub/deeper/c.jpg"
    ]


def test_a_partly_done_image_runs_only_its_missing_levels():
    """The request narrowed to the levels whose files are missing, the custom level (a file of
    its own beside the table's levels) included or dropped."""
    custom = presets.custom_number(TABLE)
    recipe = parse_custom_text(f"start_from={BICUBIC}")
    job = BatchJob(Path("in"), Path("out"), RequestFields(levels=(BICUBIC, CLEAN), custom=recipe).build())
    assert job.levels == (BICUBIC, CLEAN, custom)
    assert request_for(job, job.levels) is job.request
    only_custom = request_for(job, [custom])
    assert only_custom.effective_levels == () and only_custom.custom == recipe
    no_custom = request_for(job, [CLEAN])
    assert no_custom.effective_levels == (CLEAN,) and no_custom.custom is None


def test_a_corrupt_file_is_reported_and_the_others_are_done(tmp_path):
    src, out = photo_folder(tmp_path), tmp_path / "out"
    levels = [BICUBIC, CLEAN]
    proc = run_cli(
        str(src), "-o", str(out), "--levels", ",".join(map(str, levels)), "--width", str(WIDTH), "--seed", "3"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"error: {BAD}: the file is not a recognised image" in proc.stderr
    assert ran(proc.stderr) == sorted([*GOOD, BAD])  # one plain line per image: stderr is a pipe
    assert "5 images: 4 ok, 0 skipped, 1 failed" in proc.stdout
    expected = sorted(f for name in GOOD for f in levels_of(name, levels))
    assert sorted(outputs(out)) == expected
    assert all(Image.open(out / f).size == (WIDTH, WIDTH * SIZE[1] // SIZE[0]) for f in expected)

    rows = read_rows(out)
    assert [(r["input"], r["level"]) for r in rows] == [(n, str(lv)) for n in sorted([*GOOD, BAD]) for lv in levels]
    for r in rows:
        if r["input"] == BAD:
            assert r["status"] == "failed" and "not a recognised image" in r["error"] and r["output"] == ""
            continue
        assert r["status"] == "ok" and r["error"] == "" and r["seed"] == "3" and float(r["seconds"]) > 0
        assert r["output"] == levels_of(r["input"], levels)[levels.index(int(r["level"]))]
        assert float(r["lr_consistency"]) > 20  # the engine's scores, per level
        if int(r["level"]) == BICUBIC:
            assert r["psnr_vs_bicubic"] == "inf"  # the baseline against itself


def test_an_interrupted_batch_resumes_without_redoing_what_is_done(tmp_path):
    """Stopped after two images (a KeyboardInterrupt from the per-image hook), the folder holds
    those two images' files, no temporary and no summary; one of them then loses a level's file.
    The resumed run (the CLI) redoes nothing that is there and finishes; the CSV lists every
    input, what was there ``skipped`` with the scores it was made with."""
    src, out = photo_folder(tmp_path, corrupt=False), tmp_path / "out"
    levels = [BICUBIC, CLEAN]
    job = BatchJob(src, out, RequestFields(width=str(WIDTH), levels=tuple(levels), seed=3).build())
    seen: list[str] = []

    def stop_after_two(item, rows):
        seen.append(item.name)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(job, EngineConfig(device="cpu"), on_item=stop_after_two, bars=False)
    first = outputs(out)
    assert sorted(first) == sorted(f for name in GOOD[:2] for f in levels_of(name, levels))
    assert not list(out.rglob("*.tmp")) and not (out / SUMMARY_CSV).exists()
    lost = levels_of(GOOD[0], levels)[1]
    (out / lost).unlink()
    del first[lost]

    proc = run_cli(
        str(src), "-o", str(out), "--levels", ",".join(map(str, levels)), "--width", str(WIDTH), "--seed", "3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming: 1 of 4 images already done" in proc.stderr
    assert ran(proc.stderr) == [GOOD[0], *GOOD[2:]]  # the second image: nothing to do
    now = outputs(out)
    assert sorted(now) == sorted(f for name in GOOD for f in levels_of(name, levels))
    assert all(now[f] == t for f, t in first.items()), "a finished file was written again"
    status = {(r["input"], int(r["level"])): r for r in read_rows(out)}
    assert len(status) == len(GOOD) * len(levels)
    assert [status[GOOD[0], n]["status"] for n in levels] == ["skipped", "ok"]
    assert [status[GOOD[1], n]["status"] for n in levels] == ["skipped", "skipped"]
    assert all(status[name, n]["status"] == "ok" for name in GOOD[2:] for n in levels)
    skipped = status[GOOD[1], BICUBIC]
    assert skipped["seed"] == "3" and float(skipped["lr_consistency"]) > 20 and skipped["psnr_vs_bicubic"] == "inf"
    assert "4 images: 3 ok, 1 skipped, 0 failed" in proc.stdout


def test_a_jpeg_batch_writes_jpegs_and_refuses_another_request_on_resume(tmp_path):
    src, out = photo_folder(tmp_path, corrupt=False), tmp_path / "out"
    flags = ["--strength", str(BICUBIC), "--format", "jpeg", "--quality", "80", "--width", str(WIDTH)]
    proc = run_cli(str(src), "-o", str(out), *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = sorted(f for name in GOOD for f in levels_of(name, [BICUBIC], ".jpg"))
    assert sorted(outputs(out)) == expected
    for f in expected:
        with Image.open(out / f) as img:
            assert img.format == "JPEG" and img.width == WIDTH
            assert read_manifest(img)["output_level"] == BICUBIC  # provenance, as `upscale` embeds it
    assert sorted(r["output"] for r in read_rows(out)) == expected
    before = outputs(out)
    other = run_cli(str(src), "-o", str(out), *flags[:-3], "70", "--width", str(WIDTH))
    assert other.returncode == 2 and "differs in: quality" in other.stderr and "Traceback" not in other.stderr
    again = run_cli(str(src), "-o", str(out), *flags)
    assert again.returncode == 0 and "4 images: 0 ok, 4 skipped, 0 failed" in again.stdout
    assert outputs(out) == before


def test_a_diffusion_level_through_the_tiny_models(tmp_path, tiny_models):
    """Without the diffusion weights the diffusion level fails (the fetch command in its row),
    the level without diffusion is written, exit 1; resumed with the tiny models, only the
    diffusion level runs, and its image is not the bicubic one."""
    src, out = photo_folder(tmp_path, corrupt=False), tmp_path / "out"
    for extra in GOOD[1:]:
        (src / extra).unlink()  # one image is enough
    flags = ["--levels", f"{DIFFUSED},{BICUBIC}", "--width", "48", "--seed", "1"]
    proc = run_cli(str(src), "-o", str(out), *flags)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {int(r["level"]): r for r in read_rows(out)}
    assert rows[DIFFUSED]["status"] == "failed" and "python cli.py download" in rows[DIFFUSED]["error"]
    assert rows[BICUBIC]["status"] == "ok" and sorted(outputs(out)) == [f"a_L{BICUBIC}.png"]
    written = outputs(out)
    tiny = ["--sd15", tiny_models.sd15, "--controlnet", tiny_models.controlnet, "--lora", tiny_models.lora]
    done = run_cli(str(src), "-o", str(out), *flags, *tiny)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {int(r["level"]): r for r in read_rows(out)}
    assert (rows[DIFFUSED]["status"], rows[BICUBIC]["status"]) == ("ok", "skipped")
    assert outputs(out)[f"a_L{BICUBIC}.png"] == written[f"a_L{BICUBIC}.png"]  # not run again
    diffused, plain = (Image.open(out / f"a_L{n}.png") for n in (DIFFUSED, BICUBIC))
    assert diffused.size == plain.size and diffused.tobytes() != plain.tobytes()
    assert 0 < float(rows[DIFFUSED]["psnr_vs_bicubic"]) < 60


def test_two_processes_under_torchrun_split_the_work(tmp_path):
    from conftest import free_port

    src, out = photo_folder(tmp_path), tmp_path / "out"
    inputs = sorted([*GOOD, BAD])
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    flags = ["--levels", str(BICUBIC), "--format", "webp", "--width", str(WIDTH)]  # one level: one file each
    proc = run_cli(str(src), "-o", str(out), *flags, launcher=torchrun, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and f"error: {BAD}:" in proc.stderr  # the main process exits 1: one input failed
    shares = [re.findall(rf"^batch \(rank {rank}/2\): \d+/\d+ (\S+)", proc.stderr, re.M) for rank in range(2)]
    assert shares == [inputs[:3], inputs[3:]], proc.stderr[-3000:]  # disjoint halves of the sorted list
    assert "5 images: 4 ok, 0 skipped, 1 failed" in proc.stdout
    expected = sorted(f for name in GOOD for f in levels_of(name, [BICUBIC], ".webp"))
    assert sorted(outputs(out)) == expected
    assert all(Image.open(out / f).format == "WEBP" for f in expected)
    rows = read_rows(out)
    assert [r["input"] for r in rows] == inputs and [r["status"] for r in rows] == [
        "failed" if n == BAD else "ok" for n in inputs
    ]
    assert not list((out / ".batch").glob("part-*"))  # merged and removed
