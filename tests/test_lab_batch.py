"""The lab's Batch tab: several uploads → one zip of results in the chosen format and the
summary CSV; a bad file is a row, not the end; the form's fields and the tab's checks."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pipelines.errors import LabError, RequestError

ROOT = Path(__file__).resolve().parents[1]


def form(width: str = "96"):
    from lab.form import UIInput

    return UIInput.of(None, "", width, "", "canvas", "", "", "", 7, False)


def uploads(tmp_path: Path) -> list[str]:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((48, 48)).save(a / "portrait.png")
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((40, 48)).save(b / "portrait.png")  # same name
    (a / "notes.png").write_text("not an image")
    return [str(a / "portrait.png"), str(b / "portrait.png"), str(a / "notes.png")]


def test_several_uploads_give_one_zip_with_every_result_and_the_summary(tiny_engine, tmp_path):
    from conftest import serving

    from lab.batch_tab import run_files

    seen: list[tuple[int, int]] = []
    with serving(tiny_engine):
        archive, summary = run_files(
            (uploads(tmp_path), [8, 9], "jpeg", 80, "", False),
            form(),
            None,
            lambda done, **kw: seen.append(done),
            threading.Event(),
        )
    assert seen[-1] == (3, 3)  # progress per image
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        rows = list(csv.DictReader(io.StringIO(zf.read("batch.csv").decode())))
        assert names == [
            "batch.csv",
            "portrait-2_L8.jpg",
            "portrait-2_L9.jpg",
            "portrait_L8.jpg",
            "portrait_L9.jpg",
        ], names
        with Image.open(io.BytesIO(zf.read("portrait_L8.jpg"))) as im:
            assert im.format == "JPEG" and im.size == (96, 96)
        with Image.open(io.BytesIO(zf.read("portrait-2_L9.jpg"))) as im:
            assert im.size == (96, 115)  # 40×48 at width 96
    status = {(r["input"], r["level"]): r["status"] for r in rows}
    assert status == {
        ("notes.png", "8"): "failed",
        ("notes.png", "9"): "failed",
        ("portrait-2.png", "8"): "ok",
        ("portrait-2.png", "9"): "ok",
        ("portrait.png", "8"): "ok",
        ("portrait.png", "9"): "ok",
    }
    assert "not a recognised image" in next(r["error"] for r in rows if r["input"] == "notes.png")
    assert all(r["psnr_vs_bicubic"] and r["lr_consistency"] for r in rows if r["status"] == "ok" and r["level"] == "9")
    assert summary.inputs_with("failed") == ["notes.png"]


@pytest.mark.parametrize(
    ("tab", "words"),
    [
        (([], [8], "png", 90, "", False), "images: add one or more"),
        (("files", [], "png", 90, "", False), "levels: check at least one"),
        (("files", [8], "jpeg", 90, "12", False), "max_file_size"),
    ],
)
def test_the_tabs_mistakes_name_their_field(tiny_engine, tmp_path, tab, words):
    from conftest import serving

    from lab.batch_tab import run_files

    files = uploads(tmp_path)[:1] if tab[0] == "files" else tab[0]
    with serving(tiny_engine), pytest.raises((LabError, RequestError), match=words):
        run_files((files, *tab[1:]), form(), None, lambda *a, **k: None, threading.Event())


def test_save_as_encodes_the_last_single_result_with_its_metadata_or_without(tiny_engine, tmp_path):
    """The Single level tab's Save as: a JPEG at the quality asked, carrying the source's EXIF
    (GPS included) and DPI scaled with the pixels; with Strip metadata, none of it."""
    from conftest import serving

    from lab.form import UIInput
    from lab.save_as import save_last

    source = tmp_path / "gps.jpg"
    exif = Image.Exif()
    exif[0x010F] = "LabCam"  # Make
    exif[0x8825] = {2: (48.0, 51.0, 24.0), 1: "N"}  # GPS latitude
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((48, 48)).save(
        source, "JPEG", quality=95, exif=exif, dpi=(72, 72)
    )
    form = UIInput.of(str(source), "", "96", "", "canvas", "", "", "", 3, False)
    fields = form.fields(upscale_strength=8, generative_upscale=True)
    with serving(tiny_engine):
        result = form.run(fields, None, None)
        kept = save_last((result, fields, form), "jpeg", 70, "", False)
        bare = save_last((result, fields, form), "webp", 80, "", True)
        with pytest.raises(Exception, match="max_file_size"):
            save_last((result, fields, form), "jpeg", 90, "1100", False)
    with Image.open(kept) as im:
        assert im.format == "JPEG" and im.size == (96, 96)
        assert im.getexif()[0x010F] == "LabCam" and im.getexif().get_ifd(0x8825)
        assert round(im.info["dpi"][0]) == 144  # ×2: the print size stays
    with Image.open(bare) as im:
        exif = im.getexif()  # WebP keeps DPI in its EXIF (stripping keeps DPI): nothing else there
        assert im.format == "WEBP" and 0x010F not in exif and not exif.get_ifd(0x8825) and "icc_profile" not in im.info
