"""What a newcomer meets on a fresh install: a Single level default that can run, advice that
fits a machine without the hub, and the lab's own message for a file that is not an image."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import presets

ROOT = Path(__file__).resolve().parents[1]


def test_the_single_level_default_is_one_that_can_run_here():
    from lab.views import runnable_default

    here = {"realesrgan_x4plus": "available on first use", "waifu2x_photo": "available on first use"}
    every = {**here, "sd15": "available", "controlnet": "available", "lora": "available"}
    assert runnable_default(presets.TABLE, every) == (presets.TABLE.default_strength, "")
    level, why = runnable_default(presets.TABLE, {**every, "sd15": "missing: not in the cache"})
    assert level == 8  # level 5's base path (bicubic) without diffusion
    assert "level 5" in why and "sd15" in why and "diffusion weights" in why
    # a default that needs no diffusion stays
    eight = dataclasses.replace(presets.TABLE, default_strength=8)
    assert runnable_default(eight, {**every, "lora": "missing"})[0] == 8


def test_a_fresh_install_single_level_runs(missing_engine):
    """The tab's default on an engine without diffusion weights runs to a result."""
    from conftest import serving

    from lab.form import UIInput
    from lab.views import runnable_default

    level, _ = runnable_default(missing_engine.config.table, missing_engine.model_status())
    with serving(missing_engine) as supervision:
        form = UIInput.of(
            str(ROOT / "examples" / "astronaut_portrait.png"), "", "96", "", "canvas", "", "", "", 1, False
        )
        result = form.run(form.fields(upscale_strength=level, generative_upscale=True), None, None)
        assert supervision.get_engine() is missing_engine
    assert result.levels[0].level == 8 and result.levels[0].status == "ok"


@pytest.fixture
def no_hub(monkeypatch):
    """The hub's address answers nothing (a closed loopback port) and offline mode is off."""
    import socket

    from pipelines import hub_probe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub_probe.forget()
    yield f"http://127.0.0.1:{port}"
    hub_probe.forget()


def test_fetch_weights_says_the_hub_is_unreachable(no_hub, missing_engine):
    from lab.weights import fetch_unavailable_reason

    reason = fetch_unavailable_reason(missing_engine)
    assert reason is not None and "not reachable from this machine" in reason and no_hub in reason
    assert "copy" in reason and "--sd15" in reason and "python cli.py download" not in reason


def test_cli_download_says_the_hub_is_unreachable(no_hub, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "cli.py", "download"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not reachable from this machine" in done.stderr and "copy" in done.stderr


def test_a_text_file_named_png_gets_the_lab_message(tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData

    from lab.form import UIInput
    from lab.layout import as_sent
    from pipelines.errors import InputError

    fake = tmp_path / "photo.png"
    fake.write_text("this is not an image")
    path = as_sent(gr.Image(type="filepath")).preprocess(FileData(path=str(fake), orig_name="photo.png"))
    assert path == str(fake)  # handed on as sent: gradio does not decode it
    with pytest.raises(InputError, match=r"not a recognised image \(accepted formats: .*PNG"):
        UIInput.of(path, "", "", "", "", "", "", "", 1, False).load()


def test_a_failed_fetch_is_a_line_in_the_panel_not_an_error_badge_over_it(no_hub, missing_engine, monkeypatch):
    """The Fetch weights handler does not raise (gradio would lay its red badge over the device
    line): the panel keeps the device line and says why the fetch failed, once."""
    import gradio as gr
    from conftest import serving

    from lab import weights
    from lab.handlers import Events
    from lab.layout import build_layout
    from pipelines.errors import WeightsError

    with gr.Blocks():
        ui = build_layout(missing_engine.config.table)
    events = Events(ui)
    with serving(missing_engine):
        state = events.fetch_weights(progress=lambda *a, **k: None)  # the hub's refusal: said once
        assert state[ui.status].startswith("**Device:**")
        assert state[ui.status].count("not reachable from this machine") == 1
        assert state[ui.fetch_btn].interactive is False

        def broken(report, *, engine=None):
            raise WeightsError("sd15: the download stopped at 40 %")

        monkeypatch.setattr(weights, "fetch_weights", broken)
        monkeypatch.setattr(weights, "fetch_unavailable_reason", lambda engine: None)  # the hub answers
        state = events.fetch_weights(progress=lambda *a, **k: None)
        assert state[ui.status].startswith("**Device:**")
        assert "*Fetch weights failed:* sd15: the download stopped at 40 %" in state[ui.status]


def test_the_run_note_compares_the_estimate_with_the_time_taken():
    from lab.views import ESTIMATES, estimate_note

    ESTIMATES.clear()
    assert "No estimate before this run" in estimate_note(None, 12.0)
    assert (
        estimate_note(14.0, 41.0).strip()
        == "Estimated ~14 s, took 41 s (the last runs, estimated → actual: ~14 → 41 s)."
    )
    note = estimate_note(30.0, 33.0)
    assert "took 33 s" in note and "~14 → 41 s, ~30 → 33 s" in note
    ESTIMATES.clear()
