"""A person in headless Chromium runs a 2 × 3 sweep in the lab's Sweep tab (issue 20, point 3):
two settings, their values typed as text, the preview region; six captioned results, a row
each in the score table, the perception–distortion view and the monotonicity check per axis."""

from __future__ import annotations

import pytest
from test_browser import ROOT, SCREENSHOTS, lab_page, require_chromium

CREATIVITY = ["0.2", "0.5", "0.9"]
RESEMBLANCE = ["0.4", "1.2"]


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` (its shown text starts with it) in the dropdown labelled ``label``."""
    box = page.get_by_label(label)
    box.click()
    page.get_by_role("option", name=option).first.click()


@pytest.mark.browser
def test_person_runs_a_2_by_3_sweep_in_the_browser(lab_server):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        with lab_page(p, lab_server) as page:
            page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
            page.locator("#width-in input").fill("512")  # ×2: a 128-px region, 256 px of output a point (NIQE)
            page.get_by_role("tab", name="Sweep").click()
            choose(page, "Setting 1 (the grid's columns)", "creativity")
            page.locator("#sweep-values-1 input").fill(", ".join(CREATIVITY))
            choose(page, "Setting 2 (the rows)", "resemblance")
            page.locator("#sweep-values-2 input").fill(", ".join(RESEMBLANCE))
            page.get_by_role("button", name="Run sweep").click()

            note = page.locator("#sweep-note")
            expect(note).to_contain_text("6 points from level", timeout=300_000)
            expect(note).to_contain_text("Region preview: input")
            expect(note).to_contain_text("creativity: ")  # the monotonicity check, per axis
            expect(note).to_contain_text("resemblance: ")
            captions = page.locator("#sweep-grid .caption-label")
            expect(captions).to_have_count(6, timeout=30_000)
            expected = [f"creativity {c} · resemblance {r}" for r in RESEMBLANCE for c in CREATIVITY]
            for i, text in enumerate(expected):
                caption = captions.nth(i).inner_text()
                assert caption.startswith(text) and "PSNR" in caption and "NIQE" in caption, caption
                cut = captions.nth(i).evaluate(
                    "e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1"
                )
                assert not cut, f"caption {caption!r} is cut"
            scores = page.locator("#sweep-scores")
            for c in CREATIVITY:
                expect(scores).to_contain_text(c)
            status = scores.locator(".body-cell").get_by_text("ok", exact=True)
            expect(status).to_have_count(6, timeout=30_000)  # a row per point
            expect(page.locator("#sweep-pd img").first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(500)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "sweep.png"), full_page=True)
