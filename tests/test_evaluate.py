"""The evaluation tool: metrics conventions, a synthetic dataset end to end, resume, sharding."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import presets
from evaluation.aggregate import aggregate, recommendation_check
from evaluation.dataset import Degradation, image_seed
from evaluation.html_report import recommendation_html
from evaluation.markdown import recommendation_markdown
from evaluation.outputs import write_outputs
from evaluation.per_image import thumbnail
from evaluation.scores import SUMMARY_COLUMNS
from pipelines.base import BASE_SPECS
from pipelines.metrics import sr_scores, to_y_uint8

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE  # the levels the evaluation runs
GENERATIVE = [lv.level for lv in TABLE.levels if lv.generative]
FIRST, LAST = TABLE.min_level, TABLE.max_level
NOT_RUN, LR_BEST = GENERATIVE[1], GENERATIVE[3]  # the synthetic records' level not run, best LR-consistency
UNTILED = {lv.level for lv in TABLE.levels if not lv.generative and not BASE_SPECS[lv.base_path].tiled_by_x4}
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
def tiny_flags(tiny_models):
    """The tiny diffusion parts through the product's own model flags (folders in the real
    layouts: the evaluation loads them as it would a downloaded model)."""
    return ["--sd15", tiny_models.sd15, "--controlnet", tiny_models.controlnet, "--lora", tiny_models.lora]


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
    deg = Degradation(blur=1.0, noise=5.0, jpeg=30)
    a, b = deg.apply(lr, 7), deg.apply(lr, 7)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(deg.apply(lr, 8)))
    assert image_seed(0, "x") == image_seed(0, "x") != image_seed(1, "x")


def test_end_to_end_every_output_and_resume(dataset, tiny_flags, tmp_path):
    out = tmp_path / "run"
    proc = run_eval(str(dataset), "-o", str(out), *tiny_flags, "--jpeg", "40")
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["levels"][str(FIRST)]["images"] == 4 and summary["levels"][str(TABLE.baseline_level)]["images"] == 4
    assert len(summary["monotonicity"]) == len(TABLE.base_paths) * math.comb(len(TABLE.effects), 2)
    assert "Monotonicity" in proc.stdout
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 * (len(TABLE.levels) + 2)  # each level, the HR and the LR

    def scores(path):  # every column but the time
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    first = scores(out / "per_image.csv")
    # interrupt: drop two images' results, run again: only those two are recomputed
    victims = sorted((out / "per_image").glob("*.json"))[:2]
    kept = {p: p.stat().st_mtime_ns for p in sorted((out / "per_image").glob("*.json"))[2:]}
    for v in victims:
        v.unlink()
    proc = run_eval(str(dataset), "-o", str(out), *tiny_flags, "--jpeg", "40")
    assert "resuming: 2 of 4 images already scored" in proc.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert scores(out / "per_image.csv") == first  # same seeds → same scores


def test_levels_without_weights_are_not_run(dataset, tmp_path):
    out = tmp_path / "missing"
    generative, plain = str(GENERATIVE[0]), str(TABLE.baseline_level)
    run_eval(str(dataset), "-o", str(out), "--levels", f"{generative},{plain}")
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert {r.split(",")[2] for r in rows if r.split(",")[1] == generative} == {"not run"}
    assert {r.split(",")[2] for r in rows if r.split(",")[1] == plain} == {"ok"}
    assert "not run" in (out / "summary.md").read_text()


def test_two_processes_give_the_same_table(dataset, tiny_flags, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    column = [str(lv.level) for lv in TABLE.column("bicubic")]  # strong, medium, off
    run_eval(str(dataset), "-o", str(one), *tiny_flags, "--levels", ",".join(column), "--blur", "0.8")
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
        *tiny_flags,
        "--levels",
        ",".join(column),
        "--blur",
        "0.8",
        launcher=torchrun,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert "rank 0/2: 2 images" in proc.stderr and "rank 1/2: 2 images" in proc.stderr
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((two / "summary.json").read_text())
    for n in column:
        for k in ("psnr_y", "ssim_y", "lr_consistency"):
            assert a["levels"][n][k]["mean"] == pytest.approx(b["levels"][n][k]["mean"], abs=0.02), (n, k)
    shutil.rmtree(two)


# --------------------------------------------------------------------------- the HTML report


class Node:
    """An element of a parsed page: ``tag``, ``attrs`` and children (nodes and text)."""

    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str, cls: str | None = None) -> list["Node"]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and (cls is None or cls in c.classes):
                    found.append(c)
                found += c.find_all(tag, cls)
        return found


def parse_html(page: str) -> Node:
    from html.parser import HTMLParser

    void = {"meta", "img", "br", "link", "input", "hr", "col", "source"}
    root = Node("document", {})

    class Builder(HTMLParser):
        stack = [root]

        def handle_starttag(self, tag, attrs):
            node = Node(tag, dict(attrs))
            self.stack[-1].children.append(node)
            if tag not in void:
                self.stack.append(node)

        def handle_endtag(self, tag):
            while len(self.stack) > 1 and self.stack.pop().tag != tag:
                pass

        def handle_data(self, data):
            self.stack[-1].children.append(data)

    Builder().feed(page)
    return root


def synthetic_records() -> list[dict]:
    """Two images' results with known winners: PSNR-Y best at the last level, SSIM-Y and time
    at the first, LR-consistency at LR_BEST; NOT_RUN not run; the baseline against itself (inf);
    no seam score for the untiled levels."""
    thumb = thumbnail(Image.new("RGB", (8, 6), (90, 120, 200)), width=8)
    records = []
    for i, name in enumerate(["CSun_Hays80__a<b>&c", "CSun_Hays80__z"]):
        levels = {}
        for n in presets.LEVEL_NUMBERS:
            if n == NOT_RUN:
                levels[str(n)] = {"status": "not run", "reason": "missing weights: sd15"}
                continue
            levels[str(n)] = {
                "status": "ok",
                "psnr_y": 20.0 + n + 0.5 * i,
                "ssim_y": 0.9 - 0.01 * n,
                "psnr_rgb": 18.0 + 0.1 * n,
                "ssim_rgb": 0.8,  # every level ties: nothing to mark
                "lr_consistency": 35.0 if n == LR_BEST else 30.0 + 0.1 * i,
                "psnr_vs_bicubic": "inf" if n == presets.BASELINE_LEVEL else 20.0 + n,
                "ssim_vs_bicubic": 1.0 if n == presets.BASELINE_LEVEL else 0.5 + 0.01 * n,
                "niqe": 3.0 + 0.2 * n,
                "colour_drift_mean": 0.1 * n,
                "colour_drift_p95": 0.3 * n,
                "seconds": 1.0 + n,
            }
            if n not in UNTILED:  # untiled levels get no seam score
                levels[str(n)]["seam_score"] = 1.0 + 0.01 * n
        records.append(
            {
                "image": name,
                "path": f"CSun_Hays80/{name}.png",
                "size": [8, 6],
                "seed": i,
                "levels": levels,
                "thumbs": {k: thumb for k, v in levels.items() if v["status"] == "ok"},
                "gt_thumb": thumb,
                "lr_thumb": thumb,
            }
        )
    return records


def test_html_report_renders_a_real_table(tmp_path):
    """Issue 15: the report showed Markdown as raw text (``### title``, a monospace pipe table)."""
    import argparse
    import re

    args = argparse.Namespace(
        levels=list(presets.LEVEL_NUMBERS), folders=["data/CSun_Hays80"], scale=4, fidelity_floor=25.0
    )
    write_outputs(tmp_path, synthetic_records(), args, Degradation(jpeg=30))
    page = (tmp_path / "report.html").read_text()
    doc = parse_html(page)
    title = "CSun_Hays80 ×4 (degradation: JPEG q30)"
    assert [h.text() for h in doc.find_all("h1")] == [title]
    assert "###" not in page and "|---" not in page and not doc.find_all("pre")

    (table,) = doc.find_all("table", "scores")
    heads = table.find_all("thead")[0].find_all("th")
    columns = SUMMARY_COLUMNS
    assert [h.text() for h in heads[:3]] == ["Level", "Recipe", "Images"] and len(heads) == 3 + len(columns)
    for head, column in zip(heads[3:], columns, strict=True):
        assert head.text().startswith(column.name) and column.unit in head.text()  # "PSNR-Y↑dB", "Time↓s / image"
    assert "dB" in heads[3].text() and "s / image" in heads[-1].text()

    rows = table.find_all("tbody")[0].find_all("tr")
    assert [r.find_all("th")[0].text() for r in rows] == [str(n) for n in presets.LEVEL_NUMBERS]
    by_level = {int(r.find_all("th")[0].text()): r.find_all("td") for r in rows}
    assert "not run on 2 images: missing weights: sd15" in by_level[NOT_RUN][-1].text()
    for level, cells in by_level.items():
        if level == NOT_RUN:
            continue
        for cell, column in zip(cells[2:], columns, strict=True):  # after recipe and images
            assert "num" in cell.classes  # right-aligned (see .num in the style sheet)
            mean = cell.find_all("span", "mean")[0].text()
            if (column.key == "seam_score" and level in UNTILED) or column.limit is not None:
                assert mean == "—"  # not scored (untiled; the guards: no face or text): shown as such, not as 0 or NaN
                continue
            assert mean == "inf" or re.fullmatch(rf"\d+\.\d{{{column.decimals}}}", mean), (level, column.key, mean)
    assert re.search(r"\.num\{[^}]*text-align:right", page)

    def best(key: str) -> list[int]:
        i = [c.key for c in columns].index(key)
        return [lv for lv, cells in by_level.items() if lv != NOT_RUN and "best" in cells[2 + i].classes]

    assert best("psnr_y") == [LAST]  # higher is better
    assert best("ssim_y") == [FIRST]
    assert best("lr_consistency") == [LR_BEST]
    assert best("seconds") == [FIRST]  # lower is better
    assert best("psnr_vs_bicubic") == []  # a distance from the baseline: no direction
    assert best("ssim_rgb") == []  # all tied
    assert by_level[LAST][2].find_all("strong")  # marked in bold, not only by colour

    names = [h.text() for h in doc.find_all("h3")]
    assert names[0].startswith("CSun_Hays80__a<b>&c")  # escaped: text, not a <b> element
    assert not doc.find_all("script") and not doc.find_all("link")
    images = doc.find_all("img")
    assert len(images) >= 2 * (len(TABLE.levels) - 1 + 2) and all(  # the levels that ran, the HR and the LR
        i.attrs["src"].startswith("data:image/png;base64,") for i in images
    )
    markdown = (tmp_path / "summary.md").read_text()  # the Markdown file keeps its Markdown, bold winners
    assert markdown.startswith(f"### {title}") and f"**{20.25 + LAST:.2f} ± 0.25**" in markdown  # the last level


def test_plots_against_level_are_padded():
    """Issue 15: the last level's point and error bar were cut at the right edge (the ticks
    of the table's levels set the axis limits when only the last levels ran)."""
    from types import SimpleNamespace

    from figures import LEVEL_AXIS_PAD, scores_figure, scores_vs_level_figure

    last = TABLE.numbers[-3:]
    summary = aggregate(synthetic_records(), list(last))
    wanted = (presets.MIN_LEVEL - LEVEL_AXIS_PAD, presets.MAX_LEVEL + LEVEL_AXIS_PAD)
    assert LEVEL_AXIS_PAD >= 0.3
    for ax in scores_vs_level_figure(summary).axes:
        assert ax.get_xlim() == pytest.approx(wanted)
    levels = [
        SimpleNamespace(
            level=n,
            status="ok",
            metrics={"psnr_vs_bicubic": 30.0 + n, "ssim_vs_bicubic": 0.9, "lr_consistency": 35.0},
        )
        for n in last
    ]
    for ax in scores_figure(SimpleNamespace(levels=levels, table=presets.TABLE)).axes:
        assert ax.get_xlim() == pytest.approx(wanted)


def test_recommendation_check_follows_the_floor():
    """Synthetic scores: NIQE rises with the level (the first most natural), LR-consistency is
    30 dB everywhere but 35 at LR_BEST: floor 25 picks the first level on both images, floor 32
    LR_BEST, floor 40 none; the recommended row equals the picked level's scores."""
    records = synthetic_records()
    low = recommendation_check(records, 25.0)
    assert low["picks"] == {str(FIRST): 2} and low["images"] == 2
    assert low["recommended"]["niqe"]["mean"] == pytest.approx(3.0 + 0.2 * FIRST)
    assert low["recommended"] == low["fixed"][str(FIRST)]
    assert str(NOT_RUN) not in low["fixed"]  # it did not run on these images: no like-for-like comparison
    high = recommendation_check(records, 32.0)
    assert high["picks"] == {str(LR_BEST): 2}
    assert high["recommended"]["lr_consistency"]["mean"] == pytest.approx(35.0)
    none = recommendation_check(records, 40.0)
    assert none["picks"] == {"none": 2} and none["images"] == 0
    md = recommendation_markdown(high)
    assert f"level {LR_BEST} × 2" in md and "| recommended | " in md and f"| {LR_BEST} (always) | " in md
    assert "no image had a recommendation" in recommendation_markdown(none)
    page = recommendation_html(high)
    assert page.count("<tr>") == 1 + 1 + len(high["fixed"]) and f"level {LR_BEST} × 2" in page
