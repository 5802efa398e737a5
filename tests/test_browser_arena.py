"""A person in headless Chromium votes in the Arena: a blind pair, a vote, the recipes revealed,
the leaderboard with its interval bars and counts, the next pair, the export."""

import re
from pathlib import Path

import pytest
from test_browser import SCREENSHOTS, lab_page, require_chromium


@pytest.mark.browser
def test_person_votes_in_the_arena_and_sees_the_leaderboard(lab_server):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        with lab_page(p, lab_server) as page:
            left, right = page.locator("#arena-left"), page.locator("#arena-right")
            expect(left.locator("img")).to_be_visible(timeout=120_000)  # a pair on page load
            expect(page.locator("input[type=file]")).to_have_count(1)  # the lab's photo: the arena adds none
            expect(right.locator("img")).to_be_visible()
            reveal = page.locator("#arena-reveal")
            expect(reveal).to_contain_text("Which looks better?")
            assert "level" not in (left.inner_text() + right.inner_text())  # the recipes are hidden
            left.scroll_into_view_if_needed()
            page.screenshot(path=_shot("arena_pair.png"), full_page=True)

            page.locator("#arena-vote-left").click()
            expect(reveal).to_contain_text("You voted left is better", timeout=60_000)
            expect(reveal).to_contain_text("Left was level")
            expect(left).to_contain_text("Left: level", timeout=30_000)  # the label on the image itself
            expect(page.locator("#arena-vote-left")).to_be_disabled()  # one vote per pair shown
            board = page.locator("#arena-board")
            expect(board).to_contain_text("1 vote · all kinds", timeout=60_000)
            expect(board).to_contain_text("off (LoRA 0)")  # the bundled levels 7-9, rated
            expect(page.locator("#arena-plot img").first).to_be_visible(timeout=30_000)
            expect(page.locator("#arena-personal")).to_contain_text("after 30 votes (1 so far)")
            page.locator("#arena-plot").scroll_into_view_if_needed()
            page.screenshot(path=_shot("arena_voted.png"), full_page=True)

            page.locator("#arena-next").click()
            expect(reveal).to_contain_text("Which looks better?", timeout=60_000)
            page.locator("#arena-vote-tie").click()
            expect(reveal).to_contain_text("You voted a tie", timeout=60_000)
            expect(page.locator("#arena-personal")).to_contain_text("(2 so far)", timeout=30_000)
            expect(board).to_contain_text("2 votes · all kinds", timeout=30_000)

            page.locator("#arena-export").click()
            files = page.locator("#arena-files")
            for stem, suffix in (("votes", "csv"), ("votes", "parquet"), ("leaderboard-all-kinds", "csv")):
                expect(files).to_contain_text(
                    re.compile(rf"{stem}\s*\.{suffix}"), timeout=60_000
                )  # gradio splits the name


def _shot(name: str) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(Path(SCREENSHOTS) / name)
