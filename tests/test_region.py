"""The preview on a region (issue 20, point 2): the box's checks, its output size at the whole
image's scale, the most detailed window, a preview through the engine (tiny models) that costs
less than the whole image in the engine's own stage timings, and a whole run started from the
preview equal to a direct run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import RequestError
from pipelines.region import (
    Region,
    crop_image,
    default_region,
    estimates,
    most_detailed_window,
    parse_region,
    preview,
    region_request,
)
from pipelines.request import UpscaleRequest

ALL = tuple(range(1, 10))


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ([1, 2, 3, 4], "region", "must be an object"),
        ({"x": 0, "y": 0, "width": 10}, "region.height", "is missing"),
        ({"x": 0, "y": 0, "width": 10, "height": 10, "depth": 1}, "region.depth", "not a region field"),
        ({"x": -1, "y": 0, "width": 10, "height": 10}, "region.x", "0 or more"),
        ({"x": 0, "y": 0, "width": 4, "height": 10}, "region.width", "at least 8 px"),
        ({"x": 0, "y": 0, "width": 10.5, "height": 10}, "region.width", "whole number"),
        ({"x": 0, "y": 0, "width": True, "height": 10}, "region.width", "whole number"),
        ({"x": float("nan"), "y": 0, "width": 10, "height": 10}, "region.x", "whole number"),
        ({"x": 0, "y": float("inf"), "width": 10, "height": 10}, "region.y", "whole number"),
        ({"x": 60, "y": 0, "width": 10, "height": 10}, "region.width", "past the input's width, 64 px"),
        ({"x": 0, "y": 50, "width": 10, "height": 20}, "region.height", "past the input's height, 64 px"),
    ],
)
def test_a_region_outside_the_rules_names_its_field(value, field, words):
    with pytest.raises(RequestError) as caught:
        parse_region(value, (64, 64))
    assert caught.value.field == field and words in str(caught.value)


def test_the_region_keeps_the_whole_images_scale():
    # 200×100 to width 500: ×2.5; a 40×20 box becomes 100×50 of output, exactly, without padding
    asked = region_request(UpscaleRequest(width=500, seed=1), (200, 100), Region(10, 20, 40, 20))
    assert (asked.width, asked.height, asked.fit, asked.seed) == (100, 50, "crop", 1)
    # with padding the content is 486 px wide (×2.43): the box gets that scale and no padding
    padded = region_request(UpscaleRequest(width=500, padding=7), (200, 100), Region(10, 20, 40, 20))
    assert (padded.width, padded.height, padded.padding) == (97, 49, None)
    # the default scale (no size asked) and a height request scale the box alike
    assert region_request(UpscaleRequest(height=300), (200, 100), Region(0, 0, 40, 20)).width == 120


def test_the_default_window_is_the_most_detailed_one():
    rng = np.random.default_rng(0)
    flat = np.full((120, 160, 3), 128, np.uint8)
    flat[70:100, 20:50] = rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)  # the one textured patch
    found = most_detailed_window(Image.fromarray(flat), (30, 30))
    assert abs(found.x - 20) <= 2 and abs(found.y - 70) <= 2, found
    # the window is clamped to the image
    assert most_detailed_window(Image.fromarray(flat), (500, 500)) == Region(0, 0, 160, 120)


def test_a_preview_gives_every_level_at_the_regions_output_size_for_less(tiny_engine, photo):
    whole = UpscaleRequest(width=128, levels=ALL, seed=5)
    region = Region(8, 16, 24, 32)  # of the 64×64 photo, at ×2: 48×64 of output
    shown = preview(tiny_engine, photo, whole, region)
    assert [lv.level for lv in shown.levels] == list(ALL)
    assert {lv.image.size for lv in shown.levels if lv.image is not None} == {(48, 64)}
    assert all(lv.status == "ok" for lv in shown.levels), [(lv.level, lv.message) for lv in shown.levels]
    assert shown.manifest["preview"]["region"] == {"x": 8, "y": 16, "width": 24, "height": 32}
    full = tiny_engine.run(photo, whole)
    # the engine's own stage timings: the diffusion of 24×32 input px costs less than of 64×64
    diffusion = [k for k in full.timings if k.startswith("diffusion")]
    assert diffusion, full.timings
    assert sum(shown.timings[k] for k in diffusion) < sum(full.timings[k] for k in diffusion)
    expect_region, expect_whole = estimates(tiny_engine, photo, whole, region)
    assert expect_region is not None and expect_whole is not None and expect_region < expect_whole


def test_a_whole_run_started_from_the_preview_equals_a_direct_run(tiny_engine, photo):
    whole = UpscaleRequest(width=128, upscale_strength=5, seed=11)
    preview(tiny_engine, photo, whole, default_region(photo, whole, output_side=48))
    from_preview = tiny_engine.run(photo, whole)  # the lab's "run the whole image at level 5"
    tiny_engine._base_cache.clear()  # the direct run computes its base afresh
    direct = tiny_engine.run(photo, whole)
    assert from_preview.levels[0].image.tobytes() == direct.levels[0].image.tobytes()
    assert from_preview.levels[0].image.size == (128, 128)


def test_a_crop_is_not_the_whole_image_for_the_cache(photo):
    a, b = crop_image(photo, Region(0, 0, 32, 32)), crop_image(photo, Region(32, 0, 32, 32))
    assert a.sha256 != b.sha256 != photo.sha256 and a.size == (32, 32)
    assert np.array_equal(np.asarray(a.rgb), np.asarray(photo.rgb)[:32, :32])


def test_the_request_json_takes_a_region_and_a_preview_replays_from_its_manifest(tiny_engine, photo):
    from pipelines.engine import replay_request
    from pipelines.request import parse_request

    with pytest.raises(RequestError) as caught:
        parse_request({"region": {"x": 0, "y": 0, "width": 3, "height": 10}})
    assert caught.value.field == "region.width"
    asked = parse_request({"width": 128, "levels": [8, 9], "region": {"x": 8, "y": 8, "width": 32, "height": 24}})
    shown = tiny_engine.run(photo, asked)  # the engine previews a request with a region
    assert {lv.image.size for lv in shown.levels} == {(64, 48)}
    assert shown.manifest["request"]["region"] == {"x": 8, "y": 8, "width": 32, "height": 24}
    assert shown.manifest["input"]["size"] == [64, 64]  # the whole input: what a replay runs on
    again = tiny_engine.run(photo, replay_request(shown.manifest))
    assert [lv.image.tobytes() for lv in again.levels] == [lv.image.tobytes() for lv in shown.levels]
    with pytest.raises(RequestError) as caught:  # checked against the input's size when it runs
        tiny_engine.run(photo, parse_request({"region": {"x": 40, "y": 0, "width": 32, "height": 8}}))
    assert caught.value.field == "region.width" and "64 px" in str(caught.value)


def test_rest_previews_a_region_and_names_a_box_outside_the_input(lab_server):
    import json

    from test_app import b64_photo, post

    body = {"image_base64": b64_photo(), "width": 96, "upscale_strength": 8}
    status, headers, _ = post(
        lab_server + "/api/v1/upscale", {**body, "region": {"x": 0, "y": 8, "width": 16, "height": 24}}
    )
    assert status == 200 and headers["x-size"] == "32x48", headers
    status, _, raw = post(
        lab_server + "/api/v1/upscale", {**body, "region": {"x": 40, "y": 0, "width": 16, "height": 8}}
    )
    doc = json.loads(raw)
    assert status == 422 and doc["field"] == "region.width" and "48 px" in doc["error"], doc


def test_the_lab_preview_and_then_the_whole_image_at_level_n(tiny_engine, tmp_path):
    """The panel's preview runs every level on the box; Run the whole image at level 5 gives
    the image the Single level tab gives at 5 (same form, same seed), bit for bit."""
    from dataclasses import replace

    from conftest import serving

    from lab.region_panel import region_text, run_whole_fields
    from lab.views import region_note

    path = tmp_path / "in.png"
    Image.open(Path(__file__).resolve().parents[1] / "examples" / "astronaut_portrait.png").resize((64, 64)).save(path)
    form_values = (str(path), "", "128", "", "canvas", "", "", "", 9, False)
    with serving(tiny_engine):
        form, whole = run_whole_fields((*form_values, 5))
        box = replace(form.fields(levels=ALL), region=region_text([8, 8, 24, 16]))
        shown = form.run(box, None, None)
        assert {lv.image.size for lv in shown.levels} == {(48, 32)}
        assert "Region preview" in region_note(shown) and "24×16 of 64×64" in region_note(shown)
        from_preview = form.run(whole, None, None)
        tiny_engine._base_cache.clear()
        direct = form.run(form.fields(upscale_strength=5, generative_upscale=True), None, None)
    assert from_preview.levels[0].level == 5 and from_preview.levels[0].image.size == (128, 128)
    assert from_preview.levels[0].image.tobytes() == direct.levels[0].image.tobytes()


def test_the_default_box_is_at_most_half_the_input(photo):
    # 64×64 at ×2 would give a 256 px box for 512 px of output: the whole image; half instead
    box = default_region(photo, UpscaleRequest(width=128), output_side=512)
    assert (box.width, box.height) == (32, 32)


@pytest.mark.parametrize("text", ["--5,0,10,10", "²,0,10,10", "1,2,3", "a,b,c,d"])
def test_the_cli_box_text_is_four_whole_numbers(text):
    from pipelines.region import parse_region_text

    with pytest.raises(RequestError) as caught:
        parse_region_text(text)
    assert caught.value.field == "region" and "x,y,width,height" in str(caught.value)


def test_a_box_smaller_than_a_pixel_of_the_view_is_still_drawn():
    from lab.region_panel import overlay

    big = crop_image.__globals__["LoadedImage"](  # a 6000×4000 input: the view is 480 px wide
        rgb=Image.new("RGB", (6000, 4000), (90, 90, 90)), alpha=None, grayscale=False, sha256="x", format="PNG"
    )
    view = overlay(big, Region(100, 100, 8, 8))
    assert view.size == (480, 320) and view.getpixel((8, 8)) != (90, 90, 90)


def test_the_lab_estimates_a_preview_as_its_box(tiny_engine, photo):
    from lab.form import request_estimate

    whole = UpscaleRequest(width=128, levels=ALL, seed=5)
    tiny_engine.run(photo, whole)  # the costs are measured
    box = dataclasses.replace(whole, region=Region(0, 0, 16, 16))
    expect_box, expect_whole = request_estimate(tiny_engine, photo, box), request_estimate(tiny_engine, photo, whole)
    assert expect_box is not None and expect_whole is not None and expect_box < expect_whole / 4


def test_run_the_whole_image_takes_the_panels_recipe_for_the_custom_choice():
    from lab.region_panel import CUSTOM_CHOICE, run_whole_fields

    form = ("x.png", "", "128", "", "canvas", "", "", "", 9, False)
    panel = (False, 5, "bicubic", 0.5, 0.45, 0.8, None, None, None, None)  # not ticked: still its recipe
    _, fields = run_whole_fields((*form, *panel, CUSTOM_CHOICE))
    assert fields.custom.creativity == 0.45 and fields.custom.resemblance == 0.8 and fields.upscale_strength is None
    _, fields = run_whole_fields((*form, *panel, 7))
    assert fields.custom is None and fields.upscale_strength == 7
