"""A person in headless Chromium: upload a photo, run the grid, read the scores, move the slider."""

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import record

import presets

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE  # the served tiny engine's levels
RUN_ALL = f"Run all {TABLE.count_text} levels"  # the grid's button
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = ROOT / "out" / "screenshots"


def require_chromium() -> None:
    """In CI a missing browser fails the test (it must run there); elsewhere it skips."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (bash scripts/setup.sh --dev installs it)")


@contextlib.contextmanager
def lab_page(p, lab_server: str) -> Iterator:
    """A 1400×1100 page of the lab in headless Chromium; the browser is closed even when the
    test fails inside."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(lab_server + "/")
        yield page
    finally:
        browser.close()


def start_long_run(p, lab_server: str, run_outcomes):
    """A browser page that starts a run of every level, long enough (1024 px with the tiny models)
    to act on mid-run; returns (browser, page) once the engine is running."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page()
    page.goto(lab_server + "/")
    page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
    page.locator("#width-in input").fill("1024")
    page.get_by_role("button", name=RUN_ALL).click()
    run_outcomes.wait_started()
    return browser, page


@pytest.mark.browser
def test_person_runs_the_grid_in_a_browser(lab_server, tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(lab_server + "/")
        page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
        page.locator("#width-in input").fill("512")  # ×2, and NIQE needs 192 px a side: a recommendation
        page.get_by_role("button", name=RUN_ALL).click()
        expect(page.locator("#run-note")).to_contain_text("Seed", timeout=240_000)  # the run's last update
        recommendation = page.locator("#recommendation")
        expect(recommendation).to_contain_text("recommended: level", timeout=60_000)
        picked = int(recommendation.inner_text().split("recommended: level")[1].split()[0])
        captions = page.locator("#grid .caption-label")
        expect(captions).to_have_count(len(TABLE.levels), timeout=30_000)
        expect(captions.filter(has_text="★ recommended")).to_have_count(1, timeout=30_000)
        page.wait_for_timeout(500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "grid.png"), full_page=True)
        for i, lv in enumerate(TABLE.in_grid_order):  # level, recipe and the scores, legible and not cut
            text = captions.nth(i).inner_text()
            badge = "★ recommended · " if lv.level == picked else ""
            assert text.startswith(f"{badge}{lv.level} · ") and "PSNR" in text and "NIQE" in text, text
            cut = captions.nth(i).evaluate(
                "e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1"
            )
            assert not cut, f"caption of level {lv.level} is cut: {text!r}"

        page.get_by_role("tab", name="Scores").click()
        scores = page.locator("#scores")
        for lv in TABLE.levels:  # every level's row is on screen (hyphens non-breaking: "Real‑ESRGAN")
            expect(scores).to_contain_text(lv.recipe.replace("-", "\u2011"), timeout=30_000)
        expect(scores).to_contain_text("inf")  # the baseline against itself
        expect(page.locator("#pd-plot img").first).to_be_visible(timeout=30_000)  # fidelity vs naturalness
        page.screenshot(path=str(SCREENSHOTS / "scores.png"), full_page=True)

        # a floor no level reaches: no badge, the line says why, without a re-run
        page.get_by_role("tab", name="Grid").click()
        floor = page.locator("#floor input[type=number]")
        floor.fill("60")
        floor.press("Enter")
        expect(recommendation).to_contain_text("No recommendation", timeout=30_000)
        expect(recommendation).to_contain_text("60 dB")
        expect(captions.filter(has_text="★ recommended")).to_have_count(0, timeout=30_000)

        page.get_by_role("tab", name="Compare").click()
        slider = page.locator("#slider")
        expect(slider.locator("img").first).to_be_visible(timeout=30_000)
        box = slider.bounding_box()
        assert box is not None
        before = page.screenshot(clip=box)
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] / 2, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.15, y, steps=8)
        page.mouse.up()
        deadline = time.monotonic() + 30
        while (after := page.screenshot(clip=box)) == before and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert before != after  # the divider moved
        page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
        browser.close()
    shutil.copy(SCREENSHOTS / "grid.png", tmp_path / "grid.png")


@pytest.mark.browser
def test_closing_the_page_stops_the_run(lab_server, run_outcomes):
    """A person closes the tab mid-run: the run is cancelled and the engine is free again."""
    from lab import supervision

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = start_long_run(p, lab_server, run_outcomes)
        t = time.monotonic()
        page.close()
        browser.close()
    stopped_in = time.monotonic() - t + run_outcomes.wait_done()
    assert not supervision.CANCELS.sessions()  # no session still holds a run
    assert run_outcomes.outcomes == ["Cancelled"]  # stopped, not run to the end
    record("browser_tab_closed", {"outcome": "Cancelled", "engine_free_after_s": round(stopped_in, 2)})


@pytest.mark.browser
def test_cancel_button_stops_the_run(lab_server, run_outcomes):
    """A person presses Cancel mid-run: the run stops and the engine is free again."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = start_long_run(p, lab_server, run_outcomes)
        t = time.monotonic()
        page.get_by_role("button", name="Cancel").click()
        stopped_in = time.monotonic() - t + run_outcomes.wait_done()
        browser.close()
    assert run_outcomes.outcomes == ["Cancelled"]
    record("cancel_button", {"outcome": "Cancelled", "engine_free_after_s": round(stopped_in, 2)})


WORDS_ON_ONE_LINE = """els => els.filter(e => {
  // a word broken over two lines has a range with more than one client rect
  const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);  // every text inside, however nested
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.textContent;
    let start = 0;
    for (const word of text.split(/\\s+/)) {
      const at = text.indexOf(word, start);
      if (!word || at < 0) continue;
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + word.length);
      if (range.getClientRects().length > 1) return true;
      start = at + word.length;
    }
  }
  return false;
}).map(e => e.textContent)"""


@pytest.mark.browser
def test_a_newcomer_sees_the_run_button_a_legible_table_and_plain_errors(lab_server, tmp_path, capfd, caplog):
    """Above the fold at 1400×1000 and on a phone: the Run button and the run's status. After a
    run: the score table's headers and numbers do not break inside words and the levels that
    ran are visible without scrolling it. A text file named .png: the lab's own message, one
    log line, no server path and no traceback."""
    import logging

    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    caplog.set_level(logging.INFO, logger="upscale-lab.app")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name, size in (("desktop", {"width": 1400, "height": 1000}), ("phone", {"width": 390, "height": 844})):
            page = browser.new_page(viewport=size)
            page.goto(lab_server + "/")
            run = page.get_by_role("button", name=RUN_ALL)
            expect(run).to_be_visible(timeout=60_000)
            for what in (run, page.locator("#run-note")):
                box = what.bounding_box()
                assert box is not None and box["y"] + box["height"] <= size["height"], (name, box)
            page.screenshot(path=str(SCREENSHOTS / f"above_the_fold_{name}.png"))
            page.close()

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab_server + "/")
        fake = tmp_path / "holiday.png"
        fake.write_text("not an image, whatever its name says")
        capfd.readouterr()
        page.set_input_files("input[type=file]", str(fake))
        page.get_by_role("button", name=RUN_ALL).click()
        toast = page.locator(".toast-body").filter(has_text="not a recognised image")
        expect(toast).to_be_visible(timeout=60_000)
        assert "/tmp/" not in toast.inner_text() and "preprocess" not in toast.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "not_an_image.png"))
        refused = [r for r in caplog.records if "not a recognised image" in r.getMessage()]
        assert len(refused) == 1 and refused[0].exc_info is None
        assert "Traceback" not in "".join(capfd.readouterr())

        # a second, different mistake: its message alone, not under "Error (2)" with the first
        page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
        page.locator("#width-in input").fill("99999")
        page.get_by_role("button", name=RUN_ALL).click()
        newest = page.locator("[data-testid=toast-text]").filter(has_text="width: output would be")
        expect(newest).to_be_visible(timeout=60_000)
        expect(page.locator("[data-testid=toast-text]").filter(has_text="not a recognised image")).to_be_hidden()
        expect(page.locator(".toast-count")).to_be_hidden()
        page.screenshot(path=str(SCREENSHOTS / "second_error.png"))

        page.reload()
        page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
        page.locator("#width-in input").fill("256")
        page.get_by_role("button", name=RUN_ALL).click()
        expect(page.locator("#run-note")).to_contain_text("Seed", timeout=240_000)
        page.get_by_role("tab", name="Scores").click()
        scores = page.locator("#scores")
        expect(scores.locator(".body-cell").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)
        broken = scores.locator("th .header-content span, .body-cell .cell-wrap").evaluate_all(WORDS_ON_ONE_LINE)
        assert broken == [], f"cells broken inside a word: {broken}"
        viewport = scores.locator(".virtual-table-viewport").bounding_box()
        assert viewport is not None
        for row in scores.locator(".virtual-row").all():
            if not row.locator(".body-cell").nth(1).inner_text().startswith("not run"):  # a level that ran
                box = row.bounding_box()
                assert box is not None and box["y"] + box["height"] <= viewport["y"] + viewport["height"] + 1
                assert box["x"] + box["width"] <= viewport["x"] + viewport["width"] + 1  # every column shown
        page.screenshot(path=str(SCREENSHOTS / "scores_table.png"))
        browser.close()


@pytest.mark.browser
def test_a_region_preview_then_the_whole_image(lab_server):
    """Preview a region: the box drawn on the input with both estimates, every level on the box
    (the status says it is a region), then the whole image at a level in the Single level tab."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab_server + "/")
        page.set_input_files("input[type=file]", str(ROOT / "examples" / "astronaut_portrait.png"))
        page.locator("#width-in input").fill("512")
        page.get_by_text("Advanced: a custom level").click()  # the custom level's panel, as a person sees it
        expect(page.locator("#advanced")).to_contain_text("Run custom level", timeout=60_000)
        page.locator("#advanced").screenshot(path=str(SCREENSHOTS / "advanced_panel.png"))
        page.get_by_text("Advanced: a custom level").click()
        page.get_by_text("Preview a region").click()
        page.get_by_role("button", name="Most detailed window").click()
        expect(page.locator("#region-note")).to_contain_text("px of output", timeout=120_000)
        assert page.locator("#region-width input").input_value() != ""
        page.locator("#region-panel").screenshot(path=str(SCREENSHOTS / "region_panel.png"))
        page.get_by_role("button", name="Preview all levels on the region").click()
        expect(page.locator("#run-note")).to_contain_text("Region preview", timeout=300_000)
        expect(page.locator("#run-note")).to_contain_text("Seed", timeout=300_000)
        page.locator("#run-note").scroll_into_view_if_needed()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "region_preview.png"))
        page.get_by_role("button", name="Run the whole image").click()
        expect(page.locator("#single-note")).to_be_visible(timeout=300_000)
        expect(page.get_by_text("· 512×512 ·")).to_be_visible(timeout=300_000)
        page.screenshot(path=str(SCREENSHOTS / "region_whole_image.png"))
        browser.close()
