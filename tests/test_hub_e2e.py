"""The real repos' layouts, end to end, through a fake hub: replicas of the diffusion repos,
the fast mode's LCM-LoRA included (tiny weights under the real names and formats, the LoRAs at
their pinned revisions) are served on loopback, and the product is used as a user would: ``cli.py download`` →
``cli.py status`` → an offline grid with levels 1–6 run; and a cache filled only by the
Space's ``preload_from_hub`` list serves an offline app whose generative levels run."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import presets
from testing.tiny import hub_replicas
from tests.fakehub import FakeHub

ROOT = Path(__file__).resolve().parents[1]
DIFFUSION = presets.DIFFUSION_MODEL_IDS


@pytest.fixture(scope="module")
def hub(tiny_models):
    with FakeHub() as fake:
        commits = {}
        for repo, folder in hub_replicas(tiny_models).items():
            spec = next(s for s in presets.MODELS.values() if s.repo == repo)
            commits[repo] = fake.add_repo(repo, folder, commit=spec.revision if spec.pinned else None)
            if spec.pinned:
                assert commits[repo] == spec.revision
        fake.commits = commits  # type: ignore[attr-defined]
        yield fake


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["UPSCALE_LAB_CACHE"] = os.environ["UPSCALE_LAB_CACHE"]  # the converted ×4 weights, shared
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )


def small_photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((48, 48)).save(path)
    return path


def test_download_status_then_offline_grid(hub, tmp_path):
    home = tmp_path / "hf"
    got = cli("download", env=child_env(**hub.env(hf_home=home)))
    assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-3000:]
    total = sum(len(presets.MODELS[m].files) for m in DIFFUSION)
    assert f"{total} files" in got.stdout and " in all" in got.stdout  # the total size, first
    assert f"[{total}/{total}]" in got.stdout  # then each file
    for mid in DIFFUSION:
        spec = presets.MODELS[mid]
        # exactly the listed files were fetched: no safety checker, no feature extractor
        assert sorted(hub.fetched(spec.repo)) == sorted(spec.files), mid
        assert f"{mid}: {spec.repo} commit {hub.commits[spec.repo]}" in got.stdout
    assert not hub.unhandled

    offline = child_env(HF_HOME=str(home), HF_HUB_OFFLINE="1")
    status = cli("status", env=offline)
    assert status.returncode == 0, status.stderr[-2000:]
    for mid in DIFFUSION:
        line = next(ln for ln in status.stdout.splitlines() if ln.startswith(f"{mid}:"))
        assert line.startswith(f"{mid}: available") and hub.commits[presets.MODELS[mid].repo] in line, line

    before = len(hub.requests)
    out = tmp_path / "grid"
    grid = cli("grid", str(small_photo(tmp_path)), "-o", str(out), "--width", "96", "--seed", "3", env=offline)
    assert grid.returncode == 0, grid.stderr[-3000:]
    assert len(hub.requests) == before, "the offline run talked to the hub"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [lv["status"] for lv in manifest["levels"]] == ["ok"] * len(presets.TABLE.levels)
    for mid in DIFFUSION:
        assert manifest["models"][mid]["commit"] == hub.commits[presets.MODELS[mid].repo]
    first = next(lv.level for lv in presets.TABLE.levels if lv.generative)
    diffused, baseline = (
        np.asarray(Image.open(out / f"level_{n}.png"), dtype=int) for n in (first, presets.TABLE.baseline_level)
    )
    assert np.abs(diffused - baseline).mean() > 1, f"level {first} did not change the bicubic baseline"

    # the fast mode through the same cache: its LCM-LoRA came with `download`, the run stays offline
    fast_png, fast_manifest = tmp_path / "fast.png", tmp_path / "fast.json"
    args = ["--width", "96", "--seed", "3", "--strength", str(first), "--fast", "--manifest", str(fast_manifest)]
    fast = cli("upscale", str(small_photo(tmp_path)), "-o", str(fast_png), *args, env=offline)
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert len(hub.requests) == before, "the offline fast run talked to the hub"
    record = json.loads(fast_manifest.read_text())
    assert record["request"]["fast"] is True and record["levels"][0]["status"] == "ok"
    assert record["fast"]["scheduler"] == "LCMScheduler"
    assert record["models"]["fast_lora"]["commit"] == hub.commits[presets.MODELS["fast_lora"].repo]
    quick = np.asarray(Image.open(fast_png).convert("RGB"), dtype=int)
    assert np.abs(quick - diffused).mean() > 0.5, "the fast mode gave the normal mode's image"


def test_status_offline_with_an_empty_cache_names_the_fetch_command(tmp_path):
    status = cli("status", env=child_env(HF_HOME=str(tmp_path / "empty"), HF_HUB_OFFLINE="1"))
    assert status.returncode == 0
    for mid in DIFFUSION:
        line = next(ln for ln in status.stdout.splitlines() if ln.startswith(f"{mid}:"))
        assert "missing" in line and "python cli.py download" in line, line


def preload(hub: FakeHub, home: Path) -> None:
    """Fill a cache the way a Space's build does from README's ``preload_from_hub``: each line
    ``REPO FILE,FILE,... [REVISION]``, every file fetched with ``hf_hub_download``."""
    import yaml

    front = (ROOT / "README.md").read_text().split("---\n")[1]
    lines = yaml.safe_load(front)["preload_from_hub"]
    script = (
        "import sys, json\n"
        "from huggingface_hub import hf_hub_download\n"
        "for line in json.loads(sys.argv[1]):\n"
        "    repo, files, *rev = line.split(' ')\n"
        "    for f in files.split(','):\n"
        "        hf_hub_download(repo, f, revision=rev[0] if rev else None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(lines)],
        env=child_env(**hub.env(hf_home=home)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_cache_filled_by_the_space_preload_serves_an_offline_app(hub, tmp_path):
    from conftest import free_port, started_app

    home = tmp_path / "space_hf"
    preload(hub, home)
    port = free_port()
    env = child_env(HF_HOME=str(home), HF_HUB_OFFLINE="1", PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    with started_app(env, tmp_path / "app.log") as url:
        photo = small_photo(tmp_path).read_bytes()
        for strength in range(1, 7):  # every generative level, each through the diffusion weights
            body = json.dumps(
                {"image_base64": base64.b64encode(photo).decode(), "width": 96, "upscale_strength": strength, "seed": 1}
            )
            req = urllib.request.Request(
                url + "/api/v1/upscale?format=json", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=600) as resp:
                answer = json.loads(resp.read())
            assert answer["level"] == strength and answer["width"] == 96
            assert answer["manifest"]["levels"][0]["status"] == "ok"
        body = json.dumps({"image_base64": base64.b64encode(photo).decode(), "width": 96, "fast": True, "seed": 1})
        req = urllib.request.Request(
            url + "/api/v1/upscale?format=json", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as resp:  # the fast mode's adapter was preloaded too
            answer = json.loads(resp.read())
        assert answer["manifest"]["request"]["fast"] is True and answer["manifest"]["levels"][0]["status"] == "ok"


def test_fetch_weights_in_the_lab(hub, tmp_path, monkeypatch):
    """The status panel's Fetch weights action: off (with the reason) offline and on a Space;
    on a self-hosted server it fetches every missing file with per-file progress, and the
    engine then finds the parts."""
    from lab.weights import fetch_unavailable_reason, fetch_weights
    from pipelines.engine import Engine, EngineConfig

    engine = Engine(EngineConfig(device="cpu"))  # the default hub ids
    assert "HF_HUB_OFFLINE" in fetch_unavailable_reason(engine)
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    assert "preload_from_hub" in fetch_unavailable_reason(engine)
    monkeypatch.delenv("SPACE_ID")
    steps: list[tuple[str, int, int]] = []
    with hub.activate(hf_home=tmp_path / "hf"):
        assert fetch_unavailable_reason(engine) is None
        assert all(engine.model_status()[m].startswith("missing") for m in DIFFUSION)
        fetch_weights(lambda message, done, total: steps.append((message, done, total)), engine=engine)
        status = engine.model_status()
        assert all(status[m].startswith("available") for m in DIFFUSION), status
        assert fetch_unavailable_reason(engine) == "every model is here."
    total = sum(len(presets.MODELS[m].files) for m in DIFFUSION)
    assert steps[0][0].startswith(f"{total} files") and steps[-1][1:] == (total, total)
    assert [d for _, d, _ in steps] == sorted(d for _, d, _ in steps)  # progress only moves forward
