"""The face and text guards (pipelines/guards.py) on images the project can ship: two people
(scikit-image's astronaut, matplotlib's Grace Hopper), text rendered with Pillow, the real
Real-ESRGAN x4plus from its wheel; and how the guards reach the registry and the recommendation."""

import importlib.metadata
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data

import presets
from pipelines import guards
from pipelines.base import NeuralSettings, neural_upscale
from pipelines.metrics import GUARD_METRICS, LEVEL_METRICS, ScoreInput, caption_scores, get_metric, guard_flags, score
from pipelines.recommend import recommend
from testing import guard_images as gi

LIMIT = guards.FACE_DISTANCE_LIMIT
GUARD_KEYS = {"face_distance", "faces_added", "text_cer"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    guards._cache.clear()  # every test detects on its baselines itself
    yield
    guards._cache.clear()


@pytest.fixture(scope="module")
def astronaut():
    return gi.astronaut()


@pytest.fixture(scope="module")
def collins(astronaut):
    (face,) = guards.find_faces(astronaut)
    return face


@pytest.fixture(scope="module")
def hopper():
    image = gi.hopper()
    (face,) = guards.find_faces(image)
    return image, face


def test_models_load_from_the_installed_packages():
    """dlib's weights come from the face-recognition-models sdist, RapidOCR's from its wheel:
    files on disk, nothing fetched."""
    dist = Path(str(importlib.metadata.distribution(guards.FACE_MODELS).locate_file("")))
    path = guards._face_model_file("dlib_face_recognition_resnet_model_v1.dat")
    assert path.is_relative_to(dist) and path.stat().st_size > 20_000_000
    engine = guards.ocr_engine()
    assert engine.text_rec is not None and guards.face_models().encoder is not None


def test_same_face_degraded_stays_below_the_limit(astronaut, collins):
    for how, level in {
        "jpeg q30": gi.jpeg(astronaut, 30),
        "blur σ2": gi.blur(astronaut, 2.0),
        "bicubic ↓4 ×4": gi.down_up(astronaut, 4),
    }.items():
        assert guards.face_distance(level, [collins]) < LIMIT - 0.1, how
        assert guards.faces_added(level, [collins]) == 0, how


def test_same_face_through_real_esrgan_x4_stays_below_the_limit(astronaut):
    """The lab's level 7 against its level 8 on a quarter-size input of the astronaut's head:
    Real-ESRGAN x4plus (real weights) against bicubic."""
    from pipelines.realesrgan import load_upscaler

    head = astronaut.crop((92, 0, 348, 256))
    low_res = head.resize((64, 64), Image.Resampling.BICUBIC)
    baseline = low_res.resize(head.size, Image.Resampling.BICUBIC)
    settings = NeuralSettings(torch.device("cpu"), torch.float32, presets.ESRGAN_TILE, presets.ESRGAN_TILE_PAD)
    with torch.inference_mode():
        level = neural_upscale(load_upscaler(), low_res, head.size, settings)
    faces = guards.find_faces(baseline)
    assert len(faces) == 1
    assert guards.face_distance(level, faces) < LIMIT


def test_another_person_is_beyond_the_limit(astronaut, collins, hopper):
    image, face = hopper
    assert guards.face_distance(image, [face]) == pytest.approx(0.0, abs=1e-9)
    assert float(((face.descriptor - collins.descriptor) ** 2).sum() ** 0.5) > LIMIT
    swapped = gi.paste(astronaut, image, collins.box, face.box)
    assert guards.face_distance(swapped, [collins]) > LIMIT


def test_a_face_pasted_into_a_level_is_flagged(astronaut, collins, hopper):
    """Through the registry: a level whose face became Grace Hopper's is "face changed"; one
    with her face pasted where the baseline had none is "face added"."""
    image, face = hopper
    changed = gi.paste(astronaut, image, collins.box, face.box)
    added = gi.paste(astronaut, image, (360, 290, 480, 410), face.box)  # the astronaut's lap: no face there
    same = score(ScoreInput(astronaut, baseline=astronaut), LEVEL_METRICS)
    assert same["face_distance"] == pytest.approx(0.0, abs=1e-9) and same["faces_added"] == 0
    assert guard_flags(same) == []

    scores = score(ScoreInput(changed, baseline=astronaut), LEVEL_METRICS)
    assert scores["face_distance"] > LIMIT and scores["faces_added"] == 0
    assert [m.flag for m, _ in guard_flags(scores)] == ["face changed"]
    assert caption_scores(scores).endswith("⚠ face changed")

    scores = score(ScoreInput(added, baseline=astronaut), LEVEL_METRICS)
    assert scores["face_distance"] < LIMIT and scores["faces_added"] == 1
    assert [m.flag for m, _ in guard_flags(scores)] == ["face added"]


def test_text_guard_zero_for_identical_text_high_for_altered_text():
    page = gi.render_text()
    lines = guards.find_text(page)
    read, truth = ("".join(guards._squeeze(t) for t in texts) for texts in ([x.text for x in lines], gi.TEXT_LINES))
    assert guards.edit_distance(read, truth) <= 2  # the detector may split a line in two, overlapping
    assert guards.text_cer(page, lines) == 0.0
    assert guards.text_cer(gi.jpeg(page, 30), lines) <= guards.TEXT_CER_LIMIT / 2
    assert guards.text_cer(gi.render_text(gi.ALTERED_LINES), lines) > guards.TEXT_CER_LIMIT
    assert guards.text_cer(gi.render_text(gi.OTHER_LINES), lines) > 0.6
    altered = score(ScoreInput(gi.render_text(gi.ALTERED_LINES), baseline=page), LEVEL_METRICS)
    assert "face_distance" not in altered and [m.flag for m, _ in guard_flags(altered)] == ["text changed"]


def test_edit_distance():
    assert guards.edit_distance("kitten", "sitting") == 3
    assert guards.edit_distance("", "abc") == guards.edit_distance("abc", "") == 3
    assert guards.edit_distance("same", "same") == 0


def test_guards_cost_nothing_without_faces_or_text(monkeypatch):
    """A baseline without face or text is searched once (scoring level 8, the baseline
    itself); the other levels are never looked at."""
    baseline = Image.fromarray(data.chelsea())
    searched = []
    find_faces, find_text = guards.find_faces, guards.find_text
    monkeypatch.setattr(guards, "find_faces", lambda im: searched.append("faces") or find_faces(im))
    monkeypatch.setattr(guards, "find_text", lambda im: searched.append("text") or find_text(im))
    assert not GUARD_KEYS & set(score(ScoreInput(baseline, baseline=baseline), LEVEL_METRICS))
    assert sorted(searched) == ["faces", "text"]
    for name in ("face_descriptor", "detect_face_boxes", "read_lines", "find_faces", "find_text"):
        monkeypatch.setattr(guards, name, lambda *a, name=name: pytest.fail(f"{name} ran on a level"))
    for level in (gi.blur(baseline, 1.0), gi.jpeg(baseline, 40)):
        assert not GUARD_KEYS & set(score(ScoreInput(level, baseline=baseline), LEVEL_METRICS))


def test_a_baseline_is_searched_once_for_all_levels(monkeypatch, astronaut):
    calls = []
    find_faces = guards.find_faces
    monkeypatch.setattr(guards, "find_faces", lambda im: calls.append(1) or find_faces(im))
    for level in (astronaut, gi.jpeg(astronaut, 50), gi.blur(astronaut, 1.0)):
        assert "face_distance" in score(ScoreInput(level, baseline=astronaut.copy()), LEVEL_METRICS)
    assert len(calls) == 1


def _rows(scores: dict[int, dict[str, float]]):
    return [(presets.TABLE.get(n), s) for n, s in scores.items()]


def test_recommendation_skips_a_level_with_a_changed_face(astronaut, hopper):
    """Level 4 is the most natural, but its face became another person's (scored through the
    registry on real images): level 7 is recommended, and the reason says why not 4."""
    image, face = hopper
    (collins,) = guards.find_faces(astronaut)
    changed = gi.paste(astronaut, image, collins.box, face.box)
    guard_scores = {
        n: score(ScoreInput(im, baseline=astronaut), GUARD_METRICS) for n, im in ((4, changed), (7, astronaut))
    }
    rows = {
        4: {"lr_consistency": 34.0, "niqe": 3.0, **guard_scores[4]},
        7: {"lr_consistency": 36.0, "niqe": 4.0, **guard_scores[7]},
    }
    rec = recommend(_rows(rows), floor=30.0)
    distance = get_metric("face_distance").format(guard_scores[4]["face_distance"])
    assert rec.level == 7 and rec.considered == (7,)
    assert rec.reason == (
        "level 7: most natural (NIQE 4.00) the only level with LR-consistency ≥ 30 dB "
        f"(level 4 not recommended: face changed (Face identity distance {distance} > {LIMIT:g}))"
    )
    without_guard = {n: {k: v for k, v in s.items() if k not in GUARD_KEYS} for n, s in rows.items()}
    assert recommend(_rows(without_guard), floor=30.0).level == 4


def test_no_recommendation_when_every_level_fails_a_guard():
    rows = {4: {"lr_consistency": 34.0, "niqe": 3.0, "text_cer": 0.5}}
    rec = recommend(_rows(rows), floor=30.0)
    assert rec.level is None
    assert rec.reason == "no level left to recommend (level 4 not recommended: text changed (Text CER 0.50 > 0.1))"
