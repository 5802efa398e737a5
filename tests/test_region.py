"""The preview on a region (issue 20, point 2): the box's checks, its output size at the whole
image's scale, the most detailed window, a preview through the engine (tiny models) that costs
less than the whole image in the engine's own stage timings, and a whole run started from the
preview equal to a direct run."""

from __future__ import annotations

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
